//! Query parameters: each endpoint names the ones it takes; anything else, a repeated name or a
//! bad value is a 400 `invalid_query` naming the parameter. A list parameter ([`LIST_PARAMS`])
//! may be given as `a,b` or repeated (`fields=a&fields=b`): the two forms OpenAPI's
//! `explode: false` and `explode: true` describe, and generated clients send either.

use crate::domain::record::{parse_projection, Fields};
use crate::error::{ApiError, ErrorCode};
use actix_web::HttpRequest;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The parameters that hold a comma-separated list, and so may also be repeated.
pub const LIST_PARAMS: [&str; 2] = ["fields", "fieldsToReturn"];

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
        let given: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("malformed query string: {e}"),
                )
            })?;
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(given.len());
        for (name, value) in given {
            if !allowed.contains(&name.as_str()) {
                return Err(invalid(
                    &name,
                    format!("is not known here (known: {})", allowed.join(", ")),
                ));
            }
            match pairs.iter_mut().find(|(earlier, _)| *earlier == name) {
                // A repeated list parameter is the same list written out: join it, so the
                // parser (and a next-page link) sees one `a,b` value.
                Some((_, list)) if LIST_PARAMS.contains(&name.as_str()) => {
                    list.push(',');
                    list.push_str(&value);
                }
                Some(_) => return Err(invalid(&name, "is given more than once")),
                None => pairs.push((name, value)),
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

    /// Every parameter given, in order (a repeated list parameter once, joined).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `exclusiveStartKey`, when given and non-empty.
    pub fn start_key(&self) -> Option<&str> {
        self.get("exclusiveStartKey").filter(|s| !s.is_empty())
    }
}

/// The parameters an endpoint takes, named once as a type so a handler can take its query as
/// an extractor: `Query<ListQuery>`.
pub trait QuerySpec: 'static {
    const ALLOWED: &'static [&'static str];
}

/// The query of an endpoint, parsed and checked against `S::ALLOWED` before the handler runs.
pub struct Query<S: QuerySpec> {
    params: QueryParams,
    _spec: std::marker::PhantomData<S>,
}

impl<S: QuerySpec> std::ops::Deref for Query<S> {
    type Target = QueryParams;

    fn deref(&self) -> &QueryParams {
        &self.params
    }
}

impl<S: QuerySpec> actix_web::FromRequest for Query<S> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(QueryParams::parse(req, S::ALLOWED).map(|params| Query {
            params,
            _spec: std::marker::PhantomData,
        }))
    }
}

macro_rules! query_spec {
    ($($(#[$doc:meta])* $name:ident = [$($param:literal),*];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl QuerySpec for $name {
                const ALLOWED: &'static [&'static str] = &[$($param),*];
            }
        )*
    };
}

query_spec! {
    /// No parameters at all: a write, or a read with nothing to choose.
    NoQuery = [];
    /// One record: `fields` and the accepted-but-moot `consistentRead`.
    RecordQuery = ["fields", "consistentRead"];
    /// A list of records in id order.
    ListQuery = ["fields", "exclusiveStartKey", "limit"];
    /// A search: `fieldsToReturn` and paging.
    SearchQuery = ["fieldsToReturn", "exclusiveStartKey", "limit"];
    /// Paging only.
    PageQuery = ["exclusiveStartKey", "limit"];
    /// `dryRun`.
    DryRunQuery = ["dryRun"];
    /// An export's `format`.
    ExportQuery = ["format"];
    /// An import's options.
    ImportQuery = ["allOrNothing", "sourceFile"];
}
