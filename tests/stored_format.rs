//! Values written by earlier builds must keep decoding. Each fixture under tests/fixtures/ is
//! the exact bytes a released format wrote, next to the JSON it must read back as. Never
//! regenerate a fixture for a released format: add a new one for the new format instead.
//!
//! To write the fixtures of a new format: add its tests (fixture names end in `_v<format>`),
//! then run `REGISTRAR_WRITE_FIXTURES=1 cargo test --test stored_format`. That writes only the
//! fixtures that are missing and are of the format this build writes; it never rewrites one
//! that exists, so older formats' bytes stay as their build wrote them. (To redo a fixture of a
//! format not yet released, delete its two files first.)

use registrar::domain::access::{Actor, Role, WriteContext};
use registrar::domain::catalog::{CatalogInput, CatalogRecord, OrderFields};
use registrar::domain::ids::{RecordId, TenantId};
use registrar::domain::registration::{CourseRegistration, RegistrationInput};
use registrar::domain::tenant::{ApiKey, Limits, Tenant};
use registrar::domain::time::Timestamp;
use registrar::store::codec;
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-28T12:00:00.123Z").unwrap()
}

fn sample_registration() -> CourseRegistration {
    let body: Value =
        serde_json::from_str(include_str!("fixtures/full_registration.json")).unwrap();
    let ctx = WriteContext {
        actor: Actor {
            key_id: "01KEYFIXTURE".into(),
            role: Role::Write,
        },
        at: at(),
        bulk_operation: None,
        request_id: None,
    };
    let fields = RegistrationInput::parse(&body).unwrap().fields;
    CourseRegistration::create(
        RecordId::parse("01JFIXTURE00000000000000000").unwrap(),
        fields,
        &ctx,
    )
    .unwrap()
}

/// An order (a catalog record, with line items), revised once: version 2.
fn sample_order() -> CatalogRecord<OrderFields> {
    let ctx = WriteContext {
        actor: Actor {
            key_id: "01KEYFIXTURE".into(),
            role: Role::Write,
        },
        at: at(),
        bulk_operation: None,
        request_id: None,
    };
    let body = json!({
        "number": 1042,
        "contact_id": "01JCONTACT0000000000000000",
        "line_items": [{
            "id": "1", "registration_id": "01JFIXTURE00000000000000000",
            "course_offering_id": "01JOFFERING000000000000000",
            "description": "Rust for the impatient, 2 March 2026", "amount": 450.5,
        }],
        "currency_code": "EUR", "currency_symbol": "€", "total": 450.5,
        "notes": "paid by bank transfer\nref 7781", "sys_external_id": "erp-1042",
    });
    let created = CatalogRecord::create(
        RecordId::parse("01JORDER000000000000000000").unwrap(),
        CatalogInput::<OrderFields>::parse(&body).unwrap().fields,
        &ctx,
    )
    .unwrap();
    let mut paid = body;
    paid["amount_paid"] = json!(450.5);
    paid["status"] = json!("completed");
    let later = WriteContext {
        at: Timestamp::parse_rfc3339("2026-11-29T08:30:00Z").unwrap(),
        actor: Actor {
            key_id: "01KEYADMIN".into(),
            role: Role::Admin,
        },
        ..ctx
    };
    created
        .revise(
            CatalogInput::<OrderFields>::parse(&paid).unwrap().fields,
            &later,
        )
        .unwrap()
        .expect("the payment changes the order")
}

fn sample_tenant() -> Tenant {
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        created_at: at(),
        limits: Limits {
            requests_per_second: Some(12.5),
            max_registrations: Some(1000),
        },
    }
}

fn sample_key() -> ApiKey {
    ApiKey {
        id: "01KEYFIXTURE".into(),
        tenant: TenantId::parse("acme").unwrap(),
        role: Role::Admin,
        name: Some("ci".into()),
        created_at: at(),
        secret_hash: [7; 32],
    }
}

/// Checks fixture `name`, which holds a value in stored format `format`: its bytes decode to
/// its JSON, and today's value (`encoded`) reads back as the same JSON. When `format` is the
/// one this build writes, today's bytes must be the fixture's, byte for byte.
fn check(
    name: &str,
    format: u8,
    encoded: Vec<u8>,
    decode_to_json: impl Fn(&[u8]) -> Value,
    expected: Value,
) {
    let bin = fixture(&format!("{name}.bin"));
    let json_file = fixture(&format!("{name}.json"));
    let written_today = encoded.first() == Some(&format);
    if std::env::var_os("REGISTRAR_WRITE_FIXTURES").is_some() && written_today && !bin.exists() {
        std::fs::write(&bin, &encoded).unwrap();
        std::fs::write(
            &json_file,
            serde_json::to_string_pretty(&expected).unwrap() + "\n",
        )
        .unwrap();
    }
    let stored = std::fs::read(&bin).expect("fixture bytes");
    let stored_json: Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    assert_eq!(
        stored.first(),
        Some(&format),
        "{name}: the fixture holds format {format}"
    );
    assert_eq!(
        decode_to_json(&stored),
        stored_json,
        "{name}: the stored bytes decode to the stored JSON"
    );
    assert_eq!(
        decode_to_json(&encoded),
        stored_json,
        "{name}: today's value still encodes the same content"
    );
    if written_today {
        assert!(
            encoded == stored,
            "{name}: this build writes format {format} byte for byte as the fixture"
        );
    }
}

#[test]
fn registration_format_1_decodes() {
    let record = sample_registration();
    let json = Value::Object(record.to_json());
    check(
        "registration_v1",
        1,
        codec::encode(&record).unwrap(),
        |bytes| {
            Value::Object(
                codec::decode::<CourseRegistration>(bytes)
                    .unwrap()
                    .to_json(),
            )
        },
        json,
    );
}

#[test]
fn catalog_record_format_1_decodes() {
    let order = sample_order();
    let json = Value::Object(order.to_json());
    check(
        "order_v1",
        1,
        codec::encode(&order).unwrap(),
        |bytes| {
            Value::Object(
                codec::decode::<CatalogRecord<OrderFields>>(bytes)
                    .unwrap()
                    .to_json(),
            )
        },
        json,
    );
}

#[test]
fn tenant_format_1_decodes() {
    let tenant = sample_tenant();
    check(
        "tenant_v1",
        1,
        codec::encode(&tenant).unwrap(),
        |b| codec::decode::<Tenant>(b).unwrap().to_json(),
        tenant.to_json(),
    );
}

#[test]
fn api_key_format_1_decodes() {
    let key = sample_key();
    let view = |k: &ApiKey| json!({"view": k.to_json(), "tenant": k.tenant.as_str(), "hash": k.secret_hash.to_vec()});
    check(
        "api_key_v1",
        1,
        codec::encode(&key).unwrap(),
        |b| view(&codec::decode::<ApiKey>(b).unwrap()),
        view(&key),
    );
}
