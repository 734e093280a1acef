//! Stored first responses of requests sent with an `Idempotency-Key`.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::ids::TenantId;
pub use crate::store::records::StoredResponse;
pub use crate::store::write::KeepResponse;

impl Intent for KeepResponse {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let t = self.tenant.as_str();
        let key = keys::idempotency(t, &self.key);
        // An expired response with this key is replaced: its expiry entry goes with it.
        if let Some(old) = tx.get(TreeId::Idempotency, key.as_bytes())? {
            if let Ok(old) = codec::decode::<StoredResponse>(&old) {
                let entry = keys::idempotency_expiry(t, old.stored_at_seconds(), &self.key);
                tx.remove(TreeId::IdempotencyExpiry, entry.into_bytes());
            }
        }
        tx.insert(
            TreeId::Idempotency,
            key.into_bytes(),
            codec::encode(&self.response)?,
        );
        let entry = keys::idempotency_expiry(t, self.response.stored_at_seconds(), &self.key);
        tx.insert(TreeId::IdempotencyExpiry, entry.into_bytes(), Vec::new());
        Ok(())
    }
}

impl Store {
    pub fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        self.handles()?
            .tree(TreeId::Idempotency)
            .get(keys::idempotency(tenant.as_str(), key))?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }
}

/// Deletes stored responses that expired, given their `idempotency_expiry` entries (as
/// [`Store::expired_responses`] read them). Each entry goes; its response goes too when it
/// is still the one stored at that time and stored before `cutoff_seconds` (a response stored
/// again under the key since is newer, and stays). Returns how many responses it deleted.
pub struct DeleteExpired {
    pub tenant: TenantId,
    pub entries: Vec<(u64, String)>,
    pub cutoff_seconds: u64,
}

impl Intent for DeleteExpired {
    type Output = usize;
    fn apply(&self, tx: &mut Tx<'_>) -> Result<usize, TxError> {
        let t = self.tenant.as_str();
        let mut deleted = 0;
        for (at, client_key) in &self.entries {
            tx.remove(
                TreeId::IdempotencyExpiry,
                keys::idempotency_expiry(t, *at, client_key).into_bytes(),
            );
            let key = keys::idempotency(t, client_key);
            let Some(bytes) = tx.get(TreeId::Idempotency, key.as_bytes())? else {
                continue;
            };
            // One that does not decode cannot be judged: `registrar check` reports it.
            let Ok(stored) = codec::decode::<StoredResponse>(&bytes) else {
                continue;
            };
            let stored_at = stored.stored_at_seconds();
            if stored_at == *at && stored_at < self.cutoff_seconds {
                tx.remove(TreeId::Idempotency, key.into_bytes());
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl Store {
    /// Up to `limit` `idempotency_expiry` entries of `tenant` stored before `cutoff_seconds`,
    /// oldest first.
    pub fn expired_responses(
        &self,
        tenant: &TenantId,
        cutoff_seconds: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let t = tenant.as_str();
        let from = keys::idempotency_expiry_from(t, 0);
        let to = keys::idempotency_expiry_from(t, cutoff_seconds);
        let mut found = Vec::new();
        for entry in self
            .handles()?
            .raw_tree(TreeId::IdempotencyExpiry)
            .range(from.as_bytes().to_vec()..to.as_bytes().to_vec())
            .keys()
            .take(limit)
        {
            found.push(keys::idempotency_expiry_parts(&entry?)?);
        }
        Ok(found)
    }
}
