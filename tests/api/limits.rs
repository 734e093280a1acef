//! Tenant limits: a request rate (token bucket, burst = 2 s) and a registration quota, each
//! answered with its own 429 code; one tenant's limit never touches another tenant.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::json;
use std::time::Instant;

#[tokio::test]
async fn a_tenant_over_its_rate_gets_rate_limited_with_retry_after_and_others_do_not() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let other = app.tenant().await;
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        OPERATOR_KEY,
        &json!({"limits": {"requests_per_second": 1}}),
    )
    .await
    .assert_ok();

    let started = Instant::now();
    let path = registrations(&t);
    let responses = join_all((0..20).map(|_| app.get(&path, &t.read))).await;
    let elapsed = started.elapsed().as_secs_f64();

    let admitted = responses.iter().filter(|r| r.status == 200).count();
    // Two in the bucket, plus one a second while the burst was being sent.
    assert!(
        admitted >= 1 && admitted as f64 <= 2.0 + elapsed.ceil(),
        "{admitted} admitted in {elapsed:.2}s"
    );
    for refused in responses.iter().filter(|r| r.status != 200) {
        refused.assert_error(429, "rate_limited");
        let wait: u64 = refused
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=2).contains(&wait));
    }
    // The other tenant is not limited, and the operator can lift the limit at once.
    let other_path = registrations(&other);
    let others = join_all((0..20).map(|_| app.get(&other_path, &other.read))).await;
    assert!(others.iter().all(|r| r.status == 200));
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        OPERATOR_KEY,
        &json!({"limits": {"requests_per_second": null}}),
    )
    .await
    .assert_ok();
    app.get(&path, &t.read).await.assert_ok();
}

#[tokio::test]
async fn a_tenant_at_its_quota_cannot_store_another_registration() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1", "s2", "s3"], &[("o1", "c1")]).await;
    app.patch_json(
        &format!("/admin/tenants/{}", t.id),
        OPERATOR_KEY,
        &json!({"limits": {"max_registrations": 2}}),
    )
    .await
    .assert_ok();
    let first = app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.create(&t, &w.body("s2", "c1", "o1")).await;

    let refused = app
        .post(&registrations(&t), &t.write, &w.body("s3", "c1", "o1"))
        .await;
    refused.assert_error(429, "tenant_limit");
    assert!(
        refused.header("retry-after").is_none(),
        "waiting does not help a quota"
    );
    // Every way of creating one counts.
    app.post(
        &format!("{}/generateOrder", registrations(&t)),
        &t.write,
        &w.body("s3", "c1", "o1"),
    )
    .await
    .assert_error(429, "tenant_limit");
    // Changes are fine; a delete frees room.
    app.patch(
        &registration(&t, first["id"].as_str().unwrap()),
        &t.write,
        &json!([{"op": "add", "path": "/city", "value": "Oslo"}]),
    )
    .await
    .assert_ok();
    app.delete(&registration(&t, first["id"].as_str().unwrap()), &t.write)
        .await
        .assert_ok();
    app.create(&t, &w.body("s3", "c1", "o1")).await;
}
