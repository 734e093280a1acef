//! Stored first responses of requests sent with an `Idempotency-Key`.

use super::codec;
use super::error::StoreError;
use super::keys;
use super::pipeline::Intent;
use super::tx::{TreeId, Tx, TxError};
use super::Store;
use crate::domain::ids::TenantId;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A response as first sent, with what identifies the request it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// SHA-256 of the method, path, query and body of the first request.
    pub fingerprint: [u8; 32],
    pub status: u16,
    /// The headers worth replaying (content type, ETag, paging headers).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Timestamp,
}

pub struct KeepResponse {
    pub tenant: TenantId,
    pub key: String,
    pub response: StoredResponse,
}

impl Intent for KeepResponse {
    type Output = ();
    fn apply(&self, tx: &mut Tx<'_>) -> Result<(), TxError> {
        let key = keys::idempotency(self.tenant.as_str(), &self.key);
        tx.insert(
            TreeId::Idempotency,
            key.into_bytes(),
            codec::encode(&self.response)?,
        );
        Ok(())
    }
}

impl Store {
    pub fn stored_response(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        self.idempotency
            .get(keys::idempotency(tenant.as_str(), key))?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }
}
