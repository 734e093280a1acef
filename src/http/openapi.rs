//! `GET /openapi.json`: the API as OpenAPI 3.1, built from the same types and tables the server
//! runs on: record schemas come from each field's value type (`FieldValue::schema`), request
//! bodies from the parsers' own schemas, lookups from `REGISTRATION_INDEXES`, catalog paths from
//! `CatalogKind::ALL`, and each error status's list of codes from `status_of`. A field, lookup,
//! kind or error code added to the code shows up here without anyone editing this file.
//!
//! It is also written for code generators (docs/API.md, "Clients"): one shared `Error` schema,
//! no recursive schema, alternatives as named components, no `allOf` on a field; CI generates
//! Python and TypeScript clients from it and runs the README's scenario through them.
//!
//! `GET /docs` renders it with a page and script compiled into the binary (no CDN).

use super::error::status_of;
use crate::domain::batch::BatchRequest;
use crate::domain::catalog::{CatalogFields, CatalogKind, CatalogRecord};
use crate::domain::email::PreviewEmail;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::patch::patch_schema;
use crate::domain::record::Fields;
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{tenant_patch_schema, ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::values::MAX_TEXT_CHARS;
use crate::domain::webhook::{DeliveryAttempt, EndpointPatch, NewEndpoint, WebhookEndpoint};
use crate::error::ErrorCode;
use crate::http::query::MAX_LIMIT;
use crate::store::check::CheckReport;
use crate::store::index::REGISTRATION_INDEXES;
use crate::workflows::check::CheckRequest;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

pub fn endpoints() -> Vec<super::mount::Endpoint> {
    use super::mount::Endpoint;
    vec![
        Endpoint::new("/openapi.json").get(openapi_json),
        Endpoint::new("/docs").get(docs_page),
        Endpoint::new("/docs/docs.js").get(docs_script),
    ]
}

async fn openapi_json(_: super::access::Public) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_text())
}

async fn docs_page(_: super::access::Public) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("docs/index.html"))
}

async fn docs_script(_: super::access::Public) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("docs/docs.js"))
}

/// The document as served: built once, it only depends on the code.
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| document().to_string())
}

const TENANT_TAG: &str = "Course registrations";
const CATALOG_TAG: &str = "Catalog";
const ADMIN_TAG: &str = "Administration";
const SERVICE_TAG: &str = "Service";

/// Which requests an operation takes, for its documented error statuses.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A read (GET): no body.
    Read,
    /// A change with a JSON body.
    WriteBody,
    /// A change without a body (DELETE, generateRegistration).
    Write,
    /// A read with a JSON body (search).
    ReadBody,
}

struct Operation {
    method: &'static str,
    path: String,
    id: String,
    summary: String,
    tag: &'static str,
    kind: Kind,
    params: Vec<Value>,
    body: Option<Value>,
    /// Whether a request may leave the body out.
    body_optional: bool,
    /// The success status, its description, its schema, and whether it carries an ETag.
    ok: (u16, &'static str, Value),
    etag: bool,
    /// Whether every success answer has the ETag (a dry run's has none).
    etag_always: bool,
    paged: bool,
    links: Option<Value>,
    /// Answered without a key (`/healthz`, the documents themselves).
    public: bool,
    /// Statuses beyond those of `kind`.
    extra: &'static [u16],
    /// The success answer's media type.
    media: &'static str,
    /// Further media types of the success answer, same schema.
    more_media: &'static [&'static str],
    /// The request body's media types.
    body_media: &'static [&'static str],
    /// What an error status means for this operation in particular, over the shared
    /// response's description (OpenAPI 3.1 lets a reference override it).
    error_notes: Vec<(u16, String)>,
}

