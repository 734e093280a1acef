//! The lookup indexes over registrations, as data: each names its lookup, its storage name
//! and the fields it reads. Routes, OpenAPI and search planning read this table; each engine
//! keeps its entries in step with the records.

/// One secondary index over registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    /// The lookup's name in the URL: `/courseRegistrations/{t}/{lookup}/...`.
    pub lookup: &'static str,
    /// Its storage name: the embedded engine's tree of entries (tenant, field values…, id) →
    /// status and date; an index's name in a SQL engine.
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

impl IndexDef {
    pub fn by_lookup(lookup: &str) -> Option<(usize, &'static IndexDef)> {
        REGISTRATION_INDEXES
            .iter()
            .enumerate()
            .find(|(_, def)| def.lookup == lookup)
    }
}
