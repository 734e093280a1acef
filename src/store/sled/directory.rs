//! Tenants and API keys as sled stores them. They are served from the engine-neutral key
//! cache (`store::directory`), loaded once at open; admin writes go through the write path
//! first and update the cache only after they are durable, so a revoked key stops working the
//! moment its DELETE is answered.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::WriteContext;
use crate::domain::catalog::{default_confirmation_template, CatalogRecord, DEFAULT_TEMPLATE_ID};
use crate::domain::ids::RecordId;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{parse_tenant_patch, ApiKey, NewKey, NewTenant, Tenant};
use crate::store::directory::{hash_secret, new_key, Directory};
use serde_json::Value;

/// The key cache as the tenants, api_keys and meta trees hold it.
pub(super) fn load(
    tenants: &sled::Tree,
    api_keys: &sled::Tree,
    meta: &sled::Tree,
) -> Result<Directory, StoreError> {
    let mut directory = Directory::default();
    for entry in tenants.iter() {
        let tenant: Tenant = codec::decode(&entry?.1)?;
        directory.put_tenant(tenant);
    }
    for entry in api_keys.iter() {
        let key: ApiKey = codec::decode(&entry?.1)?;
        directory.put_key(key);
    }
    if let Some(hash) = meta.get(keys::meta(OPERATOR_HASH))? {
        directory.set_operator_hash(
            hash.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("operator key hash is not 32 bytes".into()))?,
        );
    }
    Ok(directory)
}

const OPERATOR_HASH: &str = "operator_key_hash";

struct CreateTenant {
    tenant: Tenant,
    /// Who creates it, and in which request: stamped on its default template.
    ctx: WriteContext,
}

impl Intent for CreateTenant {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let key = keys::tenant(self.tenant.id.as_str());
        if tx.get(TreeId::Tenants, key.as_bytes())?.is_some() {
            return Err(StoreError::TenantExists.into());
        }
        tx.insert(
            TreeId::Tenants,
            key.into_bytes(),
            codec::encode(&self.tenant)?,
        );
        // Every tenant starts with a confirmation template previewEmail falls back to.
        let id = RecordId::parse(DEFAULT_TEMPLATE_ID).map_err(StoreError::Corrupt)?;
        let template = CatalogRecord::create(id, default_confirmation_template(), &self.ctx)?;
        super::catalog::put(tx, &self.tenant.id, None, &template, &self.ctx)?;
        Ok(())
    }
}

struct PatchTenant {
    id: TenantId,
    body: Value,
}

impl Intent for PatchTenant {
    type Output = Tenant;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<Tenant, TxError> {
        let key = keys::tenant(self.id.as_str());
        let bytes = tx
            .get(TreeId::Tenants, key.as_bytes())?
            .ok_or(StoreError::TenantNotFound)?;
        let mut tenant: Tenant = codec::decode(&bytes)?;
        tenant.limits = parse_tenant_patch(&self.body, tenant.limits)?;
        tx.insert(TreeId::Tenants, key.into_bytes(), codec::encode(&tenant)?);
        Ok(tenant)
    }
}

struct CreateKey(ApiKey);

impl Intent for CreateKey {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let tenant = self.0.tenant.as_str();
        if tx
            .get(TreeId::Tenants, keys::tenant(tenant).as_bytes())?
            .is_none()
        {
            return Err(StoreError::TenantNotFound.into());
        }
        tx.insert(
            TreeId::ApiKeys,
            keys::api_key(&self.0.id).into_bytes(),
            codec::encode(&self.0)?,
        );
        tx.insert(
            TreeId::ApiKeysByTenant,
            keys::api_key_of_tenant(tenant, &self.0.id).into_bytes(),
            // A marker, not bincode: its one-byte layout has not changed since format 1.
            vec![codec::FORMAT_V1],
        );
        Ok(())
    }
}

struct RevokeKey {
    tenant: TenantId,
    key_id: String,
}

impl Intent for RevokeKey {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let key = keys::api_key(&self.key_id);
        let bytes = tx
            .get(TreeId::ApiKeys, key.as_bytes())?
            .ok_or(StoreError::NotFound)?;
        let stored: ApiKey = codec::decode(&bytes)?;
        if stored.tenant != self.tenant {
            return Err(StoreError::NotFound.into());
        }
        tx.remove(TreeId::ApiKeys, key.into_bytes());
        tx.remove(
            TreeId::ApiKeysByTenant,
            keys::api_key_of_tenant(self.tenant.as_str(), &self.key_id).into_bytes(),
        );
        Ok(())
    }
}

impl Store {
    /// The key cache, for reads.
    pub fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read()
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        self.directory().tenant(id)
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.directory().tenants()
    }

    /// Sets the operator key. `persist` keeps its hash in the database (a generated key);
    /// a key from the environment is only held in memory.
    pub fn set_operator_key(&self, key: &str, persist: bool) -> Result<(), StoreError> {
        let hash = hash_secret(key);
        if persist {
            let handles = self.handles()?;
            handles
                .meta
                .insert(keys::meta(OPERATOR_HASH).as_bytes(), &hash[..])?;
            // Durable through a power cut, as the file holding the key is.
            self.flush()?;
        }
        self.directory.write().set_operator_hash(hash);
        Ok(())
    }

    /// Creates a tenant, and its default template, under `ctx` (the operator's, when it
    /// comes from a request).
    pub async fn create_tenant(
        &self,
        new: NewTenant,
        ctx: &WriteContext,
    ) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new.id,
            created_at: ctx.at,
            limits: new.limits,
        };
        self.submit(CreateTenant {
            tenant: tenant.clone(),
            ctx: ctx.clone(),
        })
        .await?;
        self.directory.write().put_tenant(tenant.clone());
        Ok(tenant)
    }

    /// Applies a `PATCH /admin/tenants/{id}` body inside the write transaction, so concurrent
    /// patches of different limits never undo each other.
    pub async fn patch_tenant(&self, id: &TenantId, body: Value) -> Result<Tenant, StoreError> {
        let tenant = self
            .submit(PatchTenant {
                id: id.clone(),
                body,
            })
            .await?;
        self.directory.write().put_tenant(tenant.clone());
        Ok(tenant)
    }

    /// Makes a key; the secret is returned once and only its hash is kept.
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        new: NewKey,
    ) -> Result<(ApiKey, String), StoreError> {
        let (key, secret) = new_key(tenant, new)?;
        self.submit(CreateKey(key.clone())).await?;
        self.directory.write().put_key(key.clone());
        Ok((key, secret))
    }

    /// Stores a key whose secret is given (the demo key from `data/demo/`).
    pub async fn import_key(&self, key: ApiKey) -> Result<(), StoreError> {
        self.submit(CreateKey(key.clone())).await?;
        self.directory.write().put_key(key);
        Ok(())
    }

    pub async fn revoke_key(&self, tenant: &TenantId, key_id: &str) -> Result<(), StoreError> {
        self.submit(RevokeKey {
            tenant: tenant.clone(),
            key_id: key_id.to_owned(),
        })
        .await?;
        self.directory.write().remove_key(key_id);
        Ok(())
    }
}
