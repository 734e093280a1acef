//! Search (indexed and unindexed) and batch, on a tenant with 10k registrations and, when
//! asked, 1M: `REGISTRAR_BENCH_SIZES=10000,1000000 cargo bench --bench search_batch`.
//!
//! Datasets are built once through the real write path and kept under
//! `target/bench-data/<size>` so later runs start at once. Every registration has its own
//! (student, offering) pair: 1,000 contacts × `size / 1000` offerings of 10 courses.

mod common;

use common::{create, ctx, store_with_tenant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use registrar::domain::catalog::{ContactFields, CourseFields, CourseOfferingFields};
use registrar::domain::ids::{RecordId, TenantId};
use registrar::domain::registration::RegistrationInput;
use registrar::domain::search::SearchCriteria;
use registrar::store::sled::registrations::CreateRegistration;
use registrar::store::sled::Store;
use registrar::store::Durability;
use registrar::workflows::batch;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANT: &str = "bench";
const CONTACTS: usize = 1000;
const CITIES: [&str; 5] = ["London", "Paris", "Berlin", "Madrid", "Rome"];
const STATUSES: [&str; 4] = ["registered", "draft", "completed", "cancelled"];

/// Builds the dataset with relaxed durability (it is rebuilt if lost), as fast as the
/// pipeline takes it: many concurrent submitters, so each transaction carries ~128 writes.
async fn build(dir: &std::path::Path, size: usize) -> Vec<RecordId> {
    let (store, tenant) = store_with_tenant(dir, Durability::Relaxed, TENANT).await;
    let mut contacts = Vec::new();
    for i in 0..CONTACTS {
        contacts.push(
            create::<ContactFields>(
                &store,
                &tenant,
                json!({"first_name": "Student", "last_name": format!("{i}")}),
            )
            .await,
        );
    }
    let offerings_needed = size.div_ceil(CONTACTS);
    let mut courses = Vec::new();
    for i in 0..10 {
        courses.push(
            create::<CourseFields>(&store, &tenant, json!({"name": format!("Course {i}")})).await,
        );
    }
    let mut offerings = Vec::new();
    for i in 0..offerings_needed {
        let course = &courses[i % courses.len()];
        let id = create::<CourseOfferingFields>(
            &store,
            &tenant,
            json!({"course_id": course, "training_provider_id": format!("tp-{}", i % 7)}),
        )
        .await;
        offerings.push((course.clone(), id));
    }
    let started = Instant::now();
    let workers = 256;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (store, tenant, contacts, offerings) = (
            store.clone(),
            tenant.clone(),
            contacts.clone(),
            offerings.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < size {
                let (course, offering) = &offerings[i / CONTACTS];
                let body = json!({
                    "student_id": contacts[i % CONTACTS], "course_id": course, "course_offering_id": offering,
                    "status": STATUSES[i % STATUSES.len()], "city": CITIES[i % CITIES.len()],
                    "name": if i % 1000 == 7 { format!("Needle {i}") } else { format!("Student {i}") },
                    "order_total": (i % 500) as f64,
                });
                let fields = RegistrationInput::parse(&body).unwrap().fields;
                let intent = CreateRegistration { tenant: tenant.clone(), id: RecordId::generate(), fields, ctx: ctx(), dry_run: false };
                store.submit(intent).await.unwrap();
                i += workers;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    store.flush().unwrap();
    eprintln!("built {size} registrations in {:.1?}", started.elapsed());
    offerings.into_iter().map(|(_, o)| o).collect()
}

fn dataset(rt: &tokio::runtime::Runtime, size: usize) -> (Arc<Store>, Vec<RecordId>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/{size}"));
    let marker = dir.join("complete.json");
    let offerings: Vec<RecordId> = match std::fs::read_to_string(&marker) {
        Ok(text) => serde_json::from_str::<Vec<String>>(&text)
            .unwrap()
            .iter()
            .map(|s| RecordId::parse(s).unwrap())
            .collect(),
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            let db = dir.join("db");
            let offerings = rt.block_on(build(&db, size));
            let ids: Vec<String> = offerings.iter().map(|o| o.to_string()).collect();
            std::fs::write(&marker, serde_json::to_string(&ids).unwrap()).unwrap();
            offerings
        }
    };
    let store = Arc::new(Store::open(&dir.join("db"), Durability::Sync).unwrap());
    (store, offerings)
}

fn sizes() -> Vec<usize> {
    std::env::var("REGISTRAR_BENCH_SIZES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("REGISTRAR_BENCH_SIZES: comma-separated counts")
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tenant = TenantId::parse(TENANT).unwrap();
    for size in sizes() {
        let (store, offerings) = dataset(&rt, size);
        let mut group = c.benchmark_group(format!("search/{size}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
        let searches = [
            (
                "offering (indexed)",
                json!({"course_offering_id": [offerings[offerings.len() / 2].to_string()]}),
            ),
            ("status (indexed)", json!({"status": ["completed"]})),
            (
                "offering + city (indexed, filtered)",
                json!({"course_offering_id": [offerings[0].to_string()], "city": "par"}),
            ),
            ("name substring (unindexed scan)", json!({"name": "needle"})),
            (
                "order_total range (unindexed scan)",
                json!({"order_total": [100, 110]}),
            ),
        ];
        for (label, criteria) in searches {
            let criteria = SearchCriteria::parse(&criteria).unwrap();
            group.bench_with_input(BenchmarkId::new(label, size), &criteria, |b, criteria| {
                b.iter(|| {
                    store
                        .search_registrations(&tenant, criteria, None, 100)
                        .unwrap()
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("batch/{size}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(10));
        let page = store
            .search_registrations(
                &tenant,
                &SearchCriteria::parse(&json!({"status": ["draft"]})).unwrap(),
                None,
                100,
            )
            .unwrap();
        let ids: Vec<String> = page.items.iter().map(|r| r.id.to_string()).collect();
        for atomic in [false, true] {
            let mut round = 0u64;
            group.bench_function(BenchmarkId::new(if atomic { "100 patches, atomic" } else { "100 patches" }, size), |b| {
                b.iter(|| {
                    round += 1;
                    let operations: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"op": "patch", "id": id, "patch": [{"op": "add", "path": "/job_title", "value": format!("round {round}")}]}))
                        .collect();
                    let body = json!({"operations": operations, "atomic": atomic});
                    let report = rt.block_on(batch::run(&(store.clone() as registrar::store::Db), &tenant, &body, &ctx())).unwrap();
                    assert!(report.results.iter().all(|r| r.result.is_ok()));
                })
            });
        }
        group.finish();
    }
}

criterion_group!(search_and_batch, benches);
criterion_main!(search_and_batch);
