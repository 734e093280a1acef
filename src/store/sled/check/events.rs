//! The check of a tenant's change events: each record's latest event matches the record, and
//! each latest event that is not `deleted` has its record (`store::events::event_problems`).
//! A record's latest event is the one its value is headed by; a deleted record's, the one its
//! tombstone names; for what format 4 wrote, the last of its `history` entries. Reported,
//! never repaired.

use super::{Finding, Pass, Trees};
use crate::domain::catalog::{CatalogKind, CatalogRecord};
use crate::domain::ids::TenantId;
use crate::domain::registration::CourseRegistration;
use crate::domain::transfer::RecordKind;
use crate::store::events::{event_problems, LatestEvents};
use crate::store::sled::events::{event_at, history_parts, seq_from, tombstone_parts};
use crate::store::sled::keys;
use crate::store::sled::tx::TreeId;
use crate::store::sled::{codec, StoreError};
use std::collections::HashMap;

pub(super) fn check_events(
    trees: &Trees,
    tenant: &TenantId,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let prefix = keys::tenant_prefix(t);
    // The latest event's seq of each (kind, id), from the oldest source to the newest: format
    // 4's history keys are (kind, id, seq) in order, so the last of each is its latest; a
    // tombstone is newer than those; a record's head is newer than its tombstone (which a
    // create removes) or is all there is.
    let mut latest_seq: HashMap<(RecordKind, String), u64> = HashMap::new();
    for entry in trees.scan(TreeId::History, &prefix) {
        let (key, _) = entry?;
        let Ok((kind, id, seq)) = history_parts(&key) else {
            continue;
        };
        let Some(kind) = RecordKind::from_tag(&kind) else {
            continue;
        };
        latest_seq.insert((kind, id), seq);
    }
    for entry in trees.scan(TreeId::Tombstones, &prefix) {
        let (key, value) = entry?;
        let (Ok((kind, id)), Ok(seq)) = (tombstone_parts(&key), seq_from(&value)) else {
            continue;
        };
        let Some(kind) = RecordKind::from_tag(&kind) else {
            continue;
        };
        latest_seq.insert((kind, id), seq);
    }
    let mut records = Vec::new();
    // A record that does not decode is reported as such; its events are not judged.
    let mut undecodable = Vec::new();
    for entry in trees.scan(TreeId::Registrations, &prefix) {
        let (key, value) = entry?;
        match codec::decode::<CourseRegistration>(&value) {
            Ok(record) => {
                let id = record.id.as_str().to_owned();
                if let Some(head) = codec::head_of(&value) {
                    latest_seq.insert((RecordKind::Registration, id.clone()), head);
                }
                records.push((RecordKind::Registration, id, record.version()));
            }
            Err(_) => {
                if let Ok(id) = keys::registration_id(&key) {
                    undecodable.push((RecordKind::Registration, id));
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
            Ok(version) => {
                if let Some(head) = codec::head_of(&value) {
                    latest_seq.insert((RecordKind::Catalog(kind), id.clone()), head);
                }
                records.push((RecordKind::Catalog(kind), id, version));
            }
            Err(_) => undecodable.push((RecordKind::Catalog(kind), id)),
        }
    }
    let mut latest = LatestEvents::new();
    let events = trees.stored(TreeId::Events);
    for ((kind, id), seq) in latest_seq {
        let Ok(Some((event, _))) = event_at(events, t, seq) else {
            continue;
        };
        latest.insert((kind, id), (event.change.op, event.change.version));
    }
    for record in undecodable {
        latest.remove(&record);
    }
    if latest.is_empty() {
        return Ok(());
    }
    for problem in event_problems(t, TreeId::Events.name(), records, latest) {
        pass.findings.push(Finding { problem, fix: None });
    }
    Ok(())
}
