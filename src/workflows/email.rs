//! previewEmail: render a template with a registration and what it points at, then send it
//! through the SMTP relay or keep it in the outbox; and the deliverer, which sends what a
//! node left pending.
//!
//! Mail through the relay is journaled before it is sent: the message is committed to the
//! outbox as pending, claimed by this node for [`Mailer::claim`] (the relay's send timeout is
//! at most half of it, so the send ends before the claim does), then sent, then marked sent
//! (or failed, and the client is told 502). Should the node die between the commit and the
//! mark, the message stays pending; once its claim runs out, a deliverer (every node runs one
//! while a relay is configured: [`Deliverer`]) claims it and sends it. The engine hands each
//! message to one claimer at a time, across nodes. A node that dies after the relay took the
//! message but before marking it sent leaves it pending too, and it is sent again: delivery
//! is at least once, and both sends carry the same Message-ID, so receivers can tell.

use super::blocking;
use super::catalog::fetch;
use crate::domain::catalog::{
    CatalogFields, CatalogRecord, ContactFields, CourseFields, CourseOfferingFields,
    EmailTemplateFields, DEFAULT_TEMPLATE_ID,
};
use crate::domain::email::PreviewEmail;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::time::Timestamp;
use crate::error::{ApiError, ErrorCode};
use crate::mail::{self, EmailTemplate, RenderFailure, RenderPool, RenderedEmail, SmtpRelay};
use crate::store::records::{Delivery, OutboxMessage};
use crate::store::write::{KeepInOutbox, SettleOutbox};
use crate::store::Db;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Where mail goes: an SMTP relay when one is configured, otherwise the tenant's outbox; and
/// the worker processes that render its templates.
pub struct Mailer {
    pub relay: Option<Arc<SmtpRelay>>,
    pub from: String,
    pub renderer: Arc<RenderPool>,
    /// How long a node holds a pending message it is sending (`--mail-claim-secs`).
    pub claim: Duration,
}

/// `--mail-claim-secs` unset: the relay's 30 s send timeout and as much again.
pub const DEFAULT_CLAIM: Duration = Duration::from_secs(60);
/// After this many deliverer attempts, a message the relay keeps refusing is marked failed.
pub const MAX_ATTEMPTS: u32 = 5;
/// Most messages one deliverer pass claims.
const CLAIM_BATCH: usize = 16;
/// A relay error is kept up to this many bytes.
const MAX_ERROR_BYTES: usize = 1000;

/// The send timeout a relay gets under claims of `claim`: half of it, so that a send started
/// right after the commit ends long before the claim runs out, clocks a little apart.
pub fn send_timeout_for(claim: Duration) -> Duration {
    claim / 2
}

impl Mailer {
    pub fn transport(&self) -> &'static str {
        if self.relay.is_some() {
            "smtp"
        } else {
            "outbox"
        }
    }
}

/// The JSON a template sees for a catalog record, or null when it is gone.
async fn scope_of<F: CatalogFields>(
    store: &Db,
    tenant: &TenantId,
    id: Option<&RecordId>,
) -> Result<Value, ApiError> {
    let Some(id) = id.cloned() else {
        return Ok(Value::Null);
    };
    let tenant = tenant.clone();
    let record = blocking(store, move |s| s.catalog_record(&tenant, F::KIND, &id)).await?;
    Ok(record.map_or(Value::Null, |r| Value::Object(r.to_json())))
}

fn template_from(fields: &EmailTemplateFields) -> EmailTemplate {
    EmailTemplate {
        subject: fields
            .subject
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        html: fields.html.as_ref().map(|h| h.as_str().to_owned()),
        text: fields.text.as_ref().map(|t| t.as_str().to_owned()),
    }
}

