//! The PostgreSQL engine's foundation against a real server (tests/support/postgres.rs):
//! the embedded migrations and their lock, the `migrate` command, how a database that is
//! down is reported, and what the schema's constraints refuse.

#[path = "support/postgres.rs"]
mod postgres;

use registrar::domain::access::Role;
use registrar::domain::catalog::CatalogKind;
use registrar::domain::enums::{OrderStatus, RegistrationStatus};
use registrar::domain::ids::TenantId;
use registrar::domain::time::Timestamp;
use registrar::store::postgres::{self as pg, schema, PoolOptions};
use registrar::store::StoreError;
use serde_json::json;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Bounds every call that must fail fast: a hang fails the test instead of stalling it.
const NO_HANG: Duration = Duration::from_secs(60);

async fn fresh_database() -> String {
    postgres::shared().create_database().await
}

async fn migrated_pool() -> pg::Pool {
    let pool = pg::connect(&fresh_database().await, 4).expect("pool");
    pg::migrate(&pool).await.expect("migrate");
    pool
}

async fn history_rows(pool: &pg::Pool) -> Vec<(i32, String)> {
    let client = pool.get().await.expect("connection");
    client
        .query(
            &format!(
                "SELECT version, name FROM {} ORDER BY version",
                pg::SCHEMA_HISTORY_TABLE
            ),
            &[],
        )
        .await
        .expect("read the schema history")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn migrations_build_the_schema_in_an_empty_database() {
    let pool = pg::connect(&fresh_database().await, 4).expect("pool");
    let report = pg::migrate(&pool).await.expect("migrate");
    assert_eq!(report.applied, pg::embedded_migrations());
    assert_eq!(report.version, pg::latest_version());
    assert_eq!(history_rows(&pool).await, pg::embedded_migrations());

    let client = pool.get().await.expect("connection");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in [
        "api_keys",
        "contacts",
        "course_offerings",
        "courses",
        "directory_version",
        "email_templates",
        "idempotency_responses",
        "orders",
        "outbox",
        "registration_processes",
        "registrations",
        "settings",
        "tenant_counters",
        "tenants",
        "change_events",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
}

#[tokio::test]
async fn every_earlier_schema_version_migrates_to_the_schema_an_empty_database_gets() {
    let latest = pg::latest_version();
    let from_empty = migrated_pool().await;
    let expected = columns(&from_empty).await;
    // Version 0: a database with the history table and nothing applied; each later one is a
    // schema a node may meet when a newer build starts. The versions a build carries need
    // not be consecutive.
    let versions: Vec<i32> = pg::embedded_migrations().iter().map(|(v, _)| *v).collect();
    let earlier_ones = std::iter::once(0).chain(versions.iter().copied().filter(|v| *v < latest));
    for earlier in earlier_ones {
        let pool = pg::connect(&fresh_database().await, 4).expect("pool");
        let first = pg::migrate_to(&pool, Some(earlier)).await.expect("migrate");
        assert_eq!(first.version, earlier);
        let rest = pg::migrate(&pool).await.expect("migrate the rest");
        assert_eq!(rest.version, latest);
        assert_eq!(
            rest.applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            versions
                .iter()
                .copied()
                .filter(|v| *v > earlier)
                .collect::<Vec<_>>()
        );
        assert_eq!(columns(&pool).await, expected, "from version {earlier}");
    }
}

/// Schema version 5 stores a registration's fields and an event's patch as bytes
/// (store/postgres/packed.rs): the rows of version 4 keep their JSON, which the engine reads
/// as before, and what the engine writes now is compressed.
#[tokio::test]
async fn version_5_keeps_the_json_of_earlier_rows_and_compresses_new_ones() {
    let pool = pg::connect(&fresh_database().await, 4).expect("pool");
    pg::migrate_to(&pool, Some(4))
        .await
        .expect("migrate to version 4");
    let client = pool.get().await.expect("connection");
    seeded(&client, None).await;
    let notes = "ladder inspection and fire safety ".repeat(30);
    let fields = json!({
        "name": "A Student", "status": "Registered", "student_id": "s1", "course_id": "c1",
        "course_offering_id": "o1", "notes": notes, "escaped": "a \"quote\" and a \\ backslash"
    });
    let patch = json!([{ "op": "add", "path": "", "value": fields }]).to_string();
    client
        .execute(
            "INSERT INTO registrations (tenant_id, id, sys_version, status, student_id, \
             course_id, course_offering_id, name, fields) \
             VALUES ('t1', 'r1', 1, 'registered', 's1', 'c1', 'o1', 'A Student', $1)",
            &[&fields],
        )
        .await
        .expect("a version 4 registration");
    client
        .execute(
            "INSERT INTO change_events (tenant_id, seq, kind, record_id, op, sys_version, at, \
             key_id, role, patch) VALUES ('t1', 1, 'registration', 'r1', 'created', 1, $1, \
             'k', 'write', $2)",
            &[&at(), &patch],
        )
        .await
        .expect("a version 4 change event");

    pg::migrate(&pool)
        .await
        .expect("migrate to the latest version");
    let row = client
        .query_one("SELECT id, fields FROM registrations WHERE id = 'r1'", &[])
        .await
        .expect("the registration");
    let record = pg::rows::registration_from(&row).expect("a version 4 row decodes");
    assert_eq!(
        serde_json::to_value(&record.fields).unwrap()["notes"],
        json!(notes)
    );
    let stored: Vec<u8> = client
        .query_one("SELECT patch FROM change_events WHERE seq = 1", &[])
        .await
        .expect("the event")
        .get(0);
    assert_eq!(
        stored,
        patch.as_bytes(),
        "an earlier patch is kept byte for byte"
    );

    // A row the engine writes now: the same fields, compressed, and read back the same.
    let (params, _) =
        pg::rows::registration_params(&TenantId::parse("t1").unwrap(), &record).unwrap();
    let packed = params.last().unwrap();
    let mut bytes = bytes::BytesMut::new();
    packed
        .to_sql_checked(&tokio_postgres::types::Type::BYTEA, &mut bytes)
        .expect("the fields as bytea");
    let json = serde_json::to_vec(&record.fields).unwrap();
    assert!(
        bytes.len() < json.len() / 2,
        "{} of {} bytes",
        bytes.len(),
        json.len()
    );
    assert_eq!(
        pg::packed::unpack(&bytes).unwrap().as_ref(),
        json.as_slice()
    );
}

/// Every (table, column, type, nullable) of the public schema, in order.
async fn columns(pool: &pg::Pool) -> Vec<(String, String, String, String)> {
    let client = pool.get().await.expect("connection");
    client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, column_name",
            &[],
        )
        .await
        .expect("list columns")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

#[tokio::test]
async fn the_tables_and_columns_the_code_names_exist() {
    let pool = migrated_pool().await;
    let columns = columns(&pool).await;
    let has =
        |table: &str, column: &str| columns.iter().any(|(t, c, _, _)| t == table && c == column);
    for column in schema::REGISTRATION_COLUMNS {
        assert!(has("registrations", column), "registrations.{column}");
    }
    for kind in CatalogKind::ALL {
        let table = schema::catalog_table(kind);
        for column in ["tenant_id", "id", "sys_version", "fields"]
            .iter()
            .chain(schema::catalog_copies(kind))
        {
            assert!(has(table, column), "{table}.{column}");
        }
    }
}

#[tokio::test]
async fn the_checks_accept_every_value_of_the_domain_enums() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    seeded(&client, None).await;
    for (n, status) in RegistrationStatus::ALL.iter().enumerate() {
        // A student per registration: a live one each would otherwise share a slot.
        let student = format!("s{n}-student");
        insert_contact(&client, &student).await;
        insert_registration(&client, &format!("r{n}"), &student, status.as_str())
            .await
            .unwrap_or_else(|e| panic!("status {status:?}: {e}"));
    }
    violated(
        insert_registration(&client, "bad", "s1", "Draft").await,
        &SqlState::CHECK_VIOLATION,
    );
    for (n, status) in OrderStatus::ALL.iter().enumerate() {
        let id = format!("ord{n}");
        client
            .execute(
                "INSERT INTO orders (tenant_id, id, sys_version, sys_created_at, \
                 sys_created_by_id, sys_last_modified_at, sys_last_modified_by_id, \
                 sys_last_security_context, fields, number, contact_id, status) \
                 VALUES ('t1', $1, 1, $2, 'k', $2, 'k', '{}'::jsonb, '{}'::jsonb, $3, 's1', $4)",
                &[&id, &at(), &(n as f64 + 1.0), &status.as_str()],
            )
            .await
            .unwrap_or_else(|e| panic!("order status {status:?}: {e}"));
        client
            .execute(
                "UPDATE registrations SET order_id = $1, order_status = $2 \
                 WHERE tenant_id = 't1' AND id = 'r0'",
                &[&id, &status.as_str()],
            )
            .await
            .unwrap_or_else(|e| panic!("registration order status {status:?}: {e}"));
    }
    for (n, role) in [Role::Read, Role::Write, Role::Admin].iter().enumerate() {
        client
            .execute(
                "INSERT INTO api_keys (id, tenant_id, role, created_at, secret_hash) \
                 VALUES ($1, 't1', $2, $3, $4)",
                &[&format!("key{n}"), &role.as_str(), &at(), &vec![0u8; 32]],
            )
            .await
            .unwrap_or_else(|e| panic!("role {role:?}: {e}"));
    }
}

#[tokio::test]
async fn migrating_a_current_database_applies_nothing() {
    let pool = migrated_pool().await;
    let again = pg::migrate(&pool).await.expect("migrate again");
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.version, pg::latest_version());
    assert_eq!(history_rows(&pool).await, pg::embedded_migrations());
}

