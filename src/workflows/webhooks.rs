//! Webhooks (issue 19): the admin operations on a tenant's endpoints, and the deliverer that
//! sends each endpoint the tenant's change events from the store's queue.
//!
//! The queue is the event store itself: each endpoint keeps a cursor over its tenant's event
//! sequence. A write only appends its event (it never learns that endpoints exist); the
//! deliverer of some node takes an endpoint whose cursor is behind (a lease, so one node at a
//! time), sends the events after the cursor in sequence order, and moves the cursor on each
//! 2xx. So deliveries are at least once and, per endpoint, in the tenant's commit order, which
//! keeps every record's events in order. A failed attempt is retried on the `RetryPolicy`;
//! when its time is up the endpoint is disabled with the reason. The lowest cursor of the
//! enabled endpoints is an `EventHold`, so retention never drops what is not delivered yet.

use super::blocking;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::time::Timestamp;
use crate::domain::transfer::RecordKind;
use crate::domain::webhook::{
    message_id, payload, DeliveryAttempt, DeliveryState, EndpointPatch, NewEndpoint, Settlement,
    StoredEndpoint,
};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::store::events::EventHold;
use crate::store::webhooks::AttemptPage;
use crate::store::{Db, StoreError};
use crate::webhooks::{
    random_unit, BadUrl, Delivery, RetryPolicy, WebhookSecret, WebhookSender, WebhookUrl,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Events read from the store per round trip of one endpoint's delivery.
const EVENTS_PER_READ: usize = 50;
/// Endpoints delivered at once by one node: one slow endpoint takes one place, not all.
const CONCURRENT_ENDPOINTS: usize = 8;
/// How often the deliverer reads the hold's cursors again.
const HOLD_REFRESH: Duration = Duration::from_secs(1);

/// What the routes and the deliverer share: the HTTP client, the queue's hold on
/// compaction, and what this node's deliveries did.
pub struct Webhooks {
    pub sender: WebhookSender,
    pub hold: Arc<WebhookHold>,
    pub counters: DeliveryCounters,
}

/// What this node's webhook deliveries did since it started, for `/metrics`: an operator
/// sees a receiver that fails, or endpoints being disabled, without reading every endpoint's
/// attempt log.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Attempts the endpoint accepted (a 2xx answer), the manual ones included.
    pub delivered: AtomicU64,
    /// Attempts that failed: another status, a timeout, a refused or failed connection.
    pub failed: AtomicU64,
    /// Endpoints this node disabled because their retries ran out.
    pub disabled: AtomicU64,
}

