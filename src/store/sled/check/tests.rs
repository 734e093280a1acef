//! The check and the repair on a real store, corrupted by hand.

use super::*;
use crate::domain::access::{Principal, WriteContext};
use crate::domain::catalog::CatalogInput;
use crate::domain::catalog::{CatalogRecord, ContactFields, CourseFields, CourseOfferingFields};
use crate::domain::ids::RecordId;
use crate::domain::registration::{CourseRegistration, RegistrationInput};
use crate::domain::tenant::{Limits, NewTenant};
use crate::store::sled::catalog::CreateCatalog;
use crate::store::sled::index::EntryKey;
use crate::store::sled::index::REGISTRATION_INDEXES;
use crate::store::sled::orders::{GenerateOrder, OrderFor};
use crate::store::sled::registrations::CreateRegistration;
use crate::store::sled::registrations::{self, NUMBER_SEQUENCE, REGISTRATION_COUNT};
use crate::store::Durability;
use serde_json::{json, Value};

fn ctx() -> WriteContext {
    WriteContext::new(Principal::Operator.actor())
}

/// A store with one tenant: a contact, a course, an offering and two registrations,
/// one with an order.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: TenantId,
    offering: String,
    registrations: Vec<String>,
}

async fn catalog<F: crate::store::sled::catalog::CatalogHooks>(
    store: &Store,
    tenant: &TenantId,
    body: Value,
) -> String {
    let fields = CatalogInput::<F>::parse(&body).unwrap().fields;
    let record = CatalogRecord::create(RecordId::generate(), fields, &ctx()).unwrap();
    let id = record.id.to_string();
    store
        .submit(CreateCatalog {
            tenant: tenant.clone(),
            record,
            ctx: ctx(),
        })
        .await
        .unwrap();
    id
}

async fn register(store: &Store, tenant: &TenantId, body: Value) -> String {
    let fields = RegistrationInput::parse(&body).unwrap().fields;
    store
        .submit(CreateRegistration {
            tenant: tenant.clone(),
            id: RecordId::generate(),
            fields,
            ctx: ctx(),
            dry_run: false,
        })
        .await
        .unwrap()
        .id
        .to_string()
}

/// Opens the store a test has just dropped. sled 0.34 releases its directory lock when its
/// own flusher thread has finished shutting down, which can be a moment after `Db` is
/// dropped, so an immediate open in the same process may find the directory still locked.
fn reopen(dir: &std::path::Path) -> Store {
    for _ in 0..250 {
        match Store::open(dir, Durability::Relaxed) {
            Err(StoreError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            opened => return opened.unwrap(),
        }
    }
    panic!("the store stayed locked for 5 s after it was dropped");
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Relaxed).unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    store
        .create_tenant(
            NewTenant {
                id: tenant.clone(),
                limits: Limits::default(),
            },
            &ctx(),
        )
        .await
        .unwrap();
    let mut students = Vec::new();
    for name in ["ada", "bob"] {
        students.push(
            catalog::<ContactFields>(
                &store,
                &tenant,
                json!({"first_name": name, "last_name": "L", "email_address": format!("{name}@example.org")}),
            )
            .await,
        );
    }
    let course = catalog::<CourseFields>(&store, &tenant, json!({"name": "Maths"})).await;
    let offering = catalog::<CourseOfferingFields>(
        &store,
        &tenant,
        json!({"course_id": course, "start_date": "2026-03-02T09:00:00Z", "price": 10}),
    )
    .await;
    let mut registrations = Vec::new();
    for (student, status) in students.iter().zip(["registered", "draft"]) {
        registrations.push(
            register(
                &store,
                &tenant,
                json!({"student_id": student, "course_id": course,
                       "course_offering_id": offering, "status": status}),
            )
            .await,
        );
    }
    store
        .submit(GenerateOrder {
            tenant: tenant.clone(),
            order_id: RecordId::generate(),
            registration: OrderFor::Stored(RecordId::parse(&registrations[0]).unwrap()),
            ctx: ctx(),
        })
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        tenant,
        offering,
        registrations,
    }
}

/// A stored value that no longer decodes, of the same size (so the storage counter, which
/// counts bytes, still agrees).
fn rotten(value: &[u8]) -> Vec<u8> {
    let mut bytes = value.to_vec();
    bytes[1..].fill(0xFF);
    bytes
}

fn kinds(problems: &[Problem]) -> Vec<(ProblemKind, Option<&str>)> {
    let mut kinds: Vec<_> = problems
        .iter()
        .map(|p| (p.kind, p.record_id.as_deref()))
        .collect();
    kinds.sort_by_key(|(k, id)| (k.as_str(), *id));
    kinds
}

fn index(lookup: &str) -> (usize, &'static crate::store::sled::index::IndexDef) {
    crate::store::sled::index::IndexDef::by_lookup(lookup).unwrap()
}