#[tokio::test]
async fn concurrent_migrate_commands_apply_the_migrations_once_and_all_succeed() {
    let url = fresh_database().await;
    let children: Vec<_> = (0..3)
        .map(|n| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
            command.arg("migrate");
            // One finds the URL in the environment, as a deployment would set it.
            if n == 0 {
                command.env("REGISTRAR_DATABASE_URL", &url);
            } else {
                command.args(["--database-url", &url]);
            }
            command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start registrar migrate")
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().expect("registrar migrate");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "migrate failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let latest = pg::latest_version();
        assert!(
            stdout.starts_with(&format!("schema version {latest} ")),
            "{stdout}"
        );
        if stdout.contains("applied: V1__schema") {
            applied += 1;
        } else {
            assert!(stdout.contains("applied: none"), "{stdout}");
        }
    }
    assert_eq!(applied, 1, "exactly one process applies the migrations");
    let pool = pg::connect(&url, 2).expect("pool");
    assert_eq!(history_rows(&pool).await, pg::embedded_migrations());
}

#[tokio::test]
async fn concurrent_migrations_in_one_process_take_turns_on_the_lock() {
    let url = fresh_database().await;
    let pools: Vec<pg::Pool> = (0..4)
        .map(|_| pg::connect(&url, 2).expect("pool"))
        .collect();
    let reports = futures_util::future::join_all(pools.iter().map(pg::migrate)).await;
    let applied: usize = reports
        .into_iter()
        .map(|report| report.expect("every migrate succeeds").applied.len())
        .sum();
    // One pool applies them all; the others find nothing to do.
    assert_eq!(applied, pg::embedded_migrations().len());
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_at_once() {
    let url = format!("postgres://postgres@127.0.0.1:{}/registrar", closed_port());
    let pool = pg::connect(&url, 2).expect("a pool opens no connection yet");
    let outcome = tokio::time::timeout(NO_HANG, pg::ping(&pool))
        .await
        .expect("the error comes back, not a hang");
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    let outcome = tokio::time::timeout(NO_HANG, pg::migrate(&pool))
        .await
        .expect("the error comes back, not a hang");
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_server_that_accepts_and_stays_silent_is_unavailable_after_the_create_timeout() {
    // Accepts TCP connections and never says a word, like a hung server or a black hole
    // behind a proxy: tokio-postgres's connect timeout covers only the socket.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/registrar");
    let mut options = PoolOptions::with_pool_size(2);
    options.create_timeout = Duration::from_secs(1);
    let pool = pg::connect_with(&url, &options).expect("pool");
    let outcome = tokio::time::timeout(NO_HANG, pg::ping(&pool))
        .await
        .expect("the error comes back, not a hang");
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_and_the_pool_recovers_when_it_is_back() {
    let mut cluster = postgres::Cluster::start(postgres::Options::default());
    let url = cluster.create_database().await;
    let pool = pg::connect(&url, 2).expect("pool");
    pg::migrate(&pool).await.expect("migrate");
    pg::ping(&pool).await.expect("up");

    cluster.stop();
    for _ in 0..2 {
        // The first call may hold a pooled connection whose socket just broke; the second
        // opens a new one and is refused. Both are the database's unavailability.
        let outcome = tokio::time::timeout(NO_HANG, pg::ping(&pool))
            .await
            .expect("the error comes back, not a hang");
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    cluster.restart();
    let mut recovered = false;
    for _ in 0..50 {
        if pg::ping(&pool).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the same pool serves again once the server is back"
    );
    assert!(pg::migrate(&pool)
        .await
        .expect("migrate")
        .applied
        .is_empty());
}

#[test]
fn the_migrate_command_reports_a_database_that_is_down() {
    let url = format!("postgres://postgres@127.0.0.1:{}/registrar", closed_port());
    let out = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["migrate", "--database-url", &url])
        .output()
        .expect("run registrar migrate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot migrate the database: the database is unavailable"),
        "{stderr}"
    );
}

// ---- what the schema refuses ------------------------------------------------------------------

/// An instant as the engine writes it (`schema::instant_text`), which the CHECKs accept.
fn at() -> String {
    schema::instant_text(Timestamp::now()).expect("an instant of this century")
}

async fn insert_contact(client: &tokio_postgres::Client, id: &str) {
    client
        .execute(
            "INSERT INTO contacts (tenant_id, id, sys_version, sys_created_at, \
             sys_created_by_id, sys_last_modified_at, sys_last_modified_by_id, \
             sys_last_security_context, fields) \
             VALUES ('t1', $1, 1, $2, 'k', $2, 'k', '{}'::jsonb, '{}'::jsonb)",
            &[&id, &at()],
        )
        .await
        .expect("contact");
}

/// A tenant with a contact `s1`, a course `c1` and an offering `o1` of it with `capacity`.
async fn seeded(client: &tokio_postgres::Client, capacity: Option<i64>) {
    let sys = "$2, 'k', $2, 'k', '{}'::jsonb, '{}'::jsonb";
    client
        .execute(
            "INSERT INTO tenants (id, created_at) VALUES ($1, $2)",
            &[&"t1", &at()],
        )
        .await
        .expect("tenant");
    client
        .execute(
            "INSERT INTO tenant_counters (tenant_id) VALUES ($1)",
            &[&"t1"],
        )
        .await
        .expect("counters");
    for table in ["contacts", "courses"] {
        let id = if table == "contacts" { "s1" } else { "c1" };
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (tenant_id, id, sys_version, sys_created_at, \
                     sys_created_by_id, sys_last_modified_at, sys_last_modified_by_id, \
                     sys_last_security_context, fields) VALUES ($1, $3, 1, {sys})"
                ),
                &[&"t1", &at(), &id],
            )
            .await
            .expect("catalog record");
    }
    client
        .execute(
            &format!(
                "INSERT INTO course_offerings (tenant_id, id, sys_version, sys_created_at, \
                 sys_created_by_id, sys_last_modified_at, sys_last_modified_by_id, \
                 sys_last_security_context, fields, course_id, capacity) \
                 VALUES ($1, 'o1', 1, {sys}, 'c1', $3)"
            ),
            &[&"t1", &at(), &capacity],
        )
        .await
        .expect("offering");
}