impl DeliveryCounters {
    fn count(&self, attempt: &DeliveryAttempt) {
        let counter = match attempt.error {
            None => &self.delivered,
            Some(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue's [`EventHold`]: per tenant, the lowest cursor of its enabled endpoints, as the
/// deliverer last read it (it reads again on every pass). Until the first read it holds
/// everything back.
#[derive(Default)]
pub struct WebhookHold {
    cursors: RwLock<Option<HashMap<TenantId, u64>>>,
    /// Wakes the deliverer when a read finds enabled endpoints: while there are none, it does
    /// not listen to the commits at all.
    armed: Notify,
}

impl WebhookHold {
    /// Reads the cursors again.
    pub fn refresh(&self, store: &Db) -> Result<(), StoreError> {
        self.set(store.webhook_cursors()?.into_iter().collect());
        Ok(())
    }
}

impl WebhookHold {
    /// Whether any endpoint may be waiting for events: some enabled endpoint was there at the
    /// last read of the cursors, or they were not read yet.
    fn any_enabled(&self) -> bool {
        self.cursors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_none_or(|cursors| !cursors.is_empty())
    }

    fn set(&self, cursors: HashMap<TenantId, u64>) {
        let armed = !cursors.is_empty();
        *self
            .cursors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cursors);
        if armed {
            self.armed.notify_one();
        }
    }
}

impl EventHold for WebhookHold {
    fn keep_from(&self, tenant: &TenantId) -> Option<u64> {
        match &*self
            .cursors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => Some(0),
            Some(cursors) => cursors.get(tenant).map(|cursor| cursor + 1),
        }
    }
}

/// Reads the hold's cursors again after an admin change (off the async workers: a store read
/// may block).
async fn refresh_hold(store: &Db, hooks: &Webhooks) {
    let (store, hold) = (store.clone(), hooks.hold.clone());
    match tokio::task::spawn_blocking(move || hold.refresh(&store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("webhooks: cannot read the endpoints' cursors: {e}"),
        Err(e) => log::warn!("webhooks: the cursors' read failed: {e}"),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("webhook {id} not found"))
}

/// Vets the URL's addresses: refused (`webhook_url_refused`) when it names or resolves to a
/// private address (unless the server allows them), or does not resolve.
async fn vet(url: &WebhookUrl, sender: &WebhookSender) -> Result<(), ApiError> {
    match url.resolve(sender.allows_private()).await {
        Ok(_) => Ok(()),
        Err(e @ (BadUrl::Private(_) | BadUrl::Unresolvable(_))) => Err(ApiError::new(
            ErrorCode::WebhookUrlRefused,
            format!("url {e}"),
        )
        .with_details(vec![FieldError::new("url", e.to_string())])),
        Err(e) => Err(ApiError::field("url", e.to_string())),
    }
}

/// A new endpoint and its secret (shown this once).
pub async fn create(
    store: &Db,
    hooks: &Webhooks,
    tenant: &TenantId,
    body: &Value,
) -> Result<(StoredEndpoint, String), ApiError> {
    let new = NewEndpoint::parse(body)?;
    vet(&new.url, &hooks.sender).await?;
    let secret = WebhookSecret::generate().map_err(|e| {
        log::error!("no random bytes for a webhook secret: {e}");
        ApiError::internal()
    })?;
    let id = format!("wh_{}", RecordId::generate().as_str().to_ascii_lowercase());
    let stored = StoredEndpoint {
        endpoint: new.into_endpoint(id, tenant.clone(), Timestamp::now()),
        secret: secret.shown(),
        state: DeliveryState::default(),
        lease: None,
    };
    let stored = store.create_webhook(stored).await?;
    refresh_hold(store, hooks).await;
    let shown = stored.secret.clone();
    Ok((stored, shown))
}

pub async fn list(store: &Db, tenant: &TenantId) -> Result<Vec<StoredEndpoint>, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| s.webhooks(&tenant)).await
}

pub async fn get(store: &Db, tenant: &TenantId, id: &str) -> Result<StoredEndpoint, ApiError> {
    let (tenant, owned) = (tenant.clone(), id.to_owned());
    blocking(store, move |s| s.webhook(&tenant, &owned))
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn patch(
    store: &Db,
    hooks: &Webhooks,
    tenant: &TenantId,
    id: &str,
    body: &Value,
) -> Result<StoredEndpoint, ApiError> {
    let patch = EndpointPatch::parse(body)?;
    if let Some(url) = &patch.url {
        vet(url, &hooks.sender).await?;
    }
    let patched = store
        .patch_webhook(tenant, id, patch, Timestamp::now())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => not_found(id),
            e => e.into(),
        })?;
    refresh_hold(store, hooks).await;
    Ok(patched)
}

pub async fn delete(store: &Db, tenant: &TenantId, id: &str) -> Result<(), ApiError> {
    store.delete_webhook(tenant, id).await.map_err(|e| match e {
        StoreError::NotFound => not_found(id),
        e => e.into(),
    })
}

/// A page of the endpoint's attempts, newest first.
pub async fn attempts(
    store: &Db,
    tenant: &TenantId,
    id: &str,
    start: Option<String>,
    limit: usize,
) -> Result<AttemptPage, ApiError> {
    get(store, tenant, id).await?;
    let (tenant, id) = (tenant.clone(), id.to_owned());
    blocking(store, move |s| {
        s.webhook_attempts(&tenant, &id, start.as_deref(), limit)
    })
    .await
}