impl Operation {
    fn new(method: &'static str, path: impl Into<String>, id: impl Into<String>) -> Self {
        Operation {
            method,
            path: path.into(),
            id: id.into(),
            summary: String::new(),
            tag: TENANT_TAG,
            kind: if method == "get" {
                Kind::Read
            } else {
                Kind::WriteBody
            },
            params: Vec::new(),
            body: None,
            body_optional: false,
            ok: (200, "OK", json!({})),
            etag: false,
            etag_always: true,
            paged: false,
            links: None,
            public: false,
            extra: &[],
            media: "application/json",
            more_media: &[],
            body_media: &["application/json"],
            error_notes: Vec::new(),
        }
    }
    fn summary(mut self, text: impl Into<String>) -> Self {
        self.summary = text.into();
        self
    }
    fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }
    fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
    fn param(mut self, param: Value) -> Self {
        self.params.push(param);
        self
    }
    fn body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self
    }
    /// A body that may be left out.
    fn optional_body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self.body_optional = true;
        self
    }
    fn ok(mut self, status: u16, description: &'static str, schema: Value) -> Self {
        self.ok = (status, description, schema);
        self
    }
    fn etag(mut self) -> Self {
        self.etag = true;
        self
    }
    /// An ETag on the answers that stored a record.
    fn etag_when_stored(mut self) -> Self {
        self.etag = true;
        self.etag_always = false;
        self
    }
    fn paged(mut self) -> Self {
        self.paged = true;
        self
    }
    fn links(mut self, links: Value) -> Self {
        self.links = Some(links);
        self
    }
    fn public(mut self) -> Self {
        self.public = true;
        self
    }
    fn media(mut self, media: &'static str) -> Self {
        self.media = media;
        self
    }
    fn more_media(mut self, media: &'static [&'static str]) -> Self {
        self.more_media = media;
        self
    }
    fn body_media(mut self, media: &'static [&'static str]) -> Self {
        self.body_media = media;
        self
    }
    fn error_note(mut self, status: u16, text: impl Into<String>) -> Self {
        self.error_notes.push((status, text.into()));
        self
    }
    fn extra(mut self, statuses: &'static [u16]) -> Self {
        self.extra = statuses;
        self
    }

    fn statuses(&self) -> Vec<u16> {
        let mut statuses: Vec<u16> = if self.public {
            vec![400, 500]
        } else {
            vec![400, 401, 403, 404, 429, 500, 503]
        };
        match self.kind {
            Kind::Read => {}
            Kind::ReadBody => statuses.extend([408, 413, 415]),
            Kind::Write => statuses.push(409),
            Kind::WriteBody => statuses.extend([408, 409, 413, 415]),
        }
        statuses.extend(self.extra);
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    fn to_json(&self) -> Value {
        let mut responses = Map::new();
        let mut headers = request_id_header();
        if self.etag {
            headers.insert(
                "ETag".into(),
                json!({
                    "description": "The record's sys_version, quoted: send it back in If-Match.",
                    "required": self.etag_always,
                    "schema": {"type": "string", "pattern": "^\"[0-9]+\"$"},
                }),
            );
        }
        if self
            .params
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
        {
            headers.insert(
                "Idempotent-Replayed".into(),
                json!({
                    "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
                    "schema": {"type": "string", "enum": ["true"]},
                }),
            );
        }
        if self.paged {
            headers.insert(
                "X-Last-Evaluated-Key".into(),
                json!({
                    "description": "Present when more pages exist: pass it as exclusiveStartKey.",
                    "schema": {"type": "string"},
                }),
            );
            headers.insert(
                "Link".into(),
                json!({
                    "description": "Present when more pages exist: `<url>; rel=\"next\"`, this request's path and query with the next exclusiveStartKey (for a search, POST the same criteria to it).",
                    "schema": {"type": "string"},
                }),
            );
        }
        let (status, description, schema) = &self.ok;
        let mut content = Map::new();
        for media in std::iter::once(&self.media).chain(self.more_media) {
            let schema = if *media == "text/event-stream" {
                json!({
                    "type": "string",
                    "description": "Server-sent events: one `event: change` per event, `id:` its cursor, `data:` the ChangeEvent as JSON; a `: heartbeat` comment every 15 s while idle. Resume with Last-Event-ID.",
                })
            } else {
                schema.clone()
            };
            content.insert((*media).to_owned(), json!({"schema": schema}));
        }
        let mut ok = json!({
            "description": description,
            "headers": headers,
            "content": content,
        });
        if let Some(links) = &self.links {
            ok["links"] = links.clone();
        }
        responses.insert(status.to_string(), ok);
        for status in self.statuses() {
            let mut response = json!({"$ref": format!("#/components/responses/Error{status}")});
            if let Some((_, note)) = self.error_notes.iter().find(|(s, _)| *s == status) {
                response["description"] = json!(note);
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": self.params,
            "responses": responses,
        });
        if self.public {
            operation["security"] = json!([]);
        }
        if let Some(body) = &self.body {
            let content: Map<String, Value> = self
                .body_media
                .iter()
                .map(|media| ((*media).to_owned(), json!({"schema": body})))
                .collect();
            operation["requestBody"] = json!({"required": !self.body_optional, "content": content});
        }
        operation
    }
}

fn request_id_header() -> Map<String, Value> {
    let mut headers = Map::new();
    headers.insert(
        "X-Request-Id".into(),
        json!({
            "description": "The client's X-Request-Id when it is 1-128 of [A-Za-z0-9-_.:/+=], else a new ULID.",
            "required": true,
            "schema": {"type": "string"},
        }),
    );
    headers
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn tenant_param() -> Value {
    path_param("tenantId", TenantId::schema())
}

fn id_param(name: &str) -> Value {
    path_param(name, RecordId::schema())
}

/// `fields` / `fieldsToReturn`: `id` and field names, repeated (`fields=a&fields=b`, what
/// generated clients send by default) or comma-separated (`fields=a,b`); the server takes both.
fn projection_param<F: Fields>(name: &str) -> Value {
    let mut names = vec!["id"];
    names.extend_from_slice(F::NAMES);
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": "Return only `id` and these fields: repeated (`a&b`) or comma-separated (`a,b`).",
        "style": "form",
        "explode": true,
        "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": names}},
    })
}

fn flag_param(name: &str, description: &str) -> Value {
    query_param(name, description, json!({"type": "boolean"}))
}

fn page_params(op: Operation) -> Operation {
    op.param(query_param(
        "exclusiveStartKey",
        "The LastEvaluatedKey of the previous page (an opaque, signed token).",
        json!({"type": "string"}),
    ))
    .param(query_param(
        "limit",
        "Most items on this page (default 100).",
        json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    ))
    .paged()
}

