//! The sled `Store` as an `Engine` and `Maintenance`: each method delegates to the inherent
//! one of the same name, or submits the write to the write pipeline as an `Intent`, so
//! behaviour is exactly what the sled store gave before the seam.

use super::catalog::{CreateCatalog, DeleteCatalog, ReviseCatalog};
use super::outbox::{ClaimDue, KeepEvicting};
use super::{check, pipeline::Queued, Store, StoreError};
use crate::domain::access::{Principal, WriteContext};
use crate::domain::catalog::OrderFields;
use crate::domain::catalog::{AnyCatalogRecord, AnyKind, CatalogKind, CatalogRecord};
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::{RecordKind, StoredRecord};
use crate::store::events::{ChangeSignal, EventHold};
use crate::store::index::IndexDef;
use crate::store::records::Delivery;
use crate::store::records::{
    AnyCatalogPage, BackupReport, ChangesPage, HistoryPage, OutboxMessage, OutboxPage,
    RegistrationPage, ResponseClaim, StoredResponse, Swept,
};
use crate::store::retention::Retention;
use crate::store::{stats, write, Engine, EngineFuture, Maintenance};
use std::path::Path;

impl Engine for Store {
    fn reads_may_wait(&self) -> bool {
        Store::reads_may_wait(self)
    }

    fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError> {
        Store::registration(self, tenant, id)
    }
    fn registration_seen(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<(CourseRegistration, Option<u64>)>, StoreError> {
        Store::registration_seen(self, tenant, id)
    }
    fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        Store::list_registrations(self, tenant, after, limit)
    }
    fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        Store::lookup_registrations(self, tenant, def, values, active_only, after, limit)
    }
    fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistrationPage, StoreError> {
        let page = Store::search_registrations(self, tenant, criteria, after, limit)?;
        Ok(RegistrationPage {
            items: page.items,
            next: page.next,
        })
    }
    fn registration_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Store::registration_count(self, tenant)
    }
    fn active_registrations(
        &self,
        tenant: &TenantId,
        offering: &RecordId,
    ) -> Result<u64, StoreError> {
        Store::active_registrations(self, tenant, offering)
    }
    fn create_registration(
        &self,
        write: write::CreateRegistration,
    ) -> EngineFuture<'_, CourseRegistration> {
        Box::pin(self.submit(write))
    }
    fn revise_registration(
        &self,
        write: write::ReviseRegistration,
    ) -> EngineFuture<'_, CourseRegistration> {
        Box::pin(self.submit(write))
    }
    fn delete_registration(&self, write: write::DeleteRegistration) -> EngineFuture<'_, ()> {
        Box::pin(self.submit(write))
    }
    fn apply_batch(&self, write: write::ApplyBatch) -> EngineFuture<'_, write::BatchOutcome> {
        Box::pin(self.submit(write))
    }
    fn generate_order(
        &self,
        write: write::GenerateOrder,
    ) -> EngineFuture<'_, (CatalogRecord<OrderFields>, CourseRegistration)> {
        Box::pin(self.submit(write))
    }

    fn catalog_record(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        id: &RecordId,
    ) -> Result<Option<AnyCatalogRecord>, StoreError> {
        crate::with_catalog_fields!(kind, F => Ok(Store::catalog_record::<F>(self, tenant, id)?
            .map(F::into_any)))
    }
    fn list_catalog(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AnyCatalogPage, StoreError> {
        crate::with_catalog_fields!(kind, F => {
            let page = Store::list_catalog::<F>(self, tenant, after, limit)?;
            Ok(AnyCatalogPage {
                items: page.items.into_iter().map(F::into_any).collect(),
                next: page.next,
            })
        })
    }
    fn create_catalog(&self, write: write::CreateCatalog) -> EngineFuture<'_, AnyCatalogRecord> {
        let (tenant, ctx) = (write.tenant, write.ctx);
        crate::with_any_catalog_record!(write.record, F, record => {
            let intent = CreateCatalog::<F> { tenant, record, ctx };
            Box::pin(async move { Ok(F::into_any(self.submit(intent).await?)) })
        })
    }
    fn revise_catalog(&self, write: write::ReviseCatalog) -> EngineFuture<'_, AnyCatalogRecord> {
        let write::ReviseCatalog {
            tenant,
            base_version,
            ctx,
            ..
        } = write;
        crate::with_any_catalog_record!(write.record, F, record => {
            let intent = ReviseCatalog::<F> { tenant, base_version, record, ctx };
            Box::pin(async move { Ok(F::into_any(self.submit(intent).await?)) })
        })
    }
    fn delete_catalog(&self, write: write::DeleteCatalog) -> EngineFuture<'_, ()> {
        crate::with_catalog_fields!(write.kind, F => {
            let intent = DeleteCatalog::<F> {
                tenant: write.tenant,
                id: write.id,
                base_version: write.base_version,
                ctx: write.ctx,
                kind: std::marker::PhantomData,
            };
            Box::pin(self.submit(intent))
        })
    }

    fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.directory().authenticate(presented)
    }
    fn has_operator_key(&self) -> bool {
        self.directory().has_operator_key()
    }
    fn set_operator_key(&self, key: &str, persist: bool) -> Result<(), StoreError> {
        Store::set_operator_key(self, key, persist)
    }
    fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        Store::tenant(self, id)
    }
    fn tenants(&self) -> Vec<Tenant> {
        Store::tenants(self)
    }
    fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey> {
        self.directory().keys_of(tenant)
    }
    fn create_tenant<'a>(
        &'a self,
        new: NewTenant,
        ctx: &'a WriteContext,
    ) -> EngineFuture<'a, Tenant> {
        Box::pin(Store::create_tenant(self, new, ctx))
    }
    fn patch_tenant<'a>(
        &'a self,
        id: &'a TenantId,
        body: serde_json::Value,
    ) -> EngineFuture<'a, Tenant> {
        Box::pin(Store::patch_tenant(self, id, body))
    }
    fn create_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        new: NewKey,
    ) -> EngineFuture<'a, (ApiKey, String)> {
        Box::pin(Store::create_key(self, tenant, new))
    }
    fn import_key(&self, key: ApiKey) -> EngineFuture<'_, ()> {
        Box::pin(Store::import_key(self, key))
    }
    fn revoke_key<'a>(&'a self, tenant: &'a TenantId, key_id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(Store::revoke_key(self, tenant, key_id))
    }

    fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError> {
        Store::outbox_page(self, tenant, after, limit)
    }
    fn keep_in_outbox(&self, keep: write::KeepInOutbox) -> EngineFuture<'_, ()> {
        Box::pin(async move {
            // A few keys of the outbox's oldest end, read only once the outbox is full: a
            // point read, fine on the async worker.
            let evictable = self.oldest_in_outbox(&keep.tenant, keep.max_messages)?;
            let pending = matches!(keep.message.delivery, Delivery::Pending { .. });
            self.submit(KeepEvicting { keep, evictable }).await?;
            if pending {
                self.pending_written();
            }
            Ok(())
        })
    }
    fn claim_outbox(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> EngineFuture<'_, Vec<(TenantId, OutboxMessage)>> {
        Box::pin(async move {
            let candidates = self.due_in_outbox(now, limit)?;
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            self.submit(ClaimDue {
                candidates,
                now,
                until,
            })
            .await
        })
    }
    fn settle_outbox(&self, write: write::SettleOutbox) -> EngineFuture<'_, bool> {
        Box::pin(self.submit(write))
    }
    fn claim_response(&self, claim: write::ClaimResponse) -> Result<ResponseClaim, StoreError> {
        // One process: the middleware's in-process lock (one per key) has made this request
        // the only one with the key, so there is nothing to claim in the database.
        Ok(
            match Store::stored_response(self, &claim.tenant, &claim.key)? {
                Some(stored) if stored.at >= claim.live_after => ResponseClaim::Stored(stored),
                _ => ResponseClaim::Won { token: claim.now },
            },
        )
    }
    fn release_response(&self, _release: write::ReleaseResponse) -> Result<(), StoreError> {
        Ok(())
    }
    fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        Store::stored_response(self, tenant, key)
    }
    fn keep_response(&self, write: write::KeepResponse) -> EngineFuture<'_, ()> {
        Box::pin(self.submit(write))
    }
    fn retention(&self) -> Retention {
        Store::retention(self)
    }

    fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static> {
        Box::new(Store::export_records(self, tenant, kind))
    }
    fn import_rows(
        &self,
        write: write::ImportRows,
    ) -> Result<Queued<write::ImportOutcome>, StoreError> {
        self.enqueue_blocking(write)
    }

    fn history(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
        id: &RecordId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        Store::history(self, tenant, kind, id, after, limit)
    }
    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        kinds: &[RecordKind],
        limit: usize,
    ) -> Result<ChangesPage, StoreError> {
        Store::changes(self, tenant, after, kinds, limit)
    }
    fn change_signal(&self) -> ChangeSignal {
        self.changes.subscribe()
    }
}

