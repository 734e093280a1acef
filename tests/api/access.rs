//! Access bound to the route (issue 13): every route of the app's own route table, tried with
//! no key, another tenant's key and each role's key, under spellings a client may send — each
//! segment percent-encoded (whole or one letter), mixed case, dot segments, `//`. Nothing
//! answers 2xx where the route's requirement does not allow the key, nothing answers 5xx, and
//! a spelling that actix routes to the same route is refused exactly as the plain path.
//!
//! Requests go out over a raw TCP connection: an HTTP client library would normalise dot
//! segments before sending, and an attacker's does not.

use crate::helpers::*;
use futures_util::StreamExt;
use registrar::domain::access::Role;
use registrar::http::access::Requirement;
use registrar::http::mount::RouteAccess;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A well-formed id no record has, for every path parameter but the tenant.
const SOME_ID: &str = "01JNOSUCHTHING0000000000000";

/// Status and error code (empty when the body is no error envelope) of one raw request.
async fn raw(
    address: &str,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connects");
    let body = body.unwrap_or("");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).await.expect("sent");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .unwrap_or_else(|_| panic!("{method} {target} answered within 60 s"))
        .expect("read");
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

/// A route's path with its parameters filled in.
fn concrete(template: &str, tenant: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{tenantId}" => tenant.to_owned(),
            s if s.starts_with('{') => SOME_ID.to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn encode_all(segment: &str) -> String {
    segment.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn encode_first(segment: &str) -> String {
    let mut chars = segment.chars();
    match chars.next() {
        Some(first) => format!("%{:02x}{}", first as u32, chars.as_str()),
        None => String::new(),
    }
}

fn alternate_case(path: &str) -> String {
    path.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Other spellings of `path`, each with whether actix routes it as `path` (percent-decoding
/// is routing's business; case, dot segments and `//` are not, so those may reach another
/// route or none).
fn spellings(path: &str) -> Vec<(String, bool)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let with = |i: usize, replacement: String| {
        let mut changed: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
        changed[i] = replacement;
        format!("/{}", changed.join("/"))
    };
    let mut out = vec![(path.to_owned(), true)];
    for (i, segment) in segments.iter().enumerate() {
        out.push((with(i, encode_all(segment)), true));
        out.push((with(i, encode_first(segment)), true));
    }
    let first = segments[0];
    let rest = &path[1 + first.len()..];
    out.extend(
        [
            alternate_case(path),
            format!("/{}{rest}", first.to_ascii_uppercase()),
            format!("/x/..{path}"),
            format!("/x/%2e%2e{path}"),
            format!("/.{path}"),
            format!("/{first}/.{rest}"),
            format!("/{first}/..{path}"),
            format!("/{path}"),
            format!("/{first}/{rest}"),
            format!("{path}/"),
        ]
        .into_iter()
        .map(|spelling| (spelling, false)),
    );
    out
}

/// Who a probe is made as.
#[derive(Clone, Copy, Debug)]
enum As {
    Nobody,
    OtherTenantAdmin,
    Own(Role),
}

/// Whether the route admits the caller, and if not, the refusal the plain path gets.
fn expected(requirement: Requirement, who: As) -> Result<(), (u16, &'static str)> {
    match (requirement, who) {
        (Requirement::Public, _) => Ok(()),
        (_, As::Nobody) => Err((401, "unauthorized")),
        (Requirement::Key, _) => Ok(()),
        (Requirement::Operator, _) | (Requirement::Tenant { .. }, As::OtherTenantAdmin) => {
            Err((403, "forbidden"))
        }
        (Requirement::Tenant { role, .. }, As::Own(granted)) if granted >= role => Ok(()),
        (Requirement::Tenant { .. }, As::Own(_)) => Err((403, "forbidden")),
    }
}

#[tokio::test]
async fn every_route_under_every_spelling_refuses_what_its_requirement_refuses() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let table = registrar::http::route_table();
    assert!(table.len() > 40, "the route table lists every route");

    let mut probes = Vec::new();
    for route in &table {
        let path = concrete(&route.path, &t.id);
        for (spelling, same_route) in spellings(&path) {
            for (who, key) in [
                (As::Nobody, None),
                (As::OtherTenantAdmin, Some(other.admin.clone())),
                (As::Own(Role::Read), Some(t.read.clone())),
                (As::Own(Role::Write), Some(t.write.clone())),
                (As::Own(Role::Admin), Some(t.admin.clone())),
            ] {
                probes.push((route.clone(), spelling.clone(), same_route, who, key));
            }
        }
    }
    let count = probes.len();
    let address = app.address.clone();
    let failures: Vec<String> = futures_util::stream::iter(probes)
        .map(|(route, spelling, same_route, who, key)| {
            let address = address.clone();
            async move {
                let RouteAccess {
                    method,
                    requirement,
                    ..
                } = &route;
                let body = (!matches!(method.as_str(), "GET" | "DELETE")).then_some("{}");
                let (status, code) =
                    raw(&address, method.as_str(), &spelling, key.as_deref(), body).await;
                let what = format!("{method} {spelling} as {who:?}: {status} {code}");
                let expected = expected(*requirement, who);
                if status == 0 || status >= 500 {
                    return Some(format!("{what} (a server error)"));
                }
                match expected {
                    Err(_) if (200..300).contains(&status) => {
                        Some(format!("{what} (admitted, {requirement:?})"))
                    }
                    Err((want, want_code))
                        if same_route && (status, code.as_str()) != (want, want_code) =>
                    {
                        Some(format!(
                            "{what} (the plain path answers {want} {want_code})"
                        ))
                    }
                    _ => None,
                }
            }
        })
        .buffer_unordered(8)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {count} probes failed, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
}

#[tokio::test]
async fn the_route_table_holds_every_described_operation() {
    let app = spawn_app().await;
    let doc = app
        .send(app.request(reqwest::Method::GET, "/openapi.json", None))
        .await
        .body;
    let routed: BTreeSet<(String, String)> = registrar::http::route_table()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            let operation = (method.to_uppercase(), path.clone());
            assert!(routed.contains(&operation), "{operation:?} is not routed");
        }
    }
}