async fn insert_registration(
    client: &tokio_postgres::Client,
    id: &str,
    student: &str,
    status: &str,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO registrations (tenant_id, id, sys_version, status, student_id, \
             course_id, course_offering_id, name, sys_created_at, fields) \
             VALUES ('t1', $1, 1, $2, $3, 'c1', 'o1', 'A Student', $4, convert_to('{}', 'UTF8'))",
            &[&id, &status, &student, &at()],
        )
        .await
}

fn violated(result: Result<u64, tokio_postgres::Error>, state: &SqlState) -> String {
    let error = result.expect_err("the schema refuses it");
    let db = error.as_db_error().expect("a database error");
    assert_eq!(db.code(), state, "{db:?}");
    db.constraint().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn one_live_registration_per_student_and_offering() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    seeded(&client, None).await;
    insert_registration(&client, "r1", "s1", "registered")
        .await
        .expect("the first");
    let constraint = violated(
        insert_registration(&client, "r2", "s1", "draft").await,
        &SqlState::UNIQUE_VIOLATION,
    );
    assert_eq!(constraint, "registrations_one_slot_per_student");
    // A cancelled registration holds no slot: any number of them beside the live one.
    insert_registration(&client, "r3", "s1", "cancelled")
        .await
        .expect("a cancelled one");
    insert_registration(&client, "r4", "s1", "cancelled")
        .await
        .expect("another cancelled one");
    // Cancelling the live one frees the slot.
    client
        .execute(
            "UPDATE registrations SET status = 'cancelled' WHERE tenant_id = 't1' AND id = 'r1'",
            &[],
        )
        .await
        .expect("cancel");
    insert_registration(&client, "r5", "s1", "registered")
        .await
        .expect("the slot is free again");
}

