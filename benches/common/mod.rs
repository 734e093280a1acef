//! What the benches share: a write context, a store with a tenant, and a catalog record made
//! through the pipeline.

// Each bench binary compiles this module and uses only part of it.
#![allow(dead_code)]

use registrar::domain::access::{Actor, Role, WriteContext};
use registrar::domain::catalog::{CatalogInput, CatalogRecord};
use registrar::domain::ids::{RecordId, TenantId};
use registrar::domain::tenant::{Limits, NewTenant};
use registrar::store::sled::catalog::{CatalogHooks, CreateCatalog};
use registrar::store::sled::Store;
use registrar::store::Durability;
use serde_json::Value;
use std::sync::Arc;

pub fn ctx() -> WriteContext {
    WriteContext::new(Actor {
        key_id: "bench".into(),
        role: Role::Admin,
    })
}

/// Opens (or creates) the database in `dir` and creates the tenant `id` in it, without limits.
pub async fn store_with_tenant(
    dir: &std::path::Path,
    durability: Durability,
    id: &str,
) -> (Arc<Store>, TenantId) {
    let store = Arc::new(Store::open(dir, durability).unwrap());
    let tenant = store
        .create_tenant(
            NewTenant {
                id: TenantId::parse(id).unwrap(),
                limits: Limits::default(),
            },
            &ctx(),
        )
        .await
        .unwrap()
        .id;
    (store, tenant)
}

/// Creates a catalog record of kind `F` from `body` and returns its id.
pub async fn create<F: CatalogHooks>(store: &Store, tenant: &TenantId, body: Value) -> RecordId {
    let fields = CatalogInput::<F>::parse(&body).unwrap().fields;
    let record = CatalogRecord::create(RecordId::generate(), fields, &ctx()).unwrap();
    store
        .submit(CreateCatalog {
            tenant: tenant.clone(),
            record,
            ctx: ctx(),
        })
        .await
        .unwrap()
        .id
}
