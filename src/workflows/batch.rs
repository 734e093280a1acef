//! `POST /courseRegistrations/{t}/batch`: up to 100 patches and deletes. Every operation is
//! prepared in parallel (read, lock check, patch, validation), then all of them commit in one
//! transaction and one flush. An operation that lost a race with another writer is prepared
//! again in a further round; with `atomic` the whole batch is retried instead.

use super::registrations::{changed_body, check_preconditions, fetch};
use crate::domain::access::WriteContext;
use crate::domain::batch::{BatchRequest, OpKind};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::RegistrationInput;
use crate::error::{ApiError, ErrorCode};
use crate::store::batch::{ApplyBatch, BatchStep};
use crate::store::registrations::{DeleteRegistration, ReviseRegistration};
use crate::store::{Store, StoreError};
use futures_util::future::join_all;
use serde_json::Value;
use std::sync::Arc;

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

async fn prepare(
    store: &Arc<Store>,
    tenant: &TenantId,
    id: &RecordId,
    kind: &OpKind,
    ctx: &WriteContext,
) -> Result<BatchStep, ApiError> {
    let stored = fetch(store, tenant, id).await?;
    check_preconditions(stored.is_locked(), stored.version(), &None, ctx)?;
    Ok(match kind {
        OpKind::Patch(patch) => {
            let change = super::registrations::Change::Patch(patch.clone());
            let body = changed_body(
                stored.to_json(),
                stored.id.as_str(),
                stored.version(),
                &change,
            )?;
            BatchStep::Revise(Box::new(ReviseRegistration {
                tenant: tenant.clone(),
                id: id.clone(),
                base_version: stored.version(),
                fields: RegistrationInput::parse(&body)?.fields,
                ctx: ctx.clone(),
            }))
        }
        OpKind::Delete => BatchStep::Delete(DeleteRegistration {
            tenant: tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
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
    store: &Arc<Store>,
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
        .map(|op| op.parsed.as_ref().err().map(|e| Err(e.clone())))
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
        let prepared = join_all(pending.iter().map(|&i| {
            let (id, kind) = request.operations[i]
                .parsed
                .as_ref()
                .expect("pending operations parsed");
            prepare(store, tenant, id, kind, &ctx)
        }))
        .await;
        let mut steps = Vec::new();
        for (&i, step) in pending.iter().zip(prepared) {
            match step {
                Ok(step) => steps.push((i, step)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if request.atomic && results.iter().any(|r| matches!(r, Some(Err(_)))) {
            break;
        }
        let outcome = store
            .submit(ApplyBatch {
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