pub async fn preview(
    store: &Db,
    mailer: &Mailer,
    tenant: &TenantId,
    body: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let request = PreviewEmail::parse(body)?;
    let registration = super::registrations::fetch(store, tenant, &request.registration_id).await?;
    let template = match &request.template {
        Some(inline) => EmailTemplate {
            subject: inline.subject.clone(),
            html: inline.html.clone(),
            text: inline.text.clone(),
        },
        None => {
            let id = RecordId::parse(DEFAULT_TEMPLATE_ID).map_err(|_| ApiError::internal())?;
            let stored: CatalogRecord<EmailTemplateFields> =
                fetch(store, tenant, &id).await.map_err(|_| {
                    ApiError::new(
                    ErrorCode::NotFound,
                    "no email_template given and the tenant has no default-confirmation template",
                )
                })?;
            template_from(&stored.fields)
        }
    };
    let f = &registration.fields;
    let scope = json!({
        "registration": Value::Object(registration.to_json()),
        "contact": scope_of::<ContactFields>(store, tenant, f.student_id.as_ref()).await?,
        "course": scope_of::<CourseFields>(store, tenant, f.course_id.as_ref()).await?,
        "offering": scope_of::<CourseOfferingFields>(store, tenant, f.course_offering_id.as_ref()).await?,
    });
    // A hostile template may exhaust the memory or time a render may use: only ever in a
    // worker process, which the pool kills and replaces.
    let rendered = mailer
        .renderer
        .render(template, scope)
        .await
        .map_err(api_error_of)?;
    if dry_run {
        // Rendered only: nothing is sent or kept (a template editor's live preview).
        return Ok(sent_email(&request, rendered, "none", None));
    }
    let message_id = match &mailer.relay {
        Some(relay) => {
            let claimed_until = Timestamp::now().plus(mailer.claim);
            let pending = Delivery::Pending {
                claimed_until,
                attempts: 0,
            };
            let message = keep(
                store,
                tenant,
                &request,
                &registration.id,
                &rendered,
                pending,
            )
            .await?;
            let sent = relay
                .send_as(
                    &mailer.from,
                    &request.destination,
                    &rendered,
                    &message.message_id,
                )
                .await;
            let settled = match &sent {
                Ok(()) => Delivery::Sent {
                    at: Timestamp::now(),
                },
                Err(e) => Delivery::Failed {
                    at: Timestamp::now(),
                    error: bounded(e),
                },
            };
            settle(store, tenant, &message, settled).await;
            if let Err(e) = sent {
                log::warn!("SMTP delivery to {} failed: {e}", request.destination);
                return Err(ApiError::new(
                    ErrorCode::MailDeliveryFailed,
                    format!("the SMTP relay did not accept the message: {e}"),
                ));
            }
            message.message_id
        }
        None => {
            keep(
                store,
                tenant,
                &request,
                &registration.id,
                &rendered,
                Delivery::Kept,
            )
            .await?
            .message_id
        }
    };
    Ok(sent_email(
        &request,
        rendered,
        mailer.transport(),
        Some(message_id),
    ))
}

/// previewEmail's answer: the message as rendered, how it went (`smtp`, `outbox`, or `none`
/// for a dry run) and its Message-ID (none on a dry run).
fn sent_email(
    request: &PreviewEmail,
    rendered: RenderedEmail,
    transport: &str,
    message_id: Option<String>,
) -> Value {
    let mut response = json!({
        "to": request.destination,
        "subject": rendered.subject,
        "transport": transport,
    });
    if let Some(id) = message_id {
        response["message_id"] = json!(id);
    }
    if let Some(html) = rendered.html {
        response["html"] = json!(html);
    }
    if let Some(text) = rendered.text {
        response["text"] = json!(text);
    }
    response
}

/// A render that gave no email, as the client sees it.
fn api_error_of(failure: RenderFailure) -> ApiError {
    match failure {
        RenderFailure::Template(e) => ApiError::new(ErrorCode::TemplateError, e.to_string())
            .with_details(vec![crate::error::FieldError::new(
                format!("email_template.{}", e.part),
                match e.line {
                    Some(line) => format!("line {line}: {}", e.message),
                    None => e.message.clone(),
                },
            )]),
        RenderFailure::Busy => {
            let mut busy = ApiError::new(
                ErrorCode::Unavailable,
                "every template renderer is busy; retry shortly",
            );
            busy.retry_after = Some(1);
            busy
        }
        RenderFailure::Unavailable(why) => {
            log::error!("templates cannot be rendered: {why}");
            ApiError::new(ErrorCode::Unavailable, "templates cannot be rendered now")
        }
    }
}