fn if_match_param() -> Value {
    json!({
        "name": "If-Match",
        "in": "header",
        "required": false,
        "description": "The ETag (sys_version) the change expects; `*` for any.",
        "schema": {"type": "string"},
    })
}

fn idempotency_param() -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Replays the first answer for 24 h; the same key with another body: 409 idempotency_mismatch.",
        "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn page_schema(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["Count", "Items"],
        "properties": {
            "Count": {"type": "integer", "minimum": 0},
            "Items": {"type": "array", "items": schema_ref(item)},
            "LastEvaluatedKey": {"type": "string"},
        },
        "additionalProperties": false,
    })
}

/// Links from a create to the operations on what it made, for clients and stateful testers.
fn item_links(prefix: &str) -> Value {
    let mut links = Map::new();
    for verb in ["get", "replace", "patch", "delete"] {
        links.insert(
            format!("{verb}{prefix}"),
            json!({
                "operationId": format!("{verb}{prefix}"),
                "parameters": {"tenantId": "$request.path.tenantId", "id": "$response.body#/id"},
            }),
        );
    }
    Value::Object(links)
}

fn registration_operations() -> Vec<Operation> {
    let base = "/courseRegistrations/{tenantId}";
    let fields = || projection_param::<RegistrationFields>("fields");
    let mut ops = record_operations::<RegistrationFields>(
        "courseRegistrations",
        "CourseRegistration",
        TENANT_TAG,
        true,
    );
    ops.extend([
        page_params(
            Operation::new(
                "post",
                format!("{base}/search"),
                "searchCourseRegistrations",
            )
            .summary("Search course registrations: every given criterion must hold")
            .kind(Kind::ReadBody)
            .param(tenant_param())
            .param(projection_param::<RegistrationFields>("fieldsToReturn"))
            .body(SearchCriteria::schema()),
        )
        .ok(200, "A page of matches", page_schema("CourseRegistration")),
        Operation::new("post", format!("{base}/batch"), "batchCourseRegistrations")
            .summary("Patch and delete up to 100 registrations, each on its own or atomically")
            .param(tenant_param())
            .param(idempotency_param())
            .body(BatchRequest::schema())
            .ok(
                200,
                "One result per operation, in request order",
                schema_ref("BatchResult"),
            ),
        Operation::new("post", format!("{base}/generateOrder"), "generateOrder")
            .summary("Create the order of a registration (a stored one by id, or a new one)")
            .param(tenant_param())
            .param(idempotency_param())
            .body(json!({"anyOf": [
                {
                    "type": "object",
                    "description": "A stored registration, by id; other fields are not read.",
                    "required": ["id"],
                    "properties": {"id": RecordId::schema()},
                },
                schema_ref("CourseRegistrationInput"),
            ]}))
            .ok(200, "The order", schema_ref("Order"))
            .etag(),
        Operation::new(
            "post",
            format!("{base}/generateRegistration/{{processId}}/{{contactId}}"),
            "generateRegistration",
        )
        .summary("Create a registration from a registration process and a contact")
        .kind(Kind::Write)
        .param(tenant_param())
        .param(id_param("processId"))
        .param(id_param("contactId"))
        .param(flag_param(
            "dryRun",
            "Build the registration without saving it.",
        ))
        .param(idempotency_param())
        .ok(200, "The registration", schema_ref("CourseRegistration"))
        .etag_when_stored(),
        Operation::new("post", format!("{base}/previewEmail"), "previewEmail")
            .summary("Render an email template for a registration and send it")
            .param(tenant_param())
            .param(flag_param(
                "dryRun",
                "Render only: nothing is sent or kept (a template editor's preview).",
            ))
            .param(idempotency_param())
            .body(PreviewEmail::schema())
            .ok(200, "The message as sent", schema_ref("SentEmail"))
            .extra(&[502]),
    ]);
    let properties = RegistrationFields::property_schemas();
    let lookup_param = |field: &str| {
        let mut schema = properties
            .get(field)
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}));
        if schema.get("maxLength").is_some() {
            schema["maxLength"] = json!(super::registrations::MAX_LOOKUP_VALUE_CHARS);
        }
        let mut param = path_param(field, schema);
        param["description"] = json!(
            "The value, percent-encoded; decoded exactly once (RFC 3986), so `/`, `+` and `%` are sent as %2F, %2B and %25 (a bare + is a plus)."
        );
        param
    };
    for def in REGISTRATION_INDEXES.iter().filter(|d| d.exposed) {
        let path = def
            .fields
            .iter()
            .fold(format!("{base}/{}", def.lookup), |path, field| {
                format!("{path}/{{{field}}}")
            });
        let mut op = Operation::new("get", path, format!("lookupBy_{}", def.lookup))
            .summary(format!("Registrations by {}", def.fields.join(" and ")))
            .param(tenant_param());
        for field in def.fields {
            op = op.param(lookup_param(field));
        }
        op = op.param(fields());
        if def.lookup == "courseOffering" {
            op = op.param(flag_param(
                "includeActiveOnly",
                "Only registrations whose status is registered, in progress, attended or completed.",
            ));
        }
        ops.push(page_params(op).ok(
            200,
            "A page of registrations, in id order",
            page_schema("CourseRegistration"),
        ));
    }
    ops
}

