//! The consistency check: everything the write path derives from the records, recomputed from
//! the records and compared with what is stored; and the repair that rewrites the derived data
//! from the records.
//!
//! Records (registrations, catalog records, tenants, API keys, outbox messages, stored
//! `Idempotency-Key` responses) are the truth. Derived from them, per tenant:
//! * each index of `REGISTRATION_INDEXES`: one entry per registration that has the index's
//!   fields, its value the registration's status and date (`index::entry_value`). An entry
//!   in the layout of earlier builds (status only, format 1) is accepted when its status is
//!   right: every reader still reads it correctly (the date unknown, a search reads the
//!   record). It is counted as `older_layout`, and a repair rewrites it in the current layout,
//!   so `registrar check --repair` upgrades an old data directory;
//! * `registration_slots`: (offering, student) → the one non-cancelled registration;
//! * `counters`: active seats per offering, references per catalog record, the registration
//!   count the quota reads, and the registration and order number sequences (which must be
//!   at least the highest number in use: they may be higher, numbers are never reused);
//! * `api_keys_by_tenant`: one marker per API key;
//! * `idempotency_expiry`: one entry per stored response, at the time it was stored;
//! * `counters` again: `stored_bytes`, the bytes of the tenant's records (`usage`).
//!
//! Outbox messages are only decoded. Change events are compared with the records
//! (`events`): reported, never repaired.
//!
//! A check reads the trees one after another: sled has no snapshot across trees. Online it
//! runs on the writer thread (`Pipeline::exclusive`), so no write is half-way through.

mod events;
mod tenant;
#[cfg(test)]
mod tests;

pub use crate::store::check::{
    Change, ChangeAction, CheckReport, Observed, Problem, ProblemKind, RepairOutcome, Scope,
};

use super::codec;
use super::error::StoreError;
use super::keys::{self, Key};
use super::split::{self, Stored};
use super::tx::TreeId;
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{ApiKey, Tenant};
use crate::store::check::hex;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional, Tree};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

impl Store {
    /// Checks the derived data of `scope` against the records and, with `repair`, rewrites
    /// what differs. It runs on the writer thread, so it sees no write half-way through;
    /// writes wait while it runs.
    pub async fn check(&self, scope: Scope, repair: bool) -> Result<CheckReport, StoreError> {
        self.pipeline
            .exclusive(move |_, trees| run(trees, &scope, repair))
            .await
    }
}

/// Why `check_offline` could not run.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("there is no database in {0}")]
    NoDatabase(PathBuf),
    /// The data dir could not be looked at or opened: the message names the path and why.
    #[error("{0}")]
    Unreadable(String),
    #[error(
        "the database in {0} is in use by another process (a running server?): stop it first, \
         or ask the server with POST /admin/check (operator key)"
    )]
    InUse(PathBuf),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Opens the database in `dir` (it must exist: a check never creates one), checks it and,
/// with `repair`, repairs it.
pub fn check_offline(dir: &Path, scope: &Scope, repair: bool) -> Result<CheckReport, OfflineError> {
    // sled keeps its data in the file `db` (and takes its lock on it).
    // A permission problem is reported as one, not as a missing database.
    if !super::files::has_database(dir).map_err(OfflineError::Unreadable)? {
        return Err(OfflineError::NoDatabase(dir.to_path_buf()));
    }
    let used_before = super::recorded_format(dir)?.is_some();
    let db = super::open_db(dir).map_err(|e| match e {
        StoreError::Locked(_) => OfflineError::InUse(dir.to_path_buf()),
        other => OfflineError::Unreadable(format!(
            "cannot open the database in {}: {other}",
            dir.display()
        )),
    })?;
    let meta = db.open_tree("meta").map_err(StoreError::from)?;
    if used_before {
        super::expect_contents(&meta)?;
    }
    super::stored_format(&meta, false)?;
    let trees = super::open_trees(&db)?;
    let report = run(&trees, scope, repair)?;
    db.flush().map_err(StoreError::from)?;
    Ok(report)
}

