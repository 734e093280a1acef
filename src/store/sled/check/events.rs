//! The check of a tenant's change events: each record's latest event (read through the
//! `history` entries) matches the record, and each latest event that is not `deleted` has
//! its record (`store::events::event_problems`). Reported, never repaired.

use super::{Finding, Pass, Trees};
use crate::domain::catalog::{CatalogKind, CatalogRecord};
use crate::domain::ids::TenantId;
use crate::domain::registration::CourseRegistration;
use crate::domain::transfer::RecordKind;
use crate::store::events::{event_problems, LatestEvents};
use crate::store::sled::events::{decode, event_key, history_parts};
use crate::store::sled::keys;
use crate::store::sled::tx::TreeId;
use crate::store::sled::{codec, StoreError};

pub(super) fn check_events(
    trees: &Trees,
    tenant: &TenantId,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let prefix = keys::tenant_prefix(t);
    // History keys are (kind, id, seq) in order: the last of each (kind, id) is its latest.
    let mut latest_seq: Vec<(RecordKind, String, u64)> = Vec::new();
    for entry in trees.scan(TreeId::History, &prefix) {
        let (key, _) = entry?;
        let Ok((kind, id, seq)) = history_parts(&key) else {
            continue;
        };
        let Some(kind) = RecordKind::from_tag(&kind) else {
            continue;
        };
        match latest_seq.last_mut() {
            Some(last) if last.0 == kind && last.1 == id => last.2 = seq,
            _ => latest_seq.push((kind, id, seq)),
        }
    }
    let mut latest = LatestEvents::new();
    let events = trees.get(TreeId::Events);
    for (kind, id, seq) in latest_seq {
        let Some(bytes) = events.get(event_key(t, seq))? else {
            continue;
        };
        let Ok(event) = decode(seq, &bytes) else {
            continue;
        };
        latest.insert((kind, id), (event.change.op, event.change.version));
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    // A record that does not decode is reported as such; its events are not judged.
    for entry in trees.scan(TreeId::Registrations, &prefix) {
        let (key, value) = entry?;
        match codec::decode::<CourseRegistration>(&value) {
            Ok(record) => records.push((
                RecordKind::Registration,
                record.id.as_str().to_owned(),
                record.version(),
            )),
            Err(_) => {
                if let Ok(id) = keys::registration_id(&key) {
                    latest.remove(&(RecordKind::Registration, id));
                }
            }
        }
    }
    for entry in trees.scan(TreeId::Catalog, &prefix) {
        let (key, value) = entry?;
        let Ok((tag, id)) = keys::catalog_kind_and_id(&key) else {
            continue;
        };
        let Some(kind) = CatalogKind::from_tag(&tag) else {
            continue;
        };
        let version = crate::with_catalog_fields!(kind, F => {
            codec::decode::<CatalogRecord<F>>(&value).map(|r| r.version())
        });
        match version {
            Ok(version) => records.push((RecordKind::Catalog(kind), id, version)),
            Err(_) => {
                latest.remove(&(RecordKind::Catalog(kind), id));
            }
        }
    }
    for problem in event_problems(t, TreeId::Events.name(), records, latest) {
        pass.findings.push(Finding { problem, fix: None });
    }
    Ok(())
}
