//! One tenant's check: read its records, recompute what they imply, compare it with what the
//! derived trees hold.

use super::{ApiKeys, Finding, Fix, Pass, Trees};
use crate::domain::catalog::{CatalogFields, CatalogKind, CatalogRecord, Reference};
use crate::domain::ids::TenantId;
use crate::domain::registration::CourseRegistration;
use crate::store::check::{hex, Observed, Problem, ProblemKind};
use crate::store::error::StoreError;
use crate::store::sled::codec;
use crate::store::sled::events::EVENT_SEQUENCE;
use crate::store::sled::idempotency::StoredResponse;
use crate::store::sled::index::{describe_entry, is_older_layout_of, REGISTRATION_INDEXES};
use crate::store::sled::keys::{self, CounterKey, Key};
use crate::store::sled::orders::ORDER_NUMBER_SEQUENCE;
use crate::store::sled::outbox::OutboxMessage;
use crate::store::sled::registrations::{self, NUMBER_SEQUENCE, REGISTRATION_COUNT};
use crate::store::sled::tx::TreeId;
use crate::store::sled::usage::{entry_bytes, OUTBOX_MESSAGES, STORED_BYTES};
use sled::IVec;
use std::collections::{BTreeMap, HashSet};

/// Checks one tenant's derived data against its records.
pub(super) fn check_tenant(
    trees: &Trees,
    tenant: &TenantId,
    api_keys: &ApiKeys,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    let mut check = TenantCheck {
        trees,
        tenant,
        prefix: keys::tenant_prefix(tenant.as_str()),
        pass,
        expected: Expected {
            indexes: vec![BTreeMap::new(); REGISTRATION_INDEXES.len()],
            ..Expected::default()
        },
        catalog: HashSet::new(),
        references: Vec::new(),
        claims: BTreeMap::new(),
        unreadable_registrations: HashSet::new(),
        unreadable_records: false,
        highest_order: 0,
        stored_bytes: 0,
        outbox_messages: 0,
        unreadable_responses: HashSet::new(),
    };
    // The catalog first: references are checked against it.
    check.read_catalog()?;
    check.read_registrations()?;
    check.count_references();
    check.settle_slots()?;
    check.expect_key_markers(api_keys);
    check.read_underived()?;
    check.expect_stored_bytes();
    check.compare_all(api_keys)
}

/// A reference and the record that holds it.
struct Held {
    tree: TreeId,
    key: IVec,
    holder: String,
    reference: Reference,
}

/// What one tenant's check has gathered so far.
struct TenantCheck<'a, 'p> {
    trees: &'a Trees<'a>,
    tenant: &'a TenantId,
    prefix: Key,
    pass: &'p mut Pass,
    expected: Expected,
    /// Every catalog record, readable or not: what references may point at.
    catalog: HashSet<(CatalogKind, String)>,
    references: Vec<Held>,
    /// The registrations that claim each slot, in id order.
    claims: BTreeMap<Vec<u8>, Vec<String>>,
    /// Registrations that do not decode: entries naming them cannot be judged.
    unreadable_registrations: HashSet<String>,
    /// Whether some record's part in the counters cannot be known.
    unreadable_records: bool,
    highest_order: u64,
    /// Bytes of every record under the tenant's prefix (`usage::COUNTED_TREES`), readable or
    /// not: what the storage quota counts.
    stored_bytes: u64,
    /// Keys in the tenant's outbox, readable or not.
    outbox_messages: u64,
    /// Idempotency keys whose stored response does not decode: their expiry entry cannot be
    /// judged.
    unreadable_responses: HashSet<String>,
}

impl TenantCheck<'_, '_> {
    fn t(&self) -> &str {
        self.tenant.as_str()
    }

    /// A problem in a record: no repair can fix it.
    fn record_problem(
        &mut self,
        kind: ProblemKind,
        tree: TreeId,
        key: &[u8],
        record_id: Option<String>,
        detail: impl Into<String>,
    ) {
        let tenant = self.tenant.as_str();
        self.pass
            .record_problem(kind, Some(tenant), tree, key, record_id, detail);
    }