/// Sends the event of attempt `delivery` to the endpoint again, now, whatever the queue's
/// state (the queue's cursor and schedule do not change), and logs the attempt.
pub async fn retry(
    store: &Db,
    hooks: &Webhooks,
    tenant: &TenantId,
    id: &str,
    delivery: &str,
) -> Result<DeliveryAttempt, ApiError> {
    let stored = get(store, tenant, id).await?;
    let gone = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("delivery {delivery} of webhook {id} not found"),
        )
    };
    let number: u64 = delivery.parse().map_err(|_| gone())?;
    let (t, i) = (tenant.clone(), id.to_owned());
    let earlier = blocking(store, move |s| s.webhook_attempt(&t, &i, number))
        .await?
        .ok_or_else(gone)?;
    let (t, seq) = (tenant.clone(), earlier.seq);
    let page = blocking(store, move |s| s.changes(&t, seq - 1, &[], 1)).await?;
    let event = page
        .items
        .into_iter()
        .find(|e| e.seq == seq)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EventGone,
                format!("event {seq} is past retention: it cannot be sent again"),
            )
        })?;
    let attempt = send_one(hooks, &stored, &event, true).await;
    Ok(store.log_webhook_attempt(tenant, id, attempt).await?)
}

/// One attempt at one event, counted for `/metrics` (not logged yet: its number is the
/// store's to give).
async fn send_one(
    hooks: &Webhooks,
    stored: &StoredEndpoint,
    event: &crate::domain::events::ChangeEvent,
    manual: bool,
) -> DeliveryAttempt {
    let c = &event.change;
    let mut json = Vec::with_capacity(512 + c.patch.len());
    event.write_json(&mut json);
    let body = payload(c.kind, c.op.as_str(), c.at, &json);
    let id = message_id(&stored.endpoint.tenant, event.seq);
    let now = Timestamp::now();
    let outcome = match (
        WebhookUrl::parse(&stored.endpoint.url),
        WebhookSecret::parse(&stored.secret),
    ) {
        (Ok(url), Ok(secret)) => {
            let delivery = Delivery {
                id: &id,
                timestamp: now.to_parts().0,
                body: &body,
            };
            hooks.sender.send(&url, &secret, &delivery).await
        }
        _ => crate::webhooks::Attempt {
            status: None,
            error: Some("the stored endpoint's url or secret does not parse".into()),
        },
    };
    let attempt = DeliveryAttempt {
        number: 0,
        seq: event.seq,
        event_type: format!("{}.{}", c.kind.tag(), c.op.as_str()),
        at: now,
        status: outcome.status,
        error: outcome.error,
        manual,
    };
    hooks.counters.count(&attempt);
    attempt
}

/// How the deliverer runs.
#[derive(Debug, Clone)]
pub struct DelivererSettings {
    pub policy: RetryPolicy,
    pub lease: Duration,
}

/// Delivers every endpoint's events from this node; stopped (aborted) when dropped. A
/// delivery cut short is sent again: by this node after a restart, or by another once the
/// lease runs out.
pub struct Deliverer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// This node's name in leases: the embedded engine has one process per data dir, which takes
/// back its own leases after a restart; on a shared database each process is its own node.
fn node_name(store: &Db) -> String {
    if store.data_dir().is_some() {
        return "embedded".into();
    }
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let tail: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("node-{}-{tail}", std::process::id())
}

impl Deliverer {
    pub fn start(store: Db, hooks: Arc<Webhooks>, settings: DelivererSettings) -> Deliverer {
        let task = tokio::spawn(run(store, hooks, settings));
        Deliverer { task }
    }
}

