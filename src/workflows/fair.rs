//! Fair shares of the blocking pool between tenants (issue 13).
//!
//! Store reads that may block run on the blocking pool ([`super::blocking`]), whose threads
//! the OS schedules alike: a tenant with 60 reads waiting has 60 runnable threads, and another
//! tenant's one read gets a sixtieth of the CPU. A [`BlockingShares`] lets each tenant run at
//! most `per_tenant` jobs at once while another tenant is present (has had a job start within
//! the last second) and queues the rest, in order, per tenant; so a tenant's read competes
//! with at most `per_tenant` threads of each other tenant however many requests that tenant
//! sends. A tenant alone is not held back: the shares cost a lone tenant no throughput (the
//! figures are in docs/SECURITY.md, "Issue 13").
//!
//! The tenant of the running request is known from a task-local the HTTP layer sets around a
//! tenant's request ([`with_share`]); code outside a tenant's request is not queued.

use crate::domain::ids::TenantId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

tokio::task_local! {
    static CURRENT: Share;
}

/// Whose request this task serves, and the shares it draws from.
#[derive(Clone)]
pub struct Share {
    pub shares: Arc<BlockingShares>,
    pub tenant: TenantId,
}

/// How long a tenant counts as present after its last job started: a tenant whose requests
/// come one at a time has no job running most of the time, and must still find the others at
/// their shares when its next one comes.
const PRESENCE: Duration = Duration::from_secs(1);

struct TenantJobs {
    running: usize,
    waiting: VecDeque<oneshot::Sender<()>>,
    last_started: Instant,
}

impl TenantJobs {
    fn present(&self, now: Instant) -> bool {
        self.running > 0
            || !self.waiting.is_empty()
            || now.duration_since(self.last_started) < PRESENCE
    }
}

/// Whether `tenant` is the only tenant present; forgets the tenants no longer present, so the
/// map holds only those.
fn alone(tenants: &mut HashMap<TenantId, TenantJobs>, tenant: &TenantId, now: Instant) -> bool {
    tenants.retain(|_, jobs| jobs.present(now));
    tenants.keys().all(|present| present == tenant)
}

/// Per-tenant places on the blocking pool.
pub struct BlockingShares {
    /// `None`: no limit.
    per_tenant: Option<usize>,
    tenants: Mutex<HashMap<TenantId, TenantJobs>>,
}

/// One running job's place; the next waiting job of the tenant gets it on drop.
pub struct Place {
    shares: Arc<BlockingShares>,
    tenant: TenantId,
}

impl BlockingShares {
    /// `per_tenant` 0 = no limit.
    pub fn new(per_tenant: usize) -> Self {
        BlockingShares {
            per_tenant: (per_tenant > 0).then_some(per_tenant),
            tenants: Mutex::default(),
        }
    }

    /// Waits for one of `tenant`'s places.
    pub async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> Option<Place> {
        let per_tenant = self.per_tenant?;
        let turn = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            // Work-conserving: a tenant alone on the pool is not held to its share.
            let alone = alone(&mut tenants, tenant, now);
            let jobs = tenants.entry(tenant.clone()).or_insert_with(|| TenantJobs {
                running: 0,
                waiting: VecDeque::new(),
                last_started: now,
            });
            jobs.last_started = now;
            if jobs.running < per_tenant || alone {
                jobs.running += 1;
                None
            } else {
                let (handed, turn) = oneshot::channel();
                jobs.waiting.push_back(handed);
                Some(turn)
            }
        };
        if let Some(turn) = turn {
            let mut waiting = Waiting {
                shares: Arc::clone(self),
                tenant: tenant.clone(),
                turn: Some(turn),
            };
            if let Some(turn) = waiting.turn.as_mut() {
                // Err only when the sender is dropped unsent, with the map, with the server:
                // the place is moot then.
                let _ = turn.await;
            }
            // Handed a place: from here the Place gives it back.
            waiting.turn = None;
        }
        Some(Place {
            shares: Arc::clone(self),
            tenant: tenant.clone(),
        })
    }

    fn release(&self, tenant: &TenantId) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let alone = alone(&mut tenants, tenant, Instant::now());
        let Some(jobs) = tenants.get_mut(tenant) else {
            return;
        };
        // Hand the place on to the first waiter still waiting (a cancelled request's
        // receiver is gone), unless the tenant ran beyond its share while it was alone and
        // others wait now: then the place goes back, and the tenant shrinks to its share.
        let within_share = self.per_tenant.is_some_and(|share| jobs.running <= share);
        if within_share || alone {
            while let Some(next) = jobs.waiting.pop_front() {
                if next.send(()).is_ok() {
                    return;
                }
            }
        }
        // The entry stays while the tenant is present; `alone` forgets it later.
        jobs.running = jobs.running.saturating_sub(1);
    }

    #[cfg(test)]
    fn running(&self, tenant: &TenantId) -> usize {
        let tenants = self.tenants.lock().unwrap();
        tenants.get(tenant).map_or(0, |jobs| jobs.running)
    }
}

