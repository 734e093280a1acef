//! Tenants and API keys: stored in sled, served from memory.
//!
//! Every request authenticates, so the directory is loaded once at open and kept in memory;
//! admin writes go through the write path first and update the copy only after they are
//! durable, so a revoked key stops working the moment its DELETE is answered.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::access::{Principal, WriteContext};
use crate::domain::catalog::{default_confirmation_template, CatalogRecord, DEFAULT_TEMPLATE_ID};
use crate::domain::ids::RecordId;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{parse_tenant_patch, ApiKey, NewKey, NewTenant, Tenant};
use crate::domain::time::Timestamp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use subtle::ConstantTimeEq;

/// Tenant keys look like `rk_<key id>_<secret>`; the id finds the record, the hash checks it.
const TENANT_KEY_PREFIX: &str = "rk_";

pub fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Storage(format!("no randomness available: {e}")))?;
    Ok(bytes)
}

/// A new secret: 256 random bits, base64url.
pub fn random_secret() -> Result<String, StoreError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hashes_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The in-memory copy of the tenants and keys trees.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: BTreeMap<TenantId, Tenant>,
    keys: HashMap<String, ApiKey>,
    operator_hash: Option<[u8; 32]>,
}

impl Directory {
    pub(super) fn load(
        tenants: &sled::Tree,
        api_keys: &sled::Tree,
        meta: &sled::Tree,
    ) -> Result<Self, StoreError> {
        let mut directory = Directory::default();
        for entry in tenants.iter() {
            let tenant: Tenant = codec::decode(&entry?.1)?;
            directory.tenants.insert(tenant.id.clone(), tenant);
        }
        for entry in api_keys.iter() {
            let key: ApiKey = codec::decode(&entry?.1)?;
            directory.keys.insert(key.id.clone(), key);
        }
        if let Some(hash) = meta.get(keys::meta(OPERATOR_HASH))? {
            directory.operator_hash =
                Some(hash.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt("operator key hash is not 32 bytes".into())
                })?);
        }
        Ok(directory)
    }
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
        super::catalog::put(tx, &self.tenant.id, &template)?;
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
    fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        // A poisoned lock only means a panic elsewhere mid-update of a plain map; the map
        // itself is still whole, so keep serving.
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    fn directory_mut(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.directory.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Who presents `presented` as a key, if anyone.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let presented_hash = hash_secret(presented);
        let directory = self.directory();
        if let Some(rest) = presented.strip_prefix(TENANT_KEY_PREFIX) {
            let (key_id, _) = rest.split_once('_')?;
            let key = directory.keys.get(key_id)?;
            return hashes_match(&key.secret_hash, &presented_hash).then(|| Principal::TenantKey {
                key_id: key.id.clone(),
                tenant: key.tenant.clone(),
                role: key.role,
            });
        }
        let operator = directory.operator_hash?;
        hashes_match(&operator, &presented_hash).then_some(Principal::Operator)
    }

    /// Whether an operator key hash is stored.
    pub fn has_operator_key(&self) -> bool {
        self.directory().operator_hash.is_some()
    }

    /// Sets the operator key. `persist` keeps its hash in the database (a generated key);
    /// a key from the environment is only held in memory.
    pub fn set_operator_key(&self, key: &str, persist: bool) -> Result<(), StoreError> {
        let hash = hash_secret(key);
        if persist {
            self.meta
                .insert(keys::meta(OPERATOR_HASH).as_bytes(), &hash[..])?;
            // Durable through a power cut, as the file holding the key is.
            self.flush()?;
        }
        self.directory_mut().operator_hash = Some(hash);
        Ok(())
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        self.directory().tenants.get(id).cloned()
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.directory().tenants.values().cloned().collect()
    }

    /// A tenant's keys, oldest first (key ids are ULIDs).
    pub fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = self
            .directory()
            .keys
            .values()
            .filter(|k| &k.tenant == tenant)
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
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
        self.directory_mut()
            .tenants
            .insert(tenant.id.clone(), tenant.clone());
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
        self.directory_mut()
            .tenants
            .insert(tenant.id.clone(), tenant.clone());
        Ok(tenant)
    }

    /// Makes a key; the secret is returned once and only its hash is kept.
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        new: NewKey,
    ) -> Result<(ApiKey, String), StoreError> {
        let id = ulid::Ulid::new().to_string();
        let secret = format!("{TENANT_KEY_PREFIX}{id}_{}", random_secret()?);
        let key = ApiKey {
            id,
            tenant: tenant.clone(),
            role: new.role,
            name: new.name,
            created_at: Timestamp::now(),
            secret_hash: hash_secret(&secret),
        };
        self.submit(CreateKey(key.clone())).await?;
        self.directory_mut()
            .keys
            .insert(key.id.clone(), key.clone());
        Ok((key, secret))
    }

    /// Stores a key whose secret is given (the demo key from `data/demo/`).
    pub async fn import_key(&self, key: ApiKey) -> Result<(), StoreError> {
        self.submit(CreateKey(key.clone())).await?;
        self.directory_mut().keys.insert(key.id.clone(), key);
        Ok(())
    }

    pub async fn revoke_key(&self, tenant: &TenantId, key_id: &str) -> Result<(), StoreError> {
        self.submit(RevokeKey {
            tenant: tenant.clone(),
            key_id: key_id.to_owned(),
        })
        .await?;
        self.directory_mut().keys.remove(key_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43); // 256 bits in base64url
        assert!(hashes_match(&hash_secret(&a), &hash_secret(&a)));
        assert!(!hashes_match(&hash_secret(&a), &hash_secret(&b)));
    }
}
