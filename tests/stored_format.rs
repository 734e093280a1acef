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
use registrar::domain::catalog::{CatalogInput, CatalogKind, CatalogRecord, OrderFields};
use registrar::domain::events::Change;
use registrar::domain::ids::{RecordId, TenantId};
use registrar::domain::registration::{CourseRegistration, RegistrationInput, Revision};
use registrar::domain::tenant::{ApiKey, Limits, Tenant};
use registrar::domain::time::Timestamp;
use registrar::domain::transfer::RecordKind;
use registrar::store::records::{Delivery, OutboxMessage};
use registrar::store::sled::codec;
use registrar::store::sled::events::{self, Prev};
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

/// The request id format-2 samples are written under (format 1 had none).
const REQUEST_ID: &str = "01JREQFIXTURE0000000000000";

fn write_context(request_id: Option<&str>) -> WriteContext {
    WriteContext {
        actor: Actor {
            key_id: "01KEYFIXTURE".into(),
            role: Role::Write,
        },
        at: at(),
        bulk_operation: None,
        request_id: request_id.map(str::to_owned),
    }
}

fn sample_registration(request_id: Option<&str>) -> CourseRegistration {
    let body: Value =
        serde_json::from_str(include_str!("fixtures/full_registration.json")).unwrap();
    let ctx = write_context(request_id);
    let fields = RegistrationInput::parse(&body).unwrap().fields;
    CourseRegistration::create(
        RecordId::parse("01JFIXTURE00000000000000000").unwrap(),
        fields,
        &ctx,
    )
    .unwrap()
}

/// An order (a catalog record, with line items), revised once: version 2.
fn sample_order(request_id: Option<&str>) -> CatalogRecord<OrderFields> {
    sample_order_versions(request_id).1
}

/// The order of [`sample_order`] as created (version 1) and as revised (version 2).
fn sample_order_versions(
    request_id: Option<&str>,
) -> (CatalogRecord<OrderFields>, CatalogRecord<OrderFields>) {
    let ctx = write_context(request_id);
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
    let revised = created
        .revise(
            CatalogInput::<OrderFields>::parse(&paid).unwrap().fields,
            &later,
        )
        .unwrap()
        .expect("the payment changes the order");
    (created, revised)
}

