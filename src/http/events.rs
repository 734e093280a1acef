//! Change events over HTTP: `GET /{resource}/{tenantId}/{id}/history` (registrations and
//! every catalog kind, from `CatalogKind::ALL`) and the change feed `GET /changes/{tenantId}`,
//! as JSON pages or, with `Accept: text/event-stream`, as a live SSE stream.

use super::access::{Read, TenantCaller};
use super::mount::Endpoint;
use super::query::{PageQuery, Query, QueryParams};
use super::request::{json_body, query_page_json, store_of, IdPath};
use crate::domain::access::{Principal, Role, OPERATOR_KEY_ID};
use crate::domain::catalog::{CatalogFields, CatalogKind};
use crate::domain::events::ChangeEvent;
use crate::domain::ids::TenantId;
use crate::domain::transfer::RecordKind;
use crate::error::{ApiError, ErrorCode};
use crate::store::events::ChangeSignal;
use crate::store::Db;
use crate::workflows::events as flow;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Most change feed streams one key may hold open at once.
pub const MAX_STREAMS_PER_KEY: usize = 4;
/// `Retry-After` of a refused stream: streams are long-lived, so a place frees up seldom.
const STREAM_RETRY_AFTER_SECS: u64 = 5;
/// How often an idle stream sends a comment, so proxies and clients see it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events read per round of a stream.
const STREAM_BATCH: usize = 500;

/// The history endpoint of every kind of record (its route after the record's own and its
/// lookups: `/{resource}/{tenantId}/{id}/history`).
pub fn history_endpoints() -> Vec<Endpoint> {
    let mut endpoints = vec![
        Endpoint::new("/courseRegistrations/{tenantId}/{id}/history").get(registration_history),
    ];
    endpoints.extend(
        CatalogKind::ALL
            .into_iter()
            .map(|kind| crate::with_catalog_fields!(kind, F => catalog_history_endpoint::<F>())),
    );
    endpoints
}

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new("/changes/{tenantId}").get(changes)]
}

fn catalog_history_endpoint<F: CatalogFields>() -> Endpoint {
    Endpoint::new(format!(
        "/{}/{{tenantId}}/{{id}}/history",
        F::KIND.resource()
    ))
    .get(catalog_history::<F>)
}

async fn registration_history(
    caller: TenantCaller<Read>,
    query: Query<PageQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    history(caller, RecordKind::Registration, id, query, req).await
}

async fn catalog_history<F: CatalogFields>(
    caller: TenantCaller<Read>,
    query: Query<PageQuery>,
    IdPath(id): IdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    history(caller, RecordKind::Catalog(F::KIND), id, query, req).await
}

async fn history(
    caller: TenantCaller<Read>,
    kind: RecordKind,
    id: crate::domain::ids::RecordId,
    query: Query<PageQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let start = query.start_key().map(str::to_owned);
    let admin = caller.principal().role_on(caller.tenant()) == Some(Role::Admin);
    let page = flow::history(
        &store_of(&req)?,
        caller.tenant(),
        kind,
        &id,
        start,
        limit,
        admin,
    )
    .await?;
    let capacity = page.items.iter().map(event_capacity).sum();
    Ok(query_page_json(
        &req,
        &query,
        page.items.len(),
        capacity,
        |out| write_events(out, &page.items),
        page.next,
    ))
}

/// Room for one event's JSON.
fn event_capacity(event: &ChangeEvent) -> usize {
    event.change.patch.len() + 512
}

/// Appends a JSON array of events.
fn write_events(out: &mut Vec<u8>, events: &[ChangeEvent]) {
    out.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        event.write_json(out);
    }
    out.push(b']');
}

/// The query of `GET /changes/{tenantId}`.
pub struct ChangesQuery;
impl super::query::QuerySpec for ChangesQuery {
    const ALLOWED: &'static [&'static str] = &["after", "limit", "kinds"];
}

