//! The catalog resources — `/contacts`, `/courses`, `/courseOfferings`,
//! `/registrationProcesses`, `/orders`, `/emailTemplates` — each `/{resource}/{tenantId}[/{id}]`,
//! served by one set of generic handlers.

use super::access::{Read, TenantCaller, Write};
use super::body::JsonBody;
use super::mount::Endpoint;
use super::query::{ListQuery, NoQuery, Query, RecordQuery};
use super::request::{etag, if_match, page_headers, store_of, write_context, IdPath};
use crate::domain::catalog::CatalogFields;
use crate::domain::catalog::{CatalogKind, CatalogRecord, SEATS_TAKEN};
use crate::domain::ids::TenantId;
use crate::domain::patch::parse_patch;
use crate::domain::record::project;
use crate::error::ApiError;
use crate::workflows::catalog as flow;
use crate::workflows::registrations::Change;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

/// Every catalog kind's endpoints, from `CatalogKind::ALL`.
pub fn endpoints() -> Vec<Endpoint> {
    CatalogKind::ALL
        .into_iter()
        .flat_map(|kind| crate::with_catalog_fields!(kind, F => endpoints_of::<F>()))
        .collect()
}

fn endpoints_of<F: CatalogFields>() -> [Endpoint; 2] {
    let base = format!("/{}/{{tenantId}}", F::KIND.resource());
    let mut collection = Endpoint::new(base.clone()).get(list::<F>);
    let mut item = Endpoint::new(format!("{base}/{{id}}"))
        .get(get_one::<F>)
        .patch(patch::<F>);
    // Orders are made by generateOrder: read, list and PATCH only.
    if F::KIND.client_owned() {
        collection = collection.post(create::<F>);
        item = item.put(replace::<F>).delete(delete::<F>);
    }
    [collection, item]
}

fn render<F: CatalogFields>(
    record: &CatalogRecord<F>,
    fields: Option<&[String]>,
    seats_taken: Option<u64>,
) -> Value {
    let mut json = record.to_json();
    if let Some(seats) = seats_taken {
        json.insert(SEATS_TAKEN.into(), Value::from(seats));
    }
    Value::Object(match fields {
        Some(fields) => project(json, fields),
        None => json,
    })
}

/// Records as the API shows them: whole, with what the server computes for their kind (an
/// offering's seats taken, read for all of them at once), or projected to `fields`.
async fn shown<F: CatalogFields>(
    req: &HttpRequest,
    tenant: &TenantId,
    records: &[&CatalogRecord<F>],
    fields: Option<&[String]>,
) -> Result<Vec<Value>, ApiError> {
    let seats = match fields {
        Some(_) => None,
        None => flow::seats_taken(&store_of(req)?, tenant, records).await?,
    };
    Ok(records
        .iter()
        .enumerate()
        .map(|(i, r)| render(r, fields, seats.as_ref().and_then(|s| s.get(i).copied())))
        .collect())
}

/// A record of a kind without computed fields (an order from generateOrder).
pub(super) fn record_response<F: CatalogFields>(
    record: &CatalogRecord<F>,
    fields: Option<&[String]>,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(etag(record.version()))
        .json(render(record, fields, None))
}

/// One record, as `shown`.
async fn one_response<F: CatalogFields>(
    req: &HttpRequest,
    tenant: &TenantId,
    record: &CatalogRecord<F>,
    fields: Option<&[String]>,
) -> Result<HttpResponse, ApiError> {
    let mut body = shown(req, tenant, &[record], fields).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(record.version()))
        .json(body.pop().unwrap_or_default()))
}

async fn create<F: CatalogFields>(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let record = flow::create::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &body.0,
        &write_context(&req, caller.principal()),
    )
    .await?;
    one_response(&req, caller.tenant(), &record, None).await
}

async fn list<F: CatalogFields>(
    caller: TenantCaller<Read>,
    query: Query<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let fields = query.projection::<F>("fields")?;
    let limit = query.limit()?;
    let start = query.start_key().map(str::to_owned);
    let page = flow::list::<F>(&store_of(&req)?, caller.tenant(), start, limit).await?;
    let records: Vec<&CatalogRecord<F>> = page.items.iter().collect();
    let items = shown(&req, caller.tenant(), &records, fields.as_deref()).await?;
    let mut response = HttpResponse::Ok();
    page_headers(&mut response, &req, &query, page.next.as_deref());
    Ok(response.json(items))
}

async fn get_one<F: CatalogFields>(
    caller: TenantCaller<Read>,
    query: Query<RecordQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let fields = query.projection::<F>("fields")?;
    query.flag("consistentRead")?;
    let record = flow::fetch::<F>(&store_of(&req)?, caller.tenant(), &id).await?;
    one_response(&req, caller.tenant(), &record, fields.as_deref()).await
}

async fn replace<F: CatalogFields>(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let record = flow::update::<F>(
        &store_of(&req)?,
        caller.tenant(),
        &id,
        Change::Replace(body.0),
        if_match(&req)?,
        &write_context(&req, caller.principal()),
    )
    .await?;
    one_response(&req, caller.tenant(), &record, None).await
}

async fn patch<F: CatalogFields>(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
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
    one_response(&req, caller.tenant(), &record, None).await
}