#[tokio::test]
async fn foreign_keys_refuse_missing_references_and_deleting_what_is_referenced() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    seeded(&client, None).await;
    violated(
        insert_registration(&client, "r1", "nobody", "registered").await,
        &SqlState::FOREIGN_KEY_VIOLATION,
    );
    insert_registration(&client, "r1", "s1", "registered")
        .await
        .expect("with its references");
    for (table, id) in [
        ("contacts", "s1"),
        ("course_offerings", "o1"),
        ("courses", "c1"),
    ] {
        violated(
            client
                .execute(
                    &format!("DELETE FROM {table} WHERE tenant_id = 't1' AND id = $1"),
                    &[&id],
                )
                .await,
            &SqlState::FOREIGN_KEY_VIOLATION,
        );
    }
}

#[tokio::test]
async fn an_offering_never_holds_more_active_seats_than_its_capacity() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    seeded(&client, Some(2)).await;
    let take_seat = "UPDATE course_offerings SET active_seats = active_seats + 1 \
                     WHERE tenant_id = 't1' AND id = 'o1'";
    client.execute(take_seat, &[]).await.expect("seat 1");
    client.execute(take_seat, &[]).await.expect("seat 2");
    violated(
        client.execute(take_seat, &[]).await,
        &SqlState::CHECK_VIOLATION,
    );
    // Nor can the capacity drop below the seats taken.
    violated(
        client
            .execute(
                "UPDATE course_offerings SET capacity = 1 WHERE tenant_id = 't1' AND id = 'o1'",
                &[],
            )
            .await,
        &SqlState::CHECK_VIOLATION,
    );
}

