//! Stored values: one format-version byte, then bincode 2 (serde) of the typed value.
//!
//! The version byte lets a later build read what an earlier one wrote: a new layout gets a new
//! byte, and the old one keeps decoding (see `tests/fixtures/`). bincode is not
//! self-describing, so the decoder announces the layout of the byte it read
//! ([`crate::domain::layout`]) to the types whose layout differs between formats.

use super::error::StoreError;
use crate::domain::layout::{self, Layout};
use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{de::DeserializeOwned, Serialize};

/// Format 1: the first released layout.
pub const FORMAT_V1: u8 = 1;
/// Format 2: `SecurityContext` (in registrations and catalog records) gained `request_id`.
/// Every other type reads the same as in format 1.
pub const FORMAT_V2: u8 = 2;
/// Format 3: tenant `Limits` gained `max_storage_bytes`. Every other type reads the same as
/// in format 2.
pub const FORMAT_V3: u8 = 3;
/// Format 4: an outbox message gained its `delivery` state (kept, pending, sent, failed).
/// Every other type reads the same as in format 3.
pub const FORMAT_V4: u8 = 4;
/// Format 5: every type reads as in format 4. New in it: the `events` tree holds blocks of
/// events (one value per tenant and write batch, `events::decode_block`), and a record value
/// may be headed ([`FORMAT_V5_HEADED`]).
pub const FORMAT_V5: u8 = 5;
/// Format 5 with a head: `[6, head (u64, 8 bytes big-endian), the format 5 body]`. A
/// registration or catalog record carries the sequence number of its latest change event, so
/// that its history is a chain walked from the record (docs/DESIGN.md, "The event store").
/// Readers that want the record only skip the head.
pub const FORMAT_V5_HEADED: u8 = 6;
/// Format 7: every type reads as in format 5 (byte 6 is not a format: it marks a headed
/// value, whose body format 7 lays out as format 5 does). New in it: an event in an `events`
/// block says which stamp operations its patch was kept without
/// ([`crate::domain::events::Change::patch_without_stamps`]); `events::decode_block` reads
/// format 5's blocks, which lack that, too.
pub const FORMAT_V7: u8 = 7;
/// Format 8: every type reads as in format 7. New in it: a value longer than 6 KiB in the
/// trees of records, events, responses, messages and deliveries is stored in pieces
/// (`split`), which no earlier build reads; the data dir's format file says 8 so that an
/// earlier build refuses the dir instead of misreading it.
pub const FORMAT_V8: u8 = 8;
/// The format every value is written in by this build (the data dir's format file says it).
pub const FORMAT_CURRENT: u8 = FORMAT_V8;
/// The highest format byte this build writes.
const FORMAT_HIGHEST: u8 = FORMAT_V8;

/// The layout a format byte stands for; `None` for bytes no build of ours wrote (yet).
pub fn layout_of(format: u8) -> Option<Layout> {
    match format {
        FORMAT_V1 => Some(Layout::V1),
        FORMAT_V2 => Some(Layout::V2),
        FORMAT_V3 => Some(Layout::V3),
        FORMAT_V4 => Some(Layout::V4),
        FORMAT_V5 | FORMAT_V5_HEADED => Some(Layout::V5),
        FORMAT_V7 | FORMAT_V8 => Some(Layout::V7),
        _ => None,
    }
}

/// No stored value is larger than this; a length prefix claiming more is corruption, and must
/// not make the decoder allocate it.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

fn bincode_config() -> Configuration<LittleEndian, Varint, Limit<MAX_VALUE_BYTES>> {
    config::standard().with_limit::<MAX_VALUE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_after(vec![FORMAT_CURRENT], value)
}

/// Appends the bincode of `value` to `out` (what goes before it: a format byte, a head), in
/// place: a record is several KiB, and the writer encodes one per write.
fn encode_after<T: Serialize>(mut out: Vec<u8>, value: &T) -> Result<Vec<u8>, StoreError> {
    let before = out.len();
    bincode::serde::encode_into_std_write(value, &mut out, bincode_config())
        .map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))?;
    // The limit binds decoding, not encoding: a value past it would be written, then never
    // read again. Each field is bounded, but patch after patch can add up.
    let body = out.len() - before;
    if body > MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge {
            bytes: body,
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(out)
}

/// The bincode of `value` without a format byte: one item of a sequence that
/// [`encode_seq_of_bodies`] puts together.
pub fn encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_after(Vec::new(), value)
}

