//! Templates that cannot hurt the service: hostile templates through previewEmail each end
//! in a 400 `template_error` at the render limits (64 MiB, 3 s), rendered in a worker process
//! that is killed or dies instead of the server; and the worker pool replaces what it lost.

use crate::helpers::*;
use registrar::mail::{EmailTemplate, RenderFailure, RenderPool};
use serde_json::{json, Value};
use std::sync::Arc;

fn with_text(id: &str, text: &str) -> Value {
    json!({
        "registration_id": id,
        "destination_email_address": "a@example.org",
        "email_template": {"subject": "s", "text": text},
    })
}

/// `{% set s = 'x' %}` and `times` × `{% set s = s ~ s %}` (2^times bytes), then `{{ s|length }}`.
fn doubling(times: usize) -> String {
    doubling_then(times, "{{ s|length }}")
}

fn doubling_then(times: usize, tail: &str) -> String {
    let mut template = "{% set s = 'x' %}".to_owned();
    for _ in 0..times {
        template.push_str("{% set s = s ~ s %}");
    }
    template.push_str(tail);
    template
}

/// The templates of issue 13 and their variants: each must be refused at a limit.
fn hostile_templates() -> Vec<(&'static str, String)> {
    vec![
        ("concatenation doubling to 1 GiB", doubling(31)),
        (
            "list repetition and `in`, five times",
            "{% if 'zz' in (['a'] * 100000000) %}y{% endif %}".repeat(5),
        ),
        ("string repetition", "{{ ('x' * 10**9)|length }}".into()),
        (
            "string repetition under minijinja's own cap",
            "{% set s = 'x' * 90000000 %}{{ s|length }}".into(),
        ),
        (
            "nested loops",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                .into(),
        ),
        (
            "a loop of slow `in`s",
            "{% for i in range(10000) %}{% if 'zz' in (['a'] * 100000000) %}y{% endif %}{% endfor %}"
                .into(),
        ),
        (
            "recursion through macros",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}".into(),
        ),
        (
            "recursion through macros, doubling",
            "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}".into(),
        ),
        (
            "a huge range",
            "{% for i in range(10000000000) %}{% endfor %}".into(),
        ),
        ("join of a huge list", "{{ (['x'] * 100000000)|join(',') }}".into()),
        (
            "join of a huge list built by doubling",
            format!(
                "{{% set l = ['xxxxxxxx'] %}}{}{{{{ l|join|length }}}}",
                "{% set l = l + l %}".repeat(24)
            ),
        ),
    ]
}

#[tokio::test]
async fn hostile_templates_are_400s_at_the_limits_and_the_server_stays_up() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;
    let normal = with_text(&id, "Hello {{ contact.first_name }}");

    for (what, template) in hostile_templates() {
        let started = std::time::Instant::now();
        let refused = app
            .post(&preview_path(&t), &t.write, &with_text(&id, &template))
            .await;
        eprintln!("{what}: {:?}, {}", started.elapsed(), refused.body);
        assert_eq!(refused.status.as_u16(), 400, "{what}: {}", refused.body);
        assert_eq!(refused.code(), "template_error", "{what}");
        assert_eq!(
            refused.body["error"]["details"][0]["field"], "email_template.text",
            "{what}: the part is named"
        );

        // Everyone else is still served, templates included.
        let ok = app.post(&preview_path(&t), &t.write, &normal).await;
        assert_eq!(ok.assert_ok()["text"], "Hello Ada", "after {what}");
    }
    let health = app.get("/healthz", &t.read).await;
    assert!(health.status.is_success(), "{}", health.body);
    // Only the normal previews were kept in the outbox.
    assert_eq!(
        app.get(&format!("/emails/{}?limit=100", t.id), &t.read)
            .await
            .body["Count"],
        hostile_templates().len()
    );
}

#[tokio::test]
async fn the_memory_and_time_limits_name_themselves() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;

    let memory = app
        .post(&preview_path(&t), &t.write, &with_text(&id, &doubling(31)))
        .await;
    memory.assert_error(400, "template_error");
    assert!(
        memory.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 MiB"),
        "{}",
        memory.body
    );

    let slow = "{% if 'zz' in (['a'] * 100000000) %}y{% endif %}".repeat(5);
    let time = app
        .post(&preview_path(&t), &t.write, &with_text(&id, &slow))
        .await;
    time.assert_error(400, "template_error");
    assert_eq!(
        time.body["error"]["details"][0]["message"], "takes longer than 3 s to render",
        "{}",
        time.body
    );

    // A template that is merely large still renders: a 2 MiB string built by doubling, twice
    // what a part may print. (Kept cheap: slicing a 16 MiB string took 0.6-0.9 s in a debug
    // build, close enough to the 3 s cap to fail under a loaded machine.)
    let fine = app
        .post(&preview_path(&t), &t.write, &with_text(&id, &doubling(21)))
        .await;
    assert_eq!(fine.assert_ok()["text"], "2097152");
}