    fn read_catalog(&mut self) -> Result<(), StoreError> {
        for entry in self.trees.scan(TreeId::Catalog, &self.prefix) {
            let (key, value) = entry?;
            self.stored_bytes += entry_bytes(&key, &value);
            let parsed = keys::catalog_kind_and_id(&key)
                .ok()
                .and_then(|(tag, id)| CatalogKind::from_tag(&tag).map(|kind| (kind, id)));
            let Some((kind, id)) = parsed else {
                self.record_problem(
                    ProblemKind::MalformedKey,
                    TreeId::Catalog,
                    &key,
                    None,
                    "not (tenant, catalog kind, id)",
                );
                self.unreadable_records = true;
                continue;
            };
            self.pass.count_record(kind.resource());
            match catalog_facts(kind, &value) {
                Ok(facts) => {
                    self.highest_order =
                        self.highest_order.max(sequence_number(facts.order_number));
                    self.references
                        .extend(facts.references.into_iter().map(|reference| Held {
                            tree: TreeId::Catalog,
                            key: key.clone(),
                            holder: id.clone(),
                            reference,
                        }));
                }
                Err(e) => {
                    self.record_problem(
                        ProblemKind::UndecodableRecord,
                        TreeId::Catalog,
                        &key,
                        Some(id.clone()),
                        format!("{}: {e}", kind.noun()),
                    );
                    self.unreadable_records = true;
                }
            }
            self.catalog.insert((kind, id));
        }
        Ok(())
    }

    fn read_registrations(&mut self) -> Result<(), StoreError> {
        let mut count = 0u64;
        let mut highest_number = 0;
        for entry in self.trees.scan(TreeId::Registrations, &self.prefix) {
            let (key, value) = entry?;
            // Every key is a stored registration to the quota, whether it reads or not.
            count += 1;
            self.stored_bytes += entry_bytes(&key, &value);
            self.pass.count_record("registrations");
            let Ok(id) = keys::registration_id(&key) else {
                self.record_problem(
                    ProblemKind::MalformedKey,
                    TreeId::Registrations,
                    &key,
                    None,
                    "not (tenant, id)",
                );
                self.unreadable_records = true;
                continue;
            };
            let record: CourseRegistration = match codec::decode(&value) {
                Ok(record) => record,
                Err(e) => {
                    self.record_problem(
                        ProblemKind::UndecodableRecord,
                        TreeId::Registrations,
                        &key,
                        Some(id.clone()),
                        e.to_string(),
                    );
                    self.unreadable_records = true;
                    self.unreadable_registrations.insert(id);
                    continue;
                }
            };
            highest_number = highest_number.max(sequence_number(record.fields.number));
            let contribution = registrations::contribution(self.tenant, &record);
            if let Some(slot) = contribution.slot {
                self.claims
                    .entry(slot.into_bytes())
                    .or_default()
                    .push(id.clone());
            }
            if let Some(seat) = contribution.seat {
                *self.expected.counters.entry(seat.into_bytes()).or_default() += 1;
            }
            for (position, key, value) in contribution.entries {
                self.expected.indexes[position].insert(key.into_bytes(), value.as_bytes().to_vec());
            }
            self.references
                .extend(contribution.references.into_iter().map(|reference| Held {
                    tree: TreeId::Registrations,
                    key: key.clone(),
                    holder: id.clone(),
                    reference,
                }));
        }
        let t = self.t().to_owned();
        if count > 0 {
            self.expected
                .counters
                .insert(keys::counter(&t, REGISTRATION_COUNT).into_bytes(), count);
        }
        // The event sequence must be at least the newest event's number (compaction removes
        // the oldest, never the newest, so it may be ahead of what is left).
        let events = keys::tenant_prefix(&t);
        let highest_event = match self
            .trees
            .get(TreeId::Events)
            .range(events.as_bytes().to_vec()..keys::prefix_end(events.as_bytes()))
            .next_back()
        {
            Some(entry) => {
                let (key, value) = entry?;
                crate::store::sled::events::last_seq(&key, &value).unwrap_or(0)
            }
            None => 0,
        };
        self.expected.sequences = vec![
            (NUMBER_SEQUENCE, highest_number),
            (ORDER_NUMBER_SEQUENCE, self.highest_order),
            (EVENT_SEQUENCE, highest_event),
        ];
        Ok(())
    }

