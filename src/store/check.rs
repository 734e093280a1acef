//! The check's report: what is wrong, where, and what a repair changed. Its JSON is what
//! `POST /admin/check` answers and `registrar check --json` prints. Engine-neutral: every
//! engine's check fills the same report.

use crate::domain::ids::TenantId;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Which tenants a check covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant, and data under tenant ids that have no tenant record.
    Every,
    One(TenantId),
}

macro_rules! problem_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ),* $(,)?) => {
        /// What is wrong. The names are part of the report's format: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemKind { $( $(#[$doc])* $variant ),* }

        impl ProblemKind {
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $( ProblemKind::$variant => $name ),* }
            }
        }
    };
}

problem_kinds! {
    /// A stored value that does not decode: corrupt bytes, or a newer build's format.
    UndecodableRecord = "undecodable_record",
    /// A key that does not follow its tree's layout.
    MalformedKey = "malformed_key",
    /// Data under a tenant id that has no tenant record.
    UnknownTenant = "unknown_tenant",
    /// A record points at a catalog record that does not exist.
    DanglingReference = "dangling_reference",
    /// A registration lacks its entry in an index.
    MissingIndexEntry = "missing_index_entry",
    /// An index entry whose registration does not exist or has other values.
    StaleIndexEntry = "stale_index_entry",
    /// An index entry with another status than its registration's.
    WrongIndexEntry = "wrong_index_entry",
    /// A non-cancelled registration does not hold its (offering, student) slot.
    MissingSlot = "missing_slot",
    /// A slot no non-cancelled registration holds.
    StaleSlot = "stale_slot",
    /// A slot that names another registration than the one that holds it.
    WrongSlot = "wrong_slot",
    /// Two non-cancelled registrations of one student in one offering.
    SlotConflict = "slot_conflict",
    /// A seat count, reference count or the registration count differs from a recount.
    CounterMismatch = "counter_mismatch",
    /// A number sequence below a number in use: it would hand that number out again.
    SequenceBehind = "sequence_behind",
    /// An API key missing from its tenant's key list (`api_keys_by_tenant`).
    MissingKeyMarker = "missing_key_marker",
    /// A tenant's key list names a key that does not exist or belongs to another tenant.
    StaleKeyMarker = "stale_key_marker",
    /// A key list marker with bytes this build does not write.
    WrongKeyMarker = "wrong_key_marker",
    /// A stored `Idempotency-Key` response missing from `idempotency_expiry`: the sweeper
    /// would never delete it.
    MissingExpiryEntry = "missing_expiry_entry",
    /// An `idempotency_expiry` entry of no stored response, or of one stored at another time.
    StaleExpiryEntry = "stale_expiry_entry",
    /// An `idempotency_expiry` entry with bytes this build does not write.
    WrongExpiryEntry = "wrong_expiry_entry",
    /// A record whose latest change event does not match it (another version, or `deleted`),
    /// or a latest event that says a record exists that does not: the record and its events
    /// were not written together. Not repairable: events are history, never rewritten.
    EventMismatch = "event_mismatch",
    /// A piece of a long value (sled's `value_pieces`) that no stored value is made of: left
    /// by a write that did not finish removing it. Repairable: removed.
    StrayValuePiece = "stray_value_piece",
}

impl Serialize for ProblemKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A value as the report shows it: a count, or text (a status, a record id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Observed {
    Count(u64),
    Text(String),
}

/// One thing that is not as the records say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// `None` only for data whose tenant cannot be told (an API key that does not decode).
    pub tenant: Option<String>,
    /// The tree the problem is in.
    pub tree: &'static str,
    /// The record concerned: the registration an entry or slot is for, the offering or
    /// catalog record a counter counts for, the record that does not decode.
    pub record_id: Option<String>,
    /// For counters: which one (`active_seats`, `references_to_<kind>`, a sequence's name).
    pub counter: Option<String>,
    /// The key, in hex: exact, whatever its bytes.
    pub key: String,
    /// What the records say should be stored (`None`: nothing).
    pub expected: Option<Observed>,
    /// What is stored (`None`: nothing).
    pub found: Option<Observed>,
    /// Whether `repair` fixes it (it rewrites derived data; it never changes or deletes a
    /// record).
    pub repairable: bool,
    pub detail: Option<String>,
}