/// The operations every record resource has: list, get and patch, and when clients own the
/// records, create, replace and delete. `name` is the record's schema (`{name}Input` its body).
fn record_operations<F: Fields>(
    resource: &str,
    name: &str,
    tag: &'static str,
    client_owned: bool,
) -> Vec<Operation> {
    let base = format!("/{resource}/{{tenantId}}");
    let item = format!("{base}/{{id}}");
    let fields = || projection_param::<F>("fields");
    let on_item = |method, verb: &str, summary: String| {
        Operation::new(method, item.clone(), format!("{verb}{name}"))
            .summary(summary)
            .tag(tag)
            .param(tenant_param())
            .param(id_param("id"))
    };
    let mut ops = vec![
        page_params(
            Operation::new("get", base.clone(), format!("list{name}"))
                .summary(format!("List {resource}, in id order"))
                .tag(tag)
                .param(tenant_param())
                .param(fields()),
        )
        .ok(
            200,
            "A page of records, in id order",
            json!({"type": "array", "items": schema_ref(name)}),
        ),
        on_item("get", "get", format!("Get one of {resource}"))
            .param(fields())
            .param(flag_param(
                "consistentRead",
                "Accepted for compatibility: every read is strongly consistent.",
            ))
            .ok(200, "The record", schema_ref(name))
            .etag(),
        on_item(
            "patch",
            "patch",
            format!("Change one of {resource} with a JSON Patch"),
        )
        .param(if_match_param())
        .body(patch_schema())
        .body_media(&["application/json-patch+json", "application/json"])
        .ok(200, "The stored record", schema_ref(name))
        .etag(),
    ];
    if client_owned {
        let input = schema_ref(&format!("{name}Input"));
        ops.push(
            Operation::new("post", base, format!("create{name}"))
                .summary(format!("Create one of {resource}"))
                .tag(tag)
                .param(tenant_param())
                .param(idempotency_param())
                .body(input.clone())
                .ok(200, "The stored record", schema_ref(name))
                .etag()
                .links(item_links(name)),
        );
        ops.push(
            on_item("put", "replace", format!("Replace one of {resource}"))
                .param(if_match_param())
                .body(input)
                .ok(200, "The stored record", schema_ref(name))
                .etag(),
        );
        ops.push(
            on_item(
                "delete",
                "delete",
                format!("Delete one of {resource} (409 while others depend on it)"),
            )
            .kind(Kind::Write)
            .param(if_match_param())
            .ok(200, "The deleted id", RecordId::schema()),
        );
    }
    ops
}

fn catalog_operations<F: CatalogFields>() -> Vec<Operation> {
    record_operations::<F>(
        F::KIND.resource(),
        F::KIND.type_name(),
        CATALOG_TAG,
        F::KIND.client_owned(),
    )
}

fn webhook_operations() -> Vec<Operation> {
    let tenant = || path_param("tenantId", TenantId::schema());
    let hook = || path_param("webhookId", json!({"type": "string"}));
    let base = "/admin/tenants/{tenantId}/webhooks";
    vec![
        Operation::new("post", base, "createWebhook")
            .summary(
                "Register a webhook endpoint (operator, or the tenant's admin key): the tenant's \
                 change events from now on are posted to it, signed per Standard Webhooks. A URL \
                 that resolves to a loopback, private or link-local address is refused \
                 (400 webhook_url_refused) unless the server allows them.",
            )
            .tag(ADMIN_TAG)
            .param(tenant())
            .body(NewEndpoint::schema())
            .ok(
                201,
                "The endpoint, with its signing secret (shown only here)",
                WebhookEndpoint::schema(true),
            ),
        Operation::new("get", base, "listWebhooks")
            .summary("List a tenant's webhook endpoints, never their secrets")
            .tag(ADMIN_TAG)
            .param(tenant())
            .ok(
                200,
                "The endpoints",
                json!({"type": "array", "items": schema_ref("Webhook")}),
            ),
        Operation::new("get", format!("{base}/{{webhookId}}"), "getWebhook")
            .summary("One webhook endpoint: disabled_reason says why the server disabled it")
            .tag(ADMIN_TAG)
            .param(tenant())
            .param(hook())
            .ok(200, "The endpoint", schema_ref("Webhook")),
        Operation::new("patch", format!("{base}/{{webhookId}}"), "patchWebhook")
            .summary("Change a webhook endpoint: url, kinds, description; enabled: true resumes one the server disabled, from where it stopped")
            .tag(ADMIN_TAG)
            .param(tenant())
            .param(hook())
            .body(EndpointPatch::schema())
            .ok(200, "The endpoint", schema_ref("Webhook")),
        Operation::new("delete", format!("{base}/{{webhookId}}"), "deleteWebhook")
            .summary("Remove a webhook endpoint and its delivery log")
            .tag(ADMIN_TAG)
            .kind(Kind::Write)
            .param(tenant())
            .param(hook())
            .ok(200, "The removed endpoint's id", json!({"type": "string"})),
        page_params(
            Operation::new(
                "get",
                format!("{base}/{{webhookId}}/deliveries"),
                "listWebhookDeliveries",
            )
            .summary("A webhook endpoint's delivery attempts, newest first (the newest 1000 are kept)")
            .tag(ADMIN_TAG)
            .param(tenant())
            .param(hook())
            .ok(200, "A page of attempts", page_schema("WebhookDelivery")),
        ),
        Operation::new(
            "post",
            format!("{base}/{{webhookId}}/deliveries/{{deliveryId}}/retry"),
            "retryWebhookDelivery",
        )
        .summary(
            "Send the event of an attempt again, now (the queue's order and schedule stay as \
             they are); 410 event_gone when the event is past retention",
        )
        .tag(ADMIN_TAG)
        .kind(Kind::Write)
        .param(tenant())
        .param(hook())
        .param(path_param("deliveryId", json!({"type": "string"})))
        .extra(&[410])
        .ok(200, "The new attempt", schema_ref("WebhookDelivery")),
    ]
}