async fn run(store: Db, hooks: Arc<Webhooks>, settings: DelivererSettings) {
    let node = node_name(&store);
    let places = Arc::new(Semaphore::new(CONCURRENT_ENDPOINTS));
    let busy: Arc<Mutex<Vec<(TenantId, String)>>> = Arc::default();
    let finished = Arc::new(Notify::new());
    let mut signal = store.change_signal();
    // A retry falls due without a write to announce it: look at least this often.
    let tick = (settings.policy.first / 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut refreshed_at: Option<std::time::Instant> = None;
    let mut claim = true;
    loop {
        // The hold's cursors: at most once a second. An admin change refreshes them at once on
        // its node; a stale cursor is only lower (holds more back), and an endpoint another
        // node made a moment ago needs only events newer than any retention cutoff.
        if refreshed_at.is_none_or(|at| at.elapsed() >= HOLD_REFRESH) {
            refreshed_at = Some(std::time::Instant::now());
            refresh_hold(&store, &hooks).await;
        }
        let free = places.available_permits();
        if claim && free > 0 {
            let now = Timestamp::now();
            let skip = busy.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match store
                .claim_webhooks(&node, now, now.plus(settings.lease), free, &skip)
                .await
            {
                Ok(claimed) => {
                    for stored in claimed {
                        let Ok(place) = places.clone().try_acquire_owned() else {
                            break;
                        };
                        let key = (stored.endpoint.tenant.clone(), stored.endpoint.id.clone());
                        busy.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(key.clone());
                        let (store, hooks, settings, node) =
                            (store.clone(), hooks.clone(), settings.clone(), node.clone());
                        let (busy, finished) = (busy.clone(), finished.clone());
                        tokio::spawn(async move {
                            deliver(&store, &hooks, &settings, &node, stored).await;
                            busy.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .retain(|k| *k != key);
                            drop(place);
                            finished.notify_one();
                        });
                    }
                }
                Err(e) => log::warn!("webhooks: cannot claim endpoints: {e}"),
            }
        }
        // A write wakes the deliverer only where an endpoint may want it. With none, a busy
        // server would look for due endpoints after every commit (the PATCH profile had
        // that at ~2 % of its time), and even a wake that looks at nothing costs a thread
        // switch per commit: the deliverer then waits for an admin change that enables one
        // (`armed`) instead. The tick still looks, for retries falling due and for
        // endpoints another node made.
        let listening = hooks.hold.any_enabled();
        claim = tokio::select! {
            _ = signal.changed(), if listening => hooks.hold.any_enabled(),
            _ = hooks.hold.armed.notified(), if !listening => true,
            _ = finished.notified() => true,
            _ = tokio::time::sleep(tick) => true,
        };
    }
}

/// Sends one endpoint the events after its cursor, in order, until none is left, one fails,
/// or the node loses the endpoint.
async fn deliver(
    store: &Db,
    hooks: &Webhooks,
    settings: &DelivererSettings,
    node: &str,
    stored: StoredEndpoint,
) {
    let tenant = stored.endpoint.tenant.clone();
    let kinds: Vec<RecordKind> = stored
        .endpoint
        .kinds
        .iter()
        .filter_map(|k| RecordKind::from_tag(k))
        .collect();
    let mut state = stored.state.clone();
    let settle = |cursor: u64,
                  state: &DeliveryState,
                  attempts: Vec<DeliveryAttempt>,
                  disable: Option<String>,
                  keep: bool| {
        let now = Timestamp::now();
        Settlement {
            tenant: tenant.clone(),
            endpoint: stored.endpoint.id.clone(),
            node: node.to_owned(),
            now,
            cursor,
            failures: state.failures,
            first_failure: state.first_failure,
            next_attempt: state.next_attempt,
            attempts,
            disable,
            renew_until: keep.then(|| now.plus(settings.lease)),
        }
    };
    loop {
        let page = {
            let (store, tenant, kinds, after) =
                (store.clone(), tenant.clone(), kinds.clone(), state.cursor);
            tokio::task::spawn_blocking(move || {
                store.changes(&tenant, after, &kinds, EVENTS_PER_READ)
            })
            .await
        };
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                log::warn!("webhooks: cannot read events of {tenant}: {e}");
                let _ = store
                    .settle_webhook(settle(state.cursor, &state, Vec::new(), None, false))
                    .await;
                return;
            }
            Err(_) => return,
        };
        if page.items.is_empty() {
            let cursor = state.cursor.max(page.last_examined);
            let done = cursor == state.cursor;
            state.cursor = cursor;
            let settled = store
                .settle_webhook(settle(cursor, &state, Vec::new(), None, !done))
                .await;
            if done || !matches!(settled, Ok(true)) {
                return;
            }
            continue;
        }
        for event in &page.items {
            let attempt = send_one(hooks, &stored, event, false).await;
            if attempt.error.is_none() {
                state.cursor = event.seq;
                state.failures = 0;
                state.first_failure = None;
                state.next_attempt = None;
                let settled = store
                    .settle_webhook(settle(state.cursor, &state, vec![attempt], None, true))
                    .await;
                if !matches!(settled, Ok(true)) {
                    return;
                }
                continue;
            }
            let now = attempt.at;
            state.failures += 1;
            let first = *state.first_failure.get_or_insert(now);
            state.next_attempt =
                settings
                    .policy
                    .next_attempt(first, state.failures, now, random_unit());
            let disable = state.next_attempt.is_none().then(|| {
                format!(
                    "deliveries failed from {} for {} attempts; the last: {}",
                    first.to_rfc3339(),
                    state.failures,
                    attempt.error.as_deref().unwrap_or("failed")
                )
            });
            if disable.is_some() {
                hooks.counters.disabled.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "webhooks: disabling {} of tenant {tenant}: retries ran out",
                    stored.endpoint.id
                );
            }
            let _ = store
                .settle_webhook(settle(state.cursor, &state, vec![attempt], disable, false))
                .await;
            return;
        }
        // Every item was delivered; what the filter passed over is passed over too.
        if page.last_examined > state.cursor {
            state.cursor = page.last_examined;
            if !matches!(
                store
                    .settle_webhook(settle(state.cursor, &state, Vec::new(), None, true))
                    .await,
                Ok(true)
            ) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{compactable, EventHolds};

    #[test]
    fn the_hold_keeps_what_an_enabled_endpoint_has_not_had() {
        let (held, free) = (
            TenantId::parse("held").unwrap(),
            TenantId::parse("free").unwrap(),
        );
        let hold = Arc::new(WebhookHold::default());
        let holds = EventHolds::default();
        holds.add(hold.clone());
        // Before the deliverer has read the cursors: nothing may go.
        assert!(!compactable(1, true, holds.keep_from(&free)));
        hold.set(HashMap::from([(held.clone(), 5)]));
        // Delivered up to 5: 1..=5 may go once old, 6 on are kept however old.
        assert!(compactable(5, true, holds.keep_from(&held)));
        assert!(!compactable(6, true, holds.keep_from(&held)));
        assert!(!compactable(5, false, holds.keep_from(&held)));
        // A tenant without an enabled endpoint is held back by nothing.
        assert_eq!(holds.keep_from(&free), None);
        assert!(compactable(1_000, true, holds.keep_from(&free)));
    }

    /// The deliverer sleeps through commits while no endpoint is enabled; a read of the
    /// cursors that finds one must wake it, even when it is not waiting at that moment.
    #[tokio::test]
    async fn a_read_that_finds_an_enabled_endpoint_wakes_the_deliverer() {
        let hold = WebhookHold::default();
        assert!(hold.any_enabled(), "unread: it may be waiting for events");
        hold.set(HashMap::new());
        assert!(!hold.any_enabled());
        let quiet = tokio::time::timeout(Duration::from_millis(50), hold.armed.notified()).await;
        assert!(quiet.is_err(), "no endpoint: nothing wakes it");
        hold.set(HashMap::from([(TenantId::parse("acme").unwrap(), 0)]));
        assert!(hold.any_enabled());
        // Set before anyone waits: the wake is kept for the next wait.
        tokio::time::timeout(Duration::from_secs(5), hold.armed.notified())
            .await
            .expect("an enabled endpoint wakes the deliverer");
    }
}
