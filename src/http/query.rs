//! Query parameters: each endpoint names the ones it takes; anything else, a repeated name or a
//! bad value is a 400 `invalid_query` naming the parameter.

use crate::domain::record::{parse_projection, Fields};
use crate::error::{ApiError, ErrorCode};
use actix_web::HttpRequest;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

fn invalid(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidQuery,
        format!("query parameter {name}: {message}"),
    )
}

/// The parameters of one request, consumed by name.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Parses the query string; `allowed` lists every parameter this endpoint takes.
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("malformed query string: {e}"),
                )
            })?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(invalid(
                    name,
                    format!("is not known here (known: {})", allowed.join(", ")),
                ));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(invalid(name, "is given more than once"));
            }
        }
        Ok(QueryParams { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true|false`, absent = false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(invalid(name, "must be true or false")),
        }
    }

    /// `limit`: 1–1000, default 100.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(invalid(
                    "limit",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                )),
            },
        }
    }

    /// A `fields`-style projection; `None` = the whole record.
    pub fn projection<F: Fields>(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        self.get(name)
            .map(|list| parse_projection::<F>(list).map_err(|e| invalid(name, e)))
            .transpose()
    }

    /// `exclusiveStartKey`, when given and non-empty.
    pub fn start_key(&self) -> Option<&str> {
        self.get("exclusiveStartKey").filter(|s| !s.is_empty())
    }
}
