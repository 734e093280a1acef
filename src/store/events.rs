//! The event store's engine-neutral parts: how a feed reader learns that new events may have
//! committed ([`ChangeSignal`]), and what may hold compaction back ([`EventHold`]).
//!
//! Each engine keeps the events themselves (docs/DESIGN.md, "The event store"): one per
//! record written, in the record's transaction, numbered per tenant in commit order.

use crate::domain::events::ChangeOp;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::transfer::RecordKind;
use crate::store::check::{Observed, Problem, ProblemKind};
use crate::store::page::PageScope;
use crate::store::tuple::Key;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Most events one feed or history request examines; a feed filtered by `kinds` may return
/// fewer items and a cursor past the ones it skipped.
pub const MAX_EXAMINED: usize = 10_000;

/// How often a stream polls an engine that cannot tell when events commit (PostgreSQL: no
/// LISTEN/NOTIFY, so several nodes learn of each other's writes by reading the table).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What a history page token is bound to: the tenant, the record's kind and id.
pub fn history_scope(tenant: &str, kind: RecordKind, id: &RecordId) -> PageScope {
    let canonical = Key::new().text(kind.tag()).text(id.as_str());
    PageScope::query(tenant, "history", canonical.as_bytes())
}

/// Wakes a feed reader when new events may have committed.
pub enum ChangeSignal {
    /// The engine announces each commit (sled: the writer, after the batch is durable).
    Notified(watch::Receiver<u64>),
    /// The engine cannot tell: look again after the interval.
    Poll(Duration),
}

impl ChangeSignal {
    /// Resolves once new events may be there. Never resolves when the engine has closed (the
    /// server is stopping and ends its streams itself).
    pub async fn changed(&mut self) {
        match self {
            ChangeSignal::Notified(receiver) => {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            ChangeSignal::Poll(interval) => tokio::time::sleep(*interval).await,
        }
    }
}

/// The sender side of [`ChangeSignal::Notified`], for an engine that knows when it commits.
#[derive(Clone)]
pub struct ChangeNotifier(Arc<watch::Sender<u64>>);

impl Default for ChangeNotifier {
    fn default() -> Self {
        ChangeNotifier(Arc::new(watch::channel(0).0))
    }
}

impl ChangeNotifier {
    /// Tells every reader that events may have committed.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> ChangeSignal {
        ChangeSignal::Notified(self.0.subscribe())
    }
}

/// What holds compaction back: events a consumer has not had yet (the webhook delivery queue,
/// when it lands) are kept past `--history-days` until it has them.
pub trait EventHold: Send + Sync {
    /// The lowest sequence number of `tenant` that must be kept; `None` holds nothing back.
    fn keep_from(&self, tenant: &TenantId) -> Option<u64>;
}

/// The holds an engine's sweep obeys (none until something registers one).
#[derive(Default, Clone)]
pub struct EventHolds(Arc<RwLock<Vec<Arc<dyn EventHold>>>>);

impl EventHolds {
    pub fn add(&self, hold: Arc<dyn EventHold>) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hold);
    }

    /// The first sequence number of `tenant` that compaction may not remove, if any.
    pub fn keep_from(&self, tenant: &TenantId) -> Option<u64> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|hold| hold.keep_from(tenant))
            .min()
    }
}

/// Whether compaction may remove the event `seq`, written at `at`, of `tenant`: older than
/// the cutoff and not held.
pub fn compactable(seq: u64, older_than_cutoff: bool, keep_from: Option<u64>) -> bool {
    older_than_cutoff && keep_from.is_none_or(|first_kept| seq < first_kept)
}

/// The latest event of each record that has one: (kind, id) → (op, version).
pub type LatestEvents = HashMap<(RecordKind, String), (ChangeOp, u64)>;

/// What the check reports about a tenant's events, from its records (kind, id, version) and
/// the latest event of each record (`latest`): a record whose latest event is another
/// version or `deleted`, and a latest event other than `deleted` whose record is missing.
/// Records with no event (written before events existed, or compacted) are not reported.
pub fn event_problems(
    tenant: &str,
    tree: &'static str,
    records: impl IntoIterator<Item = (RecordKind, String, u64)>,
    mut latest: LatestEvents,
) -> Vec<Problem> {
    let problem = |kind: RecordKind, id: &str, expected: Option<String>, found: String| Problem {
        kind: ProblemKind::EventMismatch,
        tenant: Some(tenant.to_owned()),
        tree,
        record_id: Some(id.to_owned()),
        counter: None,
        key: hex(&Key::new()
            .text(tenant)
            .text(kind.tag())
            .text(id)
            .into_bytes()),
        expected: expected.map(Observed::Text),
        found: Some(Observed::Text(found)),
        repairable: false,
        detail: Some(format!(
            "{} {id}: latest change event vs the record",
            kind.tag()
        )),
    };
    let mut problems = Vec::new();
    for (kind, id, version) in records {
        if let Some((op, at)) = latest.remove(&(kind, id.clone())) {
            if op == ChangeOp::Deleted || at != version {
                problems.push(problem(
                    kind,
                    &id,
                    Some(format!("version {version}")),
                    format!("{} at version {at}", op.as_str()),
                ));
            }
        }
    }
    let mut orphans: Vec<_> = latest
        .into_iter()
        .filter(|(_, (op, _))| *op != ChangeOp::Deleted)
        .collect();
    orphans.sort_by(|a, b| a.0 .1.cmp(&b.0 .1));
    for ((kind, id), (op, at)) in orphans {
        problems.push(problem(
            kind,
            &id,
            None,
            format!("{} at version {at}, record missing", op.as_str()),
        ));
    }
    problems
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct From(u64);
    impl EventHold for From {
        fn keep_from(&self, _: &TenantId) -> Option<u64> {
            Some(self.0)
        }
    }

    #[test]
    fn a_hold_keeps_events_past_their_age() {
        let holds = EventHolds::default();
        let t = TenantId::parse("t1").unwrap();
        assert_eq!(holds.keep_from(&t), None);
        assert!(compactable(5, true, holds.keep_from(&t)));
        holds.add(Arc::new(From(7)));
        holds.add(Arc::new(From(4)));
        assert_eq!(holds.keep_from(&t), Some(4));
        assert!(compactable(3, true, holds.keep_from(&t)));
        assert!(!compactable(4, true, holds.keep_from(&t)));
        assert!(!compactable(1, false, None));
    }

    #[test]
    fn a_record_and_its_latest_event_must_agree() {
        let r = RecordKind::Registration;
        let mut latest = LatestEvents::new();
        latest.insert((r, "a".into()), (ChangeOp::Updated, 2));
        latest.insert((r, "b".into()), (ChangeOp::Created, 1));
        latest.insert((r, "c".into()), (ChangeOp::Deleted, 3));
        latest.insert((r, "d".into()), (ChangeOp::Created, 1));
        latest.insert((r, "e".into()), (ChangeOp::Deleted, 1));
        let records = vec![
            (r, "a".to_owned(), 2), // agrees
            (r, "b".to_owned(), 2), // a version without its event
            (r, "e".to_owned(), 1), // deleted, yet there
            (r, "z".to_owned(), 7), // no events: before the upgrade
        ];
        let problems = event_problems("t", "events", records, latest);
        let ids: Vec<_> = problems
            .iter()
            .map(|p| p.record_id.clone().unwrap())
            .collect();
        // d: created, record missing; c: deleted and gone is fine.
        assert_eq!(ids, ["b", "e", "d"]);
        assert!(problems
            .iter()
            .all(|p| p.kind == ProblemKind::EventMismatch && !p.repairable));
    }
}
