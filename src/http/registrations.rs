//! `/courseRegistrations/{tenantId}`: create, list, get, replace, patch, delete and the lookups.

use super::access::{Read, TenantCaller, Write};
use super::body::JsonBody;
use super::mount::Endpoint;
use super::query::{DryRunQuery, ListQuery, NoQuery, Query, QueryParams, RecordQuery, SearchQuery};
use super::request::{
    decode_path_segment, etag, if_match, json_body, page_headers, query_page_json, store_of,
    write_context, GeneratePath, IdPath,
};
use crate::domain::patch::parse_patch;
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::search::SearchCriteria;
use crate::domain::values::{FieldValue, Text};
use crate::error::{ApiError, ErrorCode};
use crate::store::index::{IndexDef, REGISTRATION_INDEXES};
use crate::workflows::email::{self, Mailer};
use crate::workflows::generate;
use crate::workflows::registrations::{self as flow, Change};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub fn endpoints() -> Vec<Endpoint> {
    let scope = "/courseRegistrations/{tenantId}";
    let mut endpoints = vec![Endpoint::new(scope).post(create).get(list)];
    // Literal paths before `{id}`, which would match them too; `{id}` before the longer
    // paths, which it cannot match: actix tries routes in order, and GET by id is the most
    // frequent request (each route passed over costs a pattern match).
    endpoints.push(Endpoint::new(format!("{scope}/batch")).post(batch));
    endpoints.push(Endpoint::new(format!("{scope}/search")).post(search));
    endpoints.push(Endpoint::new(format!("{scope}/previewEmail")).post(preview_email));
    endpoints.push(Endpoint::new(format!("{scope}/generateOrder")).post(generate_order));
    endpoints.push(
        Endpoint::new(format!("{scope}/{{id}}"))
            .get(get_one)
            .put(replace)
            .patch(patch)
            .delete(delete),
    );
    // Each exposed lookup gets a route of its own from the index table, its handler bound to
    // its index: `/{lookup}/{field}...`. Two-field lookups first, as they always were.
    let exposed = REGISTRATION_INDEXES.iter().filter(|d| d.exposed);
    for def in exposed
        .clone()
        .filter(|d| d.fields.len() > 1)
        .chain(exposed.filter(|d| d.fields.len() == 1))
    {
        let segments: Vec<String> = def.fields.iter().map(|f| format!("{{{f}}}")).collect();
        endpoints.push(
            Endpoint::new(format!("{scope}/{}/{}", def.lookup, segments.join("/")))
                .get(move |caller: TenantCaller<Read>, req: HttpRequest| lookup(def, caller, req)),
        );
    }
    endpoints.push(
        Endpoint::new(format!(
            "{scope}/generateRegistration/{{processId}}/{{contactId}}"
        ))
        .post(generate_registration),
    );
    endpoints
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
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let record = flow::create(
        &store,
        caller.tenant(),
        &body.0,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn get_one(
    caller: TenantCaller<Read>,
    query: Query<RecordQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let fields = query.projection::<RegistrationFields>("fields")?;
    // Every read is strongly consistent; the flag is accepted and checked, nothing more.
    query.flag("consistentRead")?;
    let record = flow::fetch(&store_of(&req)?, caller.tenant(), &id).await?;
    Ok(record_response(&record, fields.as_deref()))
}

async fn replace(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant(),
        &id,
        Change::Replace(body.0),
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn patch(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let patch = parse_patch(&body.0)?;
    let store = store_of(&req)?;
    let record = flow::update(
        &store,
        caller.tenant(),
        &id,
        Change::Patch(patch),
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn delete(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    flow::delete(
        &store,
        caller.tenant(),
        &id,
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(id.as_str()))
}

async fn list(
    caller: TenantCaller<Read>,
    query: Query<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let fields = query.projection::<RegistrationFields>("fields")?;
    let limit = query.limit()?;
    let start = query.start_key().map(str::to_owned);
    let page = flow::list(&store_of(&req)?, caller.tenant(), start, limit).await?;
    let mut items = Vec::with_capacity(page_capacity(page.items.len()));
    write_items(&mut items, &page.items, fields.as_deref());
    let mut response = HttpResponse::Ok();
    page_headers(&mut response, &req, &query, page.next.as_deref());
    Ok(json_body(&mut response, items))
}

/// The values of lookup `def` from the request's path.
///
/// The values are read from the raw request path, not from `match_info`: actix's router
/// percent-decodes the path only in part (it keeps `%2F`, `%2B` and `%25` encoded so that the
/// route still matches), so a stored `a/b`, `p+x` or `pct%x` would never be found. Each raw
/// segment is decoded here exactly once, per RFC 3986. The route matched with these very
/// segments (actix never decodes a `/`), so they line up with the route's: `courseRegistrations`,
/// the tenant, the lookup name, then one segment per field of the lookup.
fn lookup_values(req: &HttpRequest, def: &IndexDef) -> Result<Vec<String>, ApiError> {
    let raw: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    if raw.len() != 3 + def.fields.len() {
        // Only a route of another shape could have sent this request here.
        return Err(ApiError::internal());
    }
    let values = def
        .fields
        .iter()
        .zip(&raw[3..])
        .map(|(field, segment)| {
            let value = decode_path_segment(segment)
                .map_err(|e| ApiError::new(ErrorCode::InvalidPath, format!("{field} {e}")))?;
            check_lookup_value(field, &value).map(|()| value)
        })
        .collect::<Result<_, _>>()?;
    Ok(values)
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

async fn lookup(
    def: &'static IndexDef,
    caller: TenantCaller<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let values = lookup_values(&req, def)?;
    let mut allowed = vec!["fields", "exclusiveStartKey", "limit"];
    if def.lookup == "courseOffering" {
        allowed.push("includeActiveOnly");
    }
    let query = QueryParams::parse(&req, &allowed)?;
    let fields = query.projection::<RegistrationFields>("fields")?;
    let limit = query.limit()?;
    let active_only = query.flag("includeActiveOnly")?;
    let start = query.start_key().map(str::to_owned);
    let page = flow::lookup(
        &store_of(&req)?,
        caller.tenant(),
        def,
        values,
        active_only,
        start,
        limit,
    )
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

async fn generate_registration(
    caller: TenantCaller<Write>,
    query: Query<DryRunQuery>,
    GeneratePath { process, contact }: GeneratePath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let dry_run = query.flag("dryRun")?;
    let store = store_of(&req)?;
    let record = generate::registration(
        &store,
        caller.tenant(),
        &process,
        &contact,
        &write_context(&req, caller.principal()),
        dry_run,
    )
    .await?;
    if dry_run {
        return Ok(HttpResponse::Ok().json(record.to_json()));
    }
    Ok(record_response(&record, None))
}

async fn generate_order(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let order = generate::order(
        &store,
        caller.tenant(),
        &body.0,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(super::catalog::record_response(&order, None))
}

async fn preview_email(
    caller: TenantCaller<Write>,
    query: Query<DryRunQuery>,
    req: HttpRequest,
    mailer: web::Data<Mailer>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let dry_run = query.flag("dryRun")?;
    let sent = email::preview(&store, &mailer, caller.tenant(), &body.0, dry_run).await?;
    Ok(HttpResponse::Ok().json(sent))
}

async fn search(
    caller: TenantCaller<Read>,
    query: Query<SearchQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let fields = query.projection::<RegistrationFields>("fieldsToReturn")?;
    let limit = query.limit()?;
    let criteria = SearchCriteria::parse(&body.0)?;
    let start = query.start_key().map(str::to_owned);
    let page = flow::search(&store_of(&req)?, caller.tenant(), criteria, start, limit).await?;
    Ok(query_page_json(
        &req,
        &query,
        page.items.len(),
        page_capacity(page.items.len()),
        |out| write_items(out, &page.items, fields.as_deref()),
        page.next,
    ))
}

async fn batch(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let store = store_of(&req)?;
    let report = crate::workflows::batch::run(
        &store,
        caller.tenant(),
        &body.0,
        &write_context(&req, caller.principal()),
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

#[cfg(test)]
mod tests {
    use crate::domain::catalog::CatalogKind;
    use crate::domain::transfer::RecordKind;
    use crate::store::index::REGISTRATION_INDEXES;

    /// The literal segments of every route under `scope` (`/{resource}/{tenantId}`).
    fn literal_segments(scope: &str) -> Vec<String> {
        let prefix = format!("{scope}/");
        crate::http::route_table()
            .iter()
            .filter_map(|route| route.path.strip_prefix(prefix.as_str()).map(str::to_owned))
            .flat_map(|rest| {
                rest.split('/')
                    .filter(|s| !s.starts_with('{'))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn no_record_id_an_import_takes_can_be_a_route_or_lookup_name() {
        let kinds = std::iter::once((RecordKind::Registration, "courseRegistrations")).chain(
            CatalogKind::ALL
                .into_iter()
                .map(|kind| (RecordKind::Catalog(kind), kind.resource())),
        );
        for (kind, resource) in kinds {
            let literals = literal_segments(&format!("/{resource}/{{tenantId}}"));
            assert!(!literals.is_empty() || kind != RecordKind::Registration);
            for literal in literals {
                assert!(
                    kind.reserved_ids().contains(&literal.as_str()),
                    "/{resource}/{{tenantId}}/…/{literal}…: \"{literal}\" is not reserved"
                );
            }
        }
        for def in REGISTRATION_INDEXES {
            assert!(
                RecordKind::Registration
                    .reserved_ids()
                    .contains(&def.lookup),
                "lookup {} is not reserved",
                def.lookup
            );
        }
    }
}