#[tokio::test]
async fn a_healthy_database_has_no_problems_and_every_record_is_counted() {
    let f = fixture().await;
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:#?}", report.problems);
    assert_eq!(report.tenants, ["acme"]);
    for (kind, count) in [
        ("registrations", 2),
        ("contacts", 2),
        ("courses", 1),
        ("courseOfferings", 1),
        ("orders", 1),
        ("emailTemplates", 1),
        ("tenants", 1),
    ] {
        assert_eq!(report.records.get(kind), Some(&count), "{kind}");
    }
    // student, course, offering, studentCourse, status, courseStatus for both; order for one.
    let total: u64 = REGISTRATION_INDEXES
        .iter()
        .filter_map(|d| report.entries.get(d.tree))
        .sum();
    assert_eq!(total, 13);
    let one = f
        .store
        .check(Scope::One(f.tenant.clone()), false)
        .await
        .unwrap();
    assert!(one.clean);
    let missing = f
        .store
        .check(Scope::One(TenantId::parse("nobody").unwrap()), false)
        .await;
    assert_eq!(missing, Err(StoreError::TenantNotFound));
}

#[tokio::test]
async fn corrupted_entries_and_counters_are_named_by_record_and_rebuilt_by_repair() {
    let f = fixture().await;
    let (t, first) = ("acme", f.registrations[0].as_str());
    let stored = f
        .store
        .registration(&f.tenant, &RecordId::parse(first).unwrap());
    let record = stored.unwrap().unwrap();
    let (student, _) = index("student");
    let (course, course_def) = index("course");
    let student_entry = REGISTRATION_INDEXES[student].entry_key(t, &record).unwrap();
    f.store.raw().indexes[student]
        .remove(student_entry)
        .unwrap();
    let ghost = keys::index_entry(
        t,
        [record.fields.course_id.as_ref().unwrap().as_str()],
        "01GHOST",
    );
    f.store.raw().indexes[course]
        .insert(
            ghost,
            crate::store::sled::index::entry_value(&record).as_bytes(),
        )
        .unwrap();
    let seats = keys::active_count(t, &f.offering);
    f.store
        .raw()
        .counters
        .insert(&seats, &7u64.to_be_bytes())
        .unwrap();
    f.store
        .raw()
        .counters
        .remove(keys::counter(t, NUMBER_SEQUENCE))
        .unwrap();
    let slots = f
        .store
        .raw()
        .db
        .open_tree(TreeId::RegistrationSlots.name())
        .unwrap();
    let slot = registrations::contribution(&f.tenant, &record)
        .slot
        .unwrap();
    slots.remove(slot).unwrap();
    assert_eq!(course_def.lookup, "course");

    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(!report.clean);
    assert_eq!(
        kinds(&report.problems),
        [
            (ProblemKind::CounterMismatch, Some(f.offering.as_str())),
            (ProblemKind::MissingIndexEntry, Some(first)),
            (ProblemKind::MissingSlot, Some(first)),
            (ProblemKind::SequenceBehind, None),
            (ProblemKind::StaleIndexEntry, Some("01GHOST")),
        ]
    );
    let seat_problem = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::CounterMismatch)
        .unwrap();
    assert_eq!(seat_problem.expected, Some(Observed::Count(1)));
    assert_eq!(seat_problem.found, Some(Observed::Count(7)));
    assert_eq!(seat_problem.counter.as_deref(), Some("active_seats"));
    let behind = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::SequenceBehind)
        .unwrap();
    assert_eq!(behind.expected, Some(Observed::Count(2)));
    assert_eq!(behind.found, Some(Observed::Count(0)));

    let repaired = f.store.check(Scope::Every, true).await.unwrap();
    let outcome = repaired.repair.unwrap();
    assert!(repaired.clean && outcome.remaining.is_empty());
    let mut actions: Vec<_> = outcome
        .changes
        .iter()
        .map(|c| (c.problem.kind, c.action))
        .collect();
    actions.sort_by_key(|(k, _)| k.as_str());
    assert_eq!(
        actions,
        [
            (ProblemKind::CounterMismatch, ChangeAction::Replaced),
            (ProblemKind::MissingIndexEntry, ChangeAction::Inserted),
            (ProblemKind::MissingSlot, ChangeAction::Inserted),
            (ProblemKind::SequenceBehind, ChangeAction::Inserted),
            (ProblemKind::StaleIndexEntry, ChangeAction::Removed),
        ]
    );
    assert!(f.store.check(Scope::Every, false).await.unwrap().clean);
    assert_eq!(
        f.store
            .active_registrations(&f.tenant, &RecordId::parse(&f.offering).unwrap()),
        Ok(1)
    );
}

#[tokio::test]
async fn an_undecodable_record_is_reported_and_kept_with_what_it_may_own() {
    let f = fixture().await;
    let (t, first) = ("acme", f.registrations[0].as_str());
    let key = keys::registration(t, first);
    // Rot that keeps the value's size: the storage counter stays right.
    let rotten = rotten(&f.store.raw().registrations.get(&key).unwrap().unwrap());
    f.store
        .raw()
        .registrations
        .insert(&key, rotten.clone())
        .unwrap();

    let report = f.store.check(Scope::Every, true).await.unwrap();
    let remaining = &report.repair.as_ref().unwrap().remaining;
    // Its entries, slot and seat are not called stale, and the repair leaves them.
    assert_eq!(
        kinds(&report.problems),
        [(ProblemKind::UndecodableRecord, Some(first))]
    );
    assert_eq!(
        kinds(remaining),
        [(ProblemKind::UndecodableRecord, Some(first))]
    );
    assert!(report.repair.unwrap().changes.is_empty());
    assert!(!report.clean);
    assert_eq!(
        f.store
            .raw()
            .registrations
            .get(&key)
            .unwrap()
            .unwrap()
            .as_ref(),
        rotten.as_slice()
    );
    assert_eq!(
        f.store
            .active_registrations(&f.tenant, &RecordId::parse(&f.offering).unwrap()),
        Ok(1)
    );
}

