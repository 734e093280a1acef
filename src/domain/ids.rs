//! Identifiers: what a valid tenant id or record id is, checked once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The characters every id may use: ASCII letters, digits, `_`, `-`, `|` and `:`.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | ':')
}

fn check_id(value: &str, max_len: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max_len {
        return Err(format!("must be at most {max_len} characters"));
    }
    if !value.chars().all(is_id_char) {
        return Err(format!(
            "must match ^[A-Za-z0-9_\\-|:]{{1,{max_len}}}$ (ASCII letters, digits, _ - | :)"
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        // Decoding checks the pattern again: corrupt stored bytes cannot yield a bad id.
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                check_id(&value, Self::MAX_LEN).map(|()| $name(value))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: &str) -> Result<Self, String> {
                check_id(value, Self::MAX_LEN).map(|()| $name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// JSON Schema of a valid id.
            pub fn schema() -> serde_json::Value {
                serde_json::json!({
                    "type": "string",
                    "pattern": format!("^[A-Za-z0-9_|:-]{{1,{}}}$", Self::MAX_LEN),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A tenant's id: `^[A-Za-z0-9_\-|:]{1,64}$`.
    TenantId,
    64
);

id_type!(
    /// A record id, or a reference to one: `^[A-Za-z0-9_\-|:]{1,128}$`.
    RecordId,
    128
);

impl RecordId {
    /// A new id, strictly greater than every id this process made before, so that id order is
    /// creation order even within one millisecond.
    pub fn generate() -> Self {
        static GENERATOR: std::sync::Mutex<ulid::Generator> =
            std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let ulid = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        RecordId(ulid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_only() {
        assert!(TenantId::parse("acme_1-x|y:z").is_ok());
        for bad in ["", "a b", "a/b", "ä", "a%2F", "a\0", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(RecordId::parse(&"x".repeat(128)).is_ok());
        assert!(RecordId::parse(&"x".repeat(129)).is_err());
    }
}