fn admin_operations() -> Vec<Operation> {
    let tenant = || path_param("tenantId", TenantId::schema());
    vec![
        Operation::new("post", "/admin/tenants", "createTenant")
            .summary("Create a tenant (operator key)")
            .tag(ADMIN_TAG)
            .body(NewTenant::schema())
            .ok(201, "The tenant", schema_ref("Tenant")),
        Operation::new("get", "/admin/tenants", "listTenants")
            .summary("List tenants (operator key)")
            .tag(ADMIN_TAG)
            .ok(
                200,
                "Every tenant",
                json!({"type": "array", "items": schema_ref("Tenant")}),
            ),
        Operation::new("get", "/admin/tenants/{tenantId}", "getTenant")
            .summary("Get a tenant (operator, or the tenant's admin key)")
            .tag(ADMIN_TAG)
            .param(tenant())
            .ok(200, "The tenant", schema_ref("Tenant")),
        Operation::new("patch", "/admin/tenants/{tenantId}", "patchTenant")
            .summary("Change a tenant's limits (operator key)")
            .tag(ADMIN_TAG)
            .param(tenant())
            .body(tenant_patch_schema())
            .ok(200, "The tenant", schema_ref("Tenant")),
        Operation::new("post", "/admin/tenants/{tenantId}/keys", "createKey")
            .summary("Make an API key for a tenant (operator, or the tenant's admin key)")
            .tag(ADMIN_TAG)
            .param(tenant())
            .body(NewKey::schema())
            .ok(
                201,
                "The key, with its secret (shown only here)",
                ApiKey::schema(true),
            ),
        Operation::new("get", "/admin/tenants/{tenantId}/keys", "listKeys")
            .summary("List a tenant's keys, never their secrets")
            .tag(ADMIN_TAG)
            .param(tenant())
            .ok(
                200,
                "The keys",
                json!({"type": "array", "items": ApiKey::schema(false)}),
            ),
        Operation::new(
            "delete",
            "/admin/tenants/{tenantId}/keys/{keyId}",
            "revokeKey",
        )
        .summary("Revoke a key, at once")
        .tag(ADMIN_TAG)
        .kind(Kind::Write)
        .param(tenant())
        .param(path_param("keyId", json!({"type": "string"})))
        .ok(200, "The revoked key's id", json!({"type": "string"})),
        Operation::new("post", "/admin/check", "checkConsistency")
            .summary(
                "Check indexes, slots and counters against the records, and repair them when \
                 asked (operator key). Runs on the write path: writes wait until it is done.",
            )
            .tag(ADMIN_TAG)
            // A body without conflicts: the statuses of a search.
            .kind(Kind::ReadBody)
            .optional_body(CheckRequest::schema())
            .ok(
                200,
                "The report: every problem by tenant, tree and record; what a repair changed and what remains",
                schema_ref("CheckReport"),
            ),
        Operation::new("get", "/admin/tenants/{tenantId}/export", "exportTenant")
            .summary(
                "Every record of a tenant, streamed (operator, or the tenant's admin key): \
                 NDJSON lines {kind, record}, catalog first in dependency order, then \
                 registrations; or CSV of the registrations (format=csv)",
            )
            .tag(ADMIN_TAG)
            .param(tenant())
            .param(query_param(
                "format",
                "ndjson (the default) or csv",
                json!({"type": "string", "enum": ["ndjson", "csv"]}),
            ))
            .media("application/x-ndjson")
            .more_media(&["text/csv"])
            .ok(200, "The records", json!({"type": "string"})),
        Operation::new("post", "/admin/tenants/{tenantId}/import", "importTenant")
            .summary(
                "Import records into a tenant (operator key): NDJSON (any kind) or CSV \
                 (registrations); each bad row is reported, the others land",
            )
            .tag(ADMIN_TAG)
            .param(tenant())
            .param(flag_param(
                "allOrNothing",
                "Write nothing when any row is refused.",
            ))
            .param(query_param(
                "sourceFile",
                "A file name kept in each registration's sys_bulk_load_source_file.",
                json!({"type": "string", "maxLength": 1024}),
            ))
            .body(json!({"type": "string"}))
            .body_media(&["application/x-ndjson", "text/csv"])
            .ok(
                200,
                "What was imported and which rows were refused, and why",
                super::transfer::import_report_schema(),
            ),
        Operation::new("post", "/admin/backup", "backup")
            .summary("Copy the whole database, consistently, into a new directory on the server (operator key)")
            .tag(ADMIN_TAG)
            .body(super::transfer::backup_schema())
            .ok(
                200,
                "What was copied",
                json!({
                    "type": "object",
                    "required": ["to", "trees", "entries"],
                    "properties": {
                        "to": {"type": "string"},
                        "trees": {"type": "integer", "minimum": 0},
                        "entries": {"type": "integer", "minimum": 0},
                    },
                    "additionalProperties": false,
                }),
            ),
    ]
}

