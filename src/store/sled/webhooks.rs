//! The webhook queue in sled (`store::webhooks`):
//! * `webhooks`: tenant → the tenant's endpoints (at most 16), one value, so that the limit
//!   is checked and every change made in one read and one write of the transaction;
//! * `webhook_attempts`: (tenant, endpoint id, number) → attempt, the newest
//!   `MAX_ATTEMPTS_KEPT` of each endpoint.
//!
//! One process serves a data dir, so the lease only keeps this process's deliverer from
//! taking an endpoint twice; it is kept all the same, so both engines follow one rule.

use super::codec;
use super::error::StoreError;
use super::events::EVENT_SEQUENCE;
use super::keys::{self, Key};
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::rules;
use crate::domain::time::Timestamp;
use crate::domain::webhook::{
    DeliveryAttempt, EndpointPatch, Lease, Settlement, StoredEndpoint, MAX_ATTEMPTS_KEPT,
    MAX_ENDPOINTS_PER_TENANT,
};
use crate::store::webhooks::{attempts_scope, AttemptPage, WebhookStore};
use crate::store::EngineFuture;

fn endpoints_key(tenant: &str) -> Key {
    Key::new().text(tenant)
}

fn attempts_of(tenant: &str, id: &str) -> Key {
    Key::new().text(tenant).text(id)
}

fn attempt_key(tenant: &str, id: &str, number: u64) -> Key {
    attempts_of(tenant, id).u64(number)
}

fn read_list(tx: &Tx<'_>, tenant: &str) -> Result<Vec<StoredEndpoint>, TxError> {
    match tx.get(TreeId::Webhooks, endpoints_key(tenant).as_bytes())? {
        Some(bytes) => Ok(codec::decode(&bytes)?),
        None => Ok(Vec::new()),
    }
}

fn write_list(tx: &mut Tx<'_>, tenant: &str, list: &[StoredEndpoint]) -> Result<(), TxError> {
    let key = endpoints_key(tenant).into_bytes();
    if list.is_empty() {
        tx.remove(TreeId::Webhooks, key);
    } else {
        tx.insert(TreeId::Webhooks, key, codec::encode(&list)?);
    }
    Ok(())
}

/// Changes the endpoint `id` of `tenant` with `change`, in the transaction; `NotFound` when
/// there is none.
fn change_one<R>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    id: &str,
    change: impl FnOnce(&mut StoredEndpoint) -> R,
) -> Result<R, TxError> {
    let t = tenant.as_str();
    let mut list = read_list(tx, t)?;
    let stored = list
        .iter_mut()
        .find(|e| e.endpoint.id == id)
        .ok_or(StoreError::NotFound)?;
    let out = change(stored);
    write_list(tx, t, &list)?;
    Ok(out)
}

/// Logs `attempts` (numbered already) and drops the ones past what is kept.
fn log_attempts(
    tx: &mut Tx<'_>,
    tenant: &str,
    id: &str,
    attempts: &[DeliveryAttempt],
) -> Result<(), TxError> {
    for attempt in attempts {
        tx.insert(
            TreeId::WebhookAttempts,
            attempt_key(tenant, id, attempt.number).into_bytes(),
            codec::encode(attempt)?,
        );
        if attempt.number > MAX_ATTEMPTS_KEPT {
            tx.remove(
                TreeId::WebhookAttempts,
                attempt_key(tenant, id, attempt.number - MAX_ATTEMPTS_KEPT).into_bytes(),
            );
        }
    }
    Ok(())
}

struct CreateWebhook(StoredEndpoint);

impl Intent for CreateWebhook {
    type Output = StoredEndpoint;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<StoredEndpoint, TxError> {
        let t = self.0.endpoint.tenant.as_str();
        let mut list = read_list(tx, t)?;
        rules::webhook_fits(list.len(), MAX_ENDPOINTS_PER_TENANT)?;
        let mut new = self.0.clone();
        new.state.cursor = tx.counter(keys::counter(t, EVENT_SEQUENCE).as_bytes())?;
        list.push(new.clone());
        list.sort_by(|a, b| a.endpoint.id.cmp(&b.endpoint.id));
        write_list(tx, t, &list)?;
        Ok(new)
    }
}

struct PatchWebhook {
    tenant: TenantId,
    id: String,
    patch: EndpointPatch,
    now: Timestamp,
}

