//! `/courseRegistrations/{tenantId}`: create, list, get, replace, patch, delete and the lookups.

use super::access::Caller;
use super::body::JsonBody;
use super::query::QueryParams;
use super::request::{
    etag, if_match, json_body, page_headers, path_id, query_page_json, store_of, write_context,
};
use crate::domain::patch::parse_patch;
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::search::SearchCriteria;
use crate::domain::values::{FieldValue, Text};
use crate::error::{ApiError, ErrorCode};
use crate::store::index::{IndexDef, REGISTRATION_INDEXES};
use crate::store::registrations::Page;
use crate::workflows::email::{self, Mailer};
use crate::workflows::generate;
use crate::workflows::registrations::{self as flow, Change};
use crate::workflows::{blocking, page_read};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn configure(cfg: &mut web::ServiceConfig) {
    let scope = "/courseRegistrations/{tenantId}";
    cfg.service(
        super::endpoint(scope)
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
    // Literal paths before `{id}`, which would match them too; `{id}` before the longer
    // paths, which it cannot match: actix tries routes in order, and GET by id is the most
    // frequent request (each route passed over costs a pattern match).
    cfg.service(super::endpoint(format!("{scope}/batch")).route(web::post().to(batch)));
    cfg.service(super::endpoint(format!("{scope}/search")).route(web::post().to(search)));
    cfg.service(
        super::endpoint(format!("{scope}/previewEmail")).route(web::post().to(preview_email)),
    );
    cfg.service(
        super::endpoint(format!("{scope}/generateOrder")).route(web::post().to(generate_order)),
    );
    cfg.service(
        super::endpoint(format!("{scope}/{{id}}"))
            .route(web::get().to(get_one))
            .route(web::put().to(replace))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
    cfg.service(
        super::endpoint(format!(
            "{scope}/studentCourse/{{student_id}}/{{course_id}}"
        ))
        .route(web::get().to(lookup)),
    );
    for def in REGISTRATION_INDEXES
        .iter()
        .filter(|d| d.exposed && d.fields.len() == 1)
    {
        cfg.service(
            super::endpoint(format!("{scope}/{}/{{{}}}", def.lookup, def.fields[0]))
                .route(web::get().to(lookup)),
        );
    }
    cfg.service(
        super::endpoint(format!(
            "{scope}/generateRegistration/{{processId}}/{{contactId}}"
        ))
        .route(web::post().to(generate_registration)),
    );
}

/// Room for a typical registration's JSON (~2 KB), so writing it rarely reallocates.
const RECORD_JSON_CAPACITY: usize = 3 * 1024;

fn record_response(record: &CourseRegistration, fields: Option<&[String]>) -> HttpResponse {
    let mut body = Vec::with_capacity(RECORD_JSON_CAPACITY);
    record.write_json(&mut body, fields);
    json_body(
        HttpResponse::Ok().insert_header(etag(record.version())),
        body,
    )
}

/// Room for a page of `n` records.
fn page_capacity(n: usize) -> usize {
    n * RECORD_JSON_CAPACITY + 2
}

/// Appends the JSON array of a page's records, projected to `fields`.
fn write_items(out: &mut Vec<u8>, records: &[CourseRegistration], fields: Option<&[String]>) {
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        record.write_json(out, fields);
    }
    out.push(b']');
}

async fn create(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let store = store_of(&req)?;
    let record = flow::create(
        &store,
        caller.tenant()?,
        &body.0,
        &write_context(&req, &caller),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn get_one(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "consistentRead"])?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    // Every read is strongly consistent; the flag is accepted and checked, nothing more.
    query.flag("consistentRead")?;
    let id = path_id(&req, "id")?;
    let record = flow::fetch(&store_of(&req)?, caller.tenant()?, &id).await?;
    Ok(record_response(&record, fields.as_deref()))
}

async fn replace(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant()?,
        &id,
        Change::Replace(body.0),
        if_match(&req)?,
        &write_context(&req, &caller),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn patch(req: HttpRequest, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    let patch = parse_patch(&body.0)?;
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant()?,
        &id,
        Change::Patch(patch),
        if_match(&req)?,
        &write_context(&req, &caller),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn delete(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    let store = store_of(&req)?;
    flow::delete(
        &store,
        caller.tenant()?,
        &id,
        if_match(&req)?,
        &write_context(&req, &caller),
    )
    .await?;
    Ok(HttpResponse::Ok().json(id.as_str()))
}

async fn list(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "exclusiveStartKey", "limit"])?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    let limit = query.limit()?;
    let tenant = caller.tenant()?.clone();
    let start = query.start_key().map(str::to_owned);
    let page: Page = page_read(&store_of(&req)?, limit, move |s| {
        s.list_registrations(&tenant, start.as_deref(), limit)
    })
    .await?;
    let mut items = Vec::with_capacity(page_capacity(page.items.len()));
    write_items(&mut items, &page.items, fields.as_deref());
    let mut response = HttpResponse::Ok();
    page_headers(&mut response, &req, &query, page.next.as_deref());
    Ok(json_body(&mut response, items))
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
/// Longest value a lookup path takes, in characters: values are ids in practice, and a URL
/// is no place for a 64 Ki-character field (search takes those).
pub const MAX_LOOKUP_VALUE_CHARS: usize = 1024;

fn check_lookup_value(field: &str, raw: &str) -> Result<(), ApiError> {
    if raw.chars().count() > MAX_LOOKUP_VALUE_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidPath,
            format!("{field} must be at most {MAX_LOOKUP_VALUE_CHARS} characters in a lookup path"),
        ));
    }
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
    let page: Page = page_read(&store_of(&req)?, limit, move |s| {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        s.lookup_registrations(&tenant, def, &values, active_only, start.as_deref(), limit)
    })
    .await?;
    Ok(query_page_json(
        &req,
        &query,
        page.items.len(),
        page_capacity(page.items.len()),
        |out| write_items(out, &page.items, fields.as_deref()),
        page.next,
    ))
}

