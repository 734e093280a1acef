//! Records in bulk: the intent that imports many rows in one transaction (each row checked by
//! every rule a single write passes, and written by the same code, so records, index entries
//! and counters change together), the scans an export reads, and the copy a backup makes.

use super::catalog::{self, CatalogHooks};
use super::codec;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::registrations;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::WriteContext;
use crate::domain::catalog::CatalogRecord;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::{CourseRegistration, RegistrationFields};
use crate::domain::transfer::{
    BulkLoad, Draft, ImportRow, KeptSys, RecordDraft, RecordKind, RowOrigin, StoredRecord,
};
pub use crate::store::records::BackupReport;
pub use crate::store::write::{ImportOutcome, ImportRows};
use std::path::Path;

impl Intent for ImportRows {
    type Output = ImportOutcome;

    fn apply(&self, tx: &mut Tx<'_>) -> Result<ImportOutcome, TxError> {
        let mut imported = 0;
        let mut refused = Vec::new();
        for row in &self.rows {
            let mark = tx.mark();
            match import_row(tx, &self.tenant, row, &self.load, &self.ctx) {
                Ok(()) => imported += 1,
                Err(TxError::Refused(e)) => {
                    tx.rollback_to(mark);
                    refused.push((row.origin.row, e));
                }
                Err(sled) => return Err(sled),
            }
        }
        if self.all_or_nothing && (self.refused_earlier || !refused.is_empty()) {
            tx.discard();
            imported = 0;
        }
        Ok(ImportOutcome { imported, refused })
    }

    /// An import flushes once, at its end.
    fn defers_flush(&self) -> bool {
        true
    }
}