impl Maintenance for Store {
    fn check(&self, scope: check::Scope, repair: bool) -> EngineFuture<'_, check::CheckReport> {
        Box::pin(Store::check(self, scope, repair))
    }
    fn backup<'a>(&'a self, to: &'a Path) -> EngineFuture<'a, BackupReport> {
        Box::pin(Store::backup(self, to))
    }
    fn sweep(&self, now: Timestamp) -> Result<Swept, StoreError> {
        Store::sweep(self, now)
    }
    fn hold_events(&self, hold: std::sync::Arc<dyn EventHold>) {
        self.holds.add(hold);
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Store::size_on_disk(self)
    }
    fn write_stats(&self) -> &stats::WriteStats {
        Store::write_stats(self)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }
    fn data_dir(&self) -> Option<&Path> {
        Some(Store::data_dir(self))
    }
    fn write_fault(&self) -> Option<String> {
        Store::write_fault(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The traits stay object-safe: a second engine is chosen at run time behind `dyn`.
    #[test]
    fn the_sled_store_serves_behind_dyn_engine() {
        fn takes(_: Option<&dyn crate::store::Database>) {}
        let none: Option<&Store> = None;
        takes(none.map(|s| s as &dyn crate::store::Database));
    }

    /// Every catalog kind is reachable by value through the trait (an empty store: none).
    #[test]
    fn every_catalog_kind_reads_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), super::super::Durability::Relaxed).unwrap();
        let engine: &dyn Engine = &store;
        let tenant = TenantId::parse("acme").unwrap();
        let id = RecordId::parse("r1").unwrap();
        for kind in CatalogKind::ALL {
            assert!(engine.catalog_record(&tenant, kind, &id).unwrap().is_none());
            let page = engine.list_catalog(&tenant, kind, None, 10).unwrap();
            assert!(page.items.is_empty() && page.next.is_none());
        }
    }
}