async fn generate_registration(req: HttpRequest, caller: Caller) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["dryRun"])?;
    let dry_run = query.flag("dryRun")?;
    let process = path_id(&req, "processId")?;
    let contact = path_id(&req, "contactId")?;
    let store = store_of(&req)?;
    let record = generate::registration(
        &store,
        caller.tenant()?,
        &process,
        &contact,
        &write_context(&req, &caller),
        dry_run,
    )
    .await?;
    if dry_run {
        return Ok(HttpResponse::Ok().json(record.to_json()));
    }
    Ok(record_response(&record, None))
}

async fn generate_order(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let store = store_of(&req)?;
    let order = generate::order(
        &store,
        caller.tenant()?,
        &body.0,
        &write_context(&req, &caller),
    )
    .await?;
    Ok(super::catalog::record_response(&order, None))
}

async fn preview_email(
    req: HttpRequest,
    caller: Caller,
    mailer: web::Data<Mailer>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let store = store_of(&req)?;
    let sent = email::preview(&store, &mailer, caller.tenant()?, &body.0).await?;
    Ok(HttpResponse::Ok().json(sent))
}

async fn search(
    req: HttpRequest,
    caller: Caller,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fieldsToReturn", "exclusiveStartKey", "limit"])?;
    let fields = query.projection::<RegistrationFields>("fieldsToReturn")?;
    let limit = query.limit()?;
    let criteria = SearchCriteria::parse(&body.0)?;
    let tenant = caller.tenant()?.clone();
    let start = query.start_key().map(str::to_owned);
    let page = blocking(&store_of(&req)?, move |s| {
        s.search_registrations(&tenant, &criteria, start.as_deref(), limit)
    })
    .await?;
    Ok(query_page_json(
        &req,
        &query,
        page.items.len(),
        page_capacity(page.items.len()),
        |out| write_items(out, &page.items, fields.as_deref()),
        page.next,
    ))
}

async fn batch(req: HttpRequest, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let store = store_of(&req)?;
    let report = crate::workflows::batch::run(
        &store,
        caller.tenant()?,
        &body.0,
        &write_context(&req, &caller),
    )
    .await?;
    let mut successes = 0;
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            let mut out = json!({"id": r.id, "op": r.op});
            match &r.result {
                Ok(()) => {
                    successes += 1;
                    out["status"] = json!(200);
                }
                Err(e) => {
                    out["status"] = json!(super::error::status_of(e.code).as_u16());
                    out["error"] = json!({"code": e.code.as_str(), "message": e.message});
                }
            }
            out
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "operation_id": report.operation_id,
        "success_count": successes,
        "error_count": results.len() - successes,
        "results": results,
    })))
}
