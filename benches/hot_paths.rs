//! The hot paths of a request, in process: key encoding, the stored-value codec, record → JSON
//! with and without a projection, one durable create through the write pipeline, a lookup
//! page, a search page and a batch (durable, and relaxed to see its CPU cost alone). `cargo bench --bench hot_paths`; searches and batches at
//! 10k and 1M registrations are in `search_batch`.
//!
//! The store benches build a small tenant (1 course, 1 offering, 200 contacts, 2,000
//! registrations dated over 2025, 1 in 10 a draft, the rest cancelled; and a second course of
//! 400 cancelled registrations dated alternately inside and outside the search's window) in a
//! temporary directory through the real write path.

mod common;

use common::{create, ctx, store_with_tenant};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use registrar::domain::catalog::{ContactFields, CourseFields, CourseOfferingFields};
use registrar::domain::events::Change;
use registrar::domain::ids::{RecordId, TenantId};
use registrar::domain::record::project;
use registrar::domain::registration::{CourseRegistration, RegistrationInput};
use registrar::domain::search::SearchCriteria;
use registrar::domain::transfer::RecordKind;
use registrar::store::sled::index::REGISTRATION_INDEXES;
use registrar::store::sled::registrations::CreateRegistration;
use registrar::store::sled::{codec, keys, Store};
use registrar::store::Durability;
use registrar::workflows::batch;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "bench";
const CONTACTS: usize = 200;
const REGISTRATIONS: usize = 2000;
/// Registrations of the second course, alternately inside and outside the search's window.
const INTERLEAVED: usize = 400;

/// A full registration: every field of the seed's sample (about 2 KB of JSON).
fn full_registration() -> CourseRegistration {
    let body: Value =
        serde_json::from_str(include_str!("../tests/fixtures/full_registration.json")).unwrap();
    let fields = RegistrationInput::parse(&body).unwrap().fields;
    CourseRegistration::create(RecordId::generate(), fields, &ctx()).unwrap()
}

fn keys_and_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("keys");
    let id = RecordId::generate();
    group.bench_function("registration key", |b| {
        b.iter(|| keys::registration(black_box(TENANT), black_box(id.as_str())))
    });
    group.bench_function("index entry key (2 values)", |b| {
        b.iter(|| keys::index_entry(black_box(TENANT), ["01STUDENT", "01COURSE"], id.as_str()))
    });
    let entry = keys::index_entry(TENANT, ["01STUDENT", "01COURSE"], id.as_str());
    group.bench_function("index entry id (decode)", |b| {
        b.iter(|| keys::index_entry_id(black_box(entry.as_bytes()), 2).unwrap())
    });
    group.finish();

    let record = full_registration();
    let bytes = codec::encode(&record).unwrap();
    let mut group = c.benchmark_group("codec");
    group.bench_function("encode full registration", |b| {
        b.iter(|| codec::encode(black_box(&record)).unwrap())
    });
    group.bench_function("decode full registration", |b| {
        b.iter(|| codec::decode::<CourseRegistration>(black_box(&bytes)).unwrap())
    });
    group.finish();

    // The responses write JSON directly (`write_json`); the `Value` map is what they built
    // before, kept here as the comparison.
    let mut group = c.benchmark_group("json");
    let write = |record: &CourseRegistration, fields: Option<&[String]>| {
        let mut out = Vec::with_capacity(3 * 1024);
        record.write_json(&mut out, fields);
        out
    };
    group.bench_function("record to JSON bytes", |b| {
        b.iter(|| write(black_box(&record), None))
    });
    group.bench_function("record to JSON bytes, via a Value map", |b| {
        b.iter(|| serde_json::to_vec(&black_box(&record).to_json()).unwrap())
    });
    let fields: Vec<String> = ["name", "status", "course_offering_id"]
        .map(String::from)
        .to_vec();
    group.bench_function("record to JSON bytes, 3-field projection", |b| {
        b.iter(|| write(black_box(&record), Some(&fields)))
    });
    group.bench_function(
        "record to JSON bytes, 3-field projection, via a Value map",
        |b| b.iter(|| serde_json::to_vec(&project(black_box(&record).to_json(), &fields)).unwrap()),
    );
    group.bench_function("decode + JSON (a GET's work)", |b| {
        b.iter(|| {
            let record: CourseRegistration = codec::decode(black_box(&bytes)).unwrap();
            write(&record, None)
        })
    });
    group.finish();

    // What each write adds for its change event (on the writer thread): the patch as JSON
    // text, compared typed field by field; and, for comparison, the generic way (both
    // records' JSON maps and json_patch::diff), which an earlier draft took.
    let mut group = c.benchmark_group("events");
    let kind = RecordKind::Registration;
    group.bench_function("change event of a create (full registration)", |b| {
        b.iter(|| Change::between(kind, None, Some(black_box(&record)), &ctx()).unwrap())
    });
    let mut patched = record.clone();
    patched.fields.city = registrar::domain::values::Text::new("Changed City").ok();
    patched.fields.sys_version = Some(2);
    group.bench_function("change event of a PATCH (one field)", |b| {
        b.iter(|| Change::between(kind, Some(black_box(&record)), Some(&patched), &ctx()).unwrap())
    });
    group.bench_function("generic JSON diff of a PATCH (for comparison)", |b| {
        b.iter(|| {
            let before = Value::Object(black_box(&record).to_json());
            let after = Value::Object(patched.to_json());
            serde_json::to_string(&json_patch::diff(&before, &after)).unwrap()
        })
    });
    group.finish();
}