#[tokio::test]
async fn a_second_live_registration_in_one_slot_is_a_conflict_repair_cannot_mend() {
    let f = fixture().await;
    let t = "acme";
    let mut copy = f
        .store
        .registration(&f.tenant, &RecordId::parse(&f.registrations[0]).unwrap())
        .unwrap()
        .unwrap();
    copy.id = RecordId::parse("01COPY").unwrap();
    f.store
        .raw()
        .registrations
        .insert(
            keys::registration(t, "01COPY"),
            codec::encode(&copy).unwrap(),
        )
        .unwrap();

    let report = f.store.check(Scope::Every, true).await.unwrap();
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::SlotConflict && p.record_id.as_deref() == Some("01COPY")));
    // Its index entries and the counts are derived data: those are rebuilt.
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::MissingIndexEntry
            && p.record_id.as_deref() == Some("01COPY")));
    assert!(report
        .problems
        .iter()
        .any(|p| p.counter.as_deref() == Some(REGISTRATION_COUNT)));
    let remaining = report.repair.unwrap().remaining;
    assert_eq!(
        kinds(&remaining),
        [(ProblemKind::SlotConflict, Some("01COPY"))]
    );
    assert_eq!(f.store.registration_count(&f.tenant), Ok(3));
}

/// A registration long enough to be stored in pieces (`split`): its id and its head.
async fn long_record(f: &Fixture) -> (String, sled::IVec) {
    let contact = json!({"first_name": "Cy", "last_name": "L", "email_address": "cy@example.org"});
    let student = catalog::<ContactFields>(&f.store, &f.tenant, contact).await;
    let course = catalog::<CourseFields>(&f.store, &f.tenant, json!({"name": "Long"})).await;
    let offering = json!({"course_id": course, "start_date": "2026-03-02T09:00:00Z", "price": 10});
    let offering = catalog::<CourseOfferingFields>(&f.store, &f.tenant, offering).await;
    let body = json!({"student_id": student, "course_id": course,
                      "course_offering_id": offering, "notes": "n".repeat(40_000)});
    let id = register(&f.store, &f.tenant, body).await;
    let stored = f
        .store
        .raw()
        .registrations
        .get(keys::registration(f.tenant.as_str(), &id))
        .unwrap()
        .unwrap();
    assert!(
        crate::store::sled::split::Head::of(&stored).is_some(),
        "the record was split"
    );
    (id, stored)
}

/// A long record is checked whole (its pieces put back together: `split`), and a piece no
/// stored value is made of is reported and removed by a repair.
#[tokio::test]
async fn a_long_record_checks_clean_and_a_stray_piece_is_removed() {
    let f = fixture().await;
    let (id, stored) = long_record(&f).await;
    assert!(f.store.check(Scope::Every, false).await.unwrap().clean);

    let stray = crate::store::sled::split::piece_key(u64::MAX, 0);
    f.store
        .raw()
        .value_pieces
        .insert(stray, &b"left over"[..])
        .unwrap();
    let report = f.store.check(Scope::Every, true).await.unwrap();
    let found: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.tree, p.repairable))
        .collect();
    assert_eq!(
        found,
        [(ProblemKind::StrayValuePiece, "value_pieces", true)]
    );
    assert!(report.repair.unwrap().remaining.is_empty());
    assert!(f.store.raw().value_pieces.get(stray).unwrap().is_none());
    let record = f
        .store
        .raw()
        .registrations
        .get(keys::registration(f.tenant.as_str(), &id));
    assert_eq!(
        record.unwrap().unwrap(),
        stored,
        "the record's own pieces stay"
    );
}

/// A long record one of whose pieces is gone (damage: no write leaves one so) is named as a
/// record that does not decode, and the check goes on to the rest; a repair leaves the
/// record's head and its other pieces where they are.
#[tokio::test]
async fn a_long_record_with_a_piece_missing_is_reported_and_the_check_goes_on() {
    let f = fixture().await;
    let (id, stored) = long_record(&f).await;
    let head = crate::store::sled::split::Head::of(&stored).unwrap();
    let pieces = &f.store.raw().value_pieces;
    let before = pieces.len();
    pieces
        .remove(crate::store::sled::split::piece_key(head.set, 1))
        .unwrap()
        .expect("the record's second piece");

    let report = f.store.check(Scope::Every, true).await.unwrap();
    let undecodable: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::UndecodableRecord)
        .collect();
    assert_eq!(undecodable.len(), 1, "{:#?}", report.problems);
    assert_eq!(undecodable[0].record_id.as_deref(), Some(id.as_str()));
    assert!(
        undecodable[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("in pieces")),
        "{:?}",
        undecodable[0].detail
    );
    assert!(!undecodable[0].repairable);
    // The fixture's other registrations were read and counted all the same.
    assert_eq!(
        report.records.get("registrations"),
        Some(&(f.registrations.len() as u64 + 1))
    );
    let key = keys::registration(f.tenant.as_str(), &id);
    assert_eq!(f.store.raw().registrations.get(key).unwrap(), Some(stored));
    assert_eq!(pieces.len(), before - 1, "a repair removes no piece of it");
}

