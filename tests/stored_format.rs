//! Values written by earlier builds must keep decoding. Each fixture under tests/fixtures/ is
//! the exact bytes a released format wrote, next to the JSON it must read back as. Never
//! regenerate a fixture for a released format: add a new one for the new format instead.
//!
//! To write the fixtures of the current format (only when introducing a new one):
//! `REGISTRAR_WRITE_FIXTURES=1 cargo test --test stored_format`.

use registrar::domain::access::{Actor, Role, WriteContext};
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

fn check(name: &str, encoded: Vec<u8>, decode_to_json: impl Fn(&[u8]) -> Value, expected: Value) {
    if std::env::var_os("REGISTRAR_WRITE_FIXTURES").is_some() {
        std::fs::write(fixture(&format!("{name}.bin")), &encoded).unwrap();
        std::fs::write(
            fixture(&format!("{name}.json")),
            serde_json::to_string_pretty(&expected).unwrap() + "\n",
        )
        .unwrap();
    }
    let stored = std::fs::read(fixture(&format!("{name}.bin"))).expect("fixture bytes");
    let stored_json: Value =
        serde_json::from_slice(&std::fs::read(fixture(&format!("{name}.json"))).unwrap()).unwrap();
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
}

#[test]
fn registration_format_1_decodes() {
    let record = sample_registration();
    let json = Value::Object(record.to_json());
    check(
        "registration_v1",
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
fn tenant_format_1_decodes() {
    let tenant = sample_tenant();
    check(
        "tenant_v1",
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
        codec::encode(&key).unwrap(),
        |b| view(&codec::decode::<ApiKey>(b).unwrap()),
        view(&key),
    );
}
