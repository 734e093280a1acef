//! Starting the app and talking to it.

#![allow(dead_code)]

use registrar::config::ServeArgs;
use registrar::startup::Application;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use tempfile::TempDir;

pub const OPERATOR_KEY: &str = "op_test-operator-key";

/// A running app on an ephemeral port, with its data dir. Talk to it through its [`Api`]
/// (`app.get(..)`, `app.address`).
pub struct TestApp {
    api: Api,
    pub data_dir: TempDir,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The HTTP API of a server at `address`: an app in this process ([`TestApp`] derefs to it)
/// or a registrar process (`Api::at`).
pub struct Api {
    /// `http://host:port`
    pub address: String,
    pub client: reqwest::Client,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Starts the app on a fresh temp data dir.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp dir")).await
}

/// Starts the app on an existing data dir (e.g. after a restart).
pub async fn spawn_app_in(data_dir: TempDir) -> TestApp {
    spawn_with(data_dir, |_| {}).await
}

/// The PostgreSQL database of a test's data dir (the `api_postgres` binary): made on the
/// shared throwaway server on first use, and its URL kept in the dir, so that an app
/// restarted on the same dir finds the same data, as it would on sled.
async fn database_for(dir: &std::path::Path) -> String {
    let file = dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    let url = crate::postgres::shared().create_database().await;
    std::fs::write(&file, &url).expect("keep the database URL in the test's dir");
    url
}

/// Starts the app with adjusted settings.
/// How often (every 20 ms) a start or an open is tried while sled's directory lock is still
/// held by a store just dropped: up to 15 s. 5 s was not always enough on a loaded 2-core CI
/// run, where the flusher thread that releases the lock waits for a core.
const LOCK_RELEASE_TRIES: usize = 750;

pub async fn spawn_with(data_dir: TempDir, adjust: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let mut args = ServeArgs::for_data_dir(data_dir.path().join("db"), OPERATOR_KEY);
    // The app runs inside this test binary: templates render in the real one.
    args.render_worker = Some(env!("CARGO_BIN_EXE_registrar").into());
    if crate::ON_POSTGRES {
        args.database_url = Some(database_for(data_dir.path()).await);
    }
    adjust(&mut args);
    // sled 0.34 releases its directory lock once its flusher thread has shut down, a moment
    // after the `Db` is dropped: a test that stopped an app (or opened the database itself)
    // and starts another on the same dir retries while the dir reads as locked.
    let mut attempts = 0;
    let (address, handle, thread) = loop {
        match start(args.clone()).await {
            Ok(started) => break started,
            Err((true, _)) if attempts < LOCK_RELEASE_TRIES => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err((_, message)) => panic!("app starts: {message}"),
        }
    };
    TestApp {
        api: Api::at(&format!("http://{address}")),
        data_dir,
        handle,
        thread: Some(thread),
    }
}

type Started = (
    std::net::SocketAddr,
    actix_web::dev::ServerHandle,
    std::thread::JoinHandle<()>,
);

/// Starts the app on its own thread; on failure, whether the data dir was locked and why.
async fn start(args: ServeArgs) -> Result<Started, (bool, String)> {
    use registrar::startup::StartupError;
    use registrar::store::StoreError;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match Application::build(&args).await {
                Ok(app) => {
                    ready_tx.send(Ok((app.address(), app.handle()))).unwrap();
                    app.run_until_stopped().await.expect("server ran");
                }
                Err(e) => {
                    let locked = matches!(e, StartupError::Store(StoreError::Locked(_)));
                    ready_tx.send(Err((locked, e.to_string()))).unwrap()
                }
            }
        })
    });
    let ready = tokio::task::spawn_blocking(move || ready_rx.recv().expect("app thread"))
        .await
        .unwrap();
    match ready {
        Ok((address, handle)) => Ok((address, handle, thread)),
        Err(refused) => {
            thread.join().expect("app thread ends");
            Err(refused)
        }
    }
}

static NEXT_TENANT: AtomicUsize = AtomicUsize::new(1);

/// A tenant with one key of each role.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub read: String,
    pub write: String,
    pub admin: String,
}

