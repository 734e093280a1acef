//! Service endpoints: health and metrics.

use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn metrics_need_the_operator_key_and_count_requests_by_route() {
    let app = spawn_app().await;
    let t = app.tenant().await;
    let w = app.world(&t, &["s1"], &[("o1", "c1")]).await;
    app.create(&t, &w.body("s1", "c1", "o1")).await;
    app.get(&registration(&t, "01NOPE"), &t.read)
        .await
        .assert_error(404, "not_found");

    app.get("/metrics", &t.admin)
        .await
        .assert_error(403, "forbidden");
    app.send(app.request(Method::GET, "/metrics", None))
        .await
        .assert_error(401, "unauthorized");
    let metrics = app
        .send(app.request(Method::GET, "/metrics", Some(OPERATOR_KEY)))
        .await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.body.as_str().unwrap().to_owned();
    for expected in [
        "registrar_requests_total{route=\"/courseRegistrations/{tenantId}\",method=\"POST\",status=\"200\"} 1",
        "registrar_requests_total{route=\"/courseRegistrations/{tenantId}/{id}\",method=\"GET\",status=\"404\"} 1",
        "registrar_requests_total{route=\"/metrics\",method=\"GET\",status=\"401\"} 1",
        "registrar_request_duration_seconds_bucket{route=\"/courseRegistrations/{tenantId}\",le=\"+Inf\"} 1",
        "registrar_flush_duration_seconds_count",
        "registrar_commit_duration_seconds_count",
        "registrar_db_size_bytes",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}
