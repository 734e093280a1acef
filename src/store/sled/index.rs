//! The lookup indexes, as data: each names its lookup, its tree and the fields it reads.
//! Writes use the table to keep entries in step with records; lookups use it to find them.

use super::error::StoreError;
use super::keys::{self, Key};
use crate::domain::enums::RegistrationStatus;
use crate::domain::record::Fields;
use crate::domain::registration::CourseRegistration;
use crate::domain::search::EntryFacts;
use crate::domain::time::Timestamp;
pub use crate::store::index::{IndexDef, REGISTRATION_INDEXES};

/// Indexes added after data directories already existed. `Store::open` fills each from the
/// records once (see [`backfill`]): until then an old directory has none of
/// their entries, and a search planned on one would miss records.
pub const BACKFILLED_INDEXES: &[&str] = &["idx_course_status"];

/// The sled key of an index's entries.
pub trait EntryKey {
    /// The entry `record` has in this index, if it has one.
    fn entry_key(&self, tenant: &str, record: &CourseRegistration) -> Option<Key>;
}

impl EntryKey for IndexDef {
    fn entry_key(&self, tenant: &str, record: &CourseRegistration) -> Option<Key> {
        let values: Option<Vec<&str>> = self
            .fields
            .iter()
            .map(|f| record.fields.key_text(f))
            .collect();
        values.map(|v| keys::index_entry(tenant, v, record.id.as_str()))
    }
}

/// An index entry's value: what a lookup or a search may know of the record without reading
/// it. Not bincode; two layouts, told apart by the first byte (the value formats' numbers):
///
/// * format 1, `[FORMAT_V1, status]`: the status's position in [`RegistrationStatus::ALL`].
///   Written by earlier builds, still read everywhere: the date is then unknown, and a search
///   reads the record to check it. The check accepts such an entry when its status is right;
///   `registrar check --repair` rewrites it in format 2.
/// * format 2, `[FORMAT_V2, status, 0]` for a registration without a `date`, or
///   `[FORMAT_V2, status, 1, seconds (i64, 8 bytes big-endian), nanoseconds (u32, 4 bytes
///   big-endian)]`: the status and the exact `date`, so a search drops a candidate outside its
///   date range without reading it.
///
/// This build writes format 2 only. Any other bytes read as nothing known ([`entry_facts`]
/// answers `None`), and a reader then reads the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryValue {
    bytes: [u8; ENTRY_VALUE_MAX],
    len: u8,
}

const ENTRY_VALUE_MAX: usize = 15;
const NO_DATE: u8 = 0;
const DATE: u8 = 1;

