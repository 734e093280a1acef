//! Stored values: one format-version byte, then bincode 2 (serde) of the typed value.
//!
//! The version byte lets a later build read what an earlier one wrote: a new layout gets a new
//! byte and the old one keeps decoding through its own type (see `tests/fixtures/`).

use super::error::StoreError;
use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{de::DeserializeOwned, Serialize};

/// The format every value is written in by this build.
pub const FORMAT_V1: u8 = 1;

/// No stored value is larger than this; a length prefix claiming more is corruption, and must
/// not make the decoder allocate it.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

fn bincode_config() -> Configuration<LittleEndian, Varint, Limit<MAX_VALUE_BYTES>> {
    config::standard().with_limit::<MAX_VALUE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_V1];
    let body = bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => {
            let (value, used) = bincode::serde::decode_from_slice(body, bincode_config())
                .map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))?;
            if used != body.len() {
                return Err(StoreError::Corrupt("trailing bytes after value".into()));
            }
            Ok(value)
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "unknown value format {version}; written by a newer build?"
        ))),
        None => Err(StoreError::Corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::RecordId;
    use crate::domain::record::Fields;
    use crate::domain::registration::{CourseRegistration, RegistrationFields, RegistrationInput};
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for bytes in [
            &[][..],
            &[9, 1, 2],
            &[1],
            &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert!(decode::<CourseRegistration>(bytes).is_err());
        }
    }

    fn full_fixture() -> serde_json::Map<String, Value> {
        let text = include_str!("../../tests/fixtures/full_registration.json");
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
}
