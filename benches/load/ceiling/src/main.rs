//! `registrar-load-ceiling ADDRESS`: serves a fixed 1.7 KB JSON body on every GET path, with
//! actix-web's defaults (as registrar uses them), and nothing else: no auth, no storage, no
//! logging. What it answers per second is the ceiling for any handler on this machine.

use actix_web::{web, App, HttpResponse, HttpServer};

/// A registration-like JSON object of exactly `BODY_BYTES` bytes.
const BODY_BYTES: usize = 1700;

fn body() -> web::Bytes {
    let head = r#"{"id":"01JBENCHCEILING0000000000","name":"Ada Student000001","status":"registered","notes":""#;
    let tail = r#""}"#;
    let filler = "x".repeat(BODY_BYTES - head.len() - tail.len());
    web::Bytes::from(format!("{head}{filler}{tail}"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let body = body();
    assert_eq!(body.len(), BODY_BYTES);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
    })
    .bind(address)?
    .run()
    .await
}