/// Where a feed request starts: `Last-Event-ID` (an SSE client resuming) over `after`. Both
/// are checked whichever wins: a malformed `after` is a 400 even beside a good Last-Event-ID.
fn start_cursor(req: &HttpRequest, query: &QueryParams) -> Result<u64, ApiError> {
    let after = query.get("after").map(flow::parse_cursor).transpose()?;
    if let Some(value) = req.headers().get("Last-Event-ID") {
        let text = value.to_str().map_err(|_| {
            ApiError::new(ErrorCode::InvalidCursor, "Last-Event-ID is not readable")
        })?;
        return flow::parse_cursor(text.trim());
    }
    Ok(after.unwrap_or(0))
}

fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

async fn changes(
    caller: TenantCaller<Read>,
    query: Query<ChangesQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let after = start_cursor(&req, &query)?;
    let kinds = flow::parse_kinds(query.get("kinds"))?;
    let store = store_of(&req)?;
    if wants_stream(&req) {
        let streams = req
            .app_data::<web::Data<Streams>>()
            .ok_or_else(ApiError::internal)?
            .clone()
            .into_inner();
        let slot = Streams::open(
            &streams,
            key_of(caller.principal()),
            caller.tenant().clone(),
        )?;
        return Ok(stream_response(Feed {
            signal: store.change_signal(),
            store,
            tenant: caller.tenant().clone(),
            kinds,
            cursor: after,
            stop: streams.stop.subscribe(),
            heartbeat: streams.heartbeat,
            _slot: slot,
            opened: false,
        }));
    }
    let limit = query.limit()?;
    let page = flow::changes(&store, caller.tenant(), after, kinds, limit).await?;
    let mut body = Vec::with_capacity(page.items.iter().map(event_capacity).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"Count\":");
    body.extend_from_slice(page.items.len().to_string().as_bytes());
    body.extend_from_slice(b",\"Items\":");
    write_events(&mut body, &page.items);
    body.extend_from_slice(b",\"cursor\":\"");
    body.extend_from_slice(page.last_examined.to_string().as_bytes());
    body.extend_from_slice(b"\"}");
    Ok(json_body(&mut HttpResponse::Ok(), body))
}

fn key_of(principal: &Principal) -> String {
    match principal {
        Principal::Operator => OPERATOR_KEY_ID.to_owned(),
        Principal::TenantKey { key_id, .. } => key_id.clone(),
    }
}

/// How many change feed streams may be open at once. A stream holds a connection and, on
/// PostgreSQL, polls the database, so every level is bounded: a key, a tenant (which may
/// have any number of keys), the whole server (which may have any number of tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub per_key: usize,
    /// 0 = no cap.
    pub per_tenant: usize,
    /// 0 = no cap.
    pub total: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            per_key: MAX_STREAMS_PER_KEY,
            per_tenant: crate::config::DEFAULT_MAX_STREAMS_PER_TENANT,
            total: crate::config::DEFAULT_MAX_STREAMS,
        }
    }
}

/// The streams open now, counted at each level `StreamLimits` bounds.
#[derive(Default)]
struct OpenStreams {
    per_key: HashMap<String, usize>,
    per_tenant: HashMap<TenantId, usize>,
    total: usize,
}

/// Takes one from `counts[name]`, forgetting a name that reaches 0.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, name: &K) {
    if let Some(count) = counts.get_mut(name) {
        *count -= 1;
        if *count == 0 {
            counts.remove(name);
        }
    }
}

/// The open change feed streams, and the signal that ends them all when the server stops.
/// One per application (`http::app`).
pub struct Streams {
    open: Mutex<OpenStreams>,
    limits: StreamLimits,
    heartbeat: Duration,
    stop: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new(StreamLimits::default(), HEARTBEAT)
    }
}

impl Streams {
    pub fn new(limits: StreamLimits, heartbeat: Duration) -> Self {
        Streams {
            open: Mutex::new(OpenStreams::default()),
            limits,
            heartbeat,
            stop: watch::channel(false).0,
        }
    }