#[tokio::test]
async fn instants_are_stored_only_in_the_one_sortable_form() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    for bad in [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.123Z",
        "2026-01-02T03:04:05.123456789+01:00",
    ] {
        violated(
            client
                .execute(
                    "INSERT INTO tenants (id, created_at) VALUES ('t1', $1)",
                    &[&bad],
                )
                .await,
            &SqlState::CHECK_VIOLATION,
        );
    }
    client
        .execute(
            "INSERT INTO tenants (id, created_at) VALUES ('t1', $1)",
            &[&at()],
        )
        .await
        .expect("the fixed form");
}

#[tokio::test]
async fn the_tenant_counter_row_hands_out_each_number_once_across_connections() {
    let pool = migrated_pool().await;
    {
        let client = pool.get().await.expect("connection");
        client
            .execute(
                "INSERT INTO tenants (id, created_at) VALUES ('t1', $1)",
                &[&at()],
            )
            .await
            .expect("tenant");
        client
            .execute("INSERT INTO tenant_counters (tenant_id) VALUES ('t1')", &[])
            .await
            .expect("counters");
    }
    // Eight connections, each taking numbers in transactions at READ COMMITTED: the row lock
    // of the UPDATE makes them take turns, so no number is handed out twice.
    let takers = (0..8).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut client = pool.get().await.expect("connection");
            let mut numbers = Vec::new();
            for _ in 0..10 {
                let tx = client.transaction().await.expect("begin");
                let row = tx
                    .query_one(
                        "UPDATE tenant_counters SET registration_number = registration_number + 1 \
                         WHERE tenant_id = 't1' RETURNING registration_number",
                        &[],
                    )
                    .await
                    .expect("take a number");
                tx.commit().await.expect("commit");
                numbers.push(row.get::<_, i64>(0));
            }
            numbers
        })
    });
    let mut numbers: Vec<i64> = Vec::new();
    for taker in futures_util::future::join_all(takers).await {
        numbers.extend(taker.expect("taker"));
    }
    numbers.sort();
    assert_eq!(numbers, (1..=80).collect::<Vec<i64>>());
}

