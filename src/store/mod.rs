//! The storage seam: what the rest of the crate may ask of a storage engine, and the layers
//! every engine shares. The one engine today is sled, under `sled/`; nothing outside that
//! directory names it. The key layout, codec, write pipeline and trees are described in
//! `sled/mod.rs`.
//!
//! Here, engine-neutral: `StoreError` (`error`), page tokens (`page`), and the engine traits
//! (`Engine`, `Maintenance`).

pub mod error;
pub mod page;
pub mod postgres;
pub mod sled;

pub use error::StoreError;

// The sled modules keep their old paths (`crate::store::keys`, …) for the callers that name
// them today; each moves behind the engine traits as its callers do.
pub use self::sled::{
    batch, catalog, check, codec, directory, files, idempotency, index, keys, orders, outbox,
    pipeline, registrations, retention, search, stats, transfer, tx, usage, Durability, Store,
    BACKGROUND_FLUSH_MS,
};

use crate::domain::access::WriteContext;
use crate::domain::catalog::CatalogKind;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::registration::CourseRegistration;
use crate::domain::search::SearchCriteria;
use crate::domain::tenant::{ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use crate::domain::transfer::{RecordKind, StoredRecord};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

/// A write's outcome, boxed so the traits stay object-safe (`dyn Engine`): an `async fn` in a
/// trait cannot be called through `dyn` yet, and the crate takes no `async-trait` for this.
pub type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A page of catalog records of one kind, kind-neutral (`Engine::list_catalog_of_kind`).
#[derive(Debug)]
pub struct KindPage {
    pub items: Vec<StoredRecord>,
    /// The page token of the next page, if there is one.
    pub next: Option<String>,
}

/// What the API asks of a storage engine: the records, tenants and keys, the outbox and the
/// stored Idempotency-Key responses. Every cross-record rule is a pure function in
/// `domain::rules`; an engine gathers the facts inside its transaction and calls it.
///
/// Reads are plain calls that may block: the caller decides where they run (workflows put
/// them on the blocking pool, or on the async worker when the engine says reads cannot wait,
/// `reads_may_wait`). Writes return an `EngineFuture` that resolves once durable.
///
/// First cut (issue 16): implemented by the sled `Store` by delegating to its methods, and
/// callers still hold `Store`. Not here yet, because today they go through the sled write
/// pipeline (`Store::submit` of an `Intent`, generic and so not object-safe): catalog and
/// registration writes, orders, batches and imports. They join the trait, and callers move to
/// `dyn Engine`, when the second engine lands.
pub trait Engine: Send + Sync {
    /// Whether a read started now may wait behind a write (sled: its transaction lock).
    fn reads_may_wait(&self) -> bool;

    /// One registration, or `None`.
    fn registration(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<CourseRegistration>, StoreError>;
    /// A page of the tenant's registrations in id order, after the id `after`.
    fn list_registrations(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<registrations::Page, StoreError>;
    /// A page of registrations whose `def` fields equal `values`.
    fn lookup_registrations(
        &self,
        tenant: &TenantId,
        def: &index::IndexDef,
        values: &[&str],
        active_only: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<registrations::Page, StoreError>;
    /// A page of registrations matching `criteria`.
    fn search_registrations(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        after: Option<&str>,
        limit: usize,
    ) -> Result<search::SearchPage, StoreError>;
    /// How many registrations the tenant holds.
    fn registration_count(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Active registrations on one offering (its taken seats).
    fn active_registrations(
        &self,
        tenant: &TenantId,
        offering: &RecordId,
    ) -> Result<u64, StoreError>;

    /// One catalog record of `kind`, or `None`, as the kind-neutral `StoredRecord`.
    fn catalog_record_of_kind(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        id: &RecordId,
    ) -> Result<Option<StoredRecord>, StoreError>;
    /// A page of the tenant's records of `kind` in id order, after the id `after`.
    fn list_catalog_of_kind(
        &self,
        tenant: &TenantId,
        kind: CatalogKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KindPage, StoreError>;

    /// One tenant, served from memory.
    fn tenant(&self, id: &TenantId) -> Option<Tenant>;
    /// Every tenant.
    fn tenants(&self) -> Vec<Tenant>;
    /// The tenant's API keys in id order.
    fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey>;
    fn create_tenant<'a>(
        &'a self,
        new: NewTenant,
        ctx: &'a WriteContext,
    ) -> EngineFuture<'a, Tenant>;
    fn patch_tenant<'a>(
        &'a self,
        id: &'a TenantId,
        body: serde_json::Value,
    ) -> EngineFuture<'a, Tenant>;
    /// A new key and its secret (shown once).
    fn create_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        new: NewKey,
    ) -> EngineFuture<'a, (ApiKey, String)>;
    fn revoke_key<'a>(&'a self, tenant: &'a TenantId, key_id: &'a str) -> EngineFuture<'a, ()>;

    /// A page of the mail kept instead of sent.
    fn outbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<outbox::OutboxPage, StoreError>;
    /// The first response to an Idempotency-Key, if stored.
    fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<idempotency::StoredResponse>, StoreError>;

    /// Every record of one kind, streamed (export).
    fn export_records(
        &self,
        tenant: &TenantId,
        kind: RecordKind,
    ) -> Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send + 'static>;
}

/// What the operator asks of a storage engine: check (and repair) what is derived, back up,
/// expire, measure.
pub trait Maintenance: Send + Sync {
    /// Recomputes what is derived from the records and, with `repair`, rebuilds it.
    fn check(&self, scope: check::Scope, repair: bool) -> EngineFuture<'_, check::CheckReport>;
    /// A consistent copy of the database in `to`.
    fn backup<'a>(&'a self, to: &'a Path) -> EngineFuture<'a, transfer::BackupReport>;
    /// Drops stored responses older than the retention allows.
    fn sweep(&self, now: Timestamp) -> Result<retention::Swept, StoreError>;
    /// Bytes the database takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// What the write path measured so far (for /metrics).
    fn write_stats(&self) -> &stats::WriteStats;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}