    /// Ends every stream (they finish their current write first): the server is stopping.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn open(streams: &Arc<Streams>, key: String, tenant: TenantId) -> Result<StreamSlot, ApiError> {
        let limits = streams.limits;
        let mut open = streams.open.lock().unwrap_or_else(PoisonError::into_inner);
        let full = |count: usize, cap: usize| cap != 0 && count >= cap;
        let refusal = if full(open.per_key.get(&key).copied().unwrap_or(0), limits.per_key) {
            Some(format!(
                "this key has {} change feed streams open, the most it may: close one first",
                limits.per_key
            ))
        } else if full(
            open.per_tenant.get(&tenant).copied().unwrap_or(0),
            limits.per_tenant,
        ) {
            Some(format!(
                "this tenant's keys have {} change feed streams open, the most a tenant may: \
                 close one first",
                limits.per_tenant
            ))
        } else if full(open.total, limits.total) {
            Some(format!(
                "the server has {} change feed streams open, the most it serves: try again later",
                limits.total
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            let mut error = ApiError::new(ErrorCode::TooManyStreams, message);
            error.retry_after = Some(STREAM_RETRY_AFTER_SECS);
            return Err(error);
        }
        *open.per_key.entry(key.clone()).or_default() += 1;
        *open.per_tenant.entry(tenant.clone()).or_default() += 1;
        open.total += 1;
        Ok(StreamSlot {
            streams: streams.clone(),
            key,
            tenant,
        })
    }

    /// How many streams `key` holds open now.
    pub fn open_for(&self, key: &str) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .per_key
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// One stream's place among the open streams, given back when the stream ends.
struct StreamSlot {
    streams: Arc<Streams>,
    key: String,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut open.per_key, &self.key);
        release(&mut open.per_tenant, &self.tenant);
        open.total = open.total.saturating_sub(1);
    }
}

/// A stream's state between two writes.
struct Feed {
    store: Db,
    tenant: TenantId,
    kinds: Vec<RecordKind>,
    cursor: u64,
    signal: ChangeSignal,
    stop: watch::Receiver<bool>,
    heartbeat: Duration,
    _slot: StreamSlot,
    opened: bool,
}

/// One SSE event per change: `id:` is the cursor that resumes after it.
fn sse_events(events: &[ChangeEvent]) -> Bytes {
    let mut out = Vec::with_capacity(events.iter().map(event_capacity).sum::<usize>() + 64);
    for event in events {
        out.extend_from_slice(format!("id: {}\nevent: change\ndata: ", event.seq).as_bytes());
        // The event's JSON holds no raw newline (strings escape theirs): one `data:` line.
        event.write_json(&mut out);
        out.extend_from_slice(b"\n\n");
    }
    Bytes::from(out)
}

impl Feed {
    /// The next bytes of the stream, or `None` when it ends (the server stops, or a read
    /// failed: the client resumes from its last id).
    async fn next(&mut self) -> Option<Bytes> {
        if !self.opened {
            self.opened = true;
            // Sent at once, so the client sees the stream is open before any event.
            return Some(Bytes::from_static(b"retry: 1000\n: stream open\n\n"));
        }
        let mut heartbeat = Box::pin(tokio::time::sleep(self.heartbeat));
        loop {
            if *self.stop.borrow() {
                return None;
            }
            let (store, tenant, kinds, after) = (
                self.store.clone(),
                self.tenant.clone(),
                self.kinds.clone(),
                self.cursor,
            );
            let read = tokio::task::spawn_blocking(move || {
                store.changes(&tenant, after, &kinds, STREAM_BATCH)
            })
            .await;
            let page = match read {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    log::warn!("change feed stream of tenant {}: {e}", self.tenant);
                    return None;
                }
                Err(e) => {
                    log::error!("change feed read failed: {e}");
                    return None;
                }
            };
            let advanced = page.last_examined > self.cursor;
            self.cursor = self.cursor.max(page.last_examined);
            if !page.items.is_empty() {
                return Some(sse_events(&page.items));
            }
            if advanced {
                // Events of other kinds only: read on.
                continue;
            }
            tokio::select! {
                () = self.signal.changed() => {}
                () = &mut heartbeat => return Some(Bytes::from_static(b": heartbeat\n\n")),
                _ = self.stop.wait_for(|stopping| *stopping) => return None,
            }
        }
    }
}

fn stream_response(feed: Feed) -> HttpResponse {
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let bytes = feed.next().await?;
        Some((Ok::<_, actix_web::Error>(bytes), feed))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
