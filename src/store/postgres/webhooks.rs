//! The webhook queue on PostgreSQL (`store::webhooks`): the tables of migration V4. A child
//! module of `engine`, for its runtime, pool and `transaction!`.

use super::*;
use crate::domain::rules;
use crate::domain::webhook::{
    DeliveryAttempt, EndpointPatch, Lease, Settlement, StoredEndpoint, MAX_ATTEMPTS_KEPT,
    MAX_ENDPOINTS_PER_TENANT,
};
use crate::store::webhooks::{attempts_scope, AttemptPage, WebhookStore};

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Storage(format!("encoding: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a webhook row: {e}")))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes an endpoint's row: its JSON and the columns copied from it.
async fn write_row(tx: &Tx<'_>, stored: &StoredEndpoint, insert: bool) -> Result<(), StoreError> {
    let e = &stored.endpoint;
    let next = stored.state.next_attempt.map(instant_text).transpose()?;
    let owner = stored.lease.as_ref().map(|l| l.owner.clone());
    let until = stored
        .lease
        .as_ref()
        .map(|l| instant_text(l.until))
        .transpose()?;
    let sql = if insert {
        "INSERT INTO webhook_endpoints (tenant_id, id, doc, enabled, cursor, next_attempt, \
         lease_owner, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    } else {
        "UPDATE webhook_endpoints SET doc = $3, enabled = $4, cursor = $5, next_attempt = $6, \
         lease_owner = $7, lease_until = $8 WHERE tenant_id = $1 AND id = $2"
    };
    tx.execute(
        sql,
        &[
            &e.tenant.as_str(),
            &e.id,
            &encode(stored)?,
            &e.enabled,
            &count(stored.state.cursor),
            &next,
            &owner,
            &until,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn locked_row(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<StoredEndpoint>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT doc FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            &[&tenant.as_str(), &id],
        )
        .await
        .map_err(pg)?;
    row.map(|r| decode(r.get::<_, &str>(0))).transpose()
}

/// Changes the endpoint's row with `change`, under its row lock; `NotFound` when there is none.
async fn change_row<R>(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &str,
    change: impl FnOnce(&mut StoredEndpoint) -> R,
) -> Result<(StoredEndpoint, R), StoreError> {
    let mut stored = locked_row(tx, tenant, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let out = change(&mut stored);
    write_row(tx, &stored, false).await?;
    Ok((stored, out))
}

async fn log_attempts(
    tx: &Tx<'_>,
    tenant: &TenantId,
    id: &str,
    attempts: &[DeliveryAttempt],
) -> Result<(), StoreError> {
    for attempt in attempts {
        tx.execute(
            "INSERT INTO webhook_attempts (tenant_id, endpoint_id, number, doc) \
             VALUES ($1, $2, $3, $4)",
            &[
                &tenant.as_str(),
                &id,
                &count(attempt.number),
                &encode(attempt)?,
            ],
        )
        .await
        .map_err(pg)?;
    }
    if let Some(last) = attempts.last().filter(|a| a.number > MAX_ATTEMPTS_KEPT) {
        tx.execute(
            "DELETE FROM webhook_attempts WHERE tenant_id = $1 AND endpoint_id = $2 \
             AND number <= $3",
            &[
                &tenant.as_str(),
                &id,
                &count(last.number - MAX_ATTEMPTS_KEPT),
            ],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn text(value: &str) -> Param {
    Box::new(value.to_owned())
}

impl PgEngine {
    /// The JSON of each row `sql` selects (its first column), decoded.
    fn docs<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<T>, StoreError> {
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let rows = client.query(sql, &refs).await.map_err(pg)?;
                rows.iter().map(|r| decode(r.get::<_, &str>(0))).collect()
            })
        })
    }
}

impl WebhookStore for PgEngine {
    fn webhooks(&self, tenant: &TenantId) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.docs(
            "SELECT doc FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id",
            vec![text(tenant.as_str())],
        )
    }

    fn webhook(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredEndpoint>, StoreError> {
        Ok(self
            .docs(
                "SELECT doc FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
                vec![text(tenant.as_str()), text(id)],
            )?
            .pop())
    }

    fn create_webhook(&self, new: StoredEndpoint) -> EngineFuture<'_, StoredEndpoint> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                let tenant = &new.endpoint.tenant;
                lock_tenant(tx, tenant).await?;
                let existing: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1",
                        &[&tenant.as_str()],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                rules::webhook_fits(
                    usize::try_from(existing).unwrap_or(usize::MAX),
                    MAX_ENDPOINTS_PER_TENANT,
                )?;
                let mut stored = new.clone();
                stored.state.cursor = counter(tx, tenant, Counter::EventSeq).await?;
                write_row(tx, &stored, true).await?;
                Ok::<_, StoreError>((stored, true))
            }
            .await)
        })
    }

    fn patch_webhook<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> EngineFuture<'a, StoredEndpoint> {
        let s = self.shared.clone();
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.spawn(async move {
            transaction!(s, |tx| async {
                let (patched, ()) = change_row(tx, &tenant, &id, |stored| {
                    *stored = stored.patched(&patch, now);
                })
                .await?;
                Ok::<_, StoreError>((patched, true))
            }
            .await)
        })
    }

    fn delete_webhook<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> EngineFuture<'a, ()> {
        let s = self.shared.clone();
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.spawn(async move {
            transaction!(s, |tx| async {
                let gone = tx
                    .execute(
                        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
                        &[&tenant.as_str(), &id],
                    )
                    .await
                    .map_err(pg)?;
                if gone == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok::<_, StoreError>(((), true))
            }
            .await)
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
        let s = self.shared.clone();
        let (node, skip) = (node.to_owned(), skip.to_vec());
        self.spawn(async move {
            let now_text = instant_text(now)?;
            let take = count(limit as u64 + skip.len() as u64);
            transaction!(s, |tx| async {
                // Rows another node is claiming are skipped, not waited for.
                let rows = tx
                    .query(
                        "SELECT w.doc FROM webhook_endpoints w JOIN tenant_counters c \
                         ON c.tenant_id = w.tenant_id \
                         WHERE w.enabled AND c.event_seq > w.cursor \
                         AND (w.next_attempt IS NULL OR w.next_attempt <= $1) \
                         AND (w.lease_until IS NULL OR w.lease_until < $1 OR w.lease_owner = $3) \
                         ORDER BY w.next_attempt NULLS FIRST, w.tenant_id, w.id LIMIT $2 \
                         FOR UPDATE OF w SKIP LOCKED",
                        &[&now_text, &take, &node],
                    )
                    .await
                    .map_err(pg)?;
                let mut claimed = Vec::new();
                for row in &rows {
                    let mut stored: StoredEndpoint = decode(row.get::<_, &str>(0))?;
                    let e = &stored.endpoint;
                    if claimed.len() == limit
                        || !stored.due(now, &node)
                        || skip.iter().any(|(t, id)| *t == e.tenant && *id == e.id)
                    {
                        continue;
                    }
                    stored.lease = Some(Lease {
                        owner: node.clone(),
                        until,
                    });
                    write_row(tx, &stored, false).await?;
                    claimed.push(stored);
                }
                let any = !claimed.is_empty();
                Ok::<_, StoreError>((claimed, any))
            }
            .await)
        })
    }

    fn settle_webhook(&self, settlement: Settlement) -> EngineFuture<'_, bool> {
        let s = self.shared.clone();
        self.spawn(async move {
            transaction!(s, |tx| async {
                let Some(stored) = locked_row(tx, &settlement.tenant, &settlement.endpoint).await?
                else {
                    return Ok::<_, StoreError>((false, false));
                };
                let Some((settled, attempts)) = settlement.apply(&stored) else {
                    return Ok((false, false));
                };
                write_row(tx, &settled, false).await?;
                log_attempts(tx, &settlement.tenant, &settlement.endpoint, &attempts).await?;
                Ok((true, true))
            }
            .await)
        })
    }

    fn log_webhook_attempt<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        attempt: DeliveryAttempt,
    ) -> EngineFuture<'a, DeliveryAttempt> {
        let s = self.shared.clone();
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.spawn(async move {
            transaction!(s, |tx| async {
                let (_, logged) = change_row(tx, &tenant, &id, |stored| {
                    stored.state.attempts_logged += 1;
                    DeliveryAttempt {
                        number: stored.state.attempts_logged,
                        ..attempt.clone()
                    }
                })
                .await?;
                log_attempts(tx, &tenant, &id, std::slice::from_ref(&logged)).await?;
                Ok::<_, StoreError>((logged, true))
            }
            .await)
        })
    }

    fn webhook_attempts(
        &self,
        tenant: &TenantId,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, StoreError> {
        let scope = attempts_scope(tenant, id);
        let before = match after {
            Some(token) => {
                let position = self.shared.tokens.open(&scope, token)?;
                position
                    .parse::<u64>()
                    .map_err(|_| StoreError::InvalidPageToken("not an attempt"))?
            }
            None => u64::MAX,
        };
        let rows: Vec<DeliveryAttempt> = self.docs(
            "SELECT doc FROM webhook_attempts WHERE tenant_id = $1 AND endpoint_id = $2 \
             AND number < $3 ORDER BY number DESC LIMIT $4",
            vec![
                text(tenant.as_str()),
                text(id),
                Box::new(count(before)),
                Box::new(count(limit as u64 + 1)),
            ],
        )?;
        let mut items = rows;
        let next = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|a| self.shared.tokens.seal(&scope, &a.number.to_string()))
        } else {
            None
        };
        Ok(AttemptPage { items, next })
    }

    fn webhook_attempt(
        &self,
        tenant: &TenantId,
        id: &str,
        number: u64,
    ) -> Result<Option<DeliveryAttempt>, StoreError> {
        Ok(self
            .docs(
                "SELECT doc FROM webhook_attempts WHERE tenant_id = $1 AND endpoint_id = $2 \
                 AND number = $3",
                vec![text(tenant.as_str()), text(id), Box::new(count(number))],
            )?
            .pop())
    }

    fn webhook_cursors(&self) -> Result<Vec<(TenantId, u64)>, StoreError> {
        self.block(move |s| {
            Box::pin(async move {
                let client = s.pool.get().await.map_err(|e| from_pool(&e))?;
                let rows = client
                    .query(
                        "SELECT tenant_id, min(cursor) FROM webhook_endpoints WHERE enabled \
                         GROUP BY tenant_id",
                        &[],
                    )
                    .await
                    .map_err(pg)?;
                rows.iter()
                    .map(|r| {
                        let tenant =
                            TenantId::parse(r.get::<_, &str>(0)).map_err(StoreError::Corrupt)?;
                        Ok((tenant, u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
                    })
                    .collect()
            })
        })
    }
}
