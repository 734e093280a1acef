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
    use crate::domain::registration::{CourseRegistration, RegistrationInput};
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

    #[test]
    fn a_full_record_round_trips() {
        let body: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/full_registration.json"))
                .unwrap();
        let fields = RegistrationInput::parse(&body).unwrap().fields;
        let rec = CourseRegistration {
            id: crate::domain::ids::RecordId::parse("01HZX").unwrap(),
            fields,
        };
        let back: CourseRegistration = decode(&encode(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);
    }
}
