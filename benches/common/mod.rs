//! What the benches share: a write context and a catalog record made through the pipeline.

use registrar::domain::access::{Actor, Role, WriteContext};
use registrar::domain::catalog::{CatalogInput, CatalogRecord};
use registrar::domain::ids::{RecordId, TenantId};
use registrar::store::catalog::{CatalogHooks, CreateCatalog};
use registrar::store::Store;
use serde_json::Value;

pub fn ctx() -> WriteContext {
    WriteContext::new(Actor {
        key_id: "bench".into(),
        role: Role::Admin,
    })
}

/// Creates a catalog record of kind `F` from `body` and returns its id.
pub async fn create<F: CatalogHooks>(store: &Store, tenant: &TenantId, body: Value) -> RecordId {
    let fields = CatalogInput::<F>::parse(&body).unwrap().fields;
    let record = CatalogRecord::create(RecordId::generate(), fields, &ctx()).unwrap();
    store
        .submit(CreateCatalog {
            tenant: tenant.clone(),
            record,
        })
        .await
        .unwrap()
        .id
}