/// Keeps the message in the outbox (journals it, with a relay) and returns it.
async fn keep(
    store: &Db,
    tenant: &TenantId,
    request: &PreviewEmail,
    registration: &RecordId,
    rendered: &RenderedEmail,
    delivery: Delivery,
) -> Result<OutboxMessage, ApiError> {
    let message = OutboxMessage {
        id: RecordId::generate(),
        message_id: mail::message_id(),
        to: request.destination.clone(),
        subject: rendered.subject.clone(),
        html: rendered.html.clone(),
        text: rendered.text.clone(),
        registration_id: Some(registration.clone()),
        created_at: Timestamp::now(),
        delivery,
    };
    let retention = store.retention();
    store
        .keep_in_outbox(KeepInOutbox {
            tenant: tenant.clone(),
            message: message.clone(),
            max_bytes: retention.max_outbox_message_bytes,
            max_messages: retention.outbox_max_messages,
        })
        .await?;
    Ok(message)
}

/// A relay's error, cut to [`MAX_ERROR_BYTES`] at a character boundary.
fn bounded(error: &str) -> String {
    let mut end = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

/// Records how a pending message's delivery ended. A failure to record it is logged, not
/// answered: the relay's verdict stands, and a message left pending is sent again by a
/// deliverer once its claim runs out (at least once).
async fn settle(store: &Db, tenant: &TenantId, message: &OutboxMessage, delivery: Delivery) {
    let settle = SettleOutbox {
        tenant: tenant.clone(),
        id: message.id.clone(),
        delivery,
    };
    match store.settle_outbox(settle).await {
        Ok(true) => {}
        // Evicted past the outbox's cap, swept, or settled by a deliverer that claimed it
        // after its claim ran out.
        Ok(false) => log::info!(
            "outbox message {} was no longer pending when its delivery ended",
            message.message_id
        ),
        Err(e) => log::error!(
            "could not record the delivery of outbox message {}: {e}",
            message.message_id
        ),
    }
}

/// Sends, from every node, what nodes left pending: a background task started with the
/// server when a relay is configured, stopped (aborted) with it. Each pass claims the
/// pending messages whose claim ran out (`Engine::claim_outbox`), sends each and marks it
/// sent; a send the relay refuses leaves the message pending for a later pass, until
/// [`MAX_ATTEMPTS`] claims, after which it is marked failed.
pub struct Deliverer {
    task: tokio::task::JoinHandle<()>,
}

impl Deliverer {
    /// Starts the deliverer on the current runtime; it first runs at once (a node that
    /// restarts sends what it left pending as soon as the claims run out).
    pub fn start(store: Db, relay: Arc<SmtpRelay>, from: String, claim: Duration) -> Deliverer {
        let every = (claim / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        let task = tokio::spawn(async move {
            loop {
                deliver_due(&store, &relay, &from, claim).await;
                tokio::time::sleep(every).await;
            }
        });
        Deliverer { task }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        // A send cut short leaves its message pending and claimed: it is sent again once the
        // claim runs out, by this node after a restart or by another.
        self.task.abort();
    }
}

/// One deliverer pass: claims and sends batches until none is due.
async fn deliver_due(store: &Db, relay: &SmtpRelay, from: &str, claim: Duration) {
    loop {
        let now = Timestamp::now();
        let claimed = match store.claim_outbox(now, now.plus(claim), CLAIM_BATCH).await {
            Ok(claimed) => claimed,
            Err(e) => {
                log::warn!("the deliverer could not claim pending mail: {e}");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        let full = claimed.len() == CLAIM_BATCH;
        for (tenant, message) in claimed {
            let attempts = match message.delivery {
                Delivery::Pending { attempts, .. } => attempts,
                _ => continue,
            };
            let email = RenderedEmail {
                subject: message.subject.clone(),
                html: message.html.clone(),
                text: message.text.clone(),
            };
            let outcome = relay
                .send_as(from, &message.to, &email, &message.message_id)
                .await;
            let delivery = match outcome {
                Ok(()) => Delivery::Sent {
                    at: Timestamp::now(),
                },
                Err(e) if attempts >= MAX_ATTEMPTS => {
                    log::warn!(
                        "giving up on outbox message {} after {attempts} attempts: {e}",
                        message.message_id
                    );
                    Delivery::Failed {
                        at: Timestamp::now(),
                        error: bounded(&e),
                    }
                }
                Err(e) => {
                    // Left pending under this claim: the next pass after it runs out retries.
                    log::warn!(
                        "the relay refused outbox message {} (attempt {attempts}): {e}",
                        message.message_id
                    );
                    continue;
                }
            };
            settle(store, &tenant, &message, delivery).await;
        }
        if !full {
            return;
        }
    }
}