#[tokio::test]
async fn the_issues_probes_are_refused_without_a_key() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    let stolen = app.data_dir.path().join("stolen-backup");
    let address = app.address.clone();
    let probe = |method: &'static str, target: String, key: Option<String>, body: Value| {
        let address = address.clone();
        async move {
            let body = (!body.is_null()).then(|| body.to_string());
            raw(&address, method, &target, key.as_deref(), body.as_deref()).await
        }
    };
    let unauthorized = (401, "unauthorized".to_owned());
    let forbidden = (403, "forbidden".to_owned());
    let backup_body = json!({"to": stolen.to_str().unwrap()});
    let limits = json!({"limits": {"requests_per_second": 0.01}});
    for (method, target, body) in [
        ("GET", "/%61dmin/tenants".to_owned(), Value::Null),
        ("POST", "/%61dmin/backup".to_owned(), backup_body.clone()),
        ("POST", "/%61dmin/check".to_owned(), json!({"repair": true})),
        (
            "PATCH",
            format!("/%61dmin/tenants/{}", t.id),
            limits.clone(),
        ),
        ("GET", "/%6detrics".to_owned(), Value::Null),
        (
            "GET",
            format!("/%63ourseRegistrations/{}", t.id),
            Value::Null,
        ),
    ] {
        let what = format!("{method} {target}");
        assert_eq!(
            probe(method, target.clone(), None, body.clone()).await,
            unauthorized,
            "{what}"
        );
        assert_eq!(
            probe(
                method,
                target.clone(),
                Some(other.admin.clone()),
                body.clone()
            )
            .await,
            forbidden,
            "{what} with another tenant's admin key"
        );
    }
    for (method, target, body) in [
        ("GET", "/%61dmin/tenants".to_owned(), Value::Null),
        ("POST", "/%61dmin/backup".to_owned(), backup_body),
        ("PATCH", format!("/%61dmin/tenants/{}", t.id), limits),
        ("GET", "/%6detrics".to_owned(), Value::Null),
    ] {
        assert_eq!(
            probe(method, target.clone(), Some(t.admin.clone()), body).await,
            forbidden,
            "{method} {target} with the tenant's own admin key"
        );
    }
    assert!(!stolen.exists(), "no backup was written");
    let tenant = app
        .get(&format!("/admin/tenants/{}", t.id), OPERATOR_KEY)
        .await;
    assert_eq!(
        tenant.assert_ok()["limits"]["requests_per_second"],
        Value::Null,
        "the limits are unchanged"
    );
    // The encoded path is the same route: the tenant's read key reads it.
    assert_eq!(
        probe(
            "GET",
            format!("/%63ourseRegistrations/{}", t.id),
            Some(t.read.clone()),
            Value::Null
        )
        .await
        .0,
        200
    );
    assert_eq!(
        probe(
            "GET",
            "/%61dmin/tenants".to_owned(),
            Some(OPERATOR_KEY.to_owned()),
            Value::Null
        )
        .await
        .0,
        200
    );
}

