//! The lookup indexes, as data: each names its lookup, its tree and the fields it reads.
//! Writes use the table to keep entries in step with records; lookups use it to find them.

use super::error::StoreError;
use super::keys::{self, Key};
use crate::domain::enums::RegistrationStatus;
use crate::domain::record::Fields;
use crate::domain::registration::CourseRegistration;

/// One secondary index over registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    /// The lookup's name in the URL: `/courseRegistrations/{t}/{lookup}/...`.
    pub lookup: &'static str,
    /// The sled tree that holds its entries: (tenant, field values…, id) → status.
    pub tree: &'static str,
    /// The fields whose values form the entry key, in order. A record with any of them
    /// absent has no entry.
    pub fields: &'static [&'static str],
    /// Whether the lookup has its own endpoint; the others serve search only.
    pub exposed: bool,
}

pub const REGISTRATION_INDEXES: &[IndexDef] = &[
    IndexDef {
        lookup: "student",
        tree: "idx_student",
        fields: &["student_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "course",
        tree: "idx_course",
        fields: &["course_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "courseOffering",
        tree: "idx_course_offering",
        fields: &["course_offering_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "studentCourse",
        tree: "idx_student_course",
        fields: &["student_id", "course_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "application",
        tree: "idx_application",
        fields: &["application_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "eventRegistration",
        tree: "idx_event_registration",
        fields: &["event_registration_id"],
        exposed: true,
    },
    IndexDef {
        lookup: "order",
        tree: "idx_order",
        fields: &["order_id"],
        exposed: true,
    },
    // For search only: a status is the one criterion that often comes alone.
    IndexDef {
        lookup: "status",
        tree: "idx_status",
        fields: &["status"],
        exposed: false,
    },
    // For search only: a course's registrations in one state (a course + status + dates
    // report). Walking the course index read ~4× the records such a page returns. The date
    // is not in the key: search walks ids in ascending order (its page token is an id), and a
    // date component would order the entries by date; the date is checked on the record.
    IndexDef {
        lookup: "courseStatus",
        tree: "idx_course_status",
        fields: &["course_id", "status"],
        exposed: false,
    },
];

/// Indexes added after data directories already existed. `Store::open` fills each from the
/// records once (see [`backfill`]): until then an old directory has none of
/// their entries, and a search planned on one would miss records.
pub const BACKFILLED_INDEXES: &[&str] = &["idx_course_status"];

impl IndexDef {
    pub fn by_lookup(lookup: &str) -> Option<(usize, &'static IndexDef)> {
        REGISTRATION_INDEXES
            .iter()
            .enumerate()
            .find(|(_, def)| def.lookup == lookup)
    }

    /// The entry `record` has in this index, if it has one.
    pub fn entry_key(&self, tenant: &str, record: &CourseRegistration) -> Option<Key> {
        let values: Option<Vec<&str>> = self
            .fields
            .iter()
            .map(|f| record.fields.key_text(f))
            .collect();
        values.map(|v| keys::index_entry(tenant, v, record.id.as_str()))
    }
}

/// An index entry's value: the format byte, then the record's status, so `includeActiveOnly`
/// filters without reading the record. Not bincode: this layout has not changed since format 1,
/// so entries are still written (and only read) as format 1.
pub fn entry_value(status: RegistrationStatus) -> [u8; 2] {
    let position = RegistrationStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0);
    [super::codec::FORMAT_V1, position as u8]
}

/// The status an entry value records; `None` for bytes this build did not write.
pub fn entry_status(value: &[u8]) -> Option<RegistrationStatus> {
    match value {
        [super::codec::FORMAT_V1, position] => {
            RegistrationStatus::ALL.get(*position as usize).copied()
        }
        _ => None,
    }
}

/// The `meta` key that records that an index of [`BACKFILLED_INDEXES`] holds every record's
/// entry.
pub(super) fn built_marker(tree: &str) -> Key {
    keys::meta(&format!("index_built/{tree}"))
}

/// Entries written per sled batch while backfilling: bounds the memory a batch holds.
const BACKFILL_BATCH: usize = 10_000;

/// Fills each index of [`BACKFILLED_INDEXES`] that is not marked built from the registrations,
/// then marks it. Runs at open, before the write path starts, so nothing writes meanwhile. An
/// interrupted fill left no marker and simply runs again (entries are keyed, so rewriting
/// them is harmless); a new database has no registrations and is marked at once. Returns how
/// many entries were written.
pub(super) fn backfill(
    db: &sled::Db,
    meta: &sled::Tree,
    registrations: &sled::Tree,
    indexes: &[sled::Tree],
) -> Result<u64, StoreError> {
    let mut written = 0;
    for (position, def) in REGISTRATION_INDEXES.iter().enumerate() {
        let marker = built_marker(def.tree);
        if !BACKFILLED_INDEXES.contains(&def.tree) || meta.contains_key(marker.as_bytes())? {
            continue;
        }
        let tree = &indexes[position];
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in registrations.iter() {
            let (key, value) = entry?;
            // A record that does not read must not keep the server from starting: it gets no
            // entry here, and `registrar check` reports it, as it reports it for every index.
            let decoded = keys::tenant_of(&key)
                .map_err(StoreError::from)
                .and_then(|tenant| Ok((tenant, super::codec::decode(&value)?)));
            let (tenant, record): (String, CourseRegistration) = match decoded {
                Ok(decoded) => decoded,
                Err(e) => {
                    log::warn!(
                        "filling {}: a registration does not read ({e}); skipped",
                        def.tree
                    );
                    continue;
                }
            };
            if let Some(entry) = def.entry_key(&tenant, &record) {
                batch.insert(entry.as_bytes(), &entry_value(record.status())[..]);
                pending += 1;
                written += 1;
            }
            if pending == BACKFILL_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        tree.apply_batch(batch)?;
        // The entries must be durable before the marker says they are there.
        db.flush()?;
        meta.insert(marker.as_bytes(), &[1u8][..])?;
        db.flush()?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_reads_real_fields_and_has_its_own_tree() {
        use crate::domain::registration::RegistrationFields;
        let mut trees: Vec<_> = REGISTRATION_INDEXES.iter().map(|d| d.tree).collect();
        trees.sort();
        trees.dedup();
        assert_eq!(trees.len(), REGISTRATION_INDEXES.len());
        for def in REGISTRATION_INDEXES {
            for field in def.fields {
                assert!(RegistrationFields::NAMES.contains(field), "{field}");
            }
        }
    }

    #[test]
    fn entry_values_round_trip_every_status() {
        for s in RegistrationStatus::ALL {
            assert_eq!(entry_status(&entry_value(*s)), Some(*s));
        }
    }
}
