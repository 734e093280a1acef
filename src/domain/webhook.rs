//! Webhook endpoints (issue 19): where a tenant wants its change events sent, and the pure
//! parts of sending them: which events an endpoint takes, the body each delivery carries, and
//! the id that makes a repeat recognisable. Validation only: resolving and vetting the
//! endpoint's address, signing and sending are `crate::webhooks`'.

use super::error::{DomainError, FieldError};
use super::ids::TenantId;
use super::tenant::object_with;
use super::time::Timestamp;
use super::transfer::RecordKind;
use crate::webhooks::WebhookUrl;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Most endpoints one tenant may register.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 16;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A registered endpoint, without its secret (which the store keeps beside it and shows once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    /// The record kinds (export tags: `registration`, `contact`, …) whose events it takes;
    /// empty: every kind.
    pub kinds: Vec<String>,
    pub enabled: bool,
    /// Why the server disabled it (deliveries failed for the whole retry window); cleared when
    /// it is enabled again.
    pub disabled_reason: Option<String>,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// Whether the endpoint takes events of records of this kind.
    pub fn wants(&self, kind: RecordKind) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind.tag())
    }

    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "url": self.url,
            "kinds": self.kinds,
            "enabled": self.enabled,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        });
        if let Some(reason) = &self.disabled_reason {
            out["disabled_reason"] = json!(reason);
        }
        if let Some(description) = &self.description {
            out["description"] = json!(description);
        }
        out
    }

    /// JSON Schema of `to_json`; a new endpoint's answer adds `secret`.
    pub fn schema(with_secret: bool) -> Value {
        let mut schema = json!({
            "type": "object",
            "required": ["id", "url", "kinds", "enabled", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"},
                "url": {"type": "string", "format": "uri"},
                "kinds": kinds_schema(),
                "enabled": {"type": "boolean"},
                "disabled_reason": {"type": "string", "description": "why the server disabled the endpoint"},
                "description": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
            "additionalProperties": false,
        });
        if with_secret {
            schema["required"]
                .as_array_mut()
                .expect("required is a list")
                .push(json!("secret"));
            schema["properties"]["secret"] = json!({
                "type": "string",
                "description": "whsec_ + base64: the signing key, shown only in this answer",
            });
        }
        schema
    }
}

fn kinds_schema() -> Value {
    let tags: Vec<&str> = RecordKind::EXPORT_ORDER.iter().map(|k| k.tag()).collect();
    json!({
        "type": "array",
        "items": {"enum": tags},
        "uniqueItems": true,
        "description": "the record kinds whose events the endpoint takes; empty or absent: every kind",
    })
}

/// A `POST …/webhooks` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEndpoint {
    pub url: WebhookUrl,
    pub kinds: Vec<String>,
    pub enabled: bool,
    pub description: Option<String>,
}

