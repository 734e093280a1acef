//! A batch of registration changes committed in one transaction (and so one flush): each step
//! stands or falls on its own, or — atomic — all fall together.

use super::pipeline::Intent;
use super::tx::{Tx, TxError};
pub use crate::store::write::{ApplyBatch, BatchOutcome, BatchStep, StepOutcome};

impl Intent for ApplyBatch {
    type Output = BatchOutcome;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<BatchOutcome, TxError> {
        let mut results = Vec::with_capacity(self.steps.len());
        let mut failed = false;
        for (position, step) in &self.steps {
            let mark = tx.mark();
            let result = match step {
                BatchStep::Revise(revise) => {
                    revise.apply(tx).map(|r| StepOutcome::Revised(Box::new(r)))
                }
                BatchStep::Delete(delete) => delete.apply(tx).map(|()| StepOutcome::Deleted),
            };
            match result {
                Ok(outcome) => results.push((*position, Ok(outcome))),
                Err(TxError::Refused(e)) => {
                    tx.rollback_to(mark);
                    failed = true;
                    results.push((*position, Err(e)));
                }
                Err(sled) => return Err(sled),
            }
        }
        let rolled_back = self.atomic && failed;
        if rolled_back {
            tx.discard();
        }
        Ok(BatchOutcome {
            results,
            rolled_back,
        })
    }
}