/// Checks, and repairs when asked, on trees no one writes meanwhile.
fn run(trees: &[Tree], scope: &Scope, repair: bool) -> Result<CheckReport, StoreError> {
    let trees = Trees(trees);
    let pass = inspect(&trees, scope)?;
    let problems: Vec<Problem> = pass.findings.iter().map(|f| f.problem.clone()).collect();
    let mut report = CheckReport {
        clean: problems.is_empty(),
        tenants: pass.tenants.clone(),
        records: pass.records.clone(),
        entries: pass.entries.clone(),
        older_layout: pass.older_layout.len() as u64,
        problem_count: problems.len(),
        problems,
        repair: None,
    };
    if repair {
        let upgraded = pass.older_layout.len() as u64;
        let changes = apply(&trees, pass.findings, pass.older_layout)?;
        let remaining: Vec<Problem> = inspect(&trees, scope)?
            .findings
            .into_iter()
            .map(|f| f.problem)
            .collect();
        report.clean = remaining.is_empty();
        report.repair = Some(RepairOutcome {
            changes,
            upgraded,
            remaining,
        });
    }
    Ok(report)
}

/// The trees, by `TreeId`.
struct Trees<'a>(&'a [Tree]);

impl Trees<'_> {
    /// The tree as stored: a split value's head in its place (`split`).
    fn get(&self, id: TreeId) -> &Tree {
        &self.0[id.position()]
    }

    /// The tree with split values put back together.
    fn stored(&self, id: TreeId) -> Stored<'_> {
        Stored::new(id, self.get(id), self.get(TreeId::ValuePieces))
    }

    /// Every (key, value) under `prefix`, in key order, split values put back together; one
    /// that does not go back together comes as its head, which reads as a value that does
    /// not decode (`Stored::range_keeping_damage`).
    fn scan(
        &self,
        id: TreeId,
        prefix: &Key,
    ) -> impl Iterator<Item = Result<(IVec, IVec), StoreError>> + '_ {
        self.stored(id)
            .range_keeping_damage(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()))
    }
}

/// A derived value as it should be: the write to make it so.
struct Fix {
    tree: TreeId,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// Whether the key holds a value now (so the fix replaces or removes it).
    was_stored: bool,
}

struct Finding {
    problem: Problem,
    fix: Option<Fix>,
}

/// What one read of the database found.
#[derive(Default)]
struct Pass {
    tenants: Vec<String>,
    records: BTreeMap<String, u64>,
    entries: BTreeMap<String, u64>,
    findings: Vec<Finding>,
    /// Index entries that are right but in an older layout, by tenant, with their rewrite.
    older_layout: Vec<(Option<String>, Fix)>,
}

impl Pass {
    fn count_record(&mut self, kind: &str) {
        *self.records.entry(kind.to_owned()).or_default() += 1;
    }

    fn count_entry(&mut self, tree: TreeId) {
        *self.entries.entry(tree.name().to_owned()).or_default() += 1;
    }

    /// A problem no repair can fix: it is in the records themselves.
    fn record_problem(
        &mut self,
        kind: ProblemKind,
        tenant: Option<&str>,
        tree: TreeId,
        key: &[u8],
        record_id: Option<String>,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            problem: Problem {
                kind,
                tenant: tenant.map(str::to_owned),
                tree: tree.name(),
                record_id,
                counter: None,
                key: hex(key),
                expected: None,
                found: None,
                repairable: false,
                detail: Some(detail.into()),
            },
            fix: None,
        });
    }
}

/// API keys grouped by tenant; they are keyed by key id alone, so they are read once.
#[derive(Default)]
struct ApiKeys {
    by_tenant: HashMap<String, Vec<String>>,
    /// Ids of key records that do not decode: whose they are cannot be told.
    unreadable: HashSet<String>,
}

/// Reads every API key; counts those of `scope` and those whose tenant cannot be told.
fn read_api_keys(trees: &Trees, scope: &Scope, pass: &mut Pass) -> Result<ApiKeys, StoreError> {
    let mut keys = ApiKeys::default();
    for entry in trees.get(TreeId::ApiKeys).iter() {
        let (key, value) = entry?;
        let Ok(id) = keys::api_key_id(&key) else {
            pass.count_record("api_keys");
            pass.record_problem(
                ProblemKind::MalformedKey,
                None,
                TreeId::ApiKeys,
                &key,
                None,
                "not an API key id",
            );
            continue;
        };
        match codec::decode::<ApiKey>(&value) {
            Ok(api_key) => {
                if matches!(scope, Scope::One(tenant) if *tenant != api_key.tenant) {
                    continue;
                }
                pass.count_record("api_keys");
                keys.by_tenant
                    .entry(api_key.tenant.as_str().to_owned())
                    .or_default()
                    .push(id);
            }
            Err(e) => {
                pass.count_record("api_keys");
                pass.record_problem(
                    ProblemKind::UndecodableRecord,
                    None,
                    TreeId::ApiKeys,
                    &key,
                    Some(id.clone()),
                    e.to_string(),
                );
                keys.unreadable.insert(id);
            }
        }
    }
    Ok(keys)
}