fn import_row(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    row: &ImportRow,
    load: &BulkLoad,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    match &row.draft {
        Draft::Registration(draft) => {
            import_registration(tx, tenant, &row.id, draft, load, &row.origin, ctx)
        }
        Draft::Contact(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
        Draft::Course(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
        Draft::CourseOffering(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
        Draft::RegistrationProcess(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
        Draft::Order(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
        Draft::EmailTemplate(draft) => import_catalog(tx, tenant, &row.id, draft, ctx),
    }
}

fn id_taken(id: &RecordId) -> TxError {
    // A new row's id is a fresh ULID: only a broken generator could meet a stored one.
    StoreError::Corrupt(format!("the new id {id} is taken")).into()
}

/// A registration row: a new record exactly as a create makes it (references, contact and
/// offering details, number, every rule), or a restored one that keeps what its row says and
/// replaces the stored record of its id, if there is one, as a PUT would.
fn import_registration(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    draft: &RecordDraft<RegistrationFields, RegistrationFields>,
    load: &BulkLoad,
    origin: &RowOrigin,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let stored = registrations::load(tx, tenant, id)?;
    let mut fields = draft.fields.clone();
    catalog::check_references(tx, tenant, &fields.references())?;
    if stored.is_none() {
        registrations::check_quota(tx, tenant)?;
    }
    let mut record = match &draft.kept {
        None => {
            if stored.is_some() {
                return Err(id_taken(id));
            }
            registrations::denormalise(tx, tenant, &mut fields, None)?;
            CourseRegistration::create(id.clone(), fields, ctx)?
        }
        Some(kept) => CourseRegistration::restore(id.clone(), fields, kept, stored.as_ref(), ctx)?,
    };
    registrations::number_if_unnumbered(tx, tenant, &mut record)?;
    record.stamp_bulk_load(load, origin);
    registrations::write(tx, tenant, stored.as_ref(), Some(&record), ctx)
}

/// A catalog row: new, or restored over the stored record of its id; its references must
/// exist (the export's order puts them first) and their counts move with it.
fn import_catalog<F: CatalogHooks>(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    id: &RecordId,
    draft: &RecordDraft<F, KeptSys>,
    ctx: &WriteContext,
) -> Result<(), TxError> {
    let stored = catalog::load::<F>(tx, tenant, id)?;
    let record = match &draft.kept {
        None if stored.is_some() => return Err(id_taken(id)),
        None => CatalogRecord::create(id.clone(), draft.fields.clone(), ctx)?,
        Some(kept) => {
            CatalogRecord::restore(id.clone(), draft.fields.clone(), kept, stored.as_ref(), ctx)?
        }
    };
    let new_refs = record.fields.references();
    catalog::check_references(tx, tenant, &new_refs)?;
    let old_refs = stored
        .as_ref()
        .map(|s| s.fields.references())
        .unwrap_or_default();
    catalog::move_references(tx, tenant, &old_refs, &new_refs)?;
    catalog::put(tx, tenant, stored.as_ref(), &record, ctx)?;
    F::after_import(tx, tenant, &record)
}

/// Entries copied per `apply_batch` into the new database.
const BACKUP_BATCH: usize = 1000;

/// Copies every tree, key for key, into a new database at `to`. Run as exclusive work on the
/// writer thread (or with no server), so no transaction commits while it reads: the copy is
/// one consistent state.
pub fn copy_database(db: &sled::Db, to: &Path) -> Result<BackupReport, StoreError> {
    let target = sled::Config::new().path(to).open()?;
    let mut entries = 0;
    let names = db.tree_names();
    for name in &names {
        let from = db.open_tree(name)?;
        let to = target.open_tree(name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in from.iter() {
            let (key, value) = entry?;
            batch.insert(key, value);
            in_batch += 1;
            if in_batch == BACKUP_BATCH {
                to.apply_batch(std::mem::take(&mut batch))?;
                entries += in_batch as u64;
                in_batch = 0;
            }
        }
        to.apply_batch(batch)?;
        entries += in_batch as u64;
    }
    target.flush()?;
    // Dropping the last handle closes the copy, which syncs it to disk.
    drop(target);
    Ok(BackupReport {
        trees: names.len(),
        entries,
    })
}

fn decode_catalog<F: crate::domain::catalog::CatalogFields>(
    bytes: &[u8],
) -> Result<CatalogRecord<F>, StoreError> {
    codec::decode(bytes)
}

impl Store {
    /// Every record of `kind` in the tenant, in id order. Not a snapshot: each record is read
    /// as it is when the scan reaches it (a backup is the consistent copy).
    pub fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> impl Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static {
        let t = tenant.as_str();
        // The handles go with the scan: a reopen of the database (`live`) waits for it. Without
        // a database (a reopen that failed) the export is that one error.
        let (scan, unavailable) = match self.handles() {
            Ok(handles) => {
                let scan = match kind {
                    RecordKind::Registration => (TreeId::Registrations, keys::registrations_of(t)),
                    RecordKind::Catalog(kind) => (TreeId::Catalog, keys::catalog_of(t, kind.tag())),
                };
                let (tree, prefix) = scan;
                let scan = handles
                    .tree(tree)
                    .range_owned(prefix.as_bytes().to_vec()..keys::prefix_end(prefix.as_bytes()));
                (Some((handles, scan)), None)
            }
            Err(e) => (None, Some(e)),
        };
        let catalog_kind = match kind {
            RecordKind::Registration => None,
            RecordKind::Catalog(kind) => Some(kind),
        };
        let records = scan.into_iter().flat_map(move |(handles, scan)| {
            scan.map(move |entry| {
                let _held = &handles;
                let (_, bytes) = entry?;
                Ok(match catalog_kind {
                    None => StoredRecord::Registration(Box::new(codec::decode(&bytes)?)),
                    Some(kind) => crate::with_catalog_fields!(
                        kind,
                        F => StoredRecord::catalog(&decode_catalog::<F>(&bytes)?)
                    ),
                })
            })
        });
        unavailable.map(Err).into_iter().chain(records)
    }

    /// Copies the whole database into `to` (new or empty) while the server keeps serving:
    /// writes wait while the copy runs.
    pub async fn backup(&self, to: &Path) -> Result<BackupReport, StoreError> {
        let to = to.to_owned();
        self.pipeline
            .exclusive(move |db, _| copy_database(db, &to))
            .await
    }
}