    /// Each reference counts once for what it points at, which must exist.
    fn count_references(&mut self) {
        let t = self.t().to_owned();
        for held in std::mem::take(&mut self.references) {
            let Held {
                tree,
                key,
                holder,
                reference,
            } = held;
            let counter = keys::reference_count(&t, reference.kind.tag(), reference.id.as_str());
            *self
                .expected
                .counters
                .entry(counter.into_bytes())
                .or_default() += 1;
            if !self
                .catalog
                .contains(&(reference.kind, reference.id.as_str().to_owned()))
            {
                self.record_problem(
                    ProblemKind::DanglingReference,
                    tree,
                    &key,
                    Some(holder),
                    format!(
                        "{} points at {} {}, which does not exist",
                        reference.field,
                        reference.kind.noun(),
                        reference.id
                    ),
                );
            }
        }
    }

    /// One holder per slot. The others break the one-per-student rule, which no rewrite of
    /// derived data can mend.
    fn settle_slots(&mut self) -> Result<(), StoreError> {
        let stored_slots = self.trees.get(TreeId::RegistrationSlots);
        for (slot, claimants) in std::mem::take(&mut self.claims) {
            // The holder is the one the stored slot names, if that is a claimant.
            let holder = match claimants.as_slice() {
                [only] => only.clone(),
                _ => {
                    let stored = stored_slots.get(&slot)?;
                    claimants
                        .iter()
                        .find(|id| stored.as_deref() == Some(id.as_bytes()))
                        .unwrap_or(&claimants[0])
                        .clone()
                }
            };
            for other in claimants.iter().filter(|id| **id != holder) {
                self.pass.findings.push(Finding {
                    problem: Problem {
                        kind: ProblemKind::SlotConflict,
                        tenant: Some(self.tenant.to_string()),
                        tree: TreeId::RegistrationSlots.name(),
                        record_id: Some(other.clone()),
                        counter: None,
                        key: hex(&slot),
                        expected: None,
                        found: Some(Observed::Text(holder.clone())),
                        repairable: false,
                        detail: Some(format!(
                            "registrations {holder} and {other} are both non-cancelled \
                             registrations of one student in one offering"
                        )),
                    },
                    fix: None,
                });
            }
            self.expected.slots.insert(slot, holder.into_bytes());
        }
        Ok(())
    }

    fn expect_key_markers(&mut self, api_keys: &ApiKeys) {
        let t = self.t().to_owned();
        for id in api_keys.by_tenant.get(&t).into_iter().flatten() {
            self.expected.key_markers.insert(
                keys::api_key_of_tenant(&t, id).into_bytes(),
                vec![codec::FORMAT_V1],
            );
        }
    }

