//! What every resource handler reads from a request: the store, the path id, `If-Match`, the
//! write context; and the next-page link it writes back.

use super::query::QueryParams;
use super::request_id::RequestId;
use crate::domain::access::{Principal, WriteContext};
use crate::domain::ids::RecordId;
use crate::error::{ApiError, ErrorCode};
use crate::store::{Database, Db};
use crate::workflows::registrations::Precondition;
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest};

pub fn store_of(req: &HttpRequest) -> Result<Db, ApiError> {
    req.app_data::<web::Data<dyn Database>>()
        .map(|data| data.clone().into_inner())
        .ok_or_else(ApiError::internal)
}

/// A record id from the path segment `name`.
pub fn path_id(req: &HttpRequest, name: &str) -> Result<RecordId, ApiError> {
    let raw = req.match_info().get(name).unwrap_or_default();
    RecordId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("{name} {e}")))
}

/// Who writes (the caller's key and role), now, under this request's `X-Request-Id`.
pub fn write_context(req: &HttpRequest, caller: &Principal) -> WriteContext {
    let ctx = WriteContext::new(caller.actor());
    match req.extensions().get::<RequestId>() {
        Some(RequestId(id)) => ctx.with_request_id(id.clone()),
        None => ctx,
    }
}

pub fn etag(version: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// `If-Match`: a list of entity tags (quoted versions, weak or strong) or `*`.
pub fn if_match(req: &HttpRequest) -> Result<Precondition, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::VersionConflict, "If-Match is not readable"))?;
    if text.trim() == "*" {
        return Ok(None);
    }
    // A tag that is not one of our versions can never match: that is a failed precondition.
    let versions = text
        .split(',')
        .filter_map(|tag| {
            tag.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .collect();
    Ok(Some(versions))
}

/// The URL of the next page: this request's path and every query parameter it was given (the
/// token is bound to them: `includeActiveOnly`, for one), with the new start key.
pub fn next_link(req: &HttpRequest, query: &QueryParams, token: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .pairs()
        .filter(|(name, _)| *name != "exclusiveStartKey")
        .collect();
    pairs.push(("exclusiveStartKey", token));
    let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{}?{}", req.path(), encoded)
}

/// Adds `X-Last-Evaluated-Key` and `Link: <…>; rel="next"` when there is a next page: on the
/// lists, and on the lookups, search and outbox beside their `LastEvaluatedKey`.
pub fn page_headers(
    response: &mut actix_web::HttpResponseBuilder,
    req: &HttpRequest,
    query: &QueryParams,
    next: Option<&str>,
) {
    if let Some(token) = next {
        let link = next_link(req, query, token);
        response.insert_header(("X-Last-Evaluated-Key", token));
        if let Ok(value) = header::HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            response.insert_header((header::LINK, value));
        }
    }
}

/// A response whose body is JSON already written out (what `.json()` sends, without a
/// `serde_json::Value` in between).
pub fn json_body(
    response: &mut actix_web::HttpResponseBuilder,
    body: Vec<u8>,
) -> actix_web::HttpResponse {
    response
        .insert_header(header::ContentType::json())
        .body(body)
}

/// [`query_page`] whose `Items`, a JSON array of `count` items, `write_items` appends.
pub fn query_page_json(
    req: &HttpRequest,
    query: &QueryParams,
    count: usize,
    capacity: usize,
    write_items: impl FnOnce(&mut Vec<u8>),
    next: Option<String>,
) -> actix_web::HttpResponse {
    let mut body = Vec::with_capacity(capacity + 64);
    body.extend_from_slice(b"{\"Count\":");
    crate::domain::values::write_json_value(&mut body, &count);
    body.extend_from_slice(b",\"Items\":");
    write_items(&mut body);
    if let Some(token) = &next {
        body.extend_from_slice(b",\"LastEvaluatedKey\":");
        crate::domain::values::write_json_str(&mut body, token);
    }
    body.push(b'}');
    let mut response = actix_web::HttpResponse::Ok();
    page_headers(&mut response, req, query, next.as_deref());
    json_body(&mut response, body)
}

/// A lookup-style page: `{"Count", "Items", "LastEvaluatedKey"?}`.
pub fn query_page(
    req: &HttpRequest,
    query: &QueryParams,
    items: Vec<serde_json::Value>,
    next: Option<String>,
) -> actix_web::HttpResponse {
    let mut response = actix_web::HttpResponse::Ok();
    page_headers(&mut response, req, query, next.as_deref());
    let mut body = serde_json::json!({"Count": items.len(), "Items": items});
    if let Some(token) = next {
        body["LastEvaluatedKey"] = serde_json::Value::String(token);
    }
    response.json(body)
}

/// The record id of a `.../{id}` route, checked before the handler runs: a bad id is 400
/// `invalid_path` naming the segment, as [`path_id`] answers.
pub struct IdPath(pub RecordId);

impl actix_web::FromRequest for IdPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(path_id(req, "id").map(IdPath))
    }
}

/// The two ids of `/generateRegistration/{processId}/{contactId}`, checked before the handler
/// runs, each as [`path_id`] answers.
pub struct GeneratePath {
    pub process: RecordId,
    pub contact: RecordId,
}

impl actix_web::FromRequest for GeneratePath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(path_id(req, "processId").and_then(|process| {
            path_id(req, "contactId").map(|contact| GeneratePath { process, contact })
        }))
    }
}

/// Percent-decodes one raw path segment exactly once (RFC 3986, section 2.1): `%XX` is the
/// byte `XX`, every other character is itself (a `+` is a plus; only form bodies and query
/// strings use it for a space). A `%` not followed by two hex digits, or decoded bytes that
/// are not UTF-8, are refused rather than guessed at.
pub fn decode_path_segment(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err("has a % that is not followed by two hex digits (write a % as %25)".into());
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "is not valid UTF-8 once percent-decoded".into())
}

#[cfg(test)]
mod tests {
    use super::decode_path_segment;

    #[test]
    fn a_path_segment_is_percent_decoded_exactly_once() {
        for (raw, decoded) in [
            ("plain", "plain"),
            ("a%2Fb", "a/b"),
            ("a%2fb", "a/b"),
            ("p%2Bx", "p+x"),
            ("p+x", "p+x"),
            ("pct%25x", "pct%x"),
            ("pct%2541", "pct%41"),
            ("a%20b", "a b"),
            ("q%3Fx", "q?x"),
            ("%C3%A9", "é"),
            ("%E6%97%A5%E6%9C%AC", "日本"),
            ("%F0%9F%8E%93", "🎓"),
            ("", ""),
        ] {
            assert_eq!(decode_path_segment(raw).as_deref(), Ok(decoded), "{raw}");
        }
        for raw in ["%", "a%2", "%zz", "%%41", "%FF%FE", "%C3"] {
            assert!(decode_path_segment(raw).is_err(), "{raw}");
        }
    }
}
