//! Import throughput: records/s of an NDJSON import of ~2 KB registrations, through the same
//! path as `registrar import` and `POST /admin/tenants/{t}/import` (parse, rules, one
//! transaction per 1,000 rows, one flush at the end), durability `sync`.
//!
//! `cargo bench --bench import` (`REGISTRAR_BENCH_IMPORT_ROWS`, default 20000, rows per
//! iteration; each iteration imports into a new tenant of the same database).

mod common;

use common::ctx;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use registrar::domain::ids::TenantId;
use registrar::domain::tenant::{Limits, NewTenant};
use registrar::store::sled::Store;
use registrar::store::Durability;
use registrar::workflows::transfer::{import, Format, ImportOptions};
use serde_json::json;
use sled::Transactional;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTACTS: usize = 1000;
const COURSES: usize = 10;

/// The catalog every tenant gets (same ids in each: ids are per tenant).
fn catalog(offerings: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |value: serde_json::Value| {
        serde_json::to_writer(&mut out, &value).unwrap();
        out.push(b'\n');
    };
    for i in 0..CONTACTS {
        line(
            json!({"kind": "contact", "record": {"id": format!("contact-{i}"),
            "first_name": "Student", "last_name": format!("Number {i}"),
            "email_address": format!("student{i}@example.org"), "city": "London"}}),
        );
    }
    for i in 0..COURSES {
        line(
            json!({"kind": "course", "record": {"id": format!("course-{i}"), "name": format!("Course {i}")}}),
        );
    }
    for i in 0..offerings {
        line(
            json!({"kind": "course_offering", "record": {"id": format!("offering-{i}"),
            "course_id": format!("course-{}", i % COURSES), "start_date": "2026-03-02T09:00:00Z",
            "training_provider_id": "tp-1", "price": 250}}),
        );
    }
    out
}

/// `rows` new registrations of about 2 KB each, every (student, offering) pair once.
fn registrations(rows: usize) -> Vec<u8> {
    let notes = "Needs a ground-floor room and a vegetarian lunch. ".repeat(22);
    let statuses = ["registered", "draft", "completed", "cancelled"];
    let mut out = Vec::new();
    for i in 0..rows {
        let offering = i / CONTACTS;
        let value = json!({
            "student_id": format!("contact-{}", i % CONTACTS),
            "course_id": format!("course-{}", offering % COURSES),
            "course_offering_id": format!("offering-{offering}"),
            "status": statuses[i % 4],
            "job_title": "Safety officer", "state": "Greater London", "country": "UK",
            "application_id": format!("app-{i}"), "event_registration_id": format!("ev-{}", i % 97),
            "date": "2026-02-01T10:00:00Z", "completion_percentage": (i % 101) as f64,
            "order_total": 250, "order_amount_paid": (i % 3) as f64 * 100.0,
            "exam_offering_ids": ["exam-1", "exam-2"],
            "training_provider_billing_status": "not yet billed",
            "notes": notes,
            "custom_field_values": [
                {"custom_field_id": "diet", "value": "vegetarian"},
                {"custom_field_id": "tshirt", "value": "M"},
                {"custom_field_id": "referral", "value": {"source": "newsletter", "campaign": i % 12}},
            ],
            "sys_external_id": format!("ext-{i}"),
        });
        serde_json::to_writer(&mut out, &value).unwrap();
        out.push(b'\n');
    }
    out
}

/// CPU seconds the threads of this process named `name` used so far (Linux; 0 elsewhere).
/// The machine is shared: CPU time per row says what the code costs, whatever else runs.
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn bench_import(c: &mut Criterion) {
    let rows: usize = std::env::var("REGISTRAR_BENCH_IMPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: registrar::store::Db = Arc::new(Store::open(dir.path(), Durability::Sync).unwrap());
    let catalog = catalog(rows.div_ceil(CONTACTS));
    let file = registrations(rows);
    eprintln!(
        "{rows} rows, {:.0} bytes a row",
        file.len() as f64 / rows as f64
    );
    let tenants = AtomicUsize::new(0);
    let new_tenant = || {
        let id = TenantId::parse(&format!("t{}", tenants.fetch_add(1, Ordering::Relaxed))).unwrap();
        rt.block_on(store.create_tenant(
            NewTenant {
                id: id.clone(),
                limits: Limits::default(),
            },
            &ctx(),
        ))
        .unwrap();
        let report = import(
            &store,
            &id,
            Format::Ndjson,
            &catalog[..],
            &ImportOptions::default(),
            &ctx(),
            &mut |_| {},
        )
        .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed.first());
        id
    };
    // One import measured by CPU time: the writer thread commits, this thread reads and
    // parses; on an idle machine the two overlap and the slower one sets the rate.
    let tenant = new_tenant();
    let main_name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    let main_name = main_name.trim();
    let (writer_before, main_before) = (
        thread_cpu_seconds("registrar-write"),
        thread_cpu_seconds(main_name),
    );
    let started = Instant::now();
    import(
        &store,
        &tenant,
        Format::Ndjson,
        &file[..],
        &ImportOptions::default(),
        &ctx(),
        &mut |_| {},
    )
    .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let writer = thread_cpu_seconds("registrar-write") - writer_before;
    let reader = thread_cpu_seconds(main_name) - main_before;
    eprintln!(
        "one import of {rows}: {wall:.2} s wall ({:.0} rows/s); CPU: writer {writer:.2} s \
         ({:.0} rows/s), reader/parser {reader:.2} s ({:.0} rows/s)",
        rows as f64 / wall,
        rows as f64 / writer.max(0.01),
        rows as f64 / reader.max(0.01),
    );
    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(format!("ndjson_{rows}_registrations"), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let tenant = new_tenant();
                let started = Instant::now();
                let report = import(
                    &store,
                    &tenant,
                    Format::Ndjson,
                    &file[..],
                    &ImportOptions::default(),
                    &ctx(),
                    &mut |_| {},
                )
                .unwrap();
                total += started.elapsed();
                assert_eq!(
                    report.imported as usize,
                    rows,
                    "{:?}",
                    report.failed.first()
                );
            }
            total
        })
    });
    group.finish();
    drop(store);
    sled_floor(dir.path(), tenant.as_str(), rows, writer);
}

