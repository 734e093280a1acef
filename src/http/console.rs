//! The console (issue 20): a browser UI at `/console`, served from assets compiled into the
//! binary (`console/`: plain HTML, CSS and JavaScript modules; no build step, no CDN). It
//! holds no secret and has no endpoint of its own: the page signs in with an API key, which
//! it keeps in the tab's sessionStorage, and does everything through the public API, so every
//! rule and access check applies to it as to any client.
//!
//! Every console response carries a Content-Security-Policy that allows only this origin's
//! scripts, styles and API (no inline script or style, no framing, no form posts elsewhere),
//! `X-Frame-Options: DENY`, `nosniff` and `no-referrer`.

use super::access::Public;
use super::mount::Endpoint;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// What the console's pages may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-src blob:; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's files: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("console/dom.js"),
    ),
    (
        "fields.js",
        "text/javascript; charset=utf-8",
        include_str!("console/fields.js"),
    ),
    (
        "registrations.js",
        "text/javascript; charset=utf-8",
        include_str!("console/registrations.js"),
    ),
    (
        "registration.js",
        "text/javascript; charset=utf-8",
        include_str!("console/registration.js"),
    ),
    (
        "catalog.js",
        "text/javascript; charset=utf-8",
        include_str!("console/catalog.js"),
    ),
    (
        "operator.js",
        "text/javascript; charset=utf-8",
        include_str!("console/operator.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("console/favicon.svg"),
    ),
];

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new("/console").get(page),
        Endpoint::new("/console/{asset}").get(asset),
    ]
}

/// Each asset's ETag: a hash of its content, made once, written as a number (the API's ETags
/// are all `"<digits>"`, which its description states).
fn etags() -> &'static Vec<String> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, content)| {
                let digest = Sha256::digest(content.as_bytes());
                let first: [u8; 8] = digest[..8].try_into().expect("a SHA-256 has 32 bytes");
                format!("\"{}\"", u64::from_be_bytes(first))
            })
            .collect()
    })
}

async fn page(_: Public, req: HttpRequest) -> HttpResponse {
    serve(&req, 0)
}

async fn asset(_: Public, name: web::Path<String>, req: HttpRequest) -> HttpResponse {
    match ASSETS
        .iter()
        .position(|(file, _, _)| *file == name.as_str())
    {
        // index.html only at /console, so that relative links resolve one way.
        Some(i) if i > 0 => serve(&req, i),
        _ => super::error::route_not_found().await,
    }
}

fn serve(req: &HttpRequest, i: usize) -> HttpResponse {
    let (_, media, content) = ASSETS[i];
    let etag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Revalidated on each load (cheap: 304 by ETag), so an upgrade shows at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag.as_str()));
    if fresh {
        response.finish()
    } else {
        response.content_type(media).body(content)
    }
}
