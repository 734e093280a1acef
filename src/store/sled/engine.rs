//! The sled `Store` as an `Engine` and `Maintenance`: each method delegates to the inherent
//! one of the same name, so behaviour is exactly what callers of `Store` get today.

use super::{check, idempotency, index, outbox, registrations, retention, search, stats};
use super::{transfer, Store, StoreError};
use crate::domain::access::WriteContext;
use crate::domain::catalog::CatalogKind;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::{RecordKind, StoredRecord};
use crate::store::{Engine, EngineFuture, KindPage, Maintenance};
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
    fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<registrations::Page, StoreError> {
        Store::list_registrations(self, tenant, after, limit)
    }
    fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &index::IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<registrations::Page, StoreError> {
        Store::lookup_registrations(self, tenant, def, values, active_only, after, limit)
    }
    fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<search::SearchPage, StoreError> {
        Store::search_registrations(self, tenant, criteria, after, limit)
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
    fn catalog_record_of_kind(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        id: &RecordId,
    ) -> Result<Option<StoredRecord>, StoreError> {
        crate::with_catalog_fields!(kind, F => Ok(Store::catalog_record::<F>(self, tenant, id)?
            .as_ref()
            .map(StoredRecord::catalog)))
    }
    fn list_catalog_of_kind(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KindPage, StoreError> {
        crate::with_catalog_fields!(kind, F => {
            let page = Store::list_catalog::<F>(self, tenant, after, limit)?;
            Ok(KindPage {
                items: page.items.iter().map(StoredRecord::catalog).collect(),
                next: page.next,
            })
        })
    }
    fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        Store::tenant(self, id)
    }
    fn tenants(&self) -> Vec<Tenant> {
        Store::tenants(self)
    }
    fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey> {
        Store::keys_of(self, tenant)
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
    fn revoke_key<'a>(&'a self, tenant: &'a TenantId, key_id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(Store::revoke_key(self, tenant, key_id))
    }
    fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<outbox::OutboxPage, StoreError> {
        Store::outbox_page(self, tenant, after, limit)
    }
    fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<idempotency::StoredResponse>, StoreError> {
        Store::stored_response(self, tenant, key)
    }
    fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static> {
        Box::new(Store::export_records(self, tenant, kind))
    }
}

impl Maintenance for Store {
    fn check(&self, scope: check::Scope, repair: bool) -> EngineFuture<'_, check::CheckReport> {
        Box::pin(Store::check(self, scope, repair))
    }
    fn backup<'a>(&'a self, to: &'a Path) -> EngineFuture<'a, transfer::BackupReport> {
        Box::pin(Store::backup(self, to))
    }
    fn sweep(&self, now: Timestamp) -> Result<retention::Swept, StoreError> {
        Store::sweep(self, now)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The traits stay object-safe: a second engine is chosen at run time behind `dyn`.
    #[test]
    fn the_sled_store_serves_behind_dyn_engine() {
        fn takes(_: Option<&dyn Engine>, _: Option<&dyn Maintenance>) {}
        let none: Option<&Store> = None;
        takes(
            none.map(|s| s as &dyn Engine),
            none.map(|s| s as &dyn Maintenance),
        );
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
            assert!(engine
                .catalog_record_of_kind(&tenant, kind, &id)
                .unwrap()
                .is_none());
            let page = engine
                .list_catalog_of_kind(&tenant, kind, None, 10)
                .unwrap();
            assert!(page.items.is_empty() && page.next.is_none());
        }
    }
}