#[tokio::test]
async fn data_of_a_tenant_that_does_not_exist_is_reported_and_derived_data_of_it_removed() {
    let f = fixture().await;
    let entry = keys::index_entry("ghost", ["s1"], "01GHOST");
    f.store.raw().indexes[0]
        .insert(&entry, &[1u8, 0][..])
        .unwrap();
    let record = keys::registration("ghost", "01GHOST");
    f.store
        .raw()
        .registrations
        .insert(&record, &[2u8][..])
        .unwrap();

    let report = f.store.check(Scope::Every, true).await.unwrap();
    let unknown: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.tenant.as_deref(), p.tree, p.repairable))
        .collect();
    assert_eq!(
        unknown,
        [
            (
                ProblemKind::UnknownTenant,
                Some("ghost"),
                "registrations",
                false
            ),
            (
                ProblemKind::UnknownTenant,
                Some("ghost"),
                REGISTRATION_INDEXES[0].tree,
                true
            ),
        ]
    );
    assert_eq!(report.repair.unwrap().remaining.len(), 1);
    assert!(f.store.raw().indexes[0].get(&entry).unwrap().is_none());
    assert!(f.store.raw().registrations.get(&record).unwrap().is_some());
    // A check of one tenant does not look at other tenants' ranges.
    assert!(
        f.store
            .check(Scope::One(f.tenant.clone()), false)
            .await
            .unwrap()
            .clean
    );
}

#[tokio::test]
async fn checks_racing_writes_never_see_half_a_write() {
    let f = fixture().await;
    let body = |n: usize| {
        let record = f
            .store
            .registration(&f.tenant, &RecordId::parse(&f.registrations[1]).unwrap())
            .unwrap()
            .unwrap();
        json!({
            "student_id": record.fields.student_id.unwrap().as_str(),
            "course_id": record.fields.course_id.unwrap().as_str(),
            "course_offering_id": f.offering,
            "status": "cancelled",
            "application_id": format!("a-{n}"),
        })
    };
    // One write after another, so each is its own commit that can land between two of a
    // check's scans, were the check not alone on the writer.
    let writes = async {
        for n in 0..300 {
            register(&f.store, &f.tenant, body(n)).await;
        }
    };
    let checks = async {
        let mut reports = Vec::new();
        for _ in 0..30 {
            reports.push(f.store.check(Scope::Every, false).await.unwrap());
        }
        reports
    };
    let ((), reports) = tokio::join!(writes, checks);
    for report in reports {
        assert!(report.clean, "{:#?}", report.problems);
    }
}