impl Intent for PatchWebhook {
    type Output = StoredEndpoint;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<StoredEndpoint, TxError> {
        change_one(tx, &self.tenant, &self.id, |stored| {
            *stored = stored.patched(&self.patch, self.now);
            stored.clone()
        })
    }
}

struct DeleteWebhook {
    tenant: TenantId,
    id: String,
}

impl Intent for DeleteWebhook {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let t = self.tenant.as_str();
        let mut list = read_list(tx, t)?;
        let before = list.len();
        list.retain(|e| e.endpoint.id != self.id);
        if list.len() == before {
            return Err(StoreError::NotFound.into());
        }
        write_list(tx, t, &list)
    }
}

/// Removes attempts of a deleted endpoint (listed outside the transaction, which cannot
/// scan; none are added once the endpoint is gone).
struct DropAttempts(Vec<Vec<u8>>);

impl Intent for DropAttempts {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        for key in &self.0 {
            tx.remove(TreeId::WebhookAttempts, key.clone());
        }
        Ok(())
    }
}

struct ClaimWebhooks {
    candidates: Vec<(TenantId, String)>,
    node: String,
    now: Timestamp,
    until: Timestamp,
}

impl Intent for ClaimWebhooks {
    type Output = Vec<StoredEndpoint>;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<Vec<StoredEndpoint>, TxError> {
        let mut claimed = Vec::new();
        let mut tenants: Vec<&TenantId> = self.candidates.iter().map(|(t, _)| t).collect();
        tenants.dedup();
        for tenant in tenants {
            let t = tenant.as_str();
            let mut list = read_list(tx, t)?;
            let mut changed = false;
            for stored in list.iter_mut() {
                let wanted = self
                    .candidates
                    .iter()
                    .any(|(ct, id)| ct == tenant && *id == stored.endpoint.id);
                if wanted && stored.due(self.now, &self.node) {
                    stored.lease = Some(Lease {
                        owner: self.node.clone(),
                        until: self.until,
                    });
                    claimed.push(stored.clone());
                    changed = true;
                }
            }
            if changed {
                write_list(tx, t, &list)?;
            }
        }
        Ok(claimed)
    }
}

struct SettleWebhook(Settlement);

impl Intent for SettleWebhook {
    type Output = bool;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<bool, TxError> {
        let s = &self.0;
        let settled = match change_one(tx, &s.tenant, &s.endpoint, |stored| {
            let settled = s.apply(stored);
            if let Some((after, _)) = &settled {
                *stored = after.clone();
            }
            settled
        }) {
            Err(TxError::Refused(StoreError::NotFound)) => return Ok(false),
            other => other?,
        };
        let Some((_, attempts)) = settled else {
            // Not this node's any more: the unchanged list was written back, which is no change.
            return Ok(false);
        };
        log_attempts(tx, s.tenant.as_str(), &s.endpoint, &attempts)?;
        Ok(true)
    }
}

struct LogAttempt {
    tenant: TenantId,
    id: String,
    attempt: DeliveryAttempt,
}

impl Intent for LogAttempt {
    type Output = DeliveryAttempt;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<DeliveryAttempt, TxError> {
        let attempt = change_one(tx, &self.tenant, &self.id, |stored| {
            stored.state.attempts_logged += 1;
            DeliveryAttempt {
                number: stored.state.attempts_logged,
                ..self.attempt.clone()
            }
        })?;
        log_attempts(
            tx,
            self.tenant.as_str(),
            &self.id,
            std::slice::from_ref(&attempt),
        )?;
        Ok(attempt)
    }
}

impl Store {
    fn read_endpoints(&self, tenant: &str) -> Result<Vec<StoredEndpoint>, StoreError> {
        let handles = self.handles()?;
        match handles
            .tree(TreeId::Webhooks)
            .get(endpoints_key(tenant).as_bytes())?
        {
            Some(bytes) => codec::decode(&bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Every tenant's endpoints.
    fn every_endpoint(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        let handles = self.handles()?;
        let mut out = Vec::new();
        for entry in handles.tree(TreeId::Webhooks).iter() {
            let (_, value) = entry?;
            let list: Vec<StoredEndpoint> = codec::decode(&value)?;
            out.extend(list);
        }
        Ok(out)
    }

    fn last_event(&self, tenant: &str) -> Result<u64, StoreError> {
        let handles = self.handles()?;
        let key = keys::counter(tenant, EVENT_SEQUENCE);
        Ok(match handles.tree(TreeId::Counters).get(key.as_bytes())? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?,
            ),
            None => 0,
        })
    }
}

impl WebhookStore for Store {
    fn webhooks(&self, tenant: &TenantId) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.read_endpoints(tenant.as_str())
    }

