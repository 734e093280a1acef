//! A registration's `fields` and a change event's `patch` as their `bytea` columns keep them
//! (schema version 5): JSON text, compressed with zstd when it is long enough to gain.
//!
//! Why not `jsonb` and `text`, as before: a tenant's writes run one after another in one
//! backend (DESIGN.md, "The PostgreSQL engine"), and that backend spent about a third of its
//! time on these two values (docs/PERFORMANCE.md, issue 17's ninth round): parsing the fields
//! into `jsonb`, compressing both with pglz to bring the row under PostgreSQL's 2 kB row
//! target, and moving the fields out of line into TOAST. Compressed here, by the node that
//! writes them, the bytes go in as they are, a registration's row usually fits in line, and
//! a read sends bytes instead of turning `jsonb` back into text. No query reads inside either
//! value: what SQL compares has its own column (V1's comment on `registrations`).
//!
//! A stored value is either a zstd frame, which starts with zstd's magic number (28 B5 2F FD),
//! or the JSON text as it is: values below [`PACK_FROM`] bytes, and the rows that migration
//! V5 converted from `jsonb` and `text`. JSON text never starts with the byte 0x28 ('('), so
//! the two cannot be taken for each other.

use crate::store::StoreError;
use std::borrow::Cow;
use std::cell::RefCell;

/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Below this length, JSON is stored as it is: a short text has few repeats to gain from, and
/// PostgreSQL keeps such a row in line anyway.
pub const PACK_FROM: usize = 512;

/// zstd's fastest level: the node compresses inside the tenant's turn (a group's creates are
/// decided one after another), and on records a few kB long level 3 saved only ~2 % more.
const LEVEL: i32 = 1;

/// The most a stored value may unpack to. A record is at most 4 MiB of JSON
/// (`rows::MAX_RECORD_BYTES`) and a patch stays within a small multiple of that; a frame
/// header claiming more is corrupt, and is not allowed to make a reader allocate it.
pub const MAX_UNPACKED: usize = 64 * 1024 * 1024;

thread_local! {
    // A compression context holds tables of a few hundred kB: made once per thread, not
    // once per value.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a stored JSON value does not unpack: {what}"))
}

/// `json` as its column stores it: compressed when it is at least [`PACK_FROM`] bytes long
/// and the frame is shorter than the text, as it is otherwise.
pub fn pack(json: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if json.len() < PACK_FROM {
        return Ok(json);
    }
    let frame = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(compressor) => compressor,
            None => cell.insert(zstd::bulk::Compressor::new(LEVEL)?),
        };
        compressor.compress(&json)
    });
    match frame {
        Ok(frame) if frame.len() < json.len() => Ok(frame),
        Ok(_) => Ok(json),
        Err(e) => Err(StoreError::Storage(format!(
            "cannot compress a JSON value: {e}"
        ))),
    }
}

/// The JSON text of a stored value ([`pack`]'s or migration V5's).
pub fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, StoreError> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(Cow::Borrowed(stored));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) => usize::try_from(size).unwrap_or(usize::MAX),
        Ok(None) => return Err(corrupt("the frame does not record its size")),
        Err(e) => return Err(corrupt(format!("{e:?}"))),
    };
    if size > MAX_UNPACKED {
        return Err(corrupt(format!(
            "the frame claims {size} bytes, more than the {MAX_UNPACKED} a value may take"
        )));
    }
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new().map_err(corrupt)?),
        };
        let json = decompressor.decompress(stored, size).map_err(corrupt)?;
        if json.len() != size {
            return Err(corrupt(format!(
                "{} bytes where the frame says {size}",
                json.len()
            )));
        }
        Ok(Cow::Owned(json))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn long_json() -> Vec<u8> {
        let notes = "fire safety ladder inspection ".repeat(40);
        serde_json::to_vec(&serde_json::json!({ "name": "A Student", "notes": notes })).unwrap()
    }

    #[test]
    fn a_long_value_is_compressed_and_unpacks_to_its_text() {
        let json = long_json();
        let stored = pack(json.clone()).unwrap();
        assert!(stored.starts_with(&ZSTD_MAGIC));
        assert!(
            stored.len() < json.len() / 4,
            "{} of {}",
            stored.len(),
            json.len()
        );
        assert_eq!(unpack(&stored).unwrap().as_ref(), json.as_slice());
    }

    #[test]
    fn a_short_value_is_kept_as_it_is() {
        let json = br#"{"name": "A Student"}"#.to_vec();
        assert_eq!(pack(json.clone()).unwrap(), json);
        assert!(matches!(unpack(&json).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn a_corrupt_frame_is_refused_not_trusted() {
        let mut stored = pack(long_json()).unwrap();
        let last = stored.len() - 1;
        stored.truncate(last);
        assert!(matches!(unpack(&stored), Err(StoreError::Corrupt(_))));
        // A header that claims far more than a value may take: refused before allocating.
        let mut huge = ZSTD_MAGIC.to_vec();
        // Frame header descriptor: single segment, 8-byte content size field.
        huge.push(0b1110_0000);
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(unpack(&huge), Err(StoreError::Corrupt(m)) if m.contains("claims")));
    }

    proptest! {
        #[test]
        fn whatever_is_packed_unpacks_to_itself(text in ".{0,3000}", repeat in 1usize..6) {
            let json = serde_json::to_vec(&text.repeat(repeat)).unwrap();
            let stored = pack(json.clone()).unwrap();
            let unpacked = unpack(&stored).unwrap();
            prop_assert_eq!(unpacked.as_ref(), json.as_slice());
        }
    }
}