fn service_operations() -> Vec<Operation> {
    vec![
        Operation::new("get", "/healthz", "healthz")
            .summary("Ready: the database is open; `degraded` with the reason while writes fail (a full disk) and reads still work")
            .tag(SERVICE_TAG)
            .public()
            .ok(
                200,
                "Ready",
                json!({
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"enum": ["ok", "degraded"]},
                        "reason": {"type": "string", "description": "why writes fail (only with `degraded`)"},
                    },
                }),
            ),
        Operation::new("get", "/whoami", "whoami")
            .summary("Who the presented key is: the operator, or a tenant's key with its tenant, id and role (any valid key)")
            .tag(SERVICE_TAG)
            .ok(
                200,
                "The key's principal",
                json!({
                    "type": "object",
                    "required": ["principal", "role"],
                    "properties": {
                        "principal": {"enum": ["operator", "tenant_key"]},
                        "role": {"enum": ["read", "write", "admin"]},
                        "tenant_id": {"type": "string", "description": "the key's tenant (tenant keys only)"},
                        "key_id": {"type": "string", "description": "the key's id (tenant keys only)"},
                    },
                }),
            ),
        Operation::new("get", "/metrics", "metrics")
            .summary("Prometheus metrics: requests by route and status, latencies, store size, flushes (operator key)")
            .tag(SERVICE_TAG)
            .media("text/plain; version=0.0.4")
            .ok(200, "Prometheus text exposition", json!({"type": "string"})),
        Operation::new("get", "/openapi.json", "openapi")
            .summary("This document")
            .tag(SERVICE_TAG)
            .public()
            .ok(200, "OpenAPI 3.1", json!({"type": "object"})),
        Operation::new("get", "/docs", "docs")
            .summary("This document, rendered (no external assets)")
            .tag(SERVICE_TAG)
            .public()
            .media("text/html")
            .ok(200, "An HTML page", json!({"type": "string"})),
        Operation::new("get", "/console", "console")
            .summary("The console: a browser UI over this API, signed in with an API key (no external assets)")
            .tag(SERVICE_TAG)
            .public()
            .etag()
            .media("text/html")
            .ok(200, "An HTML page", json!({"type": "string"})),
        Operation::new("get", "/emails/{tenantId}", "listOutbox")
            .summary("The outbox: messages kept when no SMTP relay is set, newest first")
            .tag(SERVICE_TAG)
            .param(tenant_param())
            .ok(200, "A page of messages", page_schema("OutboxMessage")),
    ]
    .into_iter()
    .map(|op| {
        if op.id == "listOutbox" {
            page_params(op)
        } else {
            op
        }
    })
    .collect()
}

/// The codes answered with `status`, from the one error table.
fn codes_of(status: u16) -> Vec<&'static str> {
    ErrorCode::ALL
        .iter()
        .filter(|code| status_of(**code).as_u16() == status)
        .map(|code| code.as_str())
        .collect()
}

/// `Error`, the one schema of every error answer, and its parts. One schema, not one per
/// status, so that a generated client has one error type. `code` is a string rather than an
/// enum: a client generated today must still read an error whose code a later server added.
/// Each status's codes are listed by its response (`x-error-codes` and the description).
fn error_schemas(schemas: &mut Map<String, Value>) {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every error answer.",
            "required": ["error"],
            "properties": {"error": schema_ref("ErrorBody")},
        }),
    );
    schemas.insert(
        "ErrorBody".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": format!(
                        "Stable, never renamed; new ones may be added. Today: {}.",
                        codes.join(", ")
                    ),
                    "examples": ["validation_failed"],
                },
                "message": {"type": "string"},
                "details": {"type": "array", "items": schema_ref("FieldError")},
            },
        }),
    );
    schemas.insert(
        "FieldError".into(),
        json!({
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string"},
                "message": {"type": "string"},
            },
        }),
    );
}

fn error_responses() -> Map<String, Value> {
    let mut statuses: Vec<u16> = ErrorCode::ALL
        .iter()
        .map(|code| status_of(*code).as_u16())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
        .into_iter()
        .map(|status| {
            let mut headers = request_id_header();
            if status == 429 || status == 503 {
                headers.insert(
                    "Retry-After".into(),
                    json!({
                        "description": "Seconds to wait before trying again.",
                        "required": status == 429,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    }),
                );
            }
            if status == 401 {
                headers.insert(
                    "WWW-Authenticate".into(),
                    json!({"description": "`Bearer`", "schema": {"type": "string"}}),
                );
            }
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let codes = codes_of(status);
            (
                format!("Error{status}"),
                json!({
                    "description": format!("{reason}: {}", codes.join(", ")),
                    "headers": headers,
                    "content": {"application/json": {"schema": schema_ref("Error")}},
                    "x-error-codes": codes,
                }),
            )
        })
        .collect()
}