/// A tenant; `max_storage_bytes` is new in format 3.
fn sample_tenant(max_storage_bytes: Option<u64>) -> Tenant {
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        created_at: at(),
        limits: Limits {
            requests_per_second: Some(12.5),
            max_registrations: Some(1000),
            max_storage_bytes,
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

fn registration_json(bytes: &[u8]) -> Value {
    Value::Object(
        codec::decode::<CourseRegistration>(bytes)
            .unwrap()
            .to_json(),
    )
}

fn order_json(bytes: &[u8]) -> Value {
    Value::Object(
        codec::decode::<CatalogRecord<OrderFields>>(bytes)
            .unwrap()
            .to_json(),
    )
}

fn tenant_json(bytes: &[u8]) -> Value {
    codec::decode::<Tenant>(bytes).unwrap().to_json()
}

/// A tenant as formats 1 and 2 could hold it: they had no `max_storage_bytes`, which reads
/// as none (the fixtures' JSON, written then, has no such key).
fn tenant_json_before_v3(bytes: &[u8]) -> Value {
    let mut json = tenant_json(bytes);
    let limits = json["limits"].as_object_mut().unwrap();
    assert_eq!(limits.remove("max_storage_bytes"), Some(Value::Null));
    json
}

fn key_view(key: &ApiKey) -> Value {
    json!({"view": key.to_json(), "tenant": key.tenant.as_str(), "hash": key.secret_hash.to_vec()})
}

fn key_json(bytes: &[u8]) -> Value {
    key_view(&codec::decode::<ApiKey>(bytes).unwrap())
}

/// The security context a fixture's bytes read back with.
fn security_context(decoded: Value) -> Value {
    decoded["sys_last_security_context"].clone()
}

#[test]
fn registration_format_1_decodes() {
    let record = sample_registration(None);
    let json = Value::Object(record.to_json());
    check(
        "registration_v1",
        1,
        codec::encode(&record).unwrap(),
        registration_json,
        json,
    );
}

#[test]
fn registration_format_1_reads_without_a_request_id() {
    let stored = std::fs::read(fixture("registration_v1.bin")).unwrap();
    let context = security_context(registration_json(&stored));
    assert_eq!(context["key_id"], "01KEYFIXTURE");
    assert!(context.get("request_id").is_none(), "{context}");
}

#[test]
fn registration_format_2_round_trips() {
    let record = sample_registration(Some(REQUEST_ID));
    let json = Value::Object(record.to_json());
    assert_eq!(security_context(json.clone())["request_id"], REQUEST_ID);
    check(
        "registration_v2",
        2,
        codec::encode(&record).unwrap(),
        registration_json,
        json,
    );
}

#[test]
fn catalog_record_format_1_decodes() {
    let order = sample_order(None);
    let json = Value::Object(order.to_json());
    check(
        "order_v1",
        1,
        codec::encode(&order).unwrap(),
        order_json,
        json,
    );
    let stored = std::fs::read(fixture("order_v1.bin")).unwrap();
    assert!(security_context(order_json(&stored))
        .get("request_id")
        .is_none());
}

#[test]
fn catalog_record_format_2_round_trips() {
    let order = sample_order(Some(REQUEST_ID));
    let json = Value::Object(order.to_json());
    assert_eq!(security_context(json.clone())["request_id"], REQUEST_ID);
    check(
        "order_v2",
        2,
        codec::encode(&order).unwrap(),
        order_json,
        json,
    );
}

/// Tenants and keys have no security context: formats 1 and 2 lay them out alike, so their
/// fixtures differ only in the format byte.
fn only_the_format_byte_differs(kind: &str) {
    let v1 = std::fs::read(fixture(&format!("{kind}_v1.bin"))).unwrap();
    let v2 = std::fs::read(fixture(&format!("{kind}_v2.bin"))).unwrap();
    assert_eq!((v1[0], v2[0]), (1, 2), "{kind}");
    assert_eq!(v1[1..], v2[1..], "{kind}");
}

#[test]
fn tenant_formats_1_and_2_decode() {
    let tenant = sample_tenant(None);
    let mut expected = tenant.to_json();
    expected["limits"]
        .as_object_mut()
        .unwrap()
        .remove("max_storage_bytes");
    for (name, format) in [("tenant_v1", 1), ("tenant_v2", 2)] {
        check(
            name,
            format,
            codec::encode(&tenant).unwrap(),
            tenant_json_before_v3,
            expected.clone(),
        );
    }
    only_the_format_byte_differs("tenant");
}

#[test]
fn tenant_format_3_round_trips_the_storage_quota() {
    let tenant = sample_tenant(Some(64 * 1024 * 1024));
    assert_eq!(
        tenant.to_json()["limits"]["max_storage_bytes"],
        64 * 1024 * 1024
    );
    check(
        "tenant_v3",
        3,
        codec::encode(&tenant).unwrap(),
        tenant_json,
        tenant.to_json(),
    );
}

#[test]
fn api_key_formats_1_and_2_decode() {
    let key = sample_key();
    for (name, format) in [("api_key_v1", 1), ("api_key_v2", 2)] {
        check(
            name,
            format,
            codec::encode(&key).unwrap(),
            key_json,
            key_view(&key),
        );
    }
    only_the_format_byte_differs("api_key");
}

/// An outbox message journaled for the relay and not yet sent; its `delivery` is new in
/// format 4 (a message of formats 1 to 3 reads as kept: `codec`'s unit tests, and the data
/// dirs of `tests/api/fixture_datadir.rs`).
fn sample_message() -> OutboxMessage {
    OutboxMessage {
        id: RecordId::parse("01JMESSAGE0000000000000000").unwrap(),
        message_id: "<01JMESSAGE0000000000000000@registrar>".into(),
        to: "ada@example.org".into(),
        subject: "Your registration".into(),
        html: Some("<p>Welcome, Ada</p>".into()),
        text: Some("Welcome, Ada".into()),
        registration_id: Some(RecordId::parse("01JFIXTURE00000000000000000").unwrap()),
        created_at: at(),
        delivery: Delivery::Pending {
            claimed_until: Timestamp::parse_rfc3339("2026-11-28T12:01:00.123Z").unwrap(),
            attempts: 1,
        },
    }
}

fn message_view(message: &OutboxMessage) -> Value {
    json!({"view": message.to_json(), "delivery": serde_json::to_value(&message.delivery).unwrap()})
}

fn message_json(bytes: &[u8]) -> Value {
    message_view(&codec::decode::<OutboxMessage>(bytes).unwrap())
}

#[test]
fn outbox_message_format_4_round_trips_its_delivery() {
    let message = sample_message();
    assert_eq!(message.to_json()["state"], "pending");
    check(
        "outbox_message_v4",
        4,
        codec::encode(&message).unwrap(),
        message_json,
        message_view(&message),
    );
}

/// The change events of a block: the order created and then paid by another key, a
/// registration created, patched (one field, by the key that created it) and deleted.
fn sample_events() -> Vec<(Change, Prev)> {
    let ctx = write_context(Some(REQUEST_ID));
    let (created, paid) = sample_order_versions(Some(REQUEST_ID));
    let order = RecordKind::Catalog(CatalogKind::Order);
    let registration = sample_registration(Some(REQUEST_ID));
    let mut body: Value =
        serde_json::from_str(include_str!("fixtures/full_registration.json")).unwrap();
    body["job_title"] = json!("Lead analyst");
    let later = WriteContext {
        at: Timestamp::parse_rfc3339("2026-11-29T09:15:00.5Z").unwrap(),
        request_id: Some("01JREQFIXTURE0000000000001".into()),
        ..ctx.clone()
    };
    let Revision::Changed(patched) = registration
        .revise(RegistrationInput::parse(&body).unwrap().fields, &later)
        .unwrap()
    else {
        panic!("the new job title changes the registration");
    };
    let gone = WriteContext {
        at: Timestamp::parse_rfc3339("2026-11-30T10:00:00Z").unwrap(),
        request_id: None,
        ..ctx.clone()
    };
    vec![
        (
            Change::between(order, None, Some(&created), &ctx).unwrap(),
            Prev::Indexed,
        ),
        (
            Change::between(order, Some(&created), Some(&paid), &ctx_of(&paid)).unwrap(),
            Prev::At(1),
        ),
        (
            Change::between(RecordKind::Registration, None, Some(&registration), &ctx).unwrap(),
            Prev::Indexed,
        ),
        (
            Change::between(
                RecordKind::Registration,
                Some(&registration),
                Some(&*patched),
                &later,
            )
            .unwrap(),
            Prev::At(3),
        ),
        (
            Change::between(RecordKind::Registration, Some(&*patched), None, &gone).unwrap(),
            Prev::At(4),
        ),
    ]
}

/// The context the order's payment was written under (`sample_order_versions`).
fn ctx_of(order: &CatalogRecord<OrderFields>) -> WriteContext {
    let sys = order.to_json();
    WriteContext {
        at: Timestamp::parse_rfc3339(sys["sys_last_modified_at"].as_str().unwrap()).unwrap(),
        actor: Actor {
            key_id: sys["sys_last_modified_by_id"].as_str().unwrap().into(),
            role: Role::Admin,
        },
        bulk_operation: None,
        request_id: Some(REQUEST_ID.into()),
    }
}

/// A block's events as the API shows them, each with its patch's exact text (what the feed
/// sends byte for byte) and where its record's previous event is.
fn events_json(bytes: &[u8]) -> Value {
    let key = events::event_key("acme", 1).into_bytes();
    let block = events::decode_block(&key, bytes).unwrap();
    Value::Array(
        block
            .into_iter()
            .map(|(event, prev)| {
                json!({
                    "event": event.to_json(),
                    "patch_text": event.change.patch,
                    "prev": format!("{prev:?}"),
                })
            })
            .collect(),
    )
}

fn events_view(events: &[(Change, Prev)]) -> Value {
    Value::Array(
        events
            .iter()
            .enumerate()
            .map(|(n, (change, prev))| {
                let event = registrar::domain::events::ChangeEvent {
                    seq: n as u64 + 1,
                    change: change.clone(),
                };
                json!({
                    "event": event.to_json(),
                    "patch_text": change.patch,
                    "prev": format!("{prev:?}"),
                })
            })
            .collect(),
    )
}

fn encode_block(events: &[(Change, Prev)]) -> Vec<u8> {
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|(change, prev)| events::encode_event(change, *prev).unwrap())
        .collect();
    let borrowed: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    codec::encode_seq_of_bodies(&borrowed)
}

#[test]
fn event_block_format_5_decodes() {
    let events = sample_events();
    check(
        "event_block_v5",
        5,
        encode_block(&events),
        events_json,
        events_view(&events),
    );
}

/// Format 7 keeps an update's patch without the stamp operations its event's own fields give
/// back, and reads it back whole: the same events as format 5's fixture, in fewer bytes.
#[test]
fn event_block_format_7_keeps_updates_without_their_stamps() {
    let events = sample_events();
    let block = encode_block(&events);
    check(
        "event_block_v7",
        7,
        block.clone(),
        events_json,
        events_view(&events),
    );
    let v5 = std::fs::read(fixture("event_block_v5.bin")).unwrap();
    assert_eq!(events_json(&v5), events_json(&block));
    // The two updates lose their stamps (about 300 and 230 bytes here).
    assert!(
        v5.len() - block.len() > 450,
        "{} → {}",
        v5.len(),
        block.len()
    );
}