#[tokio::test]
async fn an_idempotency_row_is_a_claim_or_a_whole_response() {
    let pool = migrated_pool().await;
    let client = pool.get().await.expect("connection");
    client
        .execute(
            "INSERT INTO tenants (id, created_at) VALUES ('t1', $1)",
            &[&at()],
        )
        .await
        .expect("tenant");
    let fingerprint = vec![7u8; 32];
    let claim = "INSERT INTO idempotency_responses (tenant_id, key, fingerprint, stored_at) \
                 VALUES ('t1', 'k1', $1, $2) ON CONFLICT DO NOTHING";
    assert_eq!(
        client
            .execute(claim, &[&fingerprint, &at()])
            .await
            .expect("claim"),
        1
    );
    // A second node's claim of the same key finds the first: nothing inserted.
    assert_eq!(
        client
            .execute(claim, &[&fingerprint, &at()])
            .await
            .expect("claim"),
        0
    );
    violated(
        client
            .execute(
                "UPDATE idempotency_responses SET status = 201 WHERE key = 'k1'",
                &[],
            )
            .await,
        &SqlState::CHECK_VIOLATION,
    );
    client
        .execute(
            "UPDATE idempotency_responses SET status = 201, headers = '[]'::jsonb, \
             body = $1 WHERE key = 'k1'",
            &[&b"{}".to_vec()],
        )
        .await
        .expect("the whole response");
}

#[tokio::test]
async fn a_missing_database_or_role_is_unavailable_not_a_server_fault() {
    let cluster = postgres::shared();
    let port = cluster.port;
    for url in [
        cluster.url("no_such_database"),
        format!("postgres://no_such_role@127.0.0.1:{port}/postgres"),
    ] {
        let pool = pg::connect(&url, 2).expect("pool");
        let outcome = tokio::time::timeout(NO_HANG, pg::ping(&pool))
            .await
            .expect("the error comes back, not a hang");
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{url}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn the_pool_connects_over_the_unix_socket_too() {
    let cluster = postgres::shared();
    let url = cluster.create_database().await;
    let database = url.rsplit('/').next().expect("a database name");
    let pool = pg::connect(&cluster.socket_url(database), 2).expect("pool");
    pg::migrate(&pool).await.expect("migrate over the socket");
    pg::ping(&pool).await.expect("ping over the socket");
}

/// Runs `attempts` concurrent transactions, each on its own connection, and returns what
/// each answered.
async fn race<F, Fut, T>(pool: &pg::Pool, attempts: usize, attempt: F) -> Vec<T>
where
    F: Fn(deadpool_postgres::Object, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut connections = Vec::new();
    for _ in 0..attempts {
        connections.push(pool.get().await.expect("connection"));
    }
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(n, client)| tokio::spawn(attempt(client, n)))
        .collect();
    let mut answers = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        answers.push(task.expect("attempt"));
    }
    answers
}

