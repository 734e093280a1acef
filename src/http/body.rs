//! The JSON body extractor: content type, size limit and nesting depth checked before any
//! handler sees the body, each failure in the common error envelope.

use super::admission::body_deadline;
use crate::error::{ApiError, ErrorCode};
use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Largest request body: a ~2 KB record is far below it, a 100-op batch with full records
/// fits, and anything larger is refused before it is buffered (see docs/API.md).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Deepest JSON nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// A request body that is well-formed JSON.
pub struct JsonBody(pub Value);

fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// Parses body bytes as JSON, refusing documents nested deeper than [`MAX_DEPTH`].
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if depth(&value) > MAX_DEPTH {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(value)
}

/// A request body that is empty, or else well-formed JSON: for endpoints whose body is
/// optional.
pub struct OptionalJsonBody(pub Option<Value>);

fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_json_media_type(content_type) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ))
    }
}

fn check_declared_length(req: &HttpRequest) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES => Err(too_large()),
        _ => Ok(()),
    }
}

/// Reads the whole body, refusing it as soon as it passes [`MAX_BODY_BYTES`], or when it has
/// not arrived in full within `deadline` (408 `request_timeout`; the answer closes the
/// connection, `http::error`). Without the deadline a client that trickles a large declared
/// body holds its connection, and its tenant's place in flight, for as long as it likes.
pub async fn read_body(payload: Payload, deadline: Duration) -> Result<BytesMut, ApiError> {
    match actix_web::rt::time::timeout(deadline, read_all(payload)).await {
        Ok(read) => read,
        Err(_elapsed) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs_f64()
            ),
        )),
    }
}

async fn read_all(mut payload: Payload) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked = check_media_type(req).and_then(|()| check_declared_length(req));
        let payload = payload.take();
        let deadline = body_deadline(req);
        Box::pin(async move {
            checked?;
            parse_json(&read_body(payload, deadline).await?).map(JsonBody)
        })
    }
}

impl FromRequest for OptionalJsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let length = check_declared_length(req);
        // Only a body that is there has to say it is JSON.
        let media_type = check_media_type(req);
        let payload = payload.take();
        let deadline = body_deadline(req);
        Box::pin(async move {
            length?;
            let body = read_body(payload, deadline).await?;
            if body.is_empty() {
                return Ok(OptionalJsonBody(None));
            }
            media_type?;
            parse_json(&body).map(|value| OptionalJsonBody(Some(value)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json-patch+json",
            "Application/JSON",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in ["", "text/plain", "application/xml", "application/jsonx"] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_json(deep.as_bytes()).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse_json(deeper.as_bytes()).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        let very_deep = "[".repeat(5000) + &"]".repeat(5000);
        assert_eq!(
            parse_json(very_deep.as_bytes()).unwrap_err().code,
            ErrorCode::InvalidJson
        );
    }
}