/// What a repair did about one problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Inserted,
    Replaced,
    Removed,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Inserted => "inserted",
            ChangeAction::Replaced => "replaced",
            ChangeAction::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: ChangeAction,
    #[serde(flatten)]
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairOutcome {
    /// One per problem fixed.
    pub changes: Vec<Change>,
    /// Index entries rewritten from an older layout into the current one (not problems: see
    /// [`CheckReport::older_layout`]).
    pub upgraded: u64,
    /// What a check right after the repair still finds: what a repair cannot fix.
    pub remaining: Vec<Problem>,
}

/// What a check found, and what a repair changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Nothing is left to fix: no problems, or a repair fixed every one.
    pub clean: bool,
    /// The tenants checked.
    pub tenants: Vec<String>,
    /// Records read, by kind (`registrations`, the catalog resources, `outbox`, …).
    pub records: BTreeMap<String, u64>,
    /// Entries of derived trees read, by tree.
    pub entries: BTreeMap<String, u64>,
    /// Index entries that are right but in the layout of an earlier build (status only, no
    /// date). Not problems: they read correctly, a search just reads their records to check a
    /// date. A repair rewrites them in the current layout.
    pub older_layout: u64,
    pub problem_count: usize,
    pub problems: Vec<Problem>,
    /// Present when a repair was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairOutcome>,
}

impl CheckReport {
    /// JSON Schema of the report, for the API description.
    pub fn schema() -> Value {
        let kinds: Vec<&str> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
        let text_or_null = json!({"type": ["string", "null"]});
        let observed = json!({"type": ["integer", "string", "null"]});
        let problem = json!({
            "type": "object",
            "required": ["kind", "tenant", "tree", "record_id", "counter", "key", "expected",
                         "found", "repairable", "detail"],
            "properties": {
                "kind": {"type": "string", "enum": kinds},
                "tenant": text_or_null,
                "tree": {"type": "string"},
                "record_id": text_or_null,
                "counter": text_or_null,
                "key": {"type": "string", "description": "The key's bytes in hex."},
                "expected": observed,
                "found": observed,
                "repairable": {"type": "boolean"},
                "detail": text_or_null,
            },
        });
        let mut change = problem.clone();
        change["properties"]["action"] =
            json!({"type": "string", "enum": ["inserted", "replaced", "removed"]});
        if let Some(required) = change["required"].as_array_mut() {
            required.push(json!("action"));
        }
        let counts =
            json!({"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}});
        json!({
            "type": "object",
            "required": ["clean", "tenants", "records", "entries", "older_layout", "problem_count",
                         "problems"],
            "properties": {
                "clean": {"type": "boolean", "description": "Nothing is left to fix."},
                "tenants": {"type": "array", "items": {"type": "string"}},
                "records": counts,
                "entries": counts,
                "older_layout": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Index entries that are right but in an earlier build's layout (status only): not problems; a repair rewrites them in the current layout.",
                },
                "problem_count": {"type": "integer", "minimum": 0},
                "problems": {"type": "array", "items": problem},
                "repair": {
                    "type": "object",
                    "required": ["changes", "upgraded", "remaining"],
                    "properties": {
                        "changes": {"type": "array", "items": change},
                        "upgraded": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Index entries rewritten from an earlier build's layout into the current one.",
                        },
                        "remaining": {"type": "array", "items": problem},
                    },
                },
            },
        })
    }
}

/// Key bytes as the report shows them: exact, whatever they are.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