#[tokio::test]
async fn concurrent_seat_takers_fill_an_offering_exactly_to_its_capacity() {
    let pool = pg::connect(&fresh_database().await, 40).expect("pool");
    pg::migrate(&pool).await.expect("migrate");
    {
        let client = pool.get().await.expect("connection");
        seeded(&client, Some(10)).await;
        for n in 0..40 {
            insert_contact(&client, &format!("student{n}")).await;
        }
    }
    // What the engine's create does at READ COMMITTED: take a seat with a conditional update
    // (the offering's row lock makes the 40 take turns), then insert the registration, in one
    // transaction.
    let answers = race(&pool, 40, |mut client, n| async move {
        let tx = client.transaction().await.expect("begin");
        let seat = tx
            .query_opt(
                "UPDATE course_offerings SET active_seats = active_seats + 1 \
                 WHERE tenant_id = 't1' AND id = 'o1' \
                 AND (capacity IS NULL OR active_seats < capacity) RETURNING active_seats",
                &[],
            )
            .await
            .expect("take a seat");
        if seat.is_none() {
            return false; // offering_full
        }
        tx.execute(
            "INSERT INTO registrations (tenant_id, id, sys_version, status, student_id, \
             course_id, course_offering_id, name, fields) \
             VALUES ('t1', $1, 1, 'registered', $2, 'c1', 'o1', 'A Student', \
             convert_to('{}', 'UTF8'))",
            &[&format!("r{n}"), &format!("student{n}")],
        )
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
        true
    })
    .await;
    assert_eq!(answers.iter().filter(|took| **took).count(), 10);
    let client = pool.get().await.expect("connection");
    let row = client
        .query_one(
            "SELECT o.active_seats, (SELECT count(*) FROM registrations r \
             WHERE r.tenant_id = 't1' AND r.course_offering_id = 'o1' AND r.status = 'registered') \
             FROM course_offerings o WHERE o.tenant_id = 't1' AND o.id = 'o1'",
            &[],
        )
        .await
        .expect("recount");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (10, 10));
}

#[tokio::test]
async fn concurrent_creates_of_one_student_on_one_offering_leave_one() {
    let pool = pg::connect(&fresh_database().await, 16).expect("pool");
    pg::migrate(&pool).await.expect("migrate");
    seeded(&pool.get().await.expect("connection"), None).await;
    let answers = race(&pool, 16, |client, n| async move {
        match insert_registration(&client, &format!("r{n}"), "s1", "draft").await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.code().cloned()),
        }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| a.is_ok()).count(),
        1,
        "{answers:?}"
    );
    assert!(answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .all(|code| code.as_ref() == Some(&SqlState::UNIQUE_VIOLATION)));
}

/// `--durability relaxed` reaches the server as `synchronous_commit = off` on every pooled
/// connection; the default waits for the WAL flush; an URL that sets it keeps its own.
#[tokio::test]
async fn durability_sets_each_connections_synchronous_commit() {
    let url = fresh_database().await;
    let setting = |pool: pg::Pool| async move {
        let client = pool.get().await.expect("a connection");
        let row = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .expect("SHOW answers");
        row.get::<_, String>(0)
    };
    let relaxed = PoolOptions {
        synchronous_commit: false,
        ..PoolOptions::with_pool_size(2)
    };
    assert_eq!(
        setting(pg::connect_with(&url, &relaxed).unwrap()).await,
        "off"
    );
    assert_eq!(setting(pg::connect(&url, 2).unwrap()).await, "on");
    let separator = if url.contains('?') { '&' } else { '?' };
    let own = format!("{url}{separator}options=-c%20synchronous_commit%3Dlocal");
    assert_eq!(
        setting(pg::connect_with(&own, &relaxed).unwrap()).await,
        "local"
    );
}