/// One read of everything `scope` covers.
fn inspect(trees: &Trees, scope: &Scope) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    let tenant_rows: Vec<(IVec, IVec)> = match scope {
        Scope::Every => trees
            .get(TreeId::Tenants)
            .iter()
            .collect::<Result<_, _>>()?,
        Scope::One(tenant) => {
            let key = keys::tenant(tenant.as_str());
            let value = trees
                .get(TreeId::Tenants)
                .get(key.as_bytes())?
                .ok_or(StoreError::TenantNotFound)?;
            vec![(IVec::from(key.as_bytes()), value)]
        }
    };
    let api_keys = read_api_keys(trees, scope, &mut pass)?;
    for (key, value) in &tenant_rows {
        pass.count_record("tenants");
        let tenant = keys::tenant_id(key)
            .map_err(|e| e.to_string())
            .and_then(|id| TenantId::parse(&id));
        let tenant = match tenant {
            Ok(tenant) => tenant,
            Err(why) => {
                pass.record_problem(
                    ProblemKind::MalformedKey,
                    None,
                    TreeId::Tenants,
                    key,
                    None,
                    format!("not a tenant id: {why}"),
                );
                continue;
            }
        };
        if let Err(e) = codec::decode::<Tenant>(value) {
            pass.record_problem(
                ProblemKind::UndecodableRecord,
                Some(tenant.as_str()),
                TreeId::Tenants,
                key,
                Some(tenant.to_string()),
                e.to_string(),
            );
        }
        pass.tenants.push(tenant.to_string());
        tenant::check_tenant(trees, &tenant, &api_keys, &mut pass)?;
        events::check_events(trees, &tenant, &mut pass)?;
    }
    if *scope == Scope::Every {
        let known: Vec<&[u8]> = tenant_rows.iter().map(|(key, _)| key.as_ref()).collect();
        check_unknown_tenants(trees, &known, &api_keys, &mut pass)?;
        check_value_pieces(trees, &mut pass)?;
    }
    Ok(pass)
}

/// Pieces of long values (`split`) that no stored value's head names: each is removed by a
/// repair. (A head whose pieces are missing is found where its value is read: it does not
/// read back.)
fn check_value_pieces(trees: &Trees, pass: &mut Pass) -> Result<(), StoreError> {
    let mut named = HashSet::new();
    for tree in TreeId::all().filter(|tree| tree.may_split()) {
        for entry in trees.get(tree).iter() {
            let (_, stored) = entry?;
            if let Some(head) = split::Head::of(&stored) {
                named.insert(head.set);
            }
        }
    }
    for entry in trees.get(TreeId::ValuePieces).iter() {
        let (key, _) = entry?;
        pass.count_entry(TreeId::ValuePieces);
        if split::set_of_piece(&key).is_some_and(|set| named.contains(&set)) {
            continue;
        }
        pass.findings.push(Finding {
            problem: Problem {
                kind: ProblemKind::StrayValuePiece,
                tenant: None,
                tree: TreeId::ValuePieces.name(),
                record_id: None,
                counter: None,
                key: hex(&key),
                expected: None,
                found: None,
                repairable: true,
                detail: Some("no stored value is made of this piece".into()),
            },
            fix: Some(Fix {
                tree: TreeId::ValuePieces,
                key: key.to_vec(),
                value: None,
                was_stored: true,
            }),
        });
    }
    Ok(())
}