#[tokio::test]
async fn a_flood_of_hostile_renders_is_refused_without_a_server_error() {
    let app = Arc::new(spawn_app().await);
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;

    // More than the workers and their queue hold: each is a 400 (rendered and refused) or a
    // 503 with Retry-After (no room to wait), never a 5xx of another kind or a lost server.
    let mut floods = Vec::new();
    for _ in 0..40 {
        let (app, t, body) = (app.clone(), t.clone(), with_text(&id, &doubling(31)));
        floods.push(tokio::spawn(async move {
            app.post(&preview_path(&t), &t.write, &body).await
        }));
    }
    let (mut refused, mut busy) = (0, 0);
    for flood in floods {
        let answer = flood.await.unwrap();
        match answer.status.as_u16() {
            400 => {
                answer.assert_error(400, "template_error");
                refused += 1;
            }
            503 => {
                answer.assert_error(503, "service_unavailable");
                assert_eq!(answer.header("Retry-After"), Some("1"));
                busy += 1;
            }
            _ => panic!("{}: {}", answer.status, answer.body),
        }
    }
    eprintln!("{refused} refused, {busy} busy");
    assert!(refused > 0);

    let ok = app
        .post(
            &preview_path(&t),
            &t.write,
            &with_text(&id, "still {{ 1 + 1 }}"),
        )
        .await;
    assert_eq!(ok.assert_ok()["text"], "still 2");
}

fn text_template(text: &str) -> EmailTemplate {
    EmailTemplate {
        subject: "s".into(),
        html: None,
        text: Some(text.into()),
    }
}

#[tokio::test]
async fn the_pool_replaces_a_killed_or_dead_worker() {
    let pool = Arc::new(RenderPool::new(env!("CARGO_BIN_EXE_registrar").into(), 1));
    let scope = json!({"name": "Ada"});
    let render = |text: &str| pool.render(text_template(text), scope.clone());

    let first = render("Hi {{ name }}").await.unwrap();
    assert_eq!(first.text.as_deref(), Some("Hi Ada"));
    let [worker] = pool.idle_worker_ids()[..] else {
        panic!("one warm worker: {:?}", pool.idle_worker_ids());
    };
    // The stated caps are the worker's own limits.
    let limits = std::fs::read_to_string(format!("/proc/{worker}/limits")).unwrap();
    let limit = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert!(
        limit("Max data size").ends_with("67108864 67108864 bytes"),
        "{limits}"
    );
    assert!(limit("Max cpu time").ends_with("60 65 seconds"), "{limits}");
    assert!(
        limit("Max core file size").ends_with("0 0 bytes"),
        "{limits}"
    );

    // Killed from outside while idle: the next render gets a fresh worker, not an error.
    let killed = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let second = render("Bye {{ name }}").await.unwrap();
    assert_eq!(second.text.as_deref(), Some("Bye Ada"));
    let [replacement] = pool.idle_worker_ids()[..] else {
        panic!("one warm worker: {:?}", pool.idle_worker_ids());
    };
    assert_ne!(replacement, worker);
    assert_eq!(pool.workers_started(), 2);

    // Dead of its memory limit while rendering: the template's error, and a warm replacement.
    match render(&doubling(31)).await {
        Err(RenderFailure::Template(e)) => {
            assert_eq!(e.part, "text");
            assert!(e.message.contains("64 MiB"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.workers_started(), 3);
    let [warm] = pool.idle_worker_ids()[..] else {
        panic!("one warm worker: {:?}", pool.idle_worker_ids());
    };
    assert_ne!(warm, replacement);
    assert_eq!(
        render("{{ name }}").await.unwrap().text.as_deref(),
        Some("Ada")
    );
    assert_eq!(pool.workers_started(), 3, "the warm one served");
}

#[tokio::test]
async fn a_stored_hostile_template_is_refused_the_same_way() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;
    app.patch(
        &format!("/emailTemplates/{}/default-confirmation", t.id),
        &t.write,
        &json!([{"op": "replace", "path": "/html", "value": doubling(31)}]),
    )
    .await
    .assert_ok();
    let refused = app
        .post(
            &preview_path(&t),
            &t.write,
            &json!({"registration_id": id, "destination_email_address": "a@example.org"}),
        )
        .await;
    refused.assert_error(400, "template_error");
    assert_eq!(
        refused.body["error"]["details"][0]["field"], "email_template.html",
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn a_missing_worker_program_is_a_503_not_a_crash() {
    let app = spawn_with(tempfile::tempdir().unwrap(), |args| {
        args.render_worker = Some("/nonexistent/registrar".into())
    })
    .await;
    let t = app.tenant().await;
    let id = registration_id(&app, &t).await;
    app.post(&preview_path(&t), &t.write, &with_text(&id, "x"))
        .await
        .assert_error(503, "service_unavailable");
}