/// A key and its value, as sled stores them.
type Pair = (sled::IVec, sled::IVec);

/// Trees a registration import writes to (the catalog was imported before it).
const REGISTRATION_TREES: &[&str] = &["registrations", "registration_slots", "counters"];

/// sled alone, writing the pairs one import left in the database (its registrations, their
/// index entries and slots, the counters) into a new database, in transactions of 1,000
/// rows' worth, with no parsing, no rules, no encoding. Each pair is written once, while the
/// import rewrites a counter in every transaction that touches it: a floor, slightly below
/// what the import's own inserts cost. It says how much of the writer's time sled takes and
/// so how far any change above sled could move the import.
fn sled_floor(data: &std::path::Path, tenant: &str, rows: usize, writer_cpu: f64) {
    let source = sled::Config::new().path(data).open().unwrap();
    let prefix = registrar::store::sled::keys::tenant_prefix(tenant);
    let names: Vec<Vec<u8>> = source
        .tree_names()
        .into_iter()
        .map(|name| name.to_vec())
        .filter(|name| {
            REGISTRATION_TREES.contains(&String::from_utf8_lossy(name).as_ref())
                || name.starts_with(b"idx_")
        })
        .collect();
    let pairs: Vec<(Vec<u8>, Vec<Pair>)> = names
        .iter()
        .map(|name| {
            let tree = source.open_tree(name).unwrap();
            let pairs = tree
                .scan_prefix(prefix.as_bytes())
                .map(Result::unwrap)
                .collect();
            (name.clone(), pairs)
        })
        .collect();
    drop(source);
    let total: usize = pairs.iter().map(|(_, p)| p.len()).sum();
    let target_dir = tempfile::tempdir().unwrap();
    let target = sled::Config::new()
        .path(target_dir.path())
        .cache_capacity(512 * 1024 * 1024)
        .flush_every_ms(Some(500))
        .open()
        .unwrap();
    let trees: Vec<sled::Tree> = pairs
        .iter()
        .map(|(name, _)| target.open_tree(name).unwrap())
        .collect();
    let chunks = rows.div_ceil(1000);
    let main_name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    let cpu_before = thread_cpu_seconds(main_name.trim());
    let started = Instant::now();
    for chunk in 0..chunks {
        // The chunk-th slice of every tree: a row's pairs land in about the same transaction.
        let slices: Vec<&[Pair]> = pairs
            .iter()
            .map(|(_, p)| {
                let per = p.len().div_ceil(chunks);
                &p[(chunk * per).min(p.len())..((chunk + 1) * per).min(p.len())]
            })
            .collect();
        trees
            .as_slice()
            .transaction(|view| {
                for (tree, slice) in view.iter().zip(&slices) {
                    for (key, value) in slice.iter() {
                        tree.insert(key, value)?;
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    target.flush().unwrap();
    let wall = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds(main_name.trim()) - cpu_before;
    eprintln!(
        "sled floor: the {total} pairs of one import ({:.1} a row) in {chunks} transactions: \
         {wall:.2} s wall ({:.0} rows/s), {cpu:.2} s CPU ({:.0} rows/s); the import's writer \
         spent {writer_cpu:.2} s CPU, {:.0} % of it is this floor",
        total as f64 / rows as f64,
        rows as f64 / wall,
        rows as f64 / cpu.max(0.01),
        100.0 * cpu / writer_cpu.max(0.01),
    );
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
