//! `/admin`: a tenant's export (streamed) and import (streamed in), and the database backup.
//! The import and export run on a blocking thread; bytes cross to and from it through
//! bounded channels, so neither side holds a whole file in memory.

use super::access::{route_tenant, Admin, Operator, TenantCaller};
use super::body::JsonBody;
use super::mount::Endpoint;
use super::query::{ExportQuery, ImportQuery, NoQuery, Query};
use super::request::{store_of, write_context};
use crate::domain::values::{FieldValue, Text};
use crate::error::{ApiError, ErrorCode};
use crate::workflows::transfer::{self, Format, ImportOptions};
use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Largest import body. Bodies are streamed and parsed as they arrive (only an
/// all-or-nothing import keeps its rows until the end, and it has its own row limit), so the
/// bound is about how long one request may run, not memory: 1 GiB is ~400,000 registrations
/// of 2 KB, about half a minute of work.
pub const MAX_IMPORT_BODY_BYTES: usize = 1024 * 1024 * 1024;
/// Longest `sourceFile`.
const MAX_SOURCE_FILE_CHARS: usize = 1024;
/// Bytes an export sends at a time.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting between the thread that runs an import or export and the connection.
const CHANNEL_CHUNKS: usize = 16;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        // A tenant's admin may take its data out; bringing data in writes audit fields
        // (sys_created_by_id, sys_last_security_context) as the file says: the operator's.
        Endpoint::new("/admin/tenants/{tenantId}/export").get(export_tenant),
        Endpoint::new("/admin/tenants/{tenantId}/import").post(import_tenant),
        Endpoint::new("/admin/backup").post(backup),
    ]
}

/// An export's bytes, sent to the response as they are written.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(EXPORT_CHUNK_BYTES),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away during the export",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

/// An import's body, read from the connection as the import asks for it.
struct ChannelReader {
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

async fn export_tenant(
    caller: TenantCaller<Admin>,
    query: Query<ExportQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let format = match query.get("format") {
        None => Format::Ndjson,
        Some(text) => Format::parse(text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("query parameter format {e}"),
            )
        })?,
    };
    let tenant = caller.tenant().clone();
    let store = store_of(&req)?;
    let (sender, mut receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let file_name = format!("{tenant}.{}", format.as_str());
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            sender,
            buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES),
        };
        if let Err(e) = transfer::export(&store, &tenant, format, &mut out, &mut |_| {}) {
            // The status line is sent already: cutting the body short is all that is left.
            log::error!("export of tenant {tenant} stopped: {e}");
            let _ = out
                .sender
                .blocking_send(Err(std::io::Error::other("the export failed")));
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ))
        .streaming(body))
}

/// The format of an import body, by its media type.
fn import_format(req: &HttpRequest) -> Result<Format, ApiError> {
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson" | "application/jsonl" => Ok(Format::Ndjson),
        "text/csv" => Ok(Format::Csv),
        _ => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "an import body is NDJSON (Content-Type: application/x-ndjson) or CSV (text/csv)",
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("an import body is at most {MAX_IMPORT_BODY_BYTES} bytes"),
    )
}

async fn import_tenant(
    operator: Operator,
    query: Query<ImportQuery>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let tenant = route_tenant(&req)?;
    let store = store_of(&req)?;
    transfer::import_target_exists(&store, &tenant)?;
    let all_or_nothing = query.flag("allOrNothing")?;
    let source_file = match query.get("sourceFile") {
        None => None,
        Some(name) => {
            let text = Text::parse(&Value::String(name.to_owned()))
                .ok()
                .filter(|_| name.chars().count() <= MAX_SOURCE_FILE_CHARS)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!(
                            "query parameter sourceFile must be at most \
                             {MAX_SOURCE_FILE_CHARS} characters without control characters"
                        ),
                    )
                })?;
            Some(text.as_str().to_owned())
        }
    };
    let format = import_format(&req)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_IMPORT_BODY_BYTES) {
        return Err(too_large());
    }
    let ctx = write_context(&req, operator.principal());
    let options = ImportOptions {
        all_or_nothing,
        source_file,
    };
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let job = tokio::task::spawn_blocking(move || {
        let input = ChannelReader {
            receiver,
            current: Bytes::new(),
        };
        transfer::import(&store, &tenant, format, input, &options, &ctx, &mut |_| {})
    });
    let mut received = 0usize;
    let mut overflow = false;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
        if let Ok(bytes) = &chunk {
            received += bytes.len();
            if received > MAX_IMPORT_BODY_BYTES {
                overflow = true;
                let _ = sender.send(Err(std::io::Error::other("too large"))).await;
                break;
            }
        }
        // The import stops reading when it stops (a bad CSV header): the rest is not needed.
        if sender.send(chunk).await.is_err() {
            break;
        }
    }
    drop(sender);
    let outcome = job.await.map_err(|e| {
        log::error!("import task failed: {e}");
        ApiError::internal()
    })?;
    match outcome {
        Err(e) if overflow => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{}: {}", too_large().message, e.message),
        )),
        Err(e) => Err(e),
        Ok(report) => Ok(HttpResponse::Ok().json(report.to_json())),
    }
}

/// `POST /admin/backup` `{"to": "/absolute/dir"}`.
async fn backup(
    _: Operator,
    _: Query<NoQuery>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let to = backup_target(&body.0)?;
    let store = store_of(&req)?;
    let report = transfer::backup(&store, &to).await?;
    Ok(HttpResponse::Ok().json(json!({
        "to": to.display().to_string(),
        "trees": report.trees,
        "entries": report.entries,
    })))
}

fn backup_target(body: &Value) -> Result<PathBuf, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorCode::ValidationFailed,
            "the body must be a JSON object",
        )
    })?;
    if let Some(unknown) = object.keys().find(|k| *k != "to") {
        return Err(ApiError::field(unknown.as_str(), "is not a known field"));
    }
    let to = object
        .get("to")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::field("to", "is required: the directory to back up into"))?;
    let path = PathBuf::from(to);
    if !path.is_absolute() {
        return Err(ApiError::field(
            "to",
            "must be an absolute path (on the server's machine)",
        ));
    }
    Ok(path)
}

/// The schema of `POST /admin/backup`'s body.
pub fn backup_schema() -> Value {
    json!({
        "type": "object",
        "required": ["to"],
        "properties": {"to": {
            "type": "string",
            "description": "An absolute path on the server's machine: a new or empty directory.",
        }},
        "additionalProperties": false,
    })
}

/// The schema of an import report.
pub fn import_report_schema() -> Value {
    json!({
        "type": "object",
        "required": ["bulk_load_id", "all_or_nothing", "rows", "imported", "failed"],
        "properties": {
            "bulk_load_id": {"type": "string"},
            "all_or_nothing": {"type": "boolean"},
            "rows": {"type": "integer", "minimum": 0},
            "imported": {"type": "integer", "minimum": 0},
            "failed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "code", "reason"],
                    "properties": {
                        "row": {"type": "integer", "minimum": 1},
                        "code": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                    "additionalProperties": false,
                },
            },
        },
        "additionalProperties": false,
    })
}