/// A catalog kind's record, and the body that creates or replaces it when clients may.
fn catalog_schemas<F: CatalogFields>(schemas: &mut Map<String, Value>) {
    let name = F::KIND.type_name();
    schemas.insert(name.into(), CatalogRecord::<F>::output_schema());
    if F::KIND.client_owned() {
        schemas.insert(format!("{name}Input"), CatalogRecord::<F>::input_schema());
    }
}

fn component_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(
        "CourseRegistration".into(),
        CourseRegistration::output_schema(),
    );
    for kind in CatalogKind::ALL {
        crate::with_catalog_fields!(kind, F => catalog_schemas::<F>(&mut schemas));
    }
    schemas.insert(
        "CourseRegistrationInput".into(),
        CourseRegistration::input_schema(),
    );
    schemas.insert("Tenant".into(), Tenant::schema());
    error_schemas(&mut schemas);
    // Named parts of the batch and patch bodies.
    for (name, schema) in BatchRequest::operation_schemas()
        .into_iter()
        .chain(crate::domain::patch::patch_operation_schemas())
    {
        schemas.insert(name.into(), schema);
    }
    schemas.insert(
        "SentEmail".into(),
        json!({
            "type": "object",
            "required": ["to", "subject", "transport"],
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "html": {"type": "string"},
                "text": {"type": "string"},
                "transport": {
                    "type": "string",
                    "enum": ["smtp", "outbox", "none"],
                    "description": "`smtp`: sent through the relay; `outbox`: kept in the outbox; `none`: a dry run, rendered only."
                },
                "message_id": {"type": "string", "description": "absent on a dry run"},
            },
            "additionalProperties": false,
        }),
    );
    let timestamp = json!({"type": "string", "format": "date-time"});
    schemas.insert("Webhook".into(), WebhookEndpoint::schema(false));
    schemas.insert("WebhookDelivery".into(), DeliveryAttempt::schema());
    schemas.insert(
        "OutboxMessage".into(),
        json!({
            "type": "object",
            "required": ["id", "message_id", "to", "subject", "created_at", "state"],
            "properties": {
                "id": {"type": "string"},
                "message_id": {"type": "string"},
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "html": {"type": "string"},
                "text": {"type": "string"},
                "registration_id": RecordId::schema(),
                "created_at": timestamp,
                "state": {
                    "type": "string",
                    "enum": ["kept", "pending", "sent", "failed"],
                    "description": "`kept`: no relay; `pending`: claimed by a node or waiting for one to send it; `sent`; `failed`, with `error`."
                },
                "sent_at": timestamp,
                "failed_at": timestamp,
                "error": {"type": "string"},
            },
            "additionalProperties": false,
        }),
    );
    schemas.insert("CheckReport".into(), CheckReport::schema());
    schemas.insert(
        "ChangeEvent".into(),
        crate::domain::events::ChangeEvent::schema(),
    );
    schemas.insert(
        "BatchResult".into(),
        json!({
            "type": "object",
            "required": ["operation_id", "success_count", "error_count", "results"],
            "properties": {
                "operation_id": {"type": "string"},
                "success_count": {"type": "integer", "minimum": 0},
                "error_count": {"type": "integer", "minimum": 0},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "id": {"type": ["string", "null"]},
                            "op": {"type": ["string", "null"]},
                            "status": {"type": "integer"},
                            "error": schema_ref("ErrorBody"),
                        },
                    },
                },
            },
            "additionalProperties": false,
        }),
    );
    schemas
}

/// The methods documented for a path template, as an `Allow` header value (`GET, POST`).
pub fn allowed_methods(pattern: &str) -> String {
    static BY_PATH: OnceLock<std::collections::HashMap<String, String>> = OnceLock::new();
    let by_path = BY_PATH.get_or_init(|| {
        let mut by_path: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (method, path) in operations() {
            let methods = by_path.entry(path).or_default();
            methods.push(method.to_ascii_uppercase());
            // Every GET also answers HEAD (`the frame, http/frame.rs).
            if method.eq_ignore_ascii_case("get") {
                methods.push("HEAD".into());
            }
        }
        by_path
            .into_iter()
            .map(|(path, methods)| (path, methods.join(", ")))
            .collect()
    });
    by_path.get(pattern).cloned().unwrap_or_default()
}

/// Every operation the server routes, as `(method, path template)`, for tests and tools.
pub fn operations() -> Vec<(&'static str, String)> {
    all_operations()
        .into_iter()
        .map(|op| (op.method, op.path))
        .collect()
}

fn all_operations() -> Vec<Operation> {
    let mut ops = service_operations();
    ops.extend(admin_operations());
    ops.extend(webhook_operations());
    ops.extend(registration_operations());
    for kind in CatalogKind::ALL {
        ops.extend(crate::with_catalog_fields!(kind, F => catalog_operations::<F>()));
    }
    ops.push(history_operation(
        "courseRegistrations",
        "CourseRegistration",
        TENANT_TAG,
    ));
    for kind in CatalogKind::ALL {
        ops.push(history_operation(
            kind.resource(),
            kind.type_name(),
            CATALOG_TAG,
        ));
    }
    ops.push(changes_operation());
    ops
}