impl NewEndpoint {
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = object_with(body, &["url", "kinds", "enabled", "description"])?;
        let mut problems = Vec::new();
        let url = match object.get("url") {
            None | Some(Value::Null) => {
                problems.push(FieldError::new("url", "is required"));
                None
            }
            Some(v) => collect(&mut problems, "url", parse_url(v)),
        };
        let kinds = collect(&mut problems, "kinds", parse_kinds(object.get("kinds")));
        let enabled = collect(&mut problems, "enabled", parse_bool(object.get("enabled")));
        let description = collect(
            &mut problems,
            "description",
            parse_description(object.get("description")),
        );
        match (url, kinds, enabled, description) {
            (Some(url), Some(kinds), Some(enabled), Some(description)) if problems.is_empty() => {
                Ok(NewEndpoint {
                    url,
                    kinds,
                    enabled: enabled.unwrap_or(true),
                    description,
                })
            }
            _ => Err(DomainError::validation(problems)),
        }
    }

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "format": "uri", "maxLength": crate::webhooks::MAX_URL_LEN,
                        "description": "http or https; must not resolve to a loopback, private or link-local address unless the server allows it"},
                "kinds": kinds_schema(),
                "enabled": {"type": "boolean", "description": "default true"},
                "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_CHARS},
            },
            "additionalProperties": false,
        })
    }

    /// The endpoint it makes.
    pub fn into_endpoint(self, id: String, tenant: TenantId, now: Timestamp) -> WebhookEndpoint {
        WebhookEndpoint {
            id,
            tenant,
            url: self.url.as_str().to_owned(),
            kinds: self.kinds,
            enabled: self.enabled,
            disabled_reason: None,
            description: self.description,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A `PATCH …/webhooks/{id}` body: the fields given change, the others stay.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointPatch {
    pub url: Option<WebhookUrl>,
    pub kinds: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)`: cleared.
    pub description: Option<Option<String>>,
}

impl EndpointPatch {
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        let object = object_with(body, &["url", "kinds", "enabled", "description"])?;
        let mut problems = Vec::new();
        let mut patch = EndpointPatch::default();
        if let Some(v) = object.get("url") {
            patch.url = collect(&mut problems, "url", parse_url(v));
        }
        if object.contains_key("kinds") {
            patch.kinds = collect(&mut problems, "kinds", parse_kinds(object.get("kinds")));
        }
        if object.contains_key("enabled") {
            patch.enabled =
                collect(&mut problems, "enabled", parse_bool(object.get("enabled"))).flatten();
        }
        if object.contains_key("description") {
            patch.description = collect(
                &mut problems,
                "description",
                parse_description(object.get("description")),
            );
        }
        if problems.is_empty() {
            Ok(patch)
        } else {
            Err(DomainError::validation(problems))
        }
    }

    pub fn schema() -> Value {
        let mut schema = NewEndpoint::schema();
        schema
            .as_object_mut()
            .expect("an object")
            .remove("required");
        schema["properties"]["enabled"]["description"] = json!(
            "true enables the endpoint again (after the server disabled it too), false pauses it"
        );
        schema
    }

    /// `endpoint` with the patch applied at `now`. Enabling clears the reason it was disabled.
    pub fn apply(&self, endpoint: &WebhookEndpoint, now: Timestamp) -> WebhookEndpoint {
        let mut out = endpoint.clone();
        if let Some(url) = &self.url {
            out.url = url.as_str().to_owned();
        }
        if let Some(kinds) = &self.kinds {
            out.kinds = kinds.clone();
        }
        if let Some(enabled) = self.enabled {
            out.enabled = enabled;
            if enabled {
                out.disabled_reason = None;
            }
        }
        if let Some(description) = &self.description {
            out.description = description.clone();
        }
        out.updated_at = now;
        out
    }
}

fn collect<T>(problems: &mut Vec<FieldError>, field: &str, parsed: Result<T, String>) -> Option<T> {
    match parsed {
        Ok(v) => Some(v),
        Err(message) => {
            problems.push(FieldError::new(field, message));
            None
        }
    }
}

fn parse_url(value: &Value) -> Result<WebhookUrl, String> {
    let text = value.as_str().ok_or("must be a string")?;
    WebhookUrl::parse(text).map_err(|e| e.to_string())
}

fn parse_kinds(value: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or("must be an array of record kinds")?;
    let mut kinds: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let tag = item.as_str().ok_or("must be an array of record kinds")?;
        let kind = RecordKind::from_tag(tag).ok_or_else(|| {
            let known: Vec<&str> = RecordKind::EXPORT_ORDER.iter().map(|k| k.tag()).collect();
            format!("{tag:?} is not a record kind ({})", known.join(", "))
        })?;
        if kinds.iter().any(|k| k == kind.tag()) {
            return Err(format!("{tag:?} is listed twice"));
        }
        kinds.push(kind.tag().to_owned());
    }
    Ok(kinds)
}

fn parse_bool(value: Option<&Value>) -> Result<Option<bool>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err("must be true or false".into()),
    }
}

fn parse_description(value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_DESCRIPTION_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("is longer than {MAX_DESCRIPTION_CHARS} characters")),
        Some(_) => Err("must be a string".into()),
    }
}

/// The `webhook-id` of the delivery of a tenant's event `seq`: the same on every attempt and
/// every endpoint, so a receiver that sees it twice knows it is a repeat.
pub fn message_id(tenant: &TenantId, seq: u64) -> String {
    format!("evt_{}_{seq}", tenant.as_str())
}

/// The body of a delivery: `{"type": "<kind>.<op>", "timestamp", "data": <the event>}`, the
/// Standard Webhooks envelope, with the event as the change feed shows it (`event_json`).
pub fn payload(kind: RecordKind, op: &str, at: Timestamp, event_json: &[u8]) -> Vec<u8> {
    let head = json!({"type": format!("{}.{op}", kind.tag()), "timestamp": at.to_rfc3339()});
    let mut out = head.to_string().into_bytes();
    out.pop(); // the closing brace: the event follows as `data`
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(event_json);
    out.push(b'}');
    out
}

/// The body's JSON object, for tests and for a retry that shows what it sent.
pub fn payload_json(body: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice(body).ok()
}

/// Where an endpoint's deliveries stand: a cursor over the tenant's event sequence and the
/// state of the event at its head. Kept beside the endpoint, changed only by the deliverer
/// (and reset when the endpoint is enabled again).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The last sequence number delivered, or passed over (not of the endpoint's kinds).
    pub cursor: u64,
    /// Failed attempts at the event after the cursor.
    pub failures: u32,
    /// When the first of those failed.
    pub first_failure: Option<Timestamp>,
    /// Not before this instant (after a failure); none: as soon as an event is there.
    pub next_attempt: Option<Timestamp>,
    /// The number of the last attempt logged (attempts are numbered 1, 2, … per endpoint).
    pub attempts_logged: u64,
}

/// A node's hold on an endpoint's deliveries: only it delivers them until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: Timestamp,
}

/// An endpoint as the store keeps it: the record, its secret (`whsec_…`) and its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
    pub state: DeliveryState,
    pub lease: Option<Lease>,
}

impl StoredEndpoint {
    /// Whether `node`'s deliverer may take it at `now`: enabled, not held by another node's
    /// live lease (its own, left by a run that was killed, it takes back), and not waiting for
    /// a retry. (Whether an event is there is the caller's question.)
    pub fn due(&self, now: Timestamp, node: &str) -> bool {
        self.endpoint.enabled
            && self
                .lease
                .as_ref()
                .is_none_or(|l| l.until < now || l.owner == node)
            && self.state.next_attempt.is_none_or(|at| at <= now)
    }

    /// Whether `node` still holds it at `now`.
    pub fn held_by(&self, node: &str, now: Timestamp) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.owner == node && l.until >= now)
    }

    /// The endpoint with a patch applied: enabling one that was not enabled starts its
    /// retries afresh (the cursor stays: what it missed is still delivered, where kept).
    pub fn patched(&self, patch: &EndpointPatch, now: Timestamp) -> StoredEndpoint {
        let mut out = self.clone();
        out.endpoint = patch.apply(&self.endpoint, now);
        if out.endpoint.enabled && !self.endpoint.enabled {
            out.state.failures = 0;
            out.state.first_failure = None;
            out.state.next_attempt = None;
        }
        out
    }
}

/// What the deliverer reports after attempts on one endpoint, for the store to apply if the
/// node still holds the endpoint: the new state, the attempts to log, and whether it lets go.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub tenant: TenantId,
    pub endpoint: String,
    pub node: String,
    pub now: Timestamp,
    /// The cursor moves forward only.
    pub cursor: u64,
    pub failures: u32,
    pub first_failure: Option<Timestamp>,
    pub next_attempt: Option<Timestamp>,
    /// Logged with the next numbers.
    pub attempts: Vec<DeliveryAttempt>,
    /// Set: the endpoint is disabled with this reason (its retries ran out).
    pub disable: Option<String>,
    /// Keep the lease until then, or (none) let go of it.
    pub renew_until: Option<Timestamp>,
}

impl Settlement {
    /// `stored` with the settlement applied, or `None` when `node` no longer holds it (its
    /// lease ran out and another node took it). Numbers the attempts.
    pub fn apply(&self, stored: &StoredEndpoint) -> Option<(StoredEndpoint, Vec<DeliveryAttempt>)> {
        if !stored.held_by(&self.node, self.now) {
            return None;
        }
        let mut out = stored.clone();
        out.state.cursor = out.state.cursor.max(self.cursor);
        out.state.failures = self.failures;
        out.state.first_failure = self.first_failure;
        out.state.next_attempt = self.next_attempt;
        let mut attempts = self.attempts.clone();
        for attempt in &mut attempts {
            out.state.attempts_logged += 1;
            attempt.number = out.state.attempts_logged;
        }
        if let Some(reason) = &self.disable {
            out.endpoint.enabled = false;
            out.endpoint.disabled_reason = Some(reason.clone());
            out.endpoint.updated_at = self.now;
            out.state.next_attempt = None;
        }
        out.lease = self.renew_until.map(|until| Lease {
            owner: self.node.clone(),
            until,
        });
        Some((out, attempts))
    }
}

/// Attempts kept per endpoint: logging one more drops the oldest past this.
pub const MAX_ATTEMPTS_KEPT: u64 = 1000;

/// One attempt to deliver one event to one endpoint: what `…/deliveries` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// 1, 2, … per endpoint (given by the store when it logs the attempt).
    pub number: u64,
    /// The event's sequence number.
    pub seq: u64,
    /// `<kind>.<op>`.
    pub event_type: String,
    pub at: Timestamp,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Asked for through `…/retry`, not sent by the queue.
    pub manual: bool,
}

impl DeliveryAttempt {
    pub fn to_json(&self, tenant: &TenantId) -> Value {
        json!({
            "id": self.number.to_string(),
            "message_id": message_id(tenant, self.seq),
            "seq": self.seq,
            "type": self.event_type,
            "attempted_at": self.at.to_rfc3339(),
            "status_code": self.status,
            "error": self.error,
            "succeeded": self.error.is_none(),
            "trigger": if self.manual { "manual" } else { "queue" },
        })
    }

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["id", "message_id", "seq", "type", "attempted_at", "status_code",
                         "error", "succeeded", "trigger"],
            "properties": {
                "id": {"type": "string", "description": "the attempt's id (the deliveryId of its retry)"},
                "message_id": {"type": "string", "description": "the webhook-id sent: the same on every attempt of the event"},
                "seq": {"type": "integer", "minimum": 1, "description": "the change event's sequence number"},
                "type": {"type": "string", "description": "<kind>.<op>"},
                "attempted_at": {"type": "string", "format": "date-time"},
                "status_code": {"type": ["integer", "null"], "description": "the endpoint's HTTP status; null when it did not answer"},
                "error": {"type": ["string", "null"], "description": "why the attempt failed; null when it succeeded (2xx)"},
                "succeeded": {"type": "boolean"},
                "trigger": {"enum": ["queue", "manual"]},
            },
            "additionalProperties": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::CatalogKind;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn a_new_endpoint_needs_an_http_url_and_known_kinds() {
        let ok = NewEndpoint::parse(&json!({
            "url": "https://hooks.example.org/in", "kinds": ["registration", "order"],
            "description": "LMS"
        }))
        .unwrap();
        assert_eq!(ok.kinds, ["registration", "order"]);
        assert!(ok.enabled, "enabled by default");
        let endpoint = ok.into_endpoint("e1".into(), tenant(), Timestamp::now());
        assert!(endpoint.wants(RecordKind::Registration));
        assert!(!endpoint.wants(RecordKind::Catalog(CatalogKind::Contact)));
        let all = NewEndpoint::parse(&json!({"url": "http://example.org/"})).unwrap();
        assert!(all.kinds.is_empty());

        for (body, field) in [
            (json!({}), "url"),
            (json!({"url": "ftp://example.org/"}), "url"),
            (json!({"url": 7}), "url"),
            (json!({"url": "https://x.org/", "kinds": ["nope"]}), "kinds"),
            (
                json!({"url": "https://x.org/", "kinds": ["order", "order"]}),
                "kinds",
            ),
            (json!({"url": "https://x.org/", "kinds": "order"}), "kinds"),
            (
                json!({"url": "https://x.org/", "enabled": "yes"}),
                "enabled",
            ),
            (
                json!({"url": "https://x.org/", "description": "x".repeat(501)}),
                "description",
            ),
            (
                json!({"url": "https://x.org/", "secret": "whsec_x"}),
                "secret",
            ),
        ] {
            let error = NewEndpoint::parse(&body).unwrap_err();
            assert!(
                error.details.iter().any(|d| d.field == field),
                "{body}: {error:?}"
            );
        }
    }

    #[test]
    fn a_patch_changes_what_it_names_and_enabling_clears_the_reason() {
        let now = Timestamp::now();
        let mut endpoint =
            NewEndpoint::parse(&json!({"url": "https://a.org/", "description": "d"}))
                .unwrap()
                .into_endpoint("e1".into(), tenant(), now);
        endpoint.enabled = false;
        endpoint.disabled_reason = Some("failed for 24 h".into());

        let pause = EndpointPatch::parse(&json!({"kinds": ["contact"]})).unwrap();
        let paused = pause.apply(&endpoint, now);
        assert_eq!(paused.kinds, ["contact"]);
        assert!(!paused.enabled && paused.disabled_reason.is_some());
        assert_eq!(paused.description.as_deref(), Some("d"));

        let enable = EndpointPatch::parse(&json!({"enabled": true, "description": null})).unwrap();
        let enabled = enable.apply(&endpoint, now);
        assert!(enabled.enabled);
        assert_eq!(enabled.disabled_reason, None);
        assert_eq!(enabled.description, None);
        assert!(EndpointPatch::parse(&json!({"url": "javascript:x"})).is_err());
        assert!(EndpointPatch::parse(&json!({"id": "x"})).is_err());
    }

    fn stored(now: Timestamp) -> StoredEndpoint {
        StoredEndpoint {
            endpoint: NewEndpoint::parse(&json!({"url": "https://a.org/"}))
                .unwrap()
                .into_endpoint("e1".into(), tenant(), now),
            secret: "whsec_x".into(),
            state: DeliveryState {
                cursor: 4,
                ..DeliveryState::default()
            },
            lease: None,
        }
    }

    #[test]
    fn an_endpoint_is_due_unless_disabled_leased_elsewhere_or_waiting() {
        let now = Timestamp::now();
        let later = now.plus(std::time::Duration::from_secs(30));
        let mut e = stored(now);
        assert!(e.due(now, "a"));
        e.lease = Some(Lease {
            owner: "b".into(),
            until: later,
        });
        assert!(!e.due(now, "a"), "another node's live lease");
        assert!(e.due(now, "b"), "its own, left by a run that was killed");
        assert!(
            e.due(later.plus(std::time::Duration::from_secs(1)), "a"),
            "run out"
        );
        e.lease = None;
        e.state.next_attempt = Some(later);
        assert!(!e.due(now, "a"));
        assert!(e.due(later, "a"));
        e.state.next_attempt = None;
        e.endpoint.enabled = false;
        assert!(!e.due(now, "a"));
    }

    #[test]
    fn a_settlement_applies_only_for_the_lease_holder_and_numbers_the_attempts() {
        let now = Timestamp::now();
        let mut e = stored(now);
        e.state.attempts_logged = 7;
        let attempt = DeliveryAttempt {
            number: 0,
            seq: 5,
            event_type: "contact.created".into(),
            at: now,
            status: Some(500),
            error: Some("the endpoint answered 500".into()),
            manual: false,
        };
        let settlement = Settlement {
            tenant: tenant(),
            endpoint: "e1".into(),
            node: "a".into(),
            now,
            cursor: 3,
            failures: 1,
            first_failure: Some(now),
            next_attempt: None,
            attempts: vec![attempt.clone(), attempt],
            disable: Some("gave up".into()),
            renew_until: None,
        };
        assert!(settlement.apply(&e).is_none(), "not leased to a");
        e.lease = Some(Lease {
            owner: "a".into(),
            until: now,
        });
        let (after, logged) = settlement.apply(&e).expect("a holds it");
        assert_eq!(after.state.cursor, 4, "the cursor never moves back");
        assert_eq!(logged.iter().map(|a| a.number).collect::<Vec<_>>(), [8, 9]);
        assert_eq!(after.state.attempts_logged, 9);
        assert!(!after.endpoint.enabled);
        assert_eq!(after.endpoint.disabled_reason.as_deref(), Some("gave up"));
        assert_eq!(after.lease, None);
        // Enabled again: retries start afresh, the cursor stays.
        let resumed = after.patched(
            &EndpointPatch::parse(&json!({"enabled": true})).unwrap(),
            now,
        );
        assert!(resumed.endpoint.enabled && resumed.endpoint.disabled_reason.is_none());
        assert_eq!((resumed.state.failures, resumed.state.cursor), (0, 4));
    }

    #[test]
    fn the_payload_wraps_the_event_as_standard_webhooks_data() {
        let at = Timestamp::now();
        let event = br#"{"seq":7,"kind":"registration","op":"created"}"#;
        let body = payload(RecordKind::Registration, "created", at, event);
        let parsed = payload_json(&body).expect("valid JSON");
        assert_eq!(parsed["type"], "registration.created");
        assert_eq!(parsed["timestamp"], at.to_rfc3339());
        assert_eq!(parsed["data"]["seq"], 7);
        assert_eq!(message_id(&tenant(), 7), "evt_acme_7");
    }
}
