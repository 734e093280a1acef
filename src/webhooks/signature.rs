//! Signing per the Standard Webhooks specification (<https://www.standardwebhooks.com>), so a
//! receiver can check a delivery with the specification's own libraries.
//!
//! - The secret is `whsec_` followed by the base64 of 32 random bytes; the bytes are the key.
//! - The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the body byte for byte.
//! - `webhook-signature` is `v1,` and the base64 of the HMAC-SHA256 of that content. Several
//!   space-separated signatures are allowed (a receiver accepts any), which is how a rotated
//!   secret would be announced; we send one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The prefix every secret is shown with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret: the specification allows 24 to 64.
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// A secret that is not `whsec_` + base64 of 24 to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is \"whsec_\" followed by the base64 of 24 to 64 bytes")]
pub struct BadSecret;

impl WebhookSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut key)?;
        Ok(WebhookSecret(key))
    }

    /// A secret as shown (`whsec_…`).
    pub fn parse(shown: &str) -> Result<Self, BadSecret> {
        let encoded = shown.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
        let key = BASE64.decode(encoded).map_err(|_| BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(BadSecret);
        }
        Ok(WebhookSecret(key))
    }

    /// The key bytes, for storing.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// A secret from stored key bytes.
    pub fn from_key(key: Vec<u8>) -> Result<Self, BadSecret> {
        if !(24..=64).contains(&key.len()) {
            return Err(BadSecret);
        }
        Ok(WebhookSecret(key))
    }

    /// The secret as the endpoint's owner is shown it, once.
    pub fn shown(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.0))
    }

    /// The `webhook-signature` header's value for one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(id, timestamp, body)))
    }

    /// Whether `header` (a `webhook-signature` value) holds a valid v1 signature of this
    /// delivery. The comparison is constant-time. For tests and for receivers written in Rust.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.mac(id, timestamp, body);
        header.split(' ').any(|signature| {
            signature
                .strip_prefix("v1,")
                .and_then(|s| BASE64.decode(s).ok())
                .is_some_and(|given| {
                    use subtle::ConstantTimeEq;
                    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
                })
        })
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of the specification's reference implementations (the JavaScript and
    /// Python libraries' tests use this secret, id, timestamp and body).
    #[test]
    fn signs_the_specifications_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_is_shown_and_parsed_back() {
        let secret = WebhookSecret::generate().unwrap();
        let shown = secret.shown();
        assert!(shown.starts_with("whsec_"), "{shown}");
        assert_eq!(WebhookSecret::parse(&shown).unwrap(), secret);
        assert_ne!(WebhookSecret::generate().unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(…)");
    }

    #[test]
    fn bad_secrets_are_refused() {
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_AAAA",
        ] {
            assert_eq!(WebhookSecret::parse(bad), Err(BadSecret), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_signature_verifies_only_its_own_delivery(
            id in "msg_[A-Za-z0-9]{1,30}",
            timestamp in 0i64..4_000_000_000,
            body in proptest::collection::vec(any::<u8>(), 0..256),
            other in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let secret = WebhookSecret::generate().unwrap();
            let header = secret.sign(&id, timestamp, &body);
            prop_assert!(secret.verify(&id, timestamp, &body, &header));
            let two = format!("v1,AAAA {}", header);
            prop_assert!(secret.verify(&id, timestamp, &body, &two));
            prop_assert_eq!(secret.verify(&id, timestamp, &other, &header), other == body);
            prop_assert!(!secret.verify(&id, timestamp + 1, &body, &header));
            prop_assert!(!WebhookSecret::generate().unwrap().verify(&id, timestamp, &body, &header));
        }
    }
}