/// Revises a stored registration with `change` applied to its client fields.
async fn revise(f: &Fixture, id: &str, change: Value) {
    let id = RecordId::parse(id).unwrap();
    let stored = f.store.registration(&f.tenant, &id).unwrap().unwrap();
    let mut body = Value::Object(stored.to_json());
    for (name, value) in change.as_object().unwrap() {
        body[name] = value.clone();
    }
    f.store
        .submit(registrations::ReviseRegistration {
            tenant: f.tenant.clone(),
            id,
            base_version: stored.version(),
            fields: RegistrationInput::parse(&body).unwrap().fields,
            ctx: ctx(),
            seen: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_revision_takes_the_record_it_carries_only_while_the_stored_one_is_that_record() {
    let f = fixture().await;
    let id = RecordId::parse(&f.registrations[1]).unwrap();
    let revise_with = |stored: &CourseRegistration, seen: Option<registrations::Seen>| {
        let mut body = Value::Object(stored.to_json());
        body["job_title"] = json!(format!("v{}", stored.version()));
        registrations::ReviseRegistration {
            tenant: f.tenant.clone(),
            id: id.clone(),
            base_version: stored.version(),
            fields: RegistrationInput::parse(&body).unwrap().fields,
            ctx: ctx(),
            seen,
        }
    };
    let (stored, stamp) = f.store.registration_seen(&f.tenant, &id).unwrap().unwrap();
    let stamp = stamp.expect("a record this build wrote carries a head");
    // A carried record that is not the stored one, under a stale stamp: ignored, the stored
    // record is read (taken, its version would have refused the write).
    let mut forged = stored.clone();
    forged.fields.sys_version = Some(stored.version() + 5);
    let intent = revise_with(
        &stored,
        Some(registrations::Seen {
            stamp: stamp + 1000,
            record: forged.clone(),
        }),
    );
    let revised = f.store.submit(intent).await.unwrap();
    assert_eq!(revised.version(), stored.version() + 1);
    // The stamp of what is stored now, with the record as read: taken, and the result is the
    // one reading would give.
    let (now, stamp) = f.store.registration_seen(&f.tenant, &id).unwrap().unwrap();
    assert_eq!(now, revised);
    // Under the current stamp the carried record is taken as it is: the forged version
    // refuses the write (proof that the writer did not read).
    let mut forged = now.clone();
    forged.fields.sys_version = Some(now.version() + 5);
    let intent = revise_with(
        &now,
        Some(registrations::Seen {
            stamp: stamp.unwrap(),
            record: forged,
        }),
    );
    assert!(matches!(
        f.store.submit(intent).await,
        Err(StoreError::VersionChanged { .. })
    ));
    let intent = revise_with(
        &now,
        Some(registrations::Seen {
            stamp: stamp.unwrap(),
            record: now.clone(),
        }),
    );
    let with_seen = f.store.submit(intent).await.unwrap();
    assert_eq!(with_seen.version(), now.version() + 1);
    assert_eq!(
        f.store.registration(&f.tenant, &id).unwrap().unwrap(),
        with_seen
    );
    // A stamp from before the last write: the record moved on, so the version check refuses.
    let intent = revise_with(
        &now,
        Some(registrations::Seen {
            stamp: stamp.unwrap(),
            record: now.clone(),
        }),
    );
    assert!(matches!(
        f.store.submit(intent).await,
        Err(StoreError::VersionChanged { .. })
    ));
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:#?}", report.problems);
}

#[tokio::test]
async fn revisions_that_move_entries_and_ones_that_move_none_leave_everything_consistent() {
    // The write path writes only the entries and counters that differ: each kind of change
    // must still leave what the check recomputes from the records.
    let f = fixture().await;
    let (draft, ordered) = (f.registrations[1].as_str(), f.registrations[0].as_str());
    for (id, change) in [
        (draft, json!({"job_title": "Engineer"})),
        (draft, json!({"status": "registered"})),
        (draft, json!({"application_id": "app-1"})),
        (
            draft,
            json!({"application_id": "app-2", "status": "completed"}),
        ),
        (draft, json!({"status": "cancelled"})),
        (draft, json!({"status": "draft", "application_id": null})),
        // The date is in every entry's value: a change of the date alone rewrites them.
        (draft, json!({"date": "2026-05-01T09:00:00Z"})),
        (draft, json!({"date": "2026-05-01T09:00:00.5Z"})),
        (draft, json!({"date": null})),
        (ordered, json!({"notes": "paid"})),
    ] {
        revise(&f, id, change.clone()).await;
        let report = f.store.check(Scope::Every, false).await.unwrap();
        assert!(report.clean, "after {change}: {:#?}", report.problems);
    }
}

#[tokio::test]
async fn the_course_status_index_is_checked_and_repaired_like_the_others() {
    let f = fixture().await;
    let first = RecordId::parse(&f.registrations[0]).unwrap();
    let record = f.store.registration(&f.tenant, &first).unwrap().unwrap();
    let (position, def) = index("courseStatus");
    let entry = def.entry_key("acme", &record).unwrap();
    f.store.raw().indexes[position].remove(entry).unwrap();
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert_eq!(
        kinds(&report.problems),
        [(ProblemKind::MissingIndexEntry, Some(first.as_str()))]
    );
    assert!(f.store.check(Scope::Every, true).await.unwrap().clean);
    assert!(f.store.check(Scope::Every, false).await.unwrap().clean);
}

#[tokio::test]
async fn a_database_from_before_an_index_gets_its_entries_when_opened() {
    let f = fixture().await;
    let (position, def) = index("courseStatus");
    assert!(crate::store::sled::index::BACKFILLED_INDEXES.contains(&def.tree));
    // What a data directory of an earlier build looks like: the tree empty (or absent) and
    // no marker that it was filled.
    f.store.raw().indexes[position].clear().unwrap();
    let marker = crate::store::sled::index::built_marker(def.tree);
    assert!(f
        .store
        .raw()
        .meta
        .remove(marker.as_bytes())
        .unwrap()
        .is_some());
    assert!(!f.store.check(Scope::Every, false).await.unwrap().clean);
    let Fixture {
        _dir: dir, store, ..
    } = f;
    drop(store);

    let store = reopen(dir.path());
    assert_eq!(store.raw().indexes[position].len(), 2);
    let report = store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:#?}", report.problems);
    // Filled once: a later open leaves the index alone.
    store.raw().indexes[position].clear().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(store.raw().indexes[position].len(), 0);
}

#[tokio::test]
async fn an_undecodable_record_does_not_keep_an_old_database_from_opening() {
    let f = fixture().await;
    let (position, def) = index("courseStatus");
    f.store.raw().indexes[position].clear().unwrap();
    let marker = crate::store::sled::index::built_marker(def.tree);
    f.store.raw().meta.remove(marker.as_bytes()).unwrap();
    let key = keys::registration("acme", &f.registrations[0]);
    let rotten = rotten(&f.store.raw().registrations.get(&key).unwrap().unwrap());
    f.store.raw().registrations.insert(key, rotten).unwrap();
    let Fixture {
        _dir: dir, store, ..
    } = f;
    drop(store);

    let store = reopen(dir.path());
    // The other registration got its entry; the check names the one that does not read.
    assert_eq!(store.raw().indexes[position].len(), 1);
    let report = store.check(Scope::Every, false).await.unwrap();
    assert_eq!(
        kinds(&report.problems)
            .into_iter()
            .map(|(kind, _)| kind)
            .collect::<Vec<_>>(),
        [ProblemKind::UndecodableRecord]
    );
}

#[tokio::test]
async fn entries_in_the_older_layout_are_right_and_a_repair_rewrites_them() {
    use crate::store::sled::index::{entry_value, entry_value_v1};
    let f = fixture().await;
    revise(
        &f,
        &f.registrations[0],
        json!({"date": "2026-05-01T09:00:00Z"}),
    )
    .await;
    // What an earlier build wrote: every entry of every registration as status only.
    let mut rewritten = 0;
    for id in &f.registrations {
        let record = f
            .store
            .registration(&f.tenant, &RecordId::parse(id).unwrap())
            .unwrap()
            .unwrap();
        for (position, def) in REGISTRATION_INDEXES.iter().enumerate() {
            if let Some(key) = def.entry_key("acme", &record) {
                let old = entry_value_v1(record.status());
                f.store.raw().indexes[position]
                    .insert(key, &old[..])
                    .unwrap();
                rewritten += 1;
            }
        }
    }
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:#?}", report.problems);
    assert_eq!(report.older_layout, rewritten);

    // A format 1 entry with the wrong status is a problem like any other.
    let first = RecordId::parse(&f.registrations[0]).unwrap();
    let record = f.store.registration(&f.tenant, &first).unwrap().unwrap();
    let (student, def) = index("student");
    let key = def.entry_key("acme", &record).unwrap();
    let wrong = entry_value_v1(crate::domain::enums::RegistrationStatus::Cancelled);
    f.store.raw().indexes[student]
        .insert(&key, &wrong[..])
        .unwrap();
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert_eq!(
        kinds(&report.problems),
        [(ProblemKind::WrongIndexEntry, Some(first.as_str()))]
    );
    assert_eq!(report.older_layout, rewritten - 1);
    assert_eq!(
        report.problems[0].found,
        Some(Observed::Text("cancelled (older layout: no date)".into()))
    );
    assert_eq!(
        report.problems[0].expected,
        Some(Observed::Text(
            "registered, date 2026-05-01T09:00:00Z".into()
        ))
    );

    let repaired = f.store.check(Scope::Every, true).await.unwrap();
    let outcome = repaired.repair.unwrap();
    assert_eq!(outcome.changes.len(), 1);
    assert_eq!(outcome.upgraded, rewritten - 1);
    assert!(outcome.remaining.is_empty());
    let after = f.store.check(Scope::Every, false).await.unwrap();
    assert!(after.clean);
    assert_eq!(after.older_layout, 0);
    assert_eq!(
        f.store.raw().indexes[student]
            .get(&key)
            .unwrap()
            .unwrap()
            .as_ref(),
        entry_value(&record).as_bytes()
    );
}

// ---- what the server keeps (issue 13) -------------------------------------------------------

use crate::domain::time::Timestamp;
use crate::store::records::OutboxMessage;
use crate::store::retention::Retention;
use crate::store::sled::idempotency::{KeepResponse, StoredResponse};
use crate::store::sled::usage::STORED_BYTES;
use crate::store::write::KeepInOutbox;
use crate::store::Engine;

fn stored_bytes(store: &Store, tenant: &str) -> u64 {
    store.counter(&keys::counter(tenant, STORED_BYTES)).unwrap()
}

/// What the records under `tenant` take: the counter's definition, recounted by hand.
fn recount(store: &Store, tenant: &str) -> u64 {
    let prefix = keys::tenant_prefix(tenant);
    [
        &store.raw().registrations,
        &store.raw().catalog,
        &store.raw().outbox,
        &store.raw().idempotency,
    ]
    .iter()
    .flat_map(|tree| tree.scan_prefix(prefix.as_bytes()))
    .map(|entry| {
        let (key, value) = entry.unwrap();
        (key.len() + value.len()) as u64
    })
    .sum()
}

fn response(at: Timestamp, body_bytes: usize) -> StoredResponse {
    StoredResponse {
        fingerprint: [1; 32],
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: vec![b'x'; body_bytes],
        at,
    }
}

fn message(subject: &str) -> OutboxMessage {
    OutboxMessage {
        id: RecordId::generate(),
        message_id: format!("<{subject}@example.org>"),
        to: "ada@example.org".into(),
        subject: subject.into(),
        html: None,
        text: Some("hello".into()),
        registration_id: None,
        created_at: Timestamp::now(),
        delivery: crate::store::records::Delivery::Kept,
    }
}

/// Runs a sweep as the sweeper thread does: off the async runtime (it waits for the writer).
fn sweep(store: &Store, now: Timestamp) -> crate::store::records::Swept {
    std::thread::scope(|scope| scope.spawn(|| store.sweep(now)).join().unwrap()).unwrap()
}

#[tokio::test]
async fn every_write_moves_the_stored_bytes_with_it_and_check_agrees() {
    let f = fixture().await;
    let t = f.tenant.as_str();
    assert!(stored_bytes(&f.store, t) > 0);
    assert_eq!(stored_bytes(&f.store, t), recount(&f.store, t));
    f.store
        .submit(KeepResponse {
            tenant: f.tenant.clone(),
            key: "k1".into(),
            response: response(Timestamp::now(), 1000),
        })
        .await
        .unwrap();
    f.store
        .keep_in_outbox(KeepInOutbox {
            tenant: f.tenant.clone(),
            message: message("m1"),
            max_bytes: 10_000,
            max_messages: u64::MAX,
        })
        .await
        .unwrap();
    revise(&f, &f.registrations[1], json!({"notes": "x".repeat(5000)})).await;
    assert_eq!(stored_bytes(&f.store, t), recount(&f.store, t));
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(report.entries["idempotency_expiry"], 1);

    // A wrong counter is named and rebuilt from the records.
    let key = keys::counter(t, STORED_BYTES);
    f.store
        .raw()
        .counters
        .insert(&key, &7u64.to_be_bytes())
        .unwrap();
    let report = f.store.check(Scope::Every, true).await.unwrap();
    let problem = &report.problems[0];
    assert_eq!(
        (problem.kind, problem.counter.as_deref()),
        (ProblemKind::CounterMismatch, Some(STORED_BYTES))
    );
    assert_eq!(problem.found, Some(Observed::Count(7)));
    assert!(report.clean, "repaired: {:?}", report.repair);
    assert_eq!(stored_bytes(&f.store, t), recount(&f.store, t));
}

#[tokio::test]
async fn the_storage_quota_refuses_growth_but_never_a_deletion() {
    let f = fixture().await;
    let t = f.tenant.as_str();
    let used = stored_bytes(&f.store, t);
    f.store
        .patch_tenant(
            &f.tenant,
            json!({"limits": {"max_storage_bytes": used + 500}}),
        )
        .await
        .unwrap();
    let keep = |key: &str, bytes: usize| KeepResponse {
        tenant: f.tenant.clone(),
        key: key.into(),
        response: response(Timestamp::now(), bytes),
    };
    f.store.submit(keep("small", 100)).await.unwrap();
    let refused = f.store.submit(keep("large", 1000)).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            StoreError::Rule(crate::domain::rules::RuleViolation::TenantLimit { .. })
        ),
        "{refused:?}"
    );
    assert!(f
        .store
        .stored_response(&f.tenant, "large")
        .unwrap()
        .is_none());
    assert_eq!(stored_bytes(&f.store, t), recount(&f.store, t));
    // An expired response swept away frees its room.
    let later = Timestamp::from_parts(Timestamp::now().to_parts().0 + 2 * 86_400, 0).unwrap();
    assert_eq!(sweep(&f.store, later).responses, 1);
    assert_eq!(stored_bytes(&f.store, t), used);
    assert!(f.store.check(Scope::Every, false).await.unwrap().clean);
}

#[tokio::test]
async fn the_sweeper_deletes_expired_responses_and_outbox_messages_past_retention() {
    let mut f = fixture().await;
    f.store.set_retention(Retention {
        outbox_max_messages: 3,
        ..Retention::default()
    });
    let now = Timestamp::now();
    let seconds = now.to_parts().0;
    let at = |ago: i64| Timestamp::from_parts(seconds - ago, 0).unwrap();
    for (key, stored) in [("old", at(25 * 3600)), ("fresh", at(3600))] {
        f.store
            .submit(KeepResponse {
                tenant: f.tenant.clone(),
                key: key.into(),
                response: response(stored, 10),
            })
            .await
            .unwrap();
    }
    // Stored again after it expired: the newer response stays, its old expiry entry goes.
    f.store
        .submit(KeepResponse {
            tenant: f.tenant.clone(),
            key: "reused".into(),
            response: response(at(30 * 3600), 10),
        })
        .await
        .unwrap();
    f.store
        .submit(KeepResponse {
            tenant: f.tenant.clone(),
            key: "reused".into(),
            response: response(at(60), 10),
        })
        .await
        .unwrap();
    let mut subjects = Vec::new();
    for n in 1..=5 {
        let subject = format!("m{n}");
        f.store
            .keep_in_outbox(KeepInOutbox {
                tenant: f.tenant.clone(),
                message: message(&subject),
                max_bytes: 10_000,
                // As if the cap had been raised since (or a race left it over): the sweeper
                // trims what writes left over the cap.
                max_messages: u64::MAX,
            })
            .await
            .unwrap();
        subjects.push(subject);
    }

    let swept = sweep(&f.store, now);
    assert_eq!((swept.responses, swept.messages), (1, 2));
    assert!(f.store.stored_response(&f.tenant, "old").unwrap().is_none());
    assert!(f
        .store
        .stored_response(&f.tenant, "fresh")
        .unwrap()
        .is_some());
    assert!(f
        .store
        .stored_response(&f.tenant, "reused")
        .unwrap()
        .is_some());
    let kept: Vec<String> = f
        .store
        .outbox_page(&f.tenant, None, 10)
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(kept, ["m5", "m4", "m3"], "the oldest are dropped first");
    let messages = keys::counter(
        f.tenant.as_str(),
        crate::store::sled::usage::OUTBOX_MESSAGES,
    );
    assert_eq!(f.store.counter(&messages).unwrap(), 3);
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(report.entries["idempotency_expiry"], 2);
    assert_eq!(
        stored_bytes(&f.store, f.tenant.as_str()),
        recount(&f.store, f.tenant.as_str())
    );

    // A month on, by age, everything goes.
    let later = Timestamp::from_parts(seconds + 31 * 86_400, 0).unwrap();
    let swept = sweep(&f.store, later);
    assert_eq!((swept.responses, swept.messages), (2, 3));
    assert!(f
        .store
        .outbox_page(&f.tenant, None, 10)
        .unwrap()
        .items
        .is_empty());
    assert!(f.store.check(Scope::Every, false).await.unwrap().clean);
}

#[tokio::test]
async fn a_message_over_the_outbox_cap_is_refused() {
    let f = fixture().await;
    let mut big = message("big");
    big.text = Some("x".repeat(2000));
    let refused = f
        .store
        .keep_in_outbox(KeepInOutbox {
            tenant: f.tenant.clone(),
            message: big,
            max_bytes: 1000,
            max_messages: u64::MAX,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            StoreError::Rule(crate::domain::rules::RuleViolation::OutboxMessageTooLarge { .. })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_older_database_gets_its_byte_counts_and_expiry_entries_when_opened() {
    let f = fixture().await;
    f.store
        .submit(KeepResponse {
            tenant: f.tenant.clone(),
            key: "k".into(),
            response: response(Timestamp::now(), 10),
        })
        .await
        .unwrap();
    let t = f.tenant.as_str().to_owned();
    // What an earlier build left: no counter, no expiry entries, no markers.
    f.store
        .raw()
        .counters
        .remove(keys::counter(&t, STORED_BYTES))
        .unwrap();
    f.store.raw().idempotency_expiry.clear().unwrap();
    f.store
        .raw()
        .meta
        .remove(keys::meta("stored_bytes_counted"))
        .unwrap();
    f.store
        .raw()
        .meta
        .remove(keys::meta("idempotency_expiry_filled"))
        .unwrap();
    let Fixture {
        _dir: dir, store, ..
    } = f;
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(stored_bytes(&store, &t), recount(&store, &t));
    assert_eq!(store.raw().idempotency_expiry.len(), 1);
    let report = store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:?}", report.problems);
}

#[tokio::test]
async fn a_message_past_the_outbox_cap_drops_the_oldest_in_its_own_write() {
    let f = fixture().await;
    for n in 1..=4 {
        f.store
            .keep_in_outbox(KeepInOutbox {
                tenant: f.tenant.clone(),
                message: message(&format!("m{n}")),
                max_bytes: 10_000,
                max_messages: 2,
            })
            .await
            .unwrap();
    }
    let kept: Vec<String> = f
        .store
        .outbox_page(&f.tenant, None, 10)
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(kept, ["m4", "m3"]);
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(
        stored_bytes(&f.store, f.tenant.as_str()),
        recount(&f.store, f.tenant.as_str())
    );
}

#[tokio::test]
async fn pending_mail_is_claimed_once_its_claim_ran_out_and_settled_once() {
    use crate::store::records::Delivery;
    use crate::store::write::SettleOutbox;
    use crate::store::Engine;
    use std::time::Duration;
    let f = fixture().await;
    let now = Timestamp::now();
    let with = |subject: &str, delivery: Delivery| {
        let mut m = message(subject);
        m.delivery = delivery;
        m
    };
    let left = with(
        "left",
        Delivery::Pending {
            claimed_until: now.minus(Duration::from_secs(1)),
            attempts: 0,
        },
    );
    let sending = with(
        "sending",
        Delivery::Pending {
            claimed_until: now.plus(Duration::from_secs(60)),
            attempts: 0,
        },
    );
    for message in [left.clone(), sending.clone(), message("kept")] {
        f.store
            .keep_in_outbox(KeepInOutbox {
                tenant: f.tenant.clone(),
                message,
                max_bytes: 10_000,
                max_messages: u64::MAX,
            })
            .await
            .unwrap();
    }
    let until = now.plus(Duration::from_secs(30));
    let claimed = Engine::claim_outbox(&f.store, now, until, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "only the one whose claim ran out");
    assert_eq!(claimed[0].1.id, left.id);
    assert_eq!(
        claimed[0].1.delivery,
        Delivery::Pending {
            claimed_until: until,
            attempts: 1
        }
    );
    assert!(
        Engine::claim_outbox(&f.store, now, until, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed: not handed out again before the new claim runs out"
    );
    let sent = |id: &RecordId| SettleOutbox {
        tenant: f.tenant.clone(),
        id: id.clone(),
        delivery: Delivery::Sent { at: now },
    };
    assert!(f.store.settle_outbox(sent(&left.id)).await.unwrap());
    assert!(
        !f.store.settle_outbox(sent(&left.id)).await.unwrap(),
        "settled once"
    );
    assert!(f.store.settle_outbox(sent(&sending.id)).await.unwrap());
    let later = now.plus(Duration::from_secs(3600));
    for _ in 0..2 {
        // The second pass finds the outbox known clean and reads nothing.
        let claimed = Engine::claim_outbox(&f.store, later, later, 10)
            .await
            .unwrap();
        assert!(claimed.is_empty());
    }
    let t = f.tenant.as_str();
    assert_eq!(stored_bytes(&f.store, t), recount(&f.store, t));
    let report = f.store.check(Scope::Every, false).await.unwrap();
    assert!(report.clean, "{:?}", report.problems);
}