/// The real binary, its stdout giving the address and its stderr kept.
struct Served {
    child: std::process::Child,
    address: String,
}

fn serve_binary(data_dir: &std::path::Path) -> Served {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("REGISTRAR_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .expect("the banner's first line");
    let address = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served { child, address }
}

#[tokio::test]
async fn the_operators_normal_requests_log_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_binary(&dir.path().join("db"));
    let client = reqwest::Client::new();
    let base = served.address.clone();
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(OPERATOR_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    use reqwest::Method;
    let tenant = "errorless";
    for (method, path, body, want) in [
        (
            Method::POST,
            "/admin/tenants".to_owned(),
            Some(json!({"id": tenant})),
            201,
        ),
        (Method::GET, "/admin/tenants".to_owned(), None, 200),
        (Method::GET, format!("/admin/tenants/{tenant}"), None, 200),
        (
            Method::PATCH,
            format!("/admin/tenants/{tenant}"),
            Some(json!({"limits": {"requests_per_second": 100}})),
            200,
        ),
        (
            Method::POST,
            format!("/admin/tenants/{tenant}/keys"),
            Some(json!({"role": "read"})),
            201,
        ),
        (
            Method::GET,
            format!("/admin/tenants/{tenant}/keys"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/courseRegistrations/{tenant}"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/admin/tenants/{tenant}/export"),
            None,
            200,
        ),
        (Method::POST, "/admin/check".to_owned(), None, 200),
        (Method::GET, "/metrics".to_owned(), None, 200),
    ] {
        let what = format!("{method} {path}");
        let (status, answer) = send(method, path, body).await;
        assert_eq!(status, want, "{what}: {answer}");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || served.child.wait_with_output())
        .await
        .unwrap()
        .expect("the server ends");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("/admin/tenants"),
        "the access log was written: {log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
}

#[tokio::test]
async fn whoami_names_the_key_and_nothing_more() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let operator = app.get("/whoami", OPERATOR_KEY).await;
    assert_eq!(
        operator.assert_ok(),
        &serde_json::json!({"principal": "operator", "role": "admin"})
    );
    for (key, role) in [(&t.read, "read"), (&t.write, "write"), (&t.admin, "admin")] {
        let r = app.get("/whoami", key).await;
        let body = r.assert_ok();
        assert_eq!(body["principal"], "tenant_key");
        assert_eq!(body["tenant_id"], t.id.as_str());
        assert_eq!(body["role"], role);
        assert!(body["key_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(
            !body.to_string().contains(key.as_str()),
            "the secret is not echoed"
        );
    }
    let refused = app.get("/whoami", "rk_not-a-key").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "unauthorized");
}