/// An app a test did not stop is stopped when the test drops it: its engine closes, and
/// with it (on PostgreSQL) its pool's connections, which the tests of one binary would
/// otherwise pile up on the shared server past its `max_connections`.
impl Drop for TestApp {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // The stop command is sent at once; nothing here waits for it.
            drop(self.handle.stop(false));
        }
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until the database is closed.
    pub async fn stop(mut self) -> TempDir {
        self.handle.stop(true).await;
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().expect("app thread ends"))
                .await
                .unwrap();
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    /// Stops the app and opens its store in this process. sled 0.34 releases its directory
    /// lock once its own flusher thread has shut down, a moment after the `Db` is dropped, so
    /// the open is retried while the directory reads as locked.
    pub async fn stop_and_open_store(self) -> (TempDir, registrar::store::Db) {
        use registrar::store::{Durability, EngineChoice, StoreError};
        let dir = self.stop().await;
        if crate::ON_POSTGRES {
            let url = database_for(dir.path()).await;
            let choice = EngineChoice::Postgres {
                url,
                pool_size: 2,
                retention: Default::default(),
                durability: Durability::Sync,
            };
            let store = registrar::store::open(&choice).expect("the database opens");
            return (dir, store);
        }
        let choice = EngineChoice::embedded(dir.path().join("db"), Durability::Sync);
        for _ in 0..LOCK_RELEASE_TRIES {
            match registrar::store::open(&choice) {
                Err(StoreError::Locked(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                opened => return (dir, opened.expect("the store opens")),
            }
        }
        panic!("the store stayed locked for 15 s after the app stopped");
    }
}

impl Api {
    /// The API of the server at `address` (`http://host:port`).
    pub fn at(address: &str) -> Api {
        Api {
            address: address.trim_end_matches('/').to_owned(),
            // The server closes a connection idle for 5 s (actix's keep-alive); a pooled one
            // reused just then fails. Drop idle connections before that (long imports idle
            // them).
            client: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match key {
            Some(key) => builder.header("Authorization", format!("Bearer {key}")),
            None => builder,
        }
    }

    /// Sends a request and returns status, headers and JSON body (Null when empty).
    pub async fn send(&self, builder: RequestBuilder) -> Response {
        let response = builder.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.send(self.request(Method::GET, path, Some(key))).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path, Some(key)).json(body))
            .await
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> Response {
        self.send(self.request(Method::PUT, path, Some(key)).json(body))
            .await
    }

    pub async fn patch(&self, path: &str, key: &str, body: &Value) -> Response {
        self.send(
            self.request(Method::PATCH, path, Some(key))
                .header("Content-Type", "application/json-patch+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.send(self.request(Method::DELETE, path, Some(key)))
            .await
    }

    /// Creates a tenant with a read, a write and an admin key.
    pub async fn tenant(&self) -> Tenant {
        let id = format!(
            "t{}-{}",
            NEXT_TENANT.fetch_add(1, Ordering::SeqCst),
            std::process::id()
        );
        let created = self
            .post("/admin/tenants", OPERATOR_KEY, &json!({"id": id}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let mut keys = Vec::new();
        for role in ["read", "write", "admin"] {
            let key = self
                .post(
                    &format!("/admin/tenants/{id}/keys"),
                    OPERATOR_KEY,
                    &json!({"role": role, "name": role}),
                )
                .await;
            assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
            keys.push(key.body["key"].as_str().unwrap().to_owned());
        }
        Tenant {
            id,
            read: keys[0].clone(),
            write: keys[1].clone(),
            admin: keys[2].clone(),
        }
    }

    /// Waits until this node accepts the keys of `t` made through another node on one
    /// database (a node's key cache reloads within 250 ms of a change; this waits 2 s).
    pub async fn knows(&self, t: &Tenant) {
        let courses = format!("/courses/{}", t.id);
        for _ in 0..20 {
            if self.get(&courses, &t.write).await.status == StatusCode::OK {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "{} accepts a key made on another node within 2 s",
            self.address
        );
    }

    /// Creates a registration and returns the stored record.
    pub async fn create(&self, tenant: &Tenant, body: &Value) -> Value {
        let response = self.post(&registrations(tenant), &tenant.write, body).await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        response.body
    }
}

pub fn registrations(tenant: &Tenant) -> String {
    format!("/courseRegistrations/{}", tenant.id)
}

pub fn registration(tenant: &Tenant, id: &str) -> String {
    format!("/courseRegistrations/{}/{id}", tenant.id)
}

/// A body of a registration that holds a seat (status `registered`).
pub fn seated(student: &str, course: &str, offering: &str) -> Value {
    let mut b = body(student, course, offering);
    b["status"] = json!("registered");
    b
}

/// A valid registration body.
pub fn body(student: &str, course: &str, offering: &str) -> Value {
    json!({
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email_address": "ada@example.org",
        "student_id": student,
        "course_id": course,
        "course_offering_id": offering,
    })
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// The error code of an error envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error code, with the body in the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "body: {}",
            self.body
        );
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        &self.body
    }
}

impl Api {
    /// PATCH with a plain JSON body (admin API).
    pub async fn patch_json(&self, path: &str, key: &str, body: &Value) -> Response {
        self.send(self.request(Method::PATCH, path, Some(key)).json(body))
            .await
    }
}

/// A tenant's catalog, made for a test: contacts, courses and offerings known by the short
/// names a test uses ("s1", "c1", "o1"), mapped to the ids the server gave them.
pub struct World {
    ids: std::collections::HashMap<String, String>,
}

impl World {
    /// The server id of the record a test calls `name`.
    #[track_caller]
    pub fn id(&self, name: &str) -> &str {
        self.ids
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in this test's catalog"))
    }

    /// A valid registration body for student `s` in offering `o` of course `c`.
    pub fn body(&self, s: &str, c: &str, o: &str) -> Value {
        body(self.id(s), self.id(c), self.id(o))
    }
}

impl Api {
    /// Makes contacts `students`, and each offering `(offering, course)` with its course.
    pub async fn world(&self, t: &Tenant, students: &[&str], offerings: &[(&str, &str)]) -> World {
        let mut ids = std::collections::HashMap::new();
        for student in students {
            let contact = self
                .post(&format!("/contacts/{}", t.id), &t.write, &json!({
                    "first_name": "Ada", "last_name": "Lovelace", "email_address": format!("{student}@example.org"),
                    "city": "London", "sys_external_id": student,
                }))
                .await;
            ids.insert(
                student.to_string(),
                contact.assert_ok()["id"].as_str().unwrap().to_owned(),
            );
        }
        for (offering, course) in offerings {
            if !ids.contains_key(*course) {
                let made = self
                    .post(
                        &format!("/courses/{}", t.id),
                        &t.write,
                        &json!({"name": format!("Course {course}")}),
                    )
                    .await;
                ids.insert(
                    course.to_string(),
                    made.assert_ok()["id"].as_str().unwrap().to_owned(),
                );
            }
            let made = self
                .post(&format!("/courseOfferings/{}", t.id), &t.write, &json!({
                    "course_id": ids[*course], "start_date": "2026-03-02T09:00:00Z", "price": 100,
                }))
                .await;
            ids.insert(
                offering.to_string(),
                made.assert_ok()["id"].as_str().unwrap().to_owned(),
            );
        }
        World { ids }
    }

    /// An offering of `course` with `capacity` seats; its id.
    pub async fn offering_with_capacity(&self, t: &Tenant, course: &str, capacity: u64) -> String {
        let made = self
            .post(
                &format!("/courseOfferings/{}", t.id),
                &t.write,
                &json!({"course_id": course, "capacity": capacity}),
            )
            .await;
        made.assert_ok()["id"].as_str().unwrap().to_owned()
    }

    /// `n` new contacts, created at once; their ids.
    pub async fn contacts(&self, t: &Tenant, n: usize) -> Vec<String> {
        let path = format!("/contacts/{}", t.id);
        let people: Vec<Value> = (0..n)
            .map(|i| json!({"first_name": "Student", "last_name": i.to_string()}))
            .collect();
        futures_util::future::join_all(people.iter().map(|p| self.post(&path, &t.write, p)))
            .await
            .iter()
            .map(|r| r.assert_ok()["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Makes an order for a stored registration; returns the order.
    pub async fn order_for(&self, t: &Tenant, registration_id: &str) -> Value {
        let order = self
            .post(
                &format!("/courseRegistrations/{}/generateOrder", t.id),
                &t.write,
                &json!({"id": registration_id}),
            )
            .await;
        order.assert_ok().clone()
    }
}

/// Opens a stopped app's sled database directly (to corrupt it on purpose), retrying while
/// sled still holds the directory lock: it releases it when its flusher thread has shut down,
/// a moment after the app's `Db` is dropped (see `stop_and_open_store`).
pub fn open_sled_after_stop(db_dir: &std::path::Path) -> sled::Db {
    let mut last = None;
    for _ in 0..LOCK_RELEASE_TRIES {
        match sled::open(db_dir) {
            Ok(db) => return db,
            Err(e) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
    panic!("the database stayed unopenable for 15 s after the app stopped: {last:?}");
}

/// A registration (student s1 on offering o1 of course c1, made with it): what previewEmail
/// renders in the email and template tests.
pub async fn registration_id(app: &TestApp, t: &Tenant) -> String {
    let w = app.world(t, &["s1"], &[("o1", "c1")]).await;
    app.create(t, &w.body("s1", "c1", "o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn preview_path(t: &Tenant) -> String {
    format!("{}/previewEmail", registrations(t))
}

/// A POST with an `Idempotency-Key`.
pub async fn post_with_key(
    app: &TestApp,
    path: &str,
    key: &str,
    idempotency_key: &str,
    body: &Value,
) -> Response {
    app.send(
        app.request(Method::POST, path, Some(key))
            .header("Idempotency-Key", idempotency_key)
            .json(body),
    )
    .await
}
