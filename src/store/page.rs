//! Page tokens (`exclusiveStartKey` / `LastEvaluatedKey`): the id of the last record returned,
//! sealed with an HMAC over the query's scope (tenant, lookup, values) under a per-database
//! secret. A token altered, or replayed on another tenant or query, fails the MAC check and is
//! refused before any key is read.

use super::error::StoreError;
use super::tuple::Key;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TOKEN_VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
/// Longer tokens are refused before decoding: no real token comes near this.
const MAX_TOKEN_CHARS: usize = 512;

/// What a page token is bound to: the tenant and the query, as key components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageScope(Key);

impl PageScope {
    /// The list-all scan of a tenant's registrations.
    pub fn list(tenant: &str) -> Self {
        PageScope(Key::new().text("list").text(tenant))
    }

    /// One lookup with its values and filter.
    pub fn lookup(tenant: &str, lookup: &str, values: &[&str], active_only: bool) -> Self {
        let key = values.iter().fold(
            Key::new().text("lookup").text(tenant).text(lookup),
            |k, v| k.text(v),
        );
        PageScope(key.text(if active_only { "active" } else { "all" }))
    }

    /// Any other query, identified by a canonical byte string of its parameters.
    pub fn query(tenant: &str, kind: &str, canonical: &[u8]) -> Self {
        PageScope(Key::new().text(kind).text(tenant).text(canonical))
    }
}

/// Seals and opens tokens with the database's secret.
#[derive(Clone)]
pub struct PageTokens {
    secret: [u8; 32],
}

impl PageTokens {
    pub fn new(secret: [u8; 32]) -> Self {
        PageTokens { secret }
    }

    fn mac(&self, scope: &PageScope, position: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(scope.0.as_bytes());
        mac.update(&(position.len() as u64).to_be_bytes());
        mac.update(position);
        mac
    }

    /// A token that resumes `scope` after `position` (the last id returned).
    pub fn seal(&self, scope: &PageScope, position: &str) -> String {
        let tag = self.mac(scope, position.as_bytes()).finalize().into_bytes();
        let mut raw = Vec::with_capacity(1 + position.len() + MAC_BYTES);
        raw.push(TOKEN_VERSION);
        raw.extend_from_slice(position.as_bytes());
        raw.extend_from_slice(&tag[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position a token resumes after, if it was sealed for exactly this scope.
    pub fn open(&self, scope: &PageScope, token: &str) -> Result<String, StoreError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(StoreError::InvalidPageToken("too long"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| StoreError::InvalidPageToken("not base64url"))?;
        if raw.len() < 1 + MAC_BYTES || raw[0] != TOKEN_VERSION {
            return Err(StoreError::InvalidPageToken("malformed"));
        }
        let (position, tag) = raw[1..].split_at(raw.len() - 1 - MAC_BYTES);
        self.mac(scope, position)
            .verify_truncated_left(tag)
            .map_err(|_| StoreError::InvalidPageToken("not issued for this tenant and query"))?;
        String::from_utf8(position.to_vec()).map_err(|_| StoreError::InvalidPageToken("malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_in_its_own_scope() {
        let tokens = PageTokens::new([7; 32]);
        let scope = PageScope::lookup("acme", "student", &["s1"], false);
        let token = tokens.seal(&scope, "01HZ");
        assert_eq!(tokens.open(&scope, &token).unwrap(), "01HZ");
        for other in [
            PageScope::lookup("other", "student", &["s1"], false),
            PageScope::lookup("acme", "course", &["s1"], false),
            PageScope::lookup("acme", "student", &["s2"], false),
            PageScope::lookup("acme", "student", &["s1"], true),
            PageScope::list("acme"),
        ] {
            assert!(tokens.open(&other, &token).is_err());
        }
        assert!(PageTokens::new([8; 32]).open(&scope, &token).is_err());
    }

    #[test]
    fn altered_or_garbage_tokens_are_refused() {
        let tokens = PageTokens::new([7; 32]);
        let scope = PageScope::list("acme");
        let mut token = tokens.seal(&scope, "01HZ").into_bytes();
        token[3] = if token[3] == b'A' { b'B' } else { b'A' };
        let token = String::from_utf8(token).unwrap();
        assert!(tokens.open(&scope, &token).is_err());
        for junk in ["", "%%%", "AAAA", &"A".repeat(600)] {
            assert!(tokens.open(&scope, junk).is_err());
        }
    }
}