/// Data under tenant ids with no tenant record: everything outside the known tenants' key
/// ranges, and API keys of unknown tenants.
fn check_unknown_tenants(
    trees: &Trees,
    known: &[&[u8]],
    api_keys: &ApiKeys,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    let known_ids: HashSet<String> = known
        .iter()
        .filter_map(|key| keys::tenant_id(key).ok())
        .collect();
    for tree in TreeId::all() {
        let derived = match tree {
            // Keyed by piece set, not tenant: `check_value_pieces`.
            TreeId::Tenants | TreeId::ApiKeys | TreeId::ValuePieces => continue,
            TreeId::Registrations
            | TreeId::Catalog
            | TreeId::Outbox
            | TreeId::Idempotency
            | TreeId::Events
            | TreeId::Tombstones
            | TreeId::Webhooks
            | TreeId::WebhookAttempts => false,
            TreeId::RegistrationSlots
            | TreeId::Counters
            | TreeId::ApiKeysByTenant
            | TreeId::IdempotencyExpiry
            | TreeId::History
            | TreeId::Index(_) => true,
        };
        // `known` is in key order (the `tenants` tree's order), so the gaps between the
        // tenants' ranges are the unknown tenants' data.
        let mut gaps: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut start = Vec::new();
        for prefix in known {
            gaps.push((start, Some(prefix.to_vec())));
            start = keys::prefix_end(prefix);
        }
        gaps.push((start, None));
        for (from, to) in gaps {
            let range = match to {
                Some(to) => trees.get(tree).range(from..to),
                None => trees.get(tree).range(from..),
            };
            for entry in range {
                let (key, _) = entry?;
                let tenant = keys::tenant_of(&key).ok();
                pass.findings.push(Finding {
                    problem: Problem {
                        kind: ProblemKind::UnknownTenant,
                        tenant: tenant.clone(),
                        tree: tree.name(),
                        record_id: None,
                        counter: None,
                        key: hex(&key),
                        expected: None,
                        found: None,
                        repairable: derived,
                        detail: Some(match tenant {
                            Some(_) => "no tenant record has this id".into(),
                            None => "the key has no tenant id".into(),
                        }),
                    },
                    fix: derived.then(|| Fix {
                        tree,
                        key: key.to_vec(),
                        value: None,
                        was_stored: true,
                    }),
                });
            }
        }
    }
    let mut orphan_keys: Vec<(&String, &String)> = api_keys
        .by_tenant
        .iter()
        .filter(|(tenant, _)| !known_ids.contains(*tenant))
        .flat_map(|(tenant, ids)| ids.iter().map(move |id| (tenant, id)))
        .collect();
    orphan_keys.sort();
    for (tenant, id) in orphan_keys {
        pass.record_problem(
            ProblemKind::UnknownTenant,
            Some(tenant),
            TreeId::ApiKeys,
            keys::api_key(id).as_bytes(),
            Some(id.clone()),
            "the key belongs to a tenant that does not exist",
        );
    }
    Ok(())
}

/// Makes every fixable finding so, and rewrites the entries in an older layout, one
/// transaction per tenant; returns what changed for the findings.
fn apply(
    trees: &Trees,
    findings: Vec<Finding>,
    older_layout: Vec<(Option<String>, Fix)>,
) -> Result<Vec<Change>, StoreError> {
    // Per tenant: the fixes of its findings, and the rewrites of its older-layout entries.
    type TenantFixes = (Vec<(Fix, Problem)>, Vec<Fix>);
    let mut by_tenant: BTreeMap<Option<String>, TenantFixes> = BTreeMap::new();
    for Finding { problem, fix } in findings {
        if let Some(fix) = fix {
            by_tenant
                .entry(problem.tenant.clone())
                .or_default()
                .0
                .push((fix, problem));
        }
    }
    for (tenant, fix) in older_layout {
        by_tenant.entry(tenant).or_default().1.push(fix);
    }
    let mut changes = Vec::new();
    for (_, (fixes, upgrades)) in by_tenant {
        let committed: Result<(), TransactionError<()>> = trees.0.transaction(|view| {
            for fix in fixes.iter().map(|(fix, _)| fix).chain(&upgrades) {
                let tree = &view[fix.tree.position()];
                if fix.tree.may_split() {
                    let pieces = &view[TreeId::ValuePieces.position()];
                    split::write_in(tree, pieces, &fix.key, fix.value.as_deref())?;
                    continue;
                }
                match &fix.value {
                    Some(value) => tree.insert(fix.key.as_slice(), value.as_slice())?,
                    None => tree.remove(fix.key.as_slice())?,
                };
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match committed {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(StoreError::Storage("the repair transaction aborted".into()))
            }
        }
        changes.extend(fixes.into_iter().map(|(fix, problem)| Change {
            action: match (&fix.value, fix.was_stored) {
                (None, _) => ChangeAction::Removed,
                (Some(_), true) => ChangeAction::Replaced,
                (Some(_), false) => ChangeAction::Inserted,
            },
            problem,
        }));
    }
    // No flush here: online, the pipeline makes exclusive work durable before it answers;
    // offline, `check_offline` flushes before it returns.
    Ok(changes)
}
