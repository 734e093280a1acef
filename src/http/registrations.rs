//! `/courseRegistrations/{tenantId}`: create, list, get, replace, patch, delete and the lookups.

use super::access::Caller;
use super::body::JsonBody;
use super::query::QueryParams;
use crate::domain::access::WriteContext;
use crate::domain::ids::RecordId;
use crate::domain::patch::parse_patch;
use crate::domain::record::project;
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::values::{FieldValue, Text};
use crate::error::{ApiError, ErrorCode};
use crate::store::index::{IndexDef, REGISTRATION_INDEXES};
use crate::store::registrations::Page;
use crate::store::Store;
use crate::workflows::blocking;
use crate::workflows::registrations::{self as flow, Change, Precondition};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let scope = "/courseRegistrations/{tenantId}";
    cfg.service(
        web::resource(scope)
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(web::to(super::error::method_not_allowed)),
    );
    cfg.service(
        web::resource(format!(
            "{scope}/studentCourse/{{student_id}}/{{course_id}}"
        ))
        .route(web::get().to(lookup))
        .default_service(web::to(super::error::method_not_allowed)),
    );
    for def in REGISTRATION_INDEXES.iter().filter(|d| d.fields.len() == 1) {
        cfg.service(
            web::resource(format!("{scope}/{}/{{{}}}", def.lookup, def.fields[0]))
                .route(web::get().to(lookup))
                .default_service(web::to(super::error::method_not_allowed)),
        );
    }
    cfg.service(
        web::resource(format!("{scope}/{{id}}"))
            .route(web::get().to(get_one))
            .route(web::put().to(replace))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete))
            .default_service(web::to(super::error::method_not_allowed)),
    );
}

fn store_of(req: &HttpRequest) -> Result<Arc<Store>, ApiError> {
    req.app_data::<web::Data<Store>>()
        .map(|data| data.clone().into_inner())
        .ok_or_else(ApiError::internal)
}

fn path_id(req: &HttpRequest) -> Result<RecordId, ApiError> {
    let raw = req.match_info().get("id").unwrap_or_default();
    RecordId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("id {e}")))
}

fn write_context(caller: &Caller) -> WriteContext {
    WriteContext::new(caller.principal.actor())
}

fn etag(record: &CourseRegistration) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{}\"", record.version()))
}

/// `If-Match`: a list of entity tags (quoted versions, weak or strong) or `*`.
fn if_match(req: &HttpRequest) -> Result<Precondition, ApiError> {
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

fn render(record: &CourseRegistration, fields: Option<&[String]>) -> Map<String, Value> {
    let json = record.to_json();
    match fields {
        Some(fields) => project(json, fields),
        None => json,
    }
}

fn record_response(record: &CourseRegistration, fields: Option<&[String]>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(etag(record))
        .json(render(record, fields))
}

async fn create(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let store = store_of(&req)?;
    let record = flow::create(&store, caller.tenant()?, &body.0, &write_context(&caller)).await?;
    Ok(record_response(&record, None))
}

async fn get_one(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "consistentRead"])?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    // Every read is strongly consistent; the flag is accepted and checked, nothing more.
    query.flag("consistentRead")?;
    let id = path_id(&req)?;
    let record = flow::fetch(&store_of(&req)?, caller.tenant()?, &id).await?;
    Ok(record_response(&record, fields.as_deref()))
}

async fn replace(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req)?;
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant()?,
        &id,
        Change::Replace(body.0),
        if_match(&req)?,
        &write_context(&caller),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn patch(req: HttpRequest, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req)?;
    let patch = parse_patch(&body.0)?;
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant()?,
        &id,
        Change::Patch(patch),
        if_match(&req)?,
        &write_context(&caller),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn delete(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req)?;
    let store = store_of(&req)?;
    flow::delete(
        &store,
        caller.tenant()?,
        &id,
        if_match(&req)?,
        &write_context(&caller),
    )
    .await?;
    Ok(HttpResponse::Ok().json(id.as_str()))
}

/// The URL of the next page: this request's path and query with the new start key.
fn next_link(req: &HttpRequest, query: &QueryParams, token: &str, names: &[&str]) -> String {
    let mut pairs: Vec<(&str, &str)> = names
        .iter()
        .filter_map(|n| query.get(n).map(|v| (*n, v)))
        .collect();
    pairs.push(("exclusiveStartKey", token));
    let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{}?{}", req.path(), encoded)
}

async fn list(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "exclusiveStartKey", "limit"])?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    let limit = query.limit()?;
    let tenant = caller.tenant()?.clone();
    let start = query.start_key().map(str::to_owned);
    let page: Page = blocking(&store_of(&req)?, move |s| {
        s.list_registrations(&tenant, start.as_deref(), limit)
    })
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| Value::Object(render(r, fields.as_deref())))
        .collect();
    let mut response = HttpResponse::Ok();
    if let Some(token) = &page.next {
        let link = next_link(&req, &query, token, &["fields", "limit"]);
        response.insert_header(("X-Last-Evaluated-Key", token.as_str()));
        if let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            response.insert_header((header::LINK, value));
        }
    }
    Ok(response.json(items))
}

/// The lookup this request names, and its values from the path.
fn lookup_of(req: &HttpRequest) -> Result<(&'static IndexDef, Vec<String>), ApiError> {
    let name = req
        .path()
        .trim_start_matches('/')
        .split('/')
        .nth(2)
        .unwrap_or_default();
    let (_, def) = IndexDef::by_lookup(name).ok_or_else(ApiError::internal)?;
    let values = def
        .fields
        .iter()
        .map(|field| {
            let raw = req.match_info().get(field).unwrap_or_default();
            check_lookup_value(field, raw).map(|()| raw.to_owned())
        })
        .collect::<Result<_, _>>()?;
    Ok((def, values))
}

/// A lookup value must be something the field could hold.
fn check_lookup_value(field: &str, raw: &str) -> Result<(), ApiError> {
    let mut probe = RegistrationFields::default();
    let as_json = Value::String(raw.to_owned());
    let parsed = match crate::domain::record::Fields::set_json(&mut probe, field, &as_json) {
        Some(result) => result,
        None => Text::parse(&as_json).map(|_| ()),
    };
    parsed.map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("{field} {e}")))
}

async fn lookup(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let (def, values) = lookup_of(&req)?;
    let mut allowed = vec!["fields", "exclusiveStartKey", "limit"];
    if def.lookup == "courseOffering" {
        allowed.push("includeActiveOnly");
    }
    let query = QueryParams::parse(&req, &allowed)?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    let limit = query.limit()?;
    let active_only = query.flag("includeActiveOnly")?;
    let tenant = caller.tenant()?.clone();
    let start = query.start_key().map(str::to_owned);
    let page: Page = blocking(&store_of(&req)?, move |s| {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        s.lookup_registrations(&tenant, def, &values, active_only, start.as_deref(), limit)
    })
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| Value::Object(render(r, fields.as_deref())))
        .collect();
    let mut body = json!({"Count": items.len(), "Items": items});
    if let Some(token) = page.next {
        body["LastEvaluatedKey"] = Value::String(token);
    }
    Ok(HttpResponse::Ok().json(body))
}