struct Tenant {
    store: Arc<Store>,
    id: TenantId,
    course: RecordId,
    offering: RecordId,
    contacts: Vec<RecordId>,
}

async fn tenant(dir: &std::path::Path, durability: Durability) -> Tenant {
    let (store, id) = store_with_tenant(dir, durability, TENANT).await;
    let course = create::<CourseFields>(&store, &id, json!({"name": "Bench 101"})).await;
    let offering =
        create::<CourseOfferingFields>(&store, &id, json!({"course_id": course, "name": "Spring"}))
            .await;
    let mut contacts = Vec::new();
    for i in 0..CONTACTS {
        let body = json!({"first_name": "Student", "last_name": format!("{i}")});
        contacts.push(create::<ContactFields>(&store, &id, body).await);
    }
    Tenant {
        store,
        id,
        course,
        offering,
        contacts,
    }
}

/// A cancelled registration: it holds no seat and no (student, offering) slot, so the same
/// student can be registered again and again; every index entry and counter is still written.
/// Its `date` is day `n % 365` of 2025.
fn create_intent(t: &Tenant, student: &RecordId, n: usize) -> CreateRegistration {
    create_with_status(t, student, n, "cancelled")
}

fn create_with_status(
    t: &Tenant,
    student: &RecordId,
    n: usize,
    status: &str,
) -> CreateRegistration {
    let date = format!(
        "2025-{:02}-{:02}T09:00:00Z",
        (n % 365) / 31 + 1,
        (n % 365) % 28 + 1
    );
    let body = json!({
        "student_id": student, "course_id": t.course, "course_offering_id": t.offering,
        "status": status, "city": "Oslo", "notes": "x".repeat(1500), "date": date,
    });
    CreateRegistration {
        tenant: t.id.clone(),
        id: RecordId::generate(),
        fields: RegistrationInput::parse(&body).unwrap().fields,
        ctx: ctx(),
        dry_run: false,
    }
}