async fn delete<F: CatalogFields>(
    caller: TenantCaller<Write>,
    _: Query<NoQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
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

/// Every catalog kind, from `CatalogKind::ALL`, is routed, described, exported, imported and
/// checked: the places a kind must reach, tied together.
#[cfg(test)]
mod tests {
    use crate::domain::access::{Principal, WriteContext};
    use crate::domain::catalog::CatalogFields;
    use crate::domain::catalog::{CatalogInput, CatalogKind, CatalogRecord};
    use crate::domain::ids::{RecordId, TenantId};
    use crate::domain::tenant::{Limits, NewTenant};
    use crate::domain::transfer::{parse_line, parse_row, RecordKind};
    use crate::store::check::Scope;
    use crate::store::write::CreateCatalog;
    use crate::store::{Db, Durability, EngineChoice};
    use serde_json::{json, Value};

    #[test]
    fn every_kind_is_routed_and_described_with_the_methods_its_clients_have() {
        let routes = crate::http::route_table();
        let document = crate::http::openapi::document();
        let routed = |method: &str, path: &str| {
            routes
                .iter()
                .any(|r| r.method.as_str() == method && r.path == path)
        };
        let described =
            |method: &str, path: &str| document["paths"][path][method.to_lowercase()].is_object();
        for kind in CatalogKind::ALL {
            let collection = format!("/{}/{{tenantId}}", kind.resource());
            let item = format!("{collection}/{{id}}");
            let owned = kind.client_owned();
            for (method, path, expected) in [
                ("GET", &collection, true),
                ("POST", &collection, owned),
                ("GET", &item, true),
                ("PATCH", &item, true),
                ("PUT", &item, owned),
                ("DELETE", &item, owned),
            ] {
                assert_eq!(routed(method, path), expected, "route {method} {path}");
                assert_eq!(described(method, path), expected, "OpenAPI {method} {path}");
            }
            let schemas = &document["components"]["schemas"];
            assert!(schemas[kind.type_name()].is_object(), "{kind:?}");
            let input = format!("{}Input", kind.type_name());
            assert_eq!(schemas[input.as_str()].is_object(), owned, "{input}");
        }
        // Names are unique: each identifies one kind.
        for name in [
            CatalogKind::resource,
            CatalogKind::tag,
            CatalogKind::type_name,
        ] {
            let mut names: Vec<&str> = CatalogKind::ALL.into_iter().map(name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), CatalogKind::ALL.len());
        }
    }

    #[test]
    fn every_kind_is_exported_once_and_its_lines_read_back() {
        assert_eq!(RecordKind::EXPORT_ORDER.len(), CatalogKind::ALL.len() + 1);
        for kind in CatalogKind::ALL {
            let as_record = RecordKind::Catalog(kind);
            let exported = RecordKind::EXPORT_ORDER.iter().filter(|k| **k == as_record);
            assert_eq!(exported.count(), 1, "{kind:?} in the export order");
            assert_eq!(CatalogKind::from_tag(kind.tag()), Some(kind));
            assert_eq!(RecordKind::from_tag(kind.tag()), Some(as_record));
            let line = json!({"kind": kind.tag(), "record": {}}).to_string();
            assert_eq!(parse_line(line.as_bytes()).unwrap().0, as_record);
        }
    }

    fn ctx() -> WriteContext {
        WriteContext::new(Principal::Operator.actor())
    }

    async fn create<F: CatalogFields>(store: &Db, tenant: &TenantId, body: Value) -> String {
        let fields = CatalogInput::<F>::parse(&body).unwrap().fields;
        let record = CatalogRecord::create(RecordId::generate(), fields, &ctx()).unwrap();
        let id = record.id.to_string();
        store
            .create_catalog(CreateCatalog {
                tenant: tenant.clone(),
                record: F::into_any(record),
                ctx: ctx(),
            })
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn a_record_of_every_kind_is_checked_and_exports_as_a_row_that_imports() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&EngineChoice::embedded(
            dir.path().to_owned(),
            Durability::Relaxed,
        ))
        .unwrap();
        let tenant = TenantId::parse("kinds").unwrap();
        let new_tenant = NewTenant {
            id: tenant.clone(),
            limits: Limits::default(),
        };
        store.create_tenant(new_tenant, &ctx()).await.unwrap();
        let mut course = None;
        for kind in RecordKind::EXPORT_ORDER {
            let RecordKind::Catalog(kind) = kind else {
                continue;
            };
            // The smallest valid body of each kind (a new kind adds its arm here).
            let body = match kind {
                CatalogKind::Contact => json!({"name": "Ada"}),
                CatalogKind::Course => json!({"name": "Maths"}),
                CatalogKind::CourseOffering => json!({"course_id": course}),
                CatalogKind::RegistrationProcess => json!({"name": "Web", "course_id": course}),
                CatalogKind::EmailTemplate => json!({"name": "T", "subject": "S", "text": "x"}),
                CatalogKind::Order => json!({}),
            };
            let id =
                crate::with_catalog_fields!(kind, F => create::<F>(&store, &tenant, body).await);
            if kind == CatalogKind::Course {
                course = Some(id);
            }
        }

        let report = store
            .check(Scope::One(tenant.clone()), false)
            .await
            .unwrap();
        assert!(report.clean, "{:#?}", report.problems);
        for kind in CatalogKind::ALL {
            // Every tenant also has its default email template.
            let made = if kind == CatalogKind::EmailTemplate {
                2
            } else {
                1
            };
            assert_eq!(report.records.get(kind.resource()), Some(&made), "{kind:?}");

            let kind = RecordKind::Catalog(kind);
            let exported: Vec<_> = store.export_records(&tenant, kind).collect();
            assert_eq!(exported.len(), made as usize);
            for record in exported {
                let record = record.unwrap();
                assert_eq!(record.kind(), kind);
                let line = record.into_line();
                let (read, row) = parse_line(line.to_string().as_bytes()).unwrap();
                assert_eq!(read, kind);
                let parsed = parse_row(kind, &row, 1).unwrap();
                assert_eq!(parsed.draft.kind(), kind);
                assert!(parsed.given_id.is_some(), "an exported row restores its id");
            }
        }
    }
}