/// `GET /{resource}/{tenantId}/{id}/history`: one record's change events, newest first.
fn history_operation(resource: &str, name: &str, tag: &'static str) -> Operation {
    page_params(
        Operation::new(
            "get",
            format!("/{resource}/{{tenantId}}/{{id}}/history"),
            format!("history{name}"),
        )
        .summary(format!(
            "The change events of one of {resource}, newest first, each with its RFC 6902 patch (a deleted record's: admin keys only)"
        ))
        .tag(tag)
        .param(tenant_param())
        .param(id_param("id")),
    )
    .ok(200, "A page of change events", page_schema("ChangeEvent"))
}

/// `GET /changes/{tenantId}`: the tenant's change feed.
fn changes_operation() -> Operation {
    let kinds: Vec<&str> = crate::domain::transfer::RecordKind::EXPORT_ORDER
        .iter()
        .map(|k| k.tag())
        .collect();
    Operation::new("get", "/changes/{tenantId}", "listChanges")
        .summary("The tenant's change feed: every event once, in commit order, from after a cursor; with Accept: text/event-stream a live SSE stream (bounded per key, per tenant and per server: 429 too_many_streams)")
        .error_note(429, "Too Many Requests: rate_limited, too_many_in_flight; or too_many_streams: a live stream would be one too many, for the key (4), its tenant's keys together (--max-streams-per-tenant, default 16) or the server over all tenants (--max-streams, default 256); the message names which, Retry-After: 5")
        .tag(TENANT_TAG)
        .param(tenant_param())
        .param(query_param(
            "after",
            "Events after this cursor (a `cursor` or SSE id the feed gave; default: from the first). Bad: 400 invalid_cursor.",
            json!({"type": "string", "pattern": "^[0-9]{1,20}$"}),
        ))
        .param(query_param(
            "limit",
            "Most events in this answer (default 100).",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ))
        .param(query_param(
            "kinds",
            "Only events of these record kinds, comma-separated.",
            json!({"type": "string", "pattern": format!("^(({})(,|$))*$", kinds.join("|"))}),
        ))
        .param(json!({
            "name": "Last-Event-ID",
            "in": "header",
            "required": false,
            "description": "An SSE client resuming: events after this cursor (over `after`).",
            "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
        }))
        .more_media(&["text/event-stream"])
        .ok(
            200,
            "Events in sequence order, and the cursor to resume after them",
            json!({
                "type": "object",
                "required": ["Count", "Items", "cursor"],
                "properties": {
                    "Count": {"type": "integer", "minimum": 0},
                    "Items": {"type": "array", "items": schema_ref("ChangeEvent")},
                    "cursor": {"type": "string", "description": "Pass as `after` to read on: past every event examined (a `kinds` filter may skip some)."},
                },
                "additionalProperties": false,
            }),
        )
}

/// The whole OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in all_operations() {
        let item = paths.entry(op.path.clone()).or_insert_with(|| json!({}));
        item[op.method] = op.to_json();
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "registrar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Course registrations, their catalog, orders and emails, per tenant. Errors are \
                 `{{\"error\": {{\"code\", \"message\", \"details\"?}}}}` with a stable code. \
                 Strings hold at most {MAX_TEXT_CHARS} characters and no control characters \
                 (notes and templates may hold newlines and tabs). A client's `null` means absent."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "tags": [
            {"name": TENANT_TAG, "description": "The course registrations of a tenant: records, lookups, search, batch, generateRegistration, generateOrder, previewEmail."},
            {"name": CATALOG_TAG, "description": "What registrations stand on: contacts, courses, offerings, registration processes, email templates, orders."},
            {"name": ADMIN_TAG, "description": "Tenants, keys, export, import, backup and the consistency check (operator key, some also a tenant's admin key)."},
            {"name": SERVICE_TAG, "description": "Health, metrics, this description, and the outbox."},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>` (or the bare key). A tenant key \
                        (role read, write or admin) reaches only its tenant; the operator key \
                        reaches every tenant, /admin and /metrics.",
                },
            },
            "schemas": component_schemas(),
            "responses": error_responses(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"$ref\":\"") {
            rest = &rest[at + 8..];
            let end = rest.find('"').unwrap();
            let pointer = rest[..end].trim_start_matches('#');
            assert!(
                document.pointer(pointer).is_some(),
                "dangling reference {pointer}"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique_and_every_error_status_has_codes() {
        let ops = all_operations();
        let mut ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "duplicate operationId");
        for op in &ops {
            for status in op.statuses() {
                assert!(
                    !codes_of(status).is_empty(),
                    "{} documents {status}, which no error code has",
                    op.id
                );
            }
        }
    }

    #[test]
    fn every_record_field_is_described() {
        let schema = CourseRegistration::output_schema();
        for name in RegistrationFields::NAMES {
            assert!(schema["properties"].get(name).is_some(), "{name}");
        }
    }
}
