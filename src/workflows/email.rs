//! previewEmail: render a template with a registration and what it points at, then send it
//! through the SMTP relay or keep it in the outbox.

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
use crate::store::records::OutboxMessage;
use crate::store::write::KeepInOutbox;
use crate::store::Db;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where mail goes: an SMTP relay when one is configured, otherwise the tenant's outbox; and
/// the worker processes that render its templates.
pub struct Mailer {
    pub relay: Option<SmtpRelay>,
    pub from: String,
    pub renderer: Arc<RenderPool>,
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
    let message_id = match &mailer.relay {
        Some(relay) => relay
            .send(&mailer.from, &request.destination, &rendered)
            .await
            .map_err(|e| {
                log::warn!("SMTP delivery to {} failed: {e}", request.destination);
                ApiError::new(
                    ErrorCode::MailDeliveryFailed,
                    format!("the SMTP relay did not accept the message: {e}"),
                )
            })?,
        None => keep(store, tenant, &request, &registration.id, &rendered).await?,
    };
    let mut response = json!({
        "to": request.destination,
        "subject": rendered.subject,
        "transport": mailer.transport(),
        "message_id": message_id,
    });
    if let Some(html) = rendered.html {
        response["html"] = json!(html);
    }
    if let Some(text) = rendered.text {
        response["text"] = json!(text);
    }
    Ok(response)
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

async fn keep(
    store: &Db,
    tenant: &TenantId,
    request: &PreviewEmail,
    registration: &RecordId,
    rendered: &RenderedEmail,
) -> Result<String, ApiError> {
    let message = OutboxMessage {
        id: RecordId::generate(),
        message_id: mail::message_id(),
        to: request.destination.clone(),
        subject: rendered.subject.clone(),
        html: rendered.html.clone(),
        text: rendered.text.clone(),
        registration_id: Some(registration.clone()),
        created_at: Timestamp::now(),
    };
    let message_id = message.message_id.clone();
    let retention = store.retention();
    store
        .keep_in_outbox(KeepInOutbox {
            tenant: tenant.clone(),
            message,
            max_bytes: retention.max_outbox_message_bytes,
            max_messages: retention.outbox_max_messages,
        })
        .await?;
    Ok(message_id)
}