/// The value `encode(&items)` gives for a `Vec` of the items whose bodies these are
/// ([`encode_body`]), without decoding them again.
pub fn encode_seq_of_bodies(bodies: &[&[u8]]) -> Vec<u8> {
    let length =
        bincode::serde::encode_to_vec(bodies.len() as u64, bincode_config()).unwrap_or_default();
    let total: usize = bodies.iter().map(|b| b.len()).sum();
    let mut out = Vec::with_capacity(1 + length.len() + total);
    out.push(FORMAT_CURRENT);
    out.extend_from_slice(&length);
    for body in bodies {
        out.extend_from_slice(body);
    }
    out
}

/// `value` as [`FORMAT_V5_HEADED`] bytes carrying `head`.
pub fn encode_headed<T: Serialize>(value: &T, head: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(4096);
    out.push(FORMAT_V5_HEADED);
    out.extend_from_slice(&head.to_be_bytes());
    encode_after(out, value)
}

/// The head a [`FORMAT_V5_HEADED`] value carries; `None` for a value without one.
pub fn head_of(bytes: &[u8]) -> Option<u64> {
    match bytes {
        [FORMAT_V5_HEADED, head @ ..] if head.len() >= 8 => {
            let mut array = [0u8; 8];
            array.copy_from_slice(&head[..8]);
            Some(u64::from_be_bytes(array))
        }
        _ => None,
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    let Some((&format, mut body)) = bytes.split_first() else {
        return Err(StoreError::Corrupt("empty value".into()));
    };
    if format == FORMAT_V5_HEADED {
        body = body
            .get(8..)
            .ok_or_else(|| StoreError::Corrupt("headed value shorter than its head".into()))?;
    }
    let Some(layout) = layout_of(format) else {
        if super::split::Head::of(bytes).is_some() {
            // Only a reader that keeps going past damage meets one (`check`): every other
            // one reads a split value put back together, or an error.
            return Err(StoreError::Corrupt(
                "a long value stored in pieces, some of which are missing or of the wrong \
                 length"
                    .into(),
            ));
        }
        if format > FORMAT_HIGHEST {
            return Err(StoreError::NewerFormat {
                found: format,
                newest: FORMAT_CURRENT,
            });
        }
        return Err(StoreError::Corrupt(format!(
            "unknown value format {format}; written by a newer build?"
        )));
    };
    let (value, used) = layout::reading(layout, || {
        bincode::serde::decode_from_slice(body, bincode_config())
    })
    .map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))?;
    if used != body.len() {
        return Err(StoreError::Corrupt("trailing bytes after value".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{Actor, Role, WriteContext};
    use crate::domain::catalog::{CatalogInput, CatalogRecord, ContactFields};
    use crate::domain::ids::RecordId;
    use crate::domain::ids::TenantId;
    use crate::domain::record::Fields;
    use crate::domain::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
    use crate::domain::tenant::{ApiKey, Limits, Tenant};
    use crate::domain::time::Timestamp;
    use crate::domain::values::{FieldValue, SecurityContext};
    use crate::store::records::Delivery;
    use crate::store::sled::idempotency::StoredResponse;
    use crate::store::sled::outbox::OutboxMessage;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn a_sequence_put_together_from_bodies_is_the_encoded_vec() {
        for items in [
            vec![],
            vec!["a".to_owned()],
            (0..300).map(|n| n.to_string()).collect(),
        ] {
            let bodies: Vec<Vec<u8>> = items.iter().map(|i| encode_body(i).unwrap()).collect();
            let borrowed: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            assert_eq!(encode_seq_of_bodies(&borrowed), encode(&items).unwrap());
        }
    }

    #[test]
    fn a_headed_value_decodes_as_the_value_and_gives_its_head() {
        let value = ("record".to_owned(), 7u32);
        let bytes = encode_headed(&value, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(bytes[0], FORMAT_V5_HEADED);
        assert_eq!(head_of(&bytes), Some(0x0102_0304_0506_0708));
        assert_eq!(decode::<(String, u32)>(&bytes).unwrap(), value);
        let plain = encode(&value).unwrap();
        assert_eq!(head_of(&plain), None);
        assert_eq!(decode::<(String, u32)>(&plain).unwrap(), value);
        // Cut short inside the head: an error, never a panic.
        for len in 0..bytes.len() {
            let _ = decode::<(String, u32)>(&bytes[..len]);
            let _ = head_of(&bytes[..len]);
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for bytes in [
            &[][..],
            &[9, 1, 2],
            &[1],
            &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            &[2],
            &[2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0, 0],
        ] {
            assert!(decode::<CourseRegistration>(bytes).is_err());
        }
    }

    fn full_fixture() -> serde_json::Map<String, Value> {
        let text = include_str!("../../../tests/fixtures/full_registration.json");
        serde_json::from_str(text).unwrap()
    }

    /// Any subset of the fields, with arbitrary text wherever a field takes free text.
    fn arbitrary_record() -> impl Strategy<Value = CourseRegistration> {
        let names: Vec<String> = full_fixture().keys().cloned().collect();
        let per_field = names.len();
        (
            prop::collection::vec(any::<bool>(), per_field),
            prop::collection::vec("\\PC{0,24}", per_field),
            "[A-Za-z0-9_|:-]{1,40}",
        )
            .prop_map(move |(keep, texts, id)| {
                let fixture = full_fixture();
                let mut fields = RegistrationFields::default();
                for ((name, keep), text) in names.iter().zip(keep).zip(texts) {
                    if !keep {
                        continue;
                    }
                    let as_text = Value::String(text);
                    if fields.set_json(name, &as_text) != Some(Ok(())) {
                        fields.set_json(name, &fixture[name]).unwrap().unwrap();
                    }
                }
                CourseRegistration {
                    id: RecordId::parse(&id).unwrap(),
                    fields,
                }
            })
    }

    proptest! {
        #[test]
        fn every_field_round_trips_through_the_codec_and_json(record in arbitrary_record()) {
            let back: CourseRegistration = decode(&encode(&record).unwrap()).unwrap();
            prop_assert_eq!(&back, &record);
            let reparsed = RegistrationInput::parse(&Value::Object(record.to_json())).unwrap();
            prop_assert_eq!(reparsed.fields, record.fields);
        }

        /// Responses are written without the map: the bytes must be what serde_json writes
        /// for `to_json()`, projected or not.
        #[test]
        fn written_json_is_what_serde_json_writes_for_the_map(
            record in arbitrary_record(),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let record: CourseRegistration = decode(&encode(&record).unwrap()).unwrap();
            let mut written = Vec::new();
            record.write_json(&mut written, None);
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&record.to_json()).unwrap()
            );
            let names = RegistrationFields::NAMES;
            let fields: Vec<String> = picks.iter().map(|i| names[i.index(names.len())].to_owned()).collect();
            let mut written = Vec::new();
            record.write_json(&mut written, Some(&fields));
            let projected = crate::domain::record::project(record.to_json(), &fields);
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&projected).unwrap()
            );
        }
    }

    #[test]
    fn written_json_keeps_free_json_and_numbers_exactly() {
        let body = json!({
            "order_total": 1.5, "order_number": 1e300, "order_balance_due": -0.0,
            "order_amount_paid": 12345678901234567.0, "completion_percentage": 33.3,
            "custom_field_values": [
                {"custom_field_id": "a\"b\\c\u{e9}\u{1F600}", "value": [1, 2.5, -1e-7, 1e20, 18446744073709551615u64, -9223372036854775808i64]},
                {"value": {"z": null, "a": {"nested": [true, false, "x\ny"]}}, "custom_field_id": "2"}
            ],
            "sys_calculated_field_errors": [{"e": "\t"}, 3, "s", null],
        });
        let fields = RegistrationInput::parse(&body).unwrap().fields;
        let record = CourseRegistration {
            id: RecordId::parse("r1").unwrap(),
            fields,
        };
        let record: CourseRegistration = decode(&encode(&record).unwrap()).unwrap();
        let mut written = Vec::new();
        record.write_json(&mut written, None);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&record.to_json()).unwrap()
        );
    }

    #[test]
    fn a_full_record_round_trips() {
        let fields = RegistrationInput::parse(&Value::Object(full_fixture()))
            .unwrap()
            .fields;
        let rec = CourseRegistration {
            id: RecordId::parse("01HZX").unwrap(),
            fields,
        };
        let back: CourseRegistration = decode(&encode(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn this_build_writes_the_current_format_and_knows_every_layout() {
        assert_eq!(layout_of(FORMAT_CURRENT), Some(Layout::CURRENT));
        assert_eq!(layout_of(FORMAT_V1), Some(Layout::V1));
        assert_eq!(layout_of(0), None);
        assert_eq!(encode(&7u32).unwrap()[0], FORMAT_CURRENT);
    }

    fn at() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").unwrap()
    }

    fn ctx(request_id: Option<&str>) -> WriteContext {
        WriteContext {
            actor: Actor {
                key_id: "k1".into(),
                role: Role::Write,
            },
            at: at(),
            bulk_operation: None,
            request_id: request_id.map(str::to_owned),
        }
    }

    /// `SecurityContext` as format 1 laid it out.
    #[derive(serde::Serialize)]
    struct ContextV1<'a> {
        key_id: &'a str,
        role: &'a str,
        at: Timestamp,
    }

    /// `bytes` with its format byte replaced.
    fn as_format(format: u8, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes[0] = format;
        bytes
    }

    #[test]
    fn a_format_1_security_context_reads_without_a_request_id() {
        let v1 = ContextV1 {
            key_id: "k1",
            role: "write",
            at: at(),
        };
        let bytes = as_format(FORMAT_V1, encode(&(Some(v1), 42u8)).unwrap());
        let (read, after): (Option<SecurityContext>, u8) = decode(&bytes).unwrap();
        assert_eq!(read, Some(SecurityContext::of(&ctx(None))));
        assert_eq!(
            after, 42,
            "the fields after it are read from the right place"
        );
        // The same bytes read as format 2 are a different value: the layouts differ.
        assert!(decode::<(Option<SecurityContext>, u8)>(&as_format(FORMAT_V2, bytes)).is_err());
    }

    #[test]
    fn format_2_keeps_the_request_id() {
        for request_id in [Some("req-1"), None] {
            let context = SecurityContext::of(&ctx(request_id));
            let bytes = encode(&(Some(context.clone()), 42u8)).unwrap();
            assert_eq!(bytes[0], FORMAT_CURRENT);
            let back: (Option<SecurityContext>, u8) = decode(&bytes).unwrap();
            assert_eq!(back, (Some(context), 42));
        }
    }

    #[test]
    fn records_stamped_by_a_request_round_trip_with_its_id() {
        let registration = CourseRegistration::create(
            RecordId::parse("r1").unwrap(),
            RegistrationInput::parse(&Value::Object(full_fixture()))
                .unwrap()
                .fields,
            &ctx(Some("req-1")),
        )
        .unwrap();
        let back: CourseRegistration = decode(&encode(&registration).unwrap()).unwrap();
        assert_eq!(back, registration);
        assert_eq!(
            back.to_json()["sys_last_security_context"]["request_id"],
            "req-1"
        );

        let contact = CatalogRecord::create(
            RecordId::parse("c1").unwrap(),
            CatalogInput::<ContactFields>::parse(&json!({"name": "Ada"}))
                .unwrap()
                .fields,
            &ctx(Some("req-2")),
        )
        .unwrap();
        let back: CatalogRecord<ContactFields> = decode(&encode(&contact).unwrap()).unwrap();
        assert_eq!(back, contact);
        assert_eq!(
            back.sys.sys_last_security_context.request_id.as_deref(),
            Some("req-2")
        );
    }

    /// Types without a `SecurityContext` or `Limits` did not change layout: their bytes in
    /// every format are the same apart from the format byte, and all read back.
    fn reads_in_both_formats<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<T>(&bytes).unwrap(), value);
        assert_eq!(
            decode::<T>(&as_format(FORMAT_V2, bytes.clone())).unwrap(),
            value
        );
        assert_eq!(decode::<T>(&as_format(FORMAT_V1, bytes)).unwrap(), value);
    }

    /// `Limits` as formats 1 and 2 laid it out.
    #[derive(serde::Serialize)]
    struct LimitsV1 {
        requests_per_second: Option<f64>,
        max_registrations: Option<u64>,
    }

    #[test]
    fn a_tenant_of_format_1_or_2_reads_without_a_storage_quota() {
        let v1 = (
            TenantId::parse("acme").unwrap(),
            at(),
            LimitsV1 {
                requests_per_second: Some(2.5),
                max_registrations: Some(7),
            },
        );
        let expected = Tenant {
            id: TenantId::parse("acme").unwrap(),
            created_at: at(),
            limits: Limits {
                requests_per_second: Some(2.5),
                max_registrations: Some(7),
                max_storage_bytes: None,
            },
        };
        for format in [FORMAT_V1, FORMAT_V2] {
            let bytes = as_format(format, encode(&v1).unwrap());
            assert_eq!(decode::<Tenant>(&bytes).unwrap(), expected);
        }
        let current = Tenant {
            limits: Limits {
                max_storage_bytes: Some(1 << 30),
                ..expected.limits
            },
            ..expected
        };
        let bytes = encode(&current).unwrap();
        assert_eq!(bytes[0], FORMAT_CURRENT);
        assert_eq!(decode::<Tenant>(&bytes).unwrap(), current);
        // The same bytes read as format 2 are not a tenant: the layouts differ.
        assert!(decode::<Tenant>(&as_format(FORMAT_V2, bytes)).is_err());
    }

    #[test]
    fn unchanged_types_read_the_same_in_both_formats() {
        let tenant = TenantId::parse("acme").unwrap();
        reads_in_both_formats(ApiKey {
            id: "k1".into(),
            tenant,
            role: Role::Read,
            name: None,
            created_at: at(),
            secret_hash: [3; 32],
        });
        reads_in_both_formats(StoredResponse {
            fingerprint: [9; 32],
            status: 200,
            headers: vec![("etag".into(), "\"1\"".into())],
            body: br#"{"sys_last_security_context":{}}"#.to_vec(),
            at: at(),
        });
    }

    fn message(delivery: Delivery) -> OutboxMessage {
        OutboxMessage {
            id: RecordId::parse("m1").unwrap(),
            message_id: "<m1@example.org>".into(),
            to: "ada@example.org".into(),
            subject: "Welcome".into(),
            html: None,
            text: Some("Hello".into()),
            registration_id: Some(RecordId::parse("r1").unwrap()),
            created_at: at(),
            delivery,
        }
    }

    /// `OutboxMessage` as formats 1 to 3 laid it out.
    #[derive(serde::Serialize)]
    struct MessageV1<'a> {
        id: &'a RecordId,
        message_id: &'a str,
        to: &'a str,
        subject: &'a str,
        html: &'a Option<String>,
        text: &'a Option<String>,
        registration_id: &'a Option<RecordId>,
        created_at: Timestamp,
    }

    #[test]
    fn an_outbox_message_of_format_1_to_3_reads_as_kept() {
        let kept = message(Delivery::Kept);
        let v1 = MessageV1 {
            id: &kept.id,
            message_id: &kept.message_id,
            to: &kept.to,
            subject: &kept.subject,
            html: &kept.html,
            text: &kept.text,
            registration_id: &kept.registration_id,
            created_at: kept.created_at,
        };
        for format in [FORMAT_V1, FORMAT_V2, FORMAT_V3] {
            let bytes = as_format(format, encode(&(&v1, 42u8)).unwrap());
            let (read, after): (OutboxMessage, u8) = decode(&bytes).unwrap();
            assert_eq!((read, after), (kept.clone(), 42));
        }
        for delivery in [
            Delivery::Kept,
            Delivery::Pending {
                claimed_until: at(),
                attempts: 2,
            },
            Delivery::Sent { at: at() },
            Delivery::Failed {
                at: at(),
                error: "550 no such user".into(),
            },
        ] {
            let current = message(delivery);
            let bytes = encode(&current).unwrap();
            assert_eq!(bytes[0], FORMAT_CURRENT);
            assert_eq!(decode::<OutboxMessage>(&bytes).unwrap(), current);
            // The same bytes read as format 3 are not that message: the layouts differ.
            assert_ne!(
                decode::<OutboxMessage>(&as_format(FORMAT_V3, bytes)).ok(),
                Some(current)
            );
        }
    }

    fn arbitrary_context() -> impl Strategy<Value = SecurityContext> {
        (
            "\\PC{0,24}",
            "\\PC{0,8}",
            0u32..60,
            0u32..1_000_000_000,
            prop::option::of("[A-Za-z0-9_.:/+=-]{1,128}"),
        )
            .prop_map(|(key_id, role, secs, nanos, request_id)| SecurityContext {
                key_id,
                role,
                at: Timestamp::parse_rfc3339(&format!("2026-01-02T03:04:{secs:02}.{nanos:09}Z"))
                    .unwrap(),
                request_id,
            })
    }

    proptest! {
        #[test]
        fn a_security_context_round_trips_through_the_codec_and_json(context in arbitrary_context()) {
            let record = CourseRegistration {
                id: RecordId::parse("r1").unwrap(),
                fields: RegistrationFields {
                    sys_last_security_context: Some(context.clone()),
                    ..RegistrationFields::default()
                },
            };
            let back: CourseRegistration = decode(&encode(&record).unwrap()).unwrap();
            prop_assert_eq!(&back, &record);
            prop_assert_eq!(SecurityContext::parse(&context.to_json()), Ok(context));
        }
    }
}
