//! `POST /courseRegistrations/{t}/batch`: up to 100 patches and deletes. Every operation is
//! prepared (all records read in one blocking call, then lock check, patch, validation), then
//! all of them commit in one transaction and one flush. An operation that lost a race with another writer is prepared
//! again in a further round; with `atomic` the whole batch is retried instead.

use super::blocking;
use super::registrations::{check_preconditions, not_found, patched_fields};
use crate::domain::access::WriteContext;
use crate::domain::batch::{BatchRequest, OpKind};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::error::{ApiError, ErrorCode};
use crate::store::write::{ApplyBatch, BatchStep, DeleteRegistration, ReviseRegistration};
use crate::store::{Db, StoreError};
use serde_json::Value;

/// Rounds before an operation that keeps losing races gives up.
const MAX_ROUNDS: usize = 100;

/// One operation's result, in request order.
pub struct OpReport {
    pub op: Option<String>,
    pub id: Option<String>,
    pub result: Result<(), ApiError>,
}

pub struct BatchReport {
    pub operation_id: String,
    pub results: Vec<OpReport>,
}

/// Reads the stored records of `ids` in one trip to the blocking pool (not one each): each
/// with its own outcome, as separate reads would give.
async fn fetch_all(
    store: &Db,
    tenant: &TenantId,
    ids: Vec<RecordId>,
) -> Result<Vec<Result<Option<CourseRegistration>, StoreError>>, ApiError> {
    let tenant = tenant.clone();
    blocking(store, move |s| {
        Ok(ids.iter().map(|id| s.registration(&tenant, id)).collect())
    })
    .await
}

fn prepare(
    stored: Result<Option<CourseRegistration>, StoreError>,
    tenant: &TenantId,
    id: &RecordId,
    kind: &OpKind,
    ctx: &WriteContext,
) -> Result<BatchStep, ApiError> {
    let stored = stored?.ok_or_else(not_found)?;
    check_preconditions(stored.is_locked(), stored.version(), &None, ctx)?;
    Ok(match kind {
        OpKind::Patch(patch) => BatchStep::Revise(Box::new(ReviseRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            fields: patched_fields(&stored, patch)?,
            ctx: ctx.clone(),
            seen: None,
        })),
        OpKind::Delete => BatchStep::Delete(DeleteRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            ctx: ctx.clone(),
        }),
    })
}

fn rolled_back(failed: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BatchRolledBack,
        format!("not applied: operation {failed} failed and the batch is atomic"),
    )
}

pub async fn run(
    store: &Db,
    tenant: &TenantId,
    body: &Value,
    ctx: &WriteContext,
) -> Result<BatchReport, ApiError> {
    let request = BatchRequest::parse(body)?;
    let operation_id = RecordId::generate().to_string();
    let ctx = WriteContext {
        bulk_operation: Some(operation_id.clone()),
        ..ctx.clone()
    };
    let mut results: Vec<Option<Result<(), ApiError>>> = request
        .operations
        .iter()
        .map(|op| op.parsed.as_ref().err().map(|e| Err(e.clone().into())))
        .collect();
    let mut pending: Vec<usize> = (0..request.operations.len())
        .filter(|i| results[*i].is_none())
        .collect();

    for _ in 0..MAX_ROUNDS {
        if pending.is_empty()
            || (request.atomic && results.iter().any(|r| matches!(r, Some(Err(_)))))
        {
            break;
        }
        let parsed = |i: usize| {
            request.operations[i]
                .parsed
                .as_ref()
                .expect("pending operations parsed")
        };
        let ids = pending.iter().map(|&i| parsed(i).0.clone()).collect();
        let stored = fetch_all(store, tenant, ids).await?;
        let mut steps = Vec::new();
        for (&i, stored) in pending.iter().zip(stored) {
            let (id, kind) = parsed(i);
            match prepare(stored, tenant, id, kind, &ctx) {
                Ok(step) => steps.push((i, step)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if request.atomic && results.iter().any(|r| matches!(r, Some(Err(_)))) {
            break;
        }
        let outcome = store
            .apply_batch(ApplyBatch {
                steps,
                atomic: request.atomic,
            })
            .await?;
        let raced: Vec<usize> = outcome
            .results
            .iter()
            .filter(|(_, r)| matches!(r, Err(StoreError::VersionChanged { .. })))
            .map(|(i, _)| *i)
            .collect();
        if request.atomic && outcome.rolled_back {
            let refused = outcome.results.iter().any(
                |(_, r)| matches!(r, Err(e) if !matches!(e, StoreError::VersionChanged { .. })),
            );
            if !refused {
                continue; // only races: prepare the whole batch again
            }
        }
        pending = raced;
        for (i, result) in outcome.results {
            match result {
                Ok(_) => results[i] = Some(Ok(())),
                Err(StoreError::VersionChanged { .. }) if !request.atomic => {}
                Err(e) => results[i] = Some(Err(e.into())),
            }
        }
        if request.atomic && outcome.rolled_back {
            break;
        }
    }
    // Atomic and something failed: every other operation was not applied.
    let first_failure = results.iter().position(|r| matches!(r, Some(Err(_))));
    let results = results
        .into_iter()
        .zip(&request.operations)
        .map(|(result, op)| {
            let result = match (request.atomic, first_failure, result) {
                (true, Some(failed), Some(Ok(()))) | (true, Some(failed), None) => {
                    Err(rolled_back(failed))
                }
                (_, _, Some(result)) => result,
                (_, _, None) => Err(ApiError::new(
                    ErrorCode::VersionConflict,
                    "the record kept changing while the batch was applied; retry",
                )),
            };
            OpReport {
                op: op.name.clone(),
                id: op.raw_id.clone(),
                result,
            }
        })
        .collect();
    Ok(BatchReport {
        operation_id,
        results,
    })
}