fn store_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = rt.block_on(tenant(&dir.path().join("db"), Durability::Sync));
    rt.block_on(async {
        for i in 0..REGISTRATIONS {
            // The first 200 (one per contact) are drafts, so the batch has records to patch.
            let intent = if i < CONTACTS {
                create_with_status(&t, &t.contacts[i], i, "draft")
            } else {
                create_intent(&t, &t.contacts[i % CONTACTS], i)
            };
            t.store.submit(intent).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("store");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    let mut n = 0;
    group.bench_function("create, durable (one writer, flush per create)", |b| {
        b.iter(|| {
            n += 1;
            let intent = create_intent(&t, &t.contacts[n % CONTACTS], n);
            rt.block_on(t.store.submit(intent)).unwrap()
        })
    });
    let student = REGISTRATION_INDEXES
        .iter()
        .find(|d| d.lookup == "student")
        .unwrap();
    let first = t.contacts[0].as_str();
    group.bench_function("lookup page (student, ~10 items)", |b| {
        b.iter(|| {
            let page = t
                .store
                .lookup_registrations(&t.id, student, &[first], false, None, 10)
                .unwrap();
            assert_eq!(page.items.len(), 10);
            page
        })
    });
    group.bench_function("lookup page as JSON bytes", |b| {
        b.iter(|| {
            let page = t
                .store
                .lookup_registrations(&t.id, student, &[first], false, None, 10)
                .unwrap();
            let mut out = Vec::with_capacity(30 * 1024);
            out.extend_from_slice(b"{\"Count\":10,\"Items\":[");
            for (i, record) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                record.write_json(&mut out, None);
            }
            out.extend_from_slice(b"]}");
            out
        })
    });
    // The second course: its registrations (in id order) alternate between a date inside the
    // search's window and one outside it, as randomly dated ones do on average (the load
    // benchmark's data). In the first course the dates run in order, so a page's candidates
    // all fall in the window.
    let course2 = rt.block_on(async {
        let course = create::<CourseFields>(&t.store, &t.id, json!({"name": "Bench 102"})).await;
        let offering = create::<CourseOfferingFields>(
            &t.store,
            &t.id,
            json!({"course_id": course, "name": "Autumn"}),
        )
        .await;
        for n in 0..INTERLEAVED {
            let date = if n % 2 == 0 {
                format!("2025-05-{:02}T09:00:00Z", n % 28 + 1)
            } else {
                format!("2025-11-{:02}T09:00:00Z", n % 28 + 1)
            };
            let body = json!({
                "student_id": t.contacts[n % CONTACTS], "course_id": course,
                "course_offering_id": offering, "status": "cancelled", "city": "Oslo",
                "notes": "x".repeat(1500), "date": date,
            });
            let intent = CreateRegistration {
                tenant: t.id.clone(),
                id: RecordId::generate(),
                fields: RegistrationInput::parse(&body).unwrap().fields,
                ctx: ctx(),
                dry_run: false,
            };
            t.store.submit(intent).await.unwrap();
        }
        course
    });

    // The load benchmark's search: one course, one status, half a year of dates; about half
    // of the course's cancelled registrations fall in the window.
    let criteria = SearchCriteria::parse(&json!({
        "course_id": [t.course], "status": ["cancelled"],
        "date": ["2025-03-01T00:00:00Z", "2025-08-31T23:59:59Z"],
    }))
    .unwrap();
    group.bench_function("search page (course + status + dates, 10 items)", |b| {
        b.iter(|| {
            let page = t
                .store
                .search_registrations(&t.id, &criteria, None, 10)
                .unwrap();
            assert_eq!(page.items.len(), 10);
            page
        })
    });
    let interleaved = SearchCriteria::parse(&json!({
        "course_id": [course2], "status": ["cancelled"],
        "date": ["2025-03-01T00:00:00Z", "2025-08-31T23:59:59Z"],
    }))
    .unwrap();
    group.bench_function(
        "search page (course + status + dates, every other candidate outside, 10 items)",
        |b| {
            b.iter(|| {
                let page = t
                    .store
                    .search_registrations(&t.id, &interleaved, None, 10)
                    .unwrap();
                assert_eq!(page.items.len(), 10);
                page
            })
        },
    );
    group.finish();

    // One request of the load benchmark's batch scenario: 100 patches of one field, durable.
    let mut group = c.benchmark_group("batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let drafts: Vec<String> = t
        .store
        .search_registrations(
            &t.id,
            &SearchCriteria::parse(&json!({"status": ["draft"]})).unwrap(),
            None,
            100,
        )
        .unwrap()
        .items
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(drafts.len(), 100);
    let mut round = 0u64;
    group.bench_function("100 patches (one field), durable", |b| {
        b.iter(|| {
            round += 1;
            let operations: Vec<Value> = drafts
                .iter()
                .map(|id| json!({"op": "patch", "id": id, "patch": [{"op": "add", "path": "/job_title", "value": format!("round {round}")}]}))
                .collect();
            let body = json!({"operations": operations});
            let report = rt.block_on(batch::run(&(t.store.clone() as registrar::store::Db), &t.id, &body, &ctx())).unwrap();
            assert!(report.results.iter().all(|r| r.result.is_ok()));
        })
    });
    group.finish();
}

/// The batch's CPU cost without the flush: the load benchmark's batch on a relaxed store, its
/// records as `benches/load/seed.py` makes them (every field the contact and the offering
/// fill is present, so nothing is left to fill).
fn batch_cpu(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, tenant) = rt.block_on(store_with_tenant(
        &dir.path().join("db"),
        Durability::Relaxed,
        TENANT,
    ));
    let ids: Vec<String> = rt.block_on(async {
        let course = create::<CourseFields>(&store, &tenant, json!({"name": "Bench 101"})).await;
        let offering = create::<CourseOfferingFields>(
            &store,
            &tenant,
            json!({
                "course_id": course, "name": "Spring", "start_date": "2025-03-01T09:00:00Z",
                "training_provider_id": "tp-1", "training_location_id": "loc-1",
                "webinar_join_url": "https://meet.example.org/j/1",
            }),
        )
        .await;
        let mut ids = Vec::new();
        for i in 0..100 {
            let contact = create::<ContactFields>(
                &store,
                &tenant,
                json!({
                    "first_name": "Ada", "last_name": format!("Student{i:06}"),
                    "email_address": format!("ada.{i}@example.org"), "city": "Oslo",
                    "state": "State 1", "country": "NO", "job_title": "Engineer",
                    "organization_id": format!("org-{i}"),
                }),
            )
            .await;
            let body = json!({
                "student_id": contact, "course_id": course, "course_offering_id": offering,
                "status": "draft", "notes": "x".repeat(1500), "date": "2025-02-01T09:00:00Z",
            });
            let intent = CreateRegistration {
                tenant: tenant.clone(),
                id: RecordId::generate(),
                fields: RegistrationInput::parse(&body).unwrap().fields,
                ctx: ctx(),
                dry_run: false,
            };
            ids.push(store.submit(intent).await.unwrap().id.to_string());
        }
        ids
    });
    let mut group = c.benchmark_group("batch_cpu");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut round = 0u64;
    group.bench_function("100 patches (one field), relaxed, seed-like records", |b| {
        b.iter(|| {
            round += 1;
            let operations: Vec<Value> = ids
                .iter()
                .map(|id| json!({"op": "patch", "id": id, "patch": [{"op": "replace", "path": "/job_title", "value": format!("b{round}")}]}))
                .collect();
            let body = json!({"operations": operations});
            let report = rt.block_on(batch::run(&(store.clone() as registrar::store::Db), &tenant, &body, &ctx())).unwrap();
            assert!(report.results.iter().all(|r| r.result.is_ok()));
        })
    });
    group.finish();
}

criterion_group!(benches, keys_and_codec, store_paths, batch_cpu);
criterion_main!(benches);
