//! An order-preserving tuple encoding: the byte layout of every key the embedded engine
//! stores, and of the scope a page token is bound to.
//!
//! A key is a tuple of components. Each component is written so that byte order equals tuple
//! order and no encoded component is a prefix of another (FoundationDB's tuple layer, adapted):
//!
//! * text/bytes: every `0x00` byte becomes `0x00 0xFF`, and the component ends with `0x00 0x01`.
//!   `0x01 < 0xFF`, so `"a"` sorts before `"a\0"`, and since the terminator can never occur
//!   inside an escaped component, a scan over the prefix `(tenant, "ab")` can never return a key
//!   of `(tenant, "abc")` or `(tenant, "ab\0")`.
//! * u64: eight big-endian bytes (fixed width, so it is prefix-free by construction).
//!
//! Nothing but this module and the engine's `keys` builds or parses key bytes.

use std::borrow::Cow;

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// A key under construction: push components in order, then take the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new() -> Self {
        Key(Vec::with_capacity(64))
    }

    /// Appends a text or byte component.
    pub fn text(mut self, component: impl AsRef<[u8]>) -> Self {
        for &byte in component.as_ref() {
            self.0.push(byte);
            if byte == ESCAPE {
                self.0.push(ESCAPED_ZERO);
            }
        }
        self.0.push(ESCAPE);
        self.0.push(TERMINATOR);
        self
    }

    /// Appends a fixed-width unsigned integer component.
    pub fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Reads components back out of key bytes, in the order they were written.
pub struct KeyReader<'a> {
    rest: &'a [u8],
}

/// Key bytes that do not follow the layout: only possible with a corrupt database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed key: {0}")]
pub struct MalformedKey(pub &'static str);

impl<'a> KeyReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        KeyReader { rest: bytes }
    }

    /// Reads one text/bytes component.
    pub fn text(&mut self) -> Result<Cow<'a, [u8]>, MalformedKey> {
        let bytes = self.rest;
        let mut owned: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == ESCAPE {
                match bytes.get(i + 1) {
                    Some(&TERMINATOR) => {
                        self.rest = &bytes[i + 2..];
                        return Ok(match owned {
                            Some(v) => Cow::Owned(v),
                            None => Cow::Borrowed(&bytes[..i]),
                        });
                    }
                    Some(&ESCAPED_ZERO) => {
                        owned.get_or_insert_with(|| bytes[..i].to_vec()).push(0);
                        i += 2;
                        continue;
                    }
                    _ => return Err(MalformedKey("bad escape in text component")),
                }
            }
            if let Some(v) = owned.as_mut() {
                v.push(bytes[i]);
            }
            i += 1;
        }
        Err(MalformedKey("unterminated text component"))
    }

    /// Reads one text component that must be UTF-8.
    pub fn string(&mut self) -> Result<String, MalformedKey> {
        let raw = self.text()?;
        String::from_utf8(raw.into_owned()).map_err(|_| MalformedKey("text component is not UTF-8"))
    }

    pub fn u64(&mut self) -> Result<u64, MalformedKey> {
        if self.rest.len() < 8 {
            return Err(MalformedKey("short u64 component"));
        }
        let (head, tail) = self.rest.split_at(8);
        self.rest = tail;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(head);
        Ok(u64::from_be_bytes(buf))
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}
