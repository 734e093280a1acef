//! The key cache: tenants, API keys and the operator key's hash, held in memory. Every request
//! authenticates, so no engine reads its database for that; each engine loads the cache at
//! open and updates it after a tenant or key write is durable. Engine-neutral: the secrets'
//! format, their hashing and the constant-time comparison live here once.

use super::StoreError;
use crate::domain::access::Principal;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{ApiKey, NewKey, Tenant};
use crate::domain::time::Timestamp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
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

/// A new key of `tenant` and its secret (shown once; only its hash is kept).
pub fn new_key(tenant: &TenantId, new: NewKey) -> Result<(ApiKey, String), StoreError> {
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
    Ok((key, secret))
}

/// The tenants, keys and operator key hash, as a database holds them.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: BTreeMap<TenantId, Tenant>,
    keys: HashMap<String, ApiKey>,
    operator_hash: Option<[u8; 32]>,
}

impl Directory {
    pub fn put_tenant(&mut self, tenant: Tenant) {
        self.tenants.insert(tenant.id.clone(), tenant);
    }

    pub fn put_key(&mut self, key: ApiKey) {
        self.keys.insert(key.id.clone(), key);
    }

    pub fn remove_key(&mut self, key_id: &str) {
        self.keys.remove(key_id);
    }

    pub fn set_operator_hash(&mut self, hash: [u8; 32]) {
        self.operator_hash = Some(hash);
    }

    /// Who presents `presented` as a key, if anyone.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let presented_hash = hash_secret(presented);
        if let Some(rest) = presented.strip_prefix(TENANT_KEY_PREFIX) {
            let (key_id, _) = rest.split_once('_')?;
            let key = self.keys.get(key_id)?;
            return hashes_match(&key.secret_hash, &presented_hash).then(|| Principal::TenantKey {
                key_id: key.id.clone(),
                tenant: key.tenant.clone(),
                role: key.role,
            });
        }
        let operator = self.operator_hash?;
        hashes_match(&operator, &presented_hash).then_some(Principal::Operator)
    }

    /// Whether an operator key hash is known.
    pub fn has_operator_key(&self) -> bool {
        self.operator_hash.is_some()
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        self.tenants.get(id).cloned()
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.tenants.values().cloned().collect()
    }

    /// A tenant's keys, oldest first (key ids are ULIDs).
    pub fn keys_of(&self, tenant: &TenantId) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = self
            .keys
            .values()
            .filter(|k| &k.tenant == tenant)
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }
}

/// The shared [`Directory`] of an engine.
#[derive(Debug, Default)]
pub struct KeyCache(RwLock<Directory>);

impl KeyCache {
    pub fn new(directory: Directory) -> KeyCache {
        KeyCache(RwLock::new(directory))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Directory> {
        // A poisoned lock only means a panic elsewhere mid-update of a plain map; the map
        // itself is still whole, so keep serving.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the whole cache (an engine that reloads it from a database other nodes
    /// write too).
    pub fn replace(&self, directory: Directory) {
        *self.write() = directory;
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

    #[test]
    fn a_key_authenticates_until_removed_and_the_operator_key_once_set() {
        let mut directory = Directory::default();
        let tenant = TenantId::parse("acme").unwrap();
        let (key, secret) = new_key(
            &tenant,
            NewKey {
                role: crate::domain::access::Role::Write,
                name: None,
            },
        )
        .unwrap();
        directory.put_key(key.clone());
        assert!(matches!(
            directory.authenticate(&secret),
            Some(Principal::TenantKey { .. })
        ));
        assert_eq!(directory.authenticate(&format!("{secret}x")), None);
        directory.remove_key(&key.id);
        assert_eq!(directory.authenticate(&secret), None);
        assert_eq!(directory.authenticate("operator"), None);
        directory.set_operator_hash(hash_secret("operator"));
        assert_eq!(
            directory.authenticate("operator"),
            Some(Principal::Operator)
        );
    }
}