/// A queued job's turn. A request cancelled while it waits drops this: a place handed to it
/// in the meantime goes back, so no place is lost.
struct Waiting {
    shares: Arc<BlockingShares>,
    tenant: TenantId,
    turn: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            turn.close();
            if turn.try_recv().is_ok() {
                self.shares.release(&self.tenant);
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.shares.release(&self.tenant);
    }
}

/// Runs `work` as `share.tenant`'s: its blocking jobs take that tenant's places.
pub async fn with_share<F: std::future::Future>(share: Share, work: F) -> F::Output {
    CURRENT.scope(share, work).await
}

/// A place for one blocking job of the current task's tenant; `None` outside a tenant's
/// request or without a limit.
pub async fn place() -> Option<Place> {
    let share = CURRENT.try_with(Share::clone).ok()?;
    share.shares.acquire(&share.tenant).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[tokio::test]
    async fn a_tenant_runs_at_most_its_share_and_waiters_go_in_order_while_others_pass() {
        let shares = Arc::new(BlockingShares::new(2));
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        // Another tenant is busy, so a is held to its share.
        let _other = shares.acquire(&b).await.unwrap();
        let first = shares.acquire(&a).await.unwrap();
        let _second = shares.acquire(&a).await.unwrap();
        assert_eq!(shares.running(&a), 2);
        let waiting = {
            let shares = Arc::clone(&shares);
            let a = a.clone();
            tokio::spawn(async move { shares.acquire(&a).await.map(|_| ()) })
        };
        // A cancelled waiter is skipped.
        let cancelled = {
            let shares = Arc::clone(&shares);
            let a = a.clone();
            tokio::spawn(async move { shares.acquire(&a).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        // The other tenant is not held up.
        let _other_again = shares.acquire(&b).await.unwrap();
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap().unwrap();
        assert_eq!(shares.running(&a), 1);
    }

    #[tokio::test]
    async fn a_tenant_alone_is_not_held_to_its_share_and_shrinks_to_it_when_another_comes() {
        let shares = Arc::new(BlockingShares::new(1));
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let first = shares.acquire(&a).await.unwrap();
        let second = shares.acquire(&a).await.unwrap();
        assert_eq!(shares.running(&a), 2);
        let _other = shares.acquire(&b).await.unwrap();
        let waiting = {
            let shares = Arc::clone(&shares);
            let a = a.clone();
            tokio::spawn(async move { shares.acquire(&a).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        // Two running, share one, another tenant busy: the first place given back is not
        // handed on, the second is.
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(shares.running(&a), 1);
        drop(second);
        waiting.await.unwrap().unwrap();
        assert_eq!(shares.running(&a), 0);
    }

    #[tokio::test]
    async fn a_waiter_cancelled_after_it_was_handed_a_place_gives_it_back() {
        let shares = Arc::new(BlockingShares::new(1));
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let _other = shares.acquire(&b).await.unwrap();
        let held = shares.acquire(&a).await.unwrap();
        let mut waiter = Box::pin(shares.acquire(&a));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        // The place is handed over, but the waiter is dropped before it runs again.
        drop(held);
        drop(waiter);
        assert_eq!(shares.running(&a), 0);
        let _again = shares.acquire(&a).await.unwrap();
    }

    #[tokio::test]
    async fn no_limit_and_no_tenant_take_no_place() {
        let shares = Arc::new(BlockingShares::new(0));
        assert!(shares
            .acquire(&TenantId::parse("a").unwrap())
            .await
            .is_none());
        assert!(place().await.is_none());
    }
}