    fn webhook(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredEndpoint>, StoreError> {
        Ok(self
            .read_endpoints(tenant.as_str())?
            .into_iter()
            .find(|e| e.endpoint.id == id))
    }

    fn create_webhook(&self, new: StoredEndpoint) -> EngineFuture<'_, StoredEndpoint> {
        Box::pin(self.submit(CreateWebhook(new)))
    }

    fn patch_webhook<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> EngineFuture<'a, StoredEndpoint> {
        Box::pin(self.submit(PatchWebhook {
            tenant: tenant.clone(),
            id: id.to_owned(),
            patch,
            now,
        }))
    }

    fn delete_webhook<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.submit(DeleteWebhook {
                tenant: tenant.clone(),
                id: id.to_owned(),
            })
            .await?;
            let prefix = attempts_of(tenant.as_str(), id);
            let handles = self.handles()?;
            let mut doomed = Vec::new();
            for entry in handles
                .tree(TreeId::WebhookAttempts)
                .scan_prefix(prefix.as_bytes())
            {
                let (key, _) = entry?;
                doomed.push(key.to_vec());
            }
            drop(handles);
            if !doomed.is_empty() {
                self.submit(DropAttempts(doomed)).await?;
            }
            Ok(())
        })
    }

    fn claim_webhooks<'a>(
        &'a self,
        node: &'a str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
        skip: &'a [(TenantId, String)],
    ) -> EngineFuture<'a, Vec<StoredEndpoint>> {
        Box::pin(async move {
            let mut candidates = Vec::new();
            for stored in self.every_endpoint()? {
                let e = &stored.endpoint;
                if candidates.len() == limit
                    || !stored.due(now, node)
                    || skip.iter().any(|(t, id)| *t == e.tenant && *id == e.id)
                {
                    continue;
                }
                if self.last_event(e.tenant.as_str())? > stored.state.cursor {
                    candidates.push((e.tenant.clone(), e.id.clone()));
                }
            }
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            self.submit(ClaimWebhooks {
                candidates,
                node: node.to_owned(),
                now,
                until,
            })
            .await
        })
    }

    fn settle_webhook(&self, settlement: Settlement) -> EngineFuture<'_, bool> {
        Box::pin(self.submit(SettleWebhook(settlement)))
    }

    fn log_webhook_attempt<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        attempt: DeliveryAttempt,
    ) -> EngineFuture<'a, DeliveryAttempt> {
        Box::pin(self.submit(LogAttempt {
            tenant: tenant.clone(),
            id: id.to_owned(),
            attempt,
        }))
    }

    fn webhook_attempts(
        &self,
        tenant: &TenantId,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, StoreError> {
        let t = tenant.as_str();
        let scope = attempts_scope(tenant, id);
        let prefix = attempts_of(t, id);
        let end = match after {
            Some(token) => {
                let position = self.tokens.open(&scope, token)?;
                let number: u64 = position
                    .parse()
                    .map_err(|_| StoreError::InvalidPageToken("not an attempt"))?;
                attempt_key(t, id, number).into_bytes()
            }
            None => keys::prefix_end(prefix.as_bytes()),
        };
        let (items, next) = self.newest_first(
            TreeId::WebhookAttempts,
            prefix.as_bytes().to_vec()..end,
            limit,
            &scope,
            |a: &DeliveryAttempt| a.number.to_string(),
        )?;
        Ok(AttemptPage { items, next })
    }

    fn webhook_attempt(
        &self,
        tenant: &TenantId,
        id: &str,
        number: u64,
    ) -> Result<Option<DeliveryAttempt>, StoreError> {
        let handles = self.handles()?;
        let key = attempt_key(tenant.as_str(), id, number);
        match handles.tree(TreeId::WebhookAttempts).get(key.as_bytes())? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn webhook_cursors(&self) -> Result<Vec<(TenantId, u64)>, StoreError> {
        let mut lowest: Vec<(TenantId, u64)> = Vec::new();
        for stored in self.every_endpoint()? {
            if !stored.endpoint.enabled {
                continue;
            }
            let (tenant, cursor) = (&stored.endpoint.tenant, stored.state.cursor);
            match lowest.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, low)) => *low = (*low).min(cursor),
                None => lowest.push((tenant.clone(), cursor)),
            }
        }
        Ok(lowest)
    }
}