    /// The counters the records call for, given what is stored: sequences, and (when some
    /// record cannot be read) seat and reference counts, depend on it.
    fn expected_counters(&mut self, stored: &[(IVec, IVec)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let t = self.t().to_owned();
        let mut counters = std::mem::take(&mut self.expected.counters);
        let stored_count = |key: &[u8]| {
            stored
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .and_then(|(_, v)| counter_value(v))
        };
        for (name, highest) in std::mem::take(&mut self.expected.sequences) {
            // A sequence may be ahead of every number in use (records are deleted, numbers
            // are not reused); it must not be behind one.
            let key = keys::counter(&t, name).into_bytes();
            let value = stored_count(&key).unwrap_or(0).max(highest);
            if value > 0 {
                counters.insert(key, value);
            }
        }
        if self.unreadable_records {
            // A record that cannot be read may hold seats or references: a recount below
            // the stored count proves nothing, so the stored count stands.
            for (key, value) in stored {
                let recountable = matches!(
                    keys::counter_key(key),
                    Ok(CounterKey::ActiveSeats { .. } | CounterKey::References { .. })
                );
                if let (true, Some(stored)) = (recountable, counter_value(value)) {
                    let entry = counters.entry(key.to_vec()).or_default();
                    *entry = (*entry).max(stored);
                }
            }
        }
        counters
            .into_iter()
            .map(|(key, n)| (key, n.to_be_bytes().to_vec()))
            .collect()
    }

    fn compare_all(&mut self, api_keys: &ApiKeys) -> Result<(), StoreError> {
        let (trees, t, prefix) = (self.trees, self.tenant.as_str(), &self.prefix);
        let unreadable = &self.unreadable_registrations;
        for (position, entries) in std::mem::take(&mut self.expected.indexes)
            .into_iter()
            .enumerate()
        {
            let values = REGISTRATION_INDEXES[position].fields.len();
            compare(
                self.pass,
                t,
                Derived::Index(position),
                trees.scan(TreeId::Index(position), prefix),
                entries,
                |key, _| keys::index_entry_id(key, values).is_ok_and(|id| unreadable.contains(&id)),
            )?;
        }
        compare(
            self.pass,
            t,
            Derived::Slots,
            trees.scan(TreeId::RegistrationSlots, prefix),
            std::mem::take(&mut self.expected.slots),
            |_, value| std::str::from_utf8(value).is_ok_and(|id| unreadable.contains(id)),
        )?;
        compare(
            self.pass,
            t,
            Derived::KeyMarkers,
            trees.scan(TreeId::ApiKeysByTenant, prefix),
            std::mem::take(&mut self.expected.key_markers),
            |key, _| {
                keys::api_key_id_of_tenant_entry(key)
                    .is_ok_and(|id| api_keys.unreadable.contains(&id))
            },
        )?;
        let unreadable_responses = &self.unreadable_responses;
        compare(
            self.pass,
            t,
            Derived::Expiry,
            trees.scan(TreeId::IdempotencyExpiry, prefix),
            std::mem::take(&mut self.expected.expiry),
            |key, _| {
                keys::idempotency_expiry_parts(key)
                    .is_ok_and(|(_, client_key)| unreadable_responses.contains(&client_key))
            },
        )?;
        // Counters last: what is expected of them depends on what is stored.
        let stored: Vec<(IVec, IVec)> = trees
            .scan(TreeId::Counters, prefix)
            .collect::<Result<_, _>>()?;
        let expected = self.expected_counters(&stored);
        compare(
            self.pass,
            self.tenant.as_str(),
            Derived::Counters,
            stored.into_iter().map(Ok),
            expected,
            |_, _| false,
        )
    }

    /// The storage quota's counter: the bytes of every record counted above; and the
    /// outbox's message count.
    fn expect_stored_bytes(&mut self) {
        for (name, count) in [
            (STORED_BYTES, self.stored_bytes),
            (OUTBOX_MESSAGES, self.outbox_messages),
        ] {
            if count > 0 {
                let key = keys::counter(self.t(), name).into_bytes();
                self.expected.counters.insert(key, count);
            }
        }
    }

    /// Outbox messages and stored responses derive nothing but their bytes (and a stored
    /// response its expiry entry): they only have to decode.
    fn read_underived(&mut self) -> Result<(), StoreError> {
        for (tree, kind) in [
            (TreeId::Outbox, "outbox"),
            (TreeId::Idempotency, "idempotency"),
        ] {
            for entry in self.trees.scan(tree, &self.prefix) {
                let (key, value) = entry?;
                self.pass.count_record(kind);
                self.stored_bytes += entry_bytes(&key, &value);
                if tree == TreeId::Outbox {
                    self.outbox_messages += 1;
                }
                let (id, decoded) = match tree {
                    TreeId::Outbox => (
                        keys::outbox_id(&key),
                        codec::decode::<OutboxMessage>(&value).map(drop),
                    ),
                    _ => {
                        let id = keys::idempotency_key(&key);
                        let decoded = codec::decode::<StoredResponse>(&value);
                        match (&id, &decoded) {
                            (Ok(client_key), Ok(response)) => {
                                let entry = keys::idempotency_expiry(
                                    self.tenant.as_str(),
                                    response.stored_at_seconds(),
                                    client_key,
                                );
                                self.expected.expiry.insert(entry.into_bytes(), Vec::new());
                            }
                            (Ok(client_key), Err(_)) => {
                                self.unreadable_responses.insert(client_key.clone());
                            }
                            (Err(_), _) => {}
                        }
                        (id, decoded.map(drop))
                    }
                };
                match (id, decoded) {
                    (Ok(_), Ok(())) => {}
                    (Err(e), _) => self.record_problem(
                        ProblemKind::MalformedKey,
                        tree,
                        &key,
                        None,
                        e.to_string(),
                    ),
                    (Ok(id), Err(e)) => self.record_problem(
                        ProblemKind::UndecodableRecord,
                        tree,
                        &key,
                        Some(id),
                        e.to_string(),
                    ),
                }
            }
        }
        Ok(())
    }
}

/// What a catalog record contributes: the references it holds, and an order's number.
struct CatalogFacts {
    references: Vec<Reference>,
    order_number: Option<f64>,
}

fn catalog_facts(kind: CatalogKind, bytes: &[u8]) -> Result<CatalogFacts, StoreError> {
    fn of<F: CatalogFields>(bytes: &[u8]) -> Result<CatalogFacts, StoreError> {
        let record: CatalogRecord<F> = codec::decode(bytes)?;
        Ok(CatalogFacts {
            references: record.fields.references(),
            order_number: record.fields.order_number(),
        })
    }
    crate::with_catalog_fields!(kind, F => of::<F>(bytes))
}

/// A number a sequence could have handed out: a whole number from 1 up, exact in an f64.
fn sequence_number(number: Option<f64>) -> u64 {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match number {
        Some(n) if (1.0..=EXACT).contains(&n) && n.fract() == 0.0 => n as u64,
        _ => 0,
    }
}

/// The derived data of one tenant, as its records say it should be.
#[derive(Default)]
struct Expected {
    indexes: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    slots: BTreeMap<Vec<u8>, Vec<u8>>,
    counters: BTreeMap<Vec<u8>, u64>,
    /// Each sequence's name and the highest number in use that it could have handed out.
    sequences: Vec<(&'static str, u64)>,
    key_markers: BTreeMap<Vec<u8>, Vec<u8>>,
    /// One `idempotency_expiry` entry per stored response.
    expiry: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn counter_value(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

/// The derived trees, each with its own problem names and way of showing keys and values.
#[derive(Clone, Copy)]
enum Derived {
    Index(usize),
    Slots,
    Counters,
    KeyMarkers,
    Expiry,
}

impl Derived {
    fn tree(self) -> TreeId {
        match self {
            Derived::Index(position) => TreeId::Index(position),
            Derived::Slots => TreeId::RegistrationSlots,
            Derived::Counters => TreeId::Counters,
            Derived::KeyMarkers => TreeId::ApiKeysByTenant,
            Derived::Expiry => TreeId::IdempotencyExpiry,
        }
    }

    /// The problem kind of an entry that is missing, stale or has the wrong value.
    fn kinds(self) -> [ProblemKind; 3] {
        use ProblemKind::*;
        match self {
            Derived::Index(_) => [MissingIndexEntry, StaleIndexEntry, WrongIndexEntry],
            Derived::Slots => [MissingSlot, StaleSlot, WrongSlot],
            Derived::Counters => [CounterMismatch, CounterMismatch, CounterMismatch],
            Derived::KeyMarkers => [MissingKeyMarker, StaleKeyMarker, WrongKeyMarker],
            Derived::Expiry => [MissingExpiryEntry, StaleExpiryEntry, WrongExpiryEntry],
        }
    }

    /// A stored value as the report shows it.
    fn show(self, value: &[u8]) -> Observed {
        let shown = match self {
            Derived::Index(_) => describe_entry(value).map(Observed::Text),
            Derived::Slots => std::str::from_utf8(value)
                .ok()
                .map(|id| Observed::Text(id.into())),
            Derived::KeyMarkers => {
                (value == [codec::FORMAT_V1]).then(|| Observed::Text("listed".into()))
            }
            Derived::Counters => counter_value(value).map(Observed::Count),
            Derived::Expiry => value.is_empty().then(|| Observed::Text("listed".into())),
        };
        shown.unwrap_or_else(|| Observed::Text(format!("unreadable bytes {}", hex(value))))
    }

    /// A problem about `key`, with the value the records call for and the one stored.
    fn problem(
        self,
        tenant: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        found: Option<&[u8]>,
    ) -> Problem {
        let [missing, stale, wrong] = self.kinds();
        let mut kind = match (expected, found) {
            (Some(_), None) => missing,
            (None, _) => stale,
            (Some(_), Some(_)) => wrong,
        };
        let (mut record_id, mut counter, mut detail) = (None, None, None);
        match self {
            Derived::Index(position) => {
                let def = &REGISTRATION_INDEXES[position];
                record_id = keys::index_entry_id(key, def.fields.len()).ok();
            }
            Derived::Slots => {
                record_id = expected
                    .or(found)
                    .map(|id| String::from_utf8_lossy(id).into_owned());
            }
            Derived::KeyMarkers => record_id = keys::api_key_id_of_tenant_entry(key).ok(),
            Derived::Expiry => {
                record_id = keys::idempotency_expiry_parts(key).ok().map(|(_, k)| k);
            }
            Derived::Counters => match keys::counter_key(key) {
                Ok(CounterKey::Named(name)) => {
                    let found = found.map_or(Some(0), counter_value);
                    let behind = matches!(
                        (found, expected.and_then(counter_value)),
                        (Some(found), Some(expected)) if found < expected
                    );
                    let sequence = [NUMBER_SEQUENCE, ORDER_NUMBER_SEQUENCE, EVENT_SEQUENCE];
                    if sequence.contains(&name.as_str()) && behind {
                        kind = ProblemKind::SequenceBehind;
                    }
                    counter = Some(name);
                }
                Ok(CounterKey::ActiveSeats { offering }) => {
                    record_id = Some(offering);
                    counter = Some("active_seats".into());
                }
                Ok(CounterKey::References { kind, id }) => {
                    record_id = Some(id);
                    counter = Some(format!("references_to_{kind}"));
                }
                Err(e) => detail = Some(e.to_string()),
            },
        }
        let observe = |value: Option<&[u8]>| match (self, value) {
            // An absent counter is zero.
            (Derived::Counters, None) => Some(Observed::Count(0)),
            (_, value) => value.map(|v| self.show(v)),
        };
        Problem {
            kind,
            tenant: Some(tenant.to_owned()),
            tree: self.tree().name(),
            record_id,
            counter,
            key: hex(key),
            expected: observe(expected),
            found: observe(found),
            repairable: true,
            detail,
        }
    }
}

/// Compares a derived tree's stored entries with the expected ones. A stored entry that is not
/// expected but `unverifiable` (it may belong to a record that cannot be read) is left alone.
fn compare(
    pass: &mut Pass,
    tenant: &str,
    derived: Derived,
    stored: impl Iterator<Item = Result<(IVec, IVec), StoreError>>,
    mut expected: BTreeMap<Vec<u8>, Vec<u8>>,
    unverifiable: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let tree = derived.tree();
    for entry in stored {
        let (key, value) = entry?;
        pass.count_entry(tree);
        let want = match expected.remove(key.as_ref()) {
            Some(want) if want.as_slice() == value.as_ref() => continue,
            // An index entry an earlier build wrote (status only) with the right status reads
            // correctly (the date unknown: a search reads the record): not a problem. A
            // repair rewrites it in the current layout.
            Some(want)
                if matches!(derived, Derived::Index(_)) && is_older_layout_of(&value, &want) =>
            {
                pass.older_layout.push((
                    Some(tenant.to_owned()),
                    Fix {
                        tree,
                        key: key.to_vec(),
                        value: Some(want),
                        was_stored: true,
                    },
                ));
                continue;
            }
            None if unverifiable(&key, &value) => continue,
            want => want,
        };
        pass.findings.push(Finding {
            problem: derived.problem(tenant, &key, want.as_deref(), Some(&value)),
            fix: Some(Fix {
                tree,
                key: key.to_vec(),
                value: want,
                was_stored: true,
            }),
        });
    }
    for (key, want) in expected {
        pass.findings.push(Finding {
            problem: derived.problem(tenant, &key, Some(&want), None),
            fix: Some(Fix {
                tree,
                key,
                value: Some(want),
                was_stored: false,
            }),
        });
    }
    Ok(())
}
