//! The catalog resources — `/contacts`, `/courses`, `/courseOfferings`,
//! `/registrationProcesses`, `/orders`, `/emailTemplates` — each `/{resource}/{tenantId}[/{id}]`,
//! served by one set of generic handlers.

use super::access::{Read, TenantCaller, Write};
use super::body::JsonBody;
use super::mount::Endpoint;
use super::query::QueryParams;
use super::request::{etag, if_match, page_headers, path_id, store_of, write_context};
use crate::domain::catalog::{
    CatalogRecord, ContactFields, CourseFields, CourseOfferingFields, EmailTemplateFields,
    OrderFields, RegistrationProcessFields,
};
use crate::domain::patch::parse_patch;
use crate::domain::record::project;
use crate::error::ApiError;
use crate::store::catalog::{CatalogHooks, CatalogPage};
use crate::workflows::blocking;
use crate::workflows::catalog as flow;
use crate::workflows::registrations::Change;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

pub fn endpoints() -> Vec<Endpoint> {
    [
        endpoints_of::<ContactFields>(true),
        endpoints_of::<CourseFields>(true),
        endpoints_of::<CourseOfferingFields>(true),
        endpoints_of::<RegistrationProcessFields>(true),
        endpoints_of::<EmailTemplateFields>(true),
        // Orders are made by generateOrder: read, list and PATCH only.
        endpoints_of::<OrderFields>(false),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn endpoints_of<F: CatalogHooks>(client_owned: bool) -> [Endpoint; 2] {
    let base = format!("/{}/{{tenantId}}", F::KIND.resource());
    let mut collection = Endpoint::new(base.clone()).get(list::<F>);
    let mut item = Endpoint::new(format!("{base}/{{id}}"))
        .get(get_one::<F>)
        .patch(patch::<F>);
    if client_owned {
        collection = collection.post(create::<F>);
        item = item.put(replace::<F>).delete(delete::<F>);
    }
    [collection, item]
}

fn render<F: CatalogHooks>(record: &CatalogRecord<F>, fields: Option<&[String]>) -> Value {
    let json = record.to_json();
    Value::Object(match fields {
        Some(fields) => project(json, fields),
        None => json,
    })
}

pub(super) fn record_response<F: CatalogHooks>(
    record: &CatalogRecord<F>,
    fields: Option<&[String]>,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(etag(record.version()))
        .json(render(record, fields))
}

async fn create<F: CatalogHooks>(
    caller: TenantCaller<Write>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let record = flow::create::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &body.0,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn list<F: CatalogHooks>(
    caller: TenantCaller<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "exclusiveStartKey", "limit"])?;
    let fields = query.projection::<F>("fields")?;
    let limit = query.limit()?;
    let tenant = caller.tenant().clone();
    let start = query.start_key().map(str::to_owned);
    let page: CatalogPage<F> = blocking(&store_of(&req)?, move |s| {
        s.list_catalog::<F>(&tenant, start.as_deref(), limit)
    })
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| render(r, fields.as_deref()))
        .collect();
    let mut response = HttpResponse::Ok();
    page_headers(&mut response, &req, &query, page.next.as_deref());
    Ok(response.json(items))
}

async fn get_one<F: CatalogHooks>(
    caller: TenantCaller<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = QueryParams::parse(&req, &["fields", "consistentRead"])?;
    let fields = query.projection::<F>("fields")?;
    query.flag("consistentRead")?;
    let id = path_id(&req, "id")?;
    let record = flow::fetch::<F>(&store_of(&req)?, caller.tenant(), &id).await?;
    Ok(record_response(&record, fields.as_deref()))
}

async fn replace<F: CatalogHooks>(
    caller: TenantCaller<Write>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    let record = flow::update::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &id,
        Change::Replace(body.0),
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn patch<F: CatalogHooks>(
    caller: TenantCaller<Write>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    let patch = parse_patch(&body.0)?;
    let record = flow::update::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &id,
        Change::Patch(patch),
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(record_response(&record, None))
}

async fn delete<F: CatalogHooks>(
    caller: TenantCaller<Write>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(&req, &[])?;
    let id = path_id(&req, "id")?;
    flow::delete::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &id,
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(id.as_str()))
}