impl EntryValue {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl AsRef<[u8]> for EntryValue {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

fn status_position(status: RegistrationStatus) -> u8 {
    RegistrationStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0) as u8
}

/// The value of `record`'s entries, in the layout this build writes (format 2).
pub fn entry_value(record: &CourseRegistration) -> EntryValue {
    entry_value_of(record.status(), record.fields.date)
}

/// The format 2 value for a registration with `status` and `date`.
pub fn entry_value_of(status: RegistrationStatus, date: Option<Timestamp>) -> EntryValue {
    let mut bytes = [0u8; ENTRY_VALUE_MAX];
    bytes[0] = super::codec::FORMAT_V2;
    bytes[1] = status_position(status);
    let len = match date {
        None => {
            bytes[2] = NO_DATE;
            3
        }
        Some(date) => {
            let (secs, nanos) = date.to_parts();
            bytes[2] = DATE;
            bytes[3..11].copy_from_slice(&secs.to_be_bytes());
            bytes[11..15].copy_from_slice(&nanos.to_be_bytes());
            15
        }
    };
    EntryValue { bytes, len }
}

/// The format 1 value (status only) that builds before format 2 wrote: kept so tests and the
/// check can say what such an entry looks like. This build never writes it.
pub fn entry_value_v1(status: RegistrationStatus) -> [u8; 2] {
    [super::codec::FORMAT_V1, status_position(status)]
}

/// What an entry value says about its record; `None` for bytes no build of ours wrote.
pub fn entry_facts(value: &[u8]) -> Option<EntryFacts> {
    let status = |position: u8| RegistrationStatus::ALL.get(position as usize).copied();
    match value {
        [super::codec::FORMAT_V1, position] => Some(EntryFacts {
            status: status(*position)?,
            date: None,
        }),
        [super::codec::FORMAT_V2, position, NO_DATE] => Some(EntryFacts {
            status: status(*position)?,
            date: Some(None),
        }),
        [super::codec::FORMAT_V2, position, DATE, rest @ ..] if rest.len() == 12 => {
            let secs = i64::from_be_bytes(rest[..8].try_into().ok()?);
            let nanos = u32::from_be_bytes(rest[8..].try_into().ok()?);
            Some(EntryFacts {
                status: status(*position)?,
                date: Some(Some(Timestamp::from_parts(secs, nanos)?)),
            })
        }
        _ => None,
    }
}

/// The status an entry value records, in either layout; `None` for bytes this build did not
/// write.
pub fn entry_status(value: &[u8]) -> Option<RegistrationStatus> {
    entry_facts(value).map(|facts| facts.status)
}

/// Whether `stored` is a format 1 entry that says what the format 2 value `current` says as
/// far as format 1 can (the status): right, only in the older layout. The check accepts it
/// and a repair rewrites it as `current`.
pub fn is_older_layout_of(stored: &[u8], current: &[u8]) -> bool {
    stored.first() == Some(&super::codec::FORMAT_V1)
        && current.first() == Some(&super::codec::FORMAT_V2)
        && matches!(
            (entry_facts(stored), entry_facts(current)),
            (Some(old), Some(new)) if old.status == new.status
        )
}

/// An entry value as the check's report shows it: the status, and the date when the entry
/// holds one.
pub fn describe_entry(value: &[u8]) -> Option<String> {
    let facts = entry_facts(value)?;
    let status = facts.status.as_str();
    Some(match facts.date {
        None => format!("{status} (older layout: no date)"),
        Some(None) => format!("{status}, no date"),
        Some(Some(date)) => format!("{status}, date {}", date.to_rfc3339()),
    })
}

/// Marks in `meta` that every index entry stores its long values digested.
const DIGESTED_MARKER: &str = "index_values_digested";

/// Rewrites, once per data dir, the index entries that a build before
/// [`keys::index_component`] wrote with a value over [`keys::INDEXED_VALUE_MAX`] bytes whole:
/// lookups now look for the digested form. Runs at open, before the write path starts; each
/// index's rewrites are one atomic batch, and an interrupted run simply runs again (a
/// digested entry is left as it is). Returns how many entries it rewrote.
pub(super) fn digest_long_values(
    db: &sled::Db,
    meta: &sled::Tree,
    indexes: &[sled::Tree],
) -> Result<u64, StoreError> {
    let marker = keys::meta(DIGESTED_MARKER);
    if meta.contains_key(marker.as_bytes())? {
        return Ok(0);
    }
    let mut rewritten = 0;
    for (def, tree) in REGISTRATION_INDEXES.iter().zip(indexes) {
        let mut batch = sled::Batch::default();
        for entry in tree.iter() {
            let (key, value) = entry?;
            if let Some(digested) = digested_entry(&key, def.fields.len()) {
                batch.remove(key);
                batch.insert(digested, value);
                rewritten += 1;
            }
        }
        tree.apply_batch(batch)?;
    }
    db.flush()?;
    meta.insert(marker.as_bytes(), &[1u8][..])?;
    db.flush()?;
    Ok(rewritten)
}

/// The key an entry with `value_count` values has now, if a value in `key` is too long to be
/// stored whole. A key that does not parse is left to `registrar check`.
fn digested_entry(key: &[u8], value_count: usize) -> Option<Vec<u8>> {
    let mut reader = keys::KeyReader::new(key);
    let tenant = reader.string().ok()?;
    let values: Vec<String> = (0..value_count)
        .map(|_| reader.string().ok())
        .collect::<Option<_>>()?;
    let id = reader.string().ok()?;
    if !reader.is_empty() || values.iter().all(|v| v.len() <= keys::INDEXED_VALUE_MAX) {
        return None;
    }
    Some(keys::index_entry(&tenant, values.iter().map(String::as_str), &id).into_bytes())
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
                batch.insert(entry.as_bytes(), entry_value(&record).as_bytes());
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

    /// An entry an earlier build wrote with a long value whole is rewritten with its digest
    /// once, keeping its value; short ones are left alone.
    #[test]
    fn opening_digests_the_long_values_of_earlier_entries_once() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        let indexes: Vec<sled::Tree> = REGISTRATION_INDEXES
            .iter()
            .map(|d| db.open_tree(d.tree).unwrap())
            .collect();
        let position = REGISTRATION_INDEXES
            .iter()
            .position(|d| d.lookup == "application")
            .unwrap();
        let long = "l".repeat(500);
        let whole = Key::new().text("t").text(&long).text("01LONG").into_bytes();
        let short = keys::index_entry("t", ["short"], "01SHORT").into_bytes();
        indexes[position].insert(&whole, &[2u8, 0, 0][..]).unwrap();
        indexes[position].insert(&short, &[2u8, 1, 0][..]).unwrap();
        assert_eq!(digest_long_values(&db, &meta, &indexes).unwrap(), 1);
        let digested = keys::index_entry("t", [long.as_str()], "01LONG").into_bytes();
        let tree = &indexes[position];
        assert_eq!(tree.get(&digested).unwrap().unwrap(), &[2u8, 0, 0][..]);
        assert!(tree.get(&whole).unwrap().is_none());
        assert_eq!(tree.get(&short).unwrap().unwrap(), &[2u8, 1, 0][..]);
        assert_eq!(tree.len(), 2);
        assert_eq!(
            digest_long_values(&db, &meta, &indexes).unwrap(),
            0,
            "done once"
        );
    }

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
    fn entry_values_round_trip_every_status_with_and_without_a_date() {
        let dates = [
            None,
            Some(Timestamp::parse_rfc3339("2026-03-01T09:30:00.123456789Z").unwrap()),
            Some(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").unwrap()),
            Some(Timestamp::parse_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap()),
            Some(Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").unwrap()),
        ];
        for s in RegistrationStatus::ALL {
            for date in dates {
                let value = entry_value_of(*s, date);
                assert_eq!(value.as_bytes()[0], crate::store::sled::codec::FORMAT_V2);
                let facts = entry_facts(value.as_bytes()).unwrap();
                assert_eq!(
                    facts,
                    EntryFacts {
                        status: *s,
                        date: Some(date)
                    }
                );
                assert_eq!(entry_status(value.as_bytes()), Some(*s));
                assert!(describe_entry(value.as_bytes())
                    .unwrap()
                    .starts_with(s.as_str()));
            }
        }
        assert_eq!(
            entry_value_of(RegistrationStatus::Draft, None)
                .as_bytes()
                .len(),
            3
        );
    }

    #[test]
    fn format_1_entries_read_back_with_the_date_unknown() {
        for s in RegistrationStatus::ALL {
            let v1 = entry_value_v1(*s);
            assert_eq!(
                entry_facts(&v1),
                Some(EntryFacts {
                    status: *s,
                    date: None
                })
            );
            assert_eq!(entry_status(&v1), Some(*s));
            for date in [None, Some(Timestamp::now())] {
                let current = entry_value_of(*s, date);
                assert!(is_older_layout_of(&v1, current.as_bytes()));
                // A current entry is not "older", and another status is not the same entry.
                assert!(!is_older_layout_of(current.as_bytes(), current.as_bytes()));
                let other = RegistrationStatus::ALL.iter().find(|o| *o != s).unwrap();
                assert!(!is_older_layout_of(
                    &entry_value_v1(*other),
                    current.as_bytes()
                ));
            }
        }
    }

    #[test]
    fn bytes_no_build_wrote_read_as_nothing_known() {
        let v2 = crate::store::sled::codec::FORMAT_V2;
        for bytes in [
            &[][..],
            &[1],
            &[1, 200],
            &[1, 0, 0],
            &[2, 0],
            &[2, 0, 2],
            &[2, 0, 1, 0, 0],
            &[2, 200, 0],
            &[9, 0],
        ] {
            assert_eq!(entry_facts(bytes), None, "{bytes:?}");
        }
        // Nanoseconds past a second.
        let mut bad = entry_value_of(RegistrationStatus::Draft, Some(Timestamp::now()))
            .as_bytes()
            .to_vec();
        bad[11..15].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert_eq!(bad[0], v2);
        assert_eq!(entry_facts(&bad), None);
        // One byte short or long of a date.
        let good = entry_value_of(RegistrationStatus::Draft, Some(Timestamp::now()));
        assert_eq!(entry_facts(&good.as_bytes()[..14]), None);
        assert_eq!(entry_facts(&[good.as_bytes(), &[0]].concat()), None);
    }
}
