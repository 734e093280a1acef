//! `X-Request-Id`: the client's, when it sends a sensible one, or a new ULID; on every
//! response and in the access log.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

/// The id of the request being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A client id is echoed only when it is short and plain, so it is safe in logs and headers.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// The request's id: the client's `X-Request-Id` when it is acceptable, else a new ULID.
pub fn choose(req: &ServiceRequest) -> String {
    req.headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| ulid::Ulid::new().to_string())
}

/// Puts the id on the response.
pub fn echo<B>(response: &mut ServiceResponse<B>, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_echoed() {
        assert!(acceptable("abc-123_X.y:z/+="));
        for bad in ["", "a b", "a\\nb", "é", &"x".repeat(129)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
