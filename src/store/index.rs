//! The lookup indexes, as data: each names its lookup, its tree and the fields it reads.
//! Writes use the table to keep entries in step with records; lookups use it to find them.

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
];

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
