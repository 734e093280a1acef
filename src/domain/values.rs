//! Field value types: each knows how to parse itself from JSON (with a message naming what is
//! wrong) and how to write itself back. An invalid value cannot be constructed.

use super::access::WriteContext;
use super::enums::{BillingStatus, OrderStatus, RegistrationStatus};
use super::ids::RecordId;
use super::layout::{self, Layout};
use super::time::Timestamp;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;

/// Longest string field, in characters (Unicode scalar values, as JSON Schema's `maxLength`
/// counts them).
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Most items in one array field.
pub const MAX_ARRAY_ITEMS: usize = 1000;

/// A value of one record field.
pub trait FieldValue: Sized {
    fn parse(value: &Value) -> Result<Self, String>;
    fn to_json(&self) -> Value;
    /// JSON Schema (2020-12, as OpenAPI 3.1 uses) of exactly what `parse` accepts.
    fn schema() -> Value;
    /// The text an index stores for this value, for the fields lookups can use.
    fn as_key_text(&self) -> Option<&str> {
        None
    }
    /// Appends exactly the bytes `serde_json` writes for `to_json()`. Responses are written
    /// this way because building a `Value` per field (a map, a string copy each) cost more
    /// than decoding the record; the types on the hot path override it.
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_value(out, &self.to_json());
    }
}

/// Appends a serialisable value as compact JSON (a `Vec` cannot fail to take the bytes).
pub fn write_json_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("JSON into a Vec cannot fail");
}

/// Appends a JSON string: quoted and escaped as `serde_json` does.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    write_json_value(out, text);
}

/// Appends a number as [`number_to_json`] shows it.
pub fn write_json_number(out: &mut Vec<u8>, n: f64) {
    if let Some(whole) = whole_number(n) {
        write_json_value(out, &whole);
    } else {
        // serde_json writes a non-finite f64 as `null`, as `number_to_json` gives it.
        write_json_value(out, &n);
    }
}

fn expect_str(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("must be a string, not {}", kind_of(value)))
}

/// The JSON type of a value, for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_text(text: &str, allow_layout: bool) -> Result<(), String> {
    // Bytes bound characters from above: count only when the bytes could be too many.
    if text.len() > MAX_TEXT_CHARS && text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("must be at most {MAX_TEXT_CHARS} characters"));
    }
    if !may_hold_control(text.as_bytes()) {
        return Ok(());
    }
    let bad = text
        .chars()
        .find(|&c| c.is_control() && !(allow_layout && matches!(c, '\n' | '\r' | '\t')));
    match bad {
        Some(c) => Err(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Whether UTF-8 `bytes` may hold a control character (Unicode Cc: U+0000–U+001F, U+007F and
/// U+0080–U+009F). A byte test the compiler vectorises: every stored text is checked again
/// each time a record is decoded, and walking it char by char was a measurable part of every
/// read (docs/PERFORMANCE.md). Cc outside ASCII is U+0080–U+009F, which UTF-8 writes as 0xC2
/// then 0x80–0x9F, so text without bytes below 0x20, 0x7F or 0xC2 holds none. `true` only
/// means "look closer": 0xC2 also starts U+00A0–U+00BF (`é` does not; `£`, `©` do).
fn may_hold_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |seen, &b| {
        seen | (b < 0x20) | (b == 0x7F) | (b == 0xC2)
    })
}

/// Rust's `char::is_control` (Unicode category Cc) as a regular expression class body.
const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";
/// Cc without tab, newline and carriage return.
const CONTROL_BUT_LAYOUT: &str = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f";

/// The schema of a single-line string ([`Text`]).
pub fn text_schema() -> Value {
    json!({"type": "string", "maxLength": MAX_TEXT_CHARS, "pattern": format!("^[^{CONTROL}]*$")})
}

/// The schema of a multi-line string ([`Notes`]).
pub fn notes_schema() -> Value {
    json!({
        "type": "string",
        "maxLength": MAX_TEXT_CHARS,
        "pattern": format!("^[^{CONTROL_BUT_LAYOUT}]*$"),
    })
}

/// The schema of free-form JSON: `{}` (any value) with a description. It used to be a
/// recursive `anyOf` naming the string rules at every depth, but code generators cannot follow
/// a schema that refers to itself (openapi-python-client dropped every record that used it);
/// the server still checks every nested string (`check_json_strings`).
pub fn json_value_schema() -> Value {
    json!({
        "description": "Any JSON value; strings may span lines but hold no other control characters.",
    })
}

/// `schema`, a string schema whose `pattern` is `^[^…]*$` (no character of a class), that also
/// needs a character other than whitespace: one plain `pattern` rather than an `allOf`, which
/// code generators turn into an empty type. The leading part takes whitespace only, so the
/// expression cannot backtrack.
pub fn not_blank_schema(mut schema: Value) -> Value {
    let class = schema
        .get("pattern")
        .and_then(Value::as_str)
        .and_then(|p| p.strip_prefix("^[^"))
        .and_then(|p| p.strip_suffix("]*$"))
        .map(str::to_owned);
    match class {
        Some(class) => {
            schema["pattern"] = json!(format!("^[^\\S{class}]*[^\\s{class}][^{class}]*$"));
            schema["minLength"] = json!(1);
        }
        None => schema["pattern"] = json!("\\S"),
    }
    schema
}

fn array_schema(items: Value) -> Value {
    json!({"type": "array", "maxItems": MAX_ARRAY_ITEMS, "items": items})
}

/// A single-line string: UTF-8 without control characters, at most 64 Ki characters. Checked again when
/// decoded from storage, so corrupt bytes cannot smuggle in an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl TryFrom<String> for Text {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Text::new(text)
    }
}

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.0
    }
}

impl Text {
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        check_text(&text, false).map(|()| Text(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FieldValue for Text {
    fn parse(value: &Value) -> Result<Self, String> {
        Text::new(expect_str(value)?)
    }
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_str(out, &self.0);
    }
    fn schema() -> Value {
        text_schema()
    }
    fn as_key_text(&self) -> Option<&str> {
        Some(&self.0)
    }
}

/// Free text that may span lines: like [`Text`] but newlines and tabs are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Notes(String);

impl TryFrom<String> for Notes {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Notes::new(text)
    }
}

impl From<Notes> for String {
    fn from(notes: Notes) -> String {
        notes.0
    }
}

impl Notes {
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        check_text(&text, true).map(|()| Notes(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FieldValue for Notes {
    fn parse(value: &Value) -> Result<Self, String> {
        let text = expect_str(value)?;
        check_text(text, true).map(|()| Notes(text.to_owned()))
    }
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_str(out, &self.0);
    }
    fn schema() -> Value {
        notes_schema()
    }
}

impl FieldValue for RecordId {
    fn parse(value: &Value) -> Result<Self, String> {
        RecordId::parse(expect_str(value)?)
    }
    fn to_json(&self) -> Value {
        Value::String(self.as_str().to_owned())
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_str(out, self.as_str());
    }
    fn schema() -> Value {
        RecordId::schema()
    }
    fn as_key_text(&self) -> Option<&str> {
        Some(self.as_str())
    }
}

/// Numbers go out as integers when they are whole, so `0` comes back as `0`, not `0.0`.
pub fn number_to_json(n: f64) -> Value {
    match whole_number(n) {
        Some(whole) => Value::from(whole),
        None => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
    }
}

/// `n` as an integer when it is whole and exactly representable.
fn whole_number(n: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (n.fract() == 0.0 && n.abs() < EXACT).then_some(n as i64)
}

impl FieldValue for f64 {
    fn parse(value: &Value) -> Result<Self, String> {
        match value.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(format!("must be a finite number, not {}", kind_of(value))),
        }
    }
    fn to_json(&self) -> Value {
        number_to_json(*self)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_number(out, *self);
    }
    fn schema() -> Value {
        json!({"type": "number"})
    }
}

/// A JSON number as a non-negative integer: `2` or `2.0` (JSON Schema counts a number with a
/// zero fraction as an integer, and some clients write whole numbers that way); not `2.5`,
/// not one beyond `u64`.
pub fn whole_u64(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    // 2^64 as f64 is exact; anything below it with no fraction fits a u64.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && (0.0..LIMIT).contains(&n) => Some(n as u64),
        _ => None,
    }
}

impl FieldValue for u64 {
    fn parse(value: &Value) -> Result<Self, String> {
        whole_u64(value).ok_or_else(|| "must be a non-negative integer".to_owned())
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_value(out, self);
    }
    fn schema() -> Value {
        json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
    }
}

/// A share of completion: a number from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percentage(f64);

impl TryFrom<f64> for Percentage {
    type Error = String;
    fn try_from(n: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&n) {
            Ok(Percentage(n))
        } else {
            Err(format!("{n} is not a percentage"))
        }
    }
}

impl From<Percentage> for f64 {
    fn from(p: Percentage) -> f64 {
        p.0
    }
}

impl FieldValue for Percentage {
    fn parse(value: &Value) -> Result<Self, String> {
        match f64::parse(value)? {
            n if (0.0..=100.0).contains(&n) => Ok(Percentage(n)),
            _ => Err("must be between 0 and 100".into()),
        }
    }
    fn to_json(&self) -> Value {
        number_to_json(self.0)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_number(out, self.0);
    }
    fn schema() -> Value {
        json!({"type": "number", "minimum": 0, "maximum": 100})
    }
}

impl FieldValue for bool {
    fn parse(value: &Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| format!("must be true or false, not {}", kind_of(value)))
    }
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn schema() -> Value {
        json!({"type": "boolean"})
    }
}

impl FieldValue for Timestamp {
    fn parse(value: &Value) -> Result<Self, String> {
        Timestamp::parse_rfc3339(expect_str(value)?)
    }
    fn to_json(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_str(out, &self.to_rfc3339());
    }
    fn schema() -> Value {
        json!({"type": "string", "format": "date-time"})
    }
}

fn expect_array(value: &Value) -> Result<&Vec<Value>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("must be an array, not {}", kind_of(value)))?;
    if items.len() > MAX_ARRAY_ITEMS {
        return Err(format!("must have at most {MAX_ARRAY_ITEMS} items"));
    }
    Ok(items)
}

/// A list of single-line strings (e.g. `exam_offering_ids`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextList(Vec<Text>);

impl FieldValue for TextList {
    fn parse(value: &Value) -> Result<Self, String> {
        expect_array(value)?
            .iter()
            .enumerate()
            .map(|(i, item)| Text::parse(item).map_err(|e| format!("item {i} {e}")))
            .collect::<Result<_, _>>()
            .map(TextList)
    }
    fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(Text::to_json).collect())
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(out);
        }
        out.push(b']');
    }
    fn schema() -> Value {
        array_schema(text_schema())
    }
}

/// Free-form JSON kept as its text: bincode cannot carry `serde_json::Value` itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JsonText(String);

impl TryFrom<String> for JsonText {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        // A syntax check without building the `Value` (which was half of a decode); the
        // text goes out as it is (`write_json`), so it only has to be JSON.
        serde_json::from_str::<de::IgnoredAny>(&text)
            .map(|_| JsonText(text))
            .map_err(|e| format!("stored JSON does not parse: {e}"))
    }
}

impl From<JsonText> for String {
    fn from(json: JsonText) -> String {
        json.0
    }
}

impl JsonText {
    fn of(value: &Value) -> Self {
        JsonText(value.to_string())
    }

    fn value(&self) -> Value {
        // The text was produced by `of`, so it always parses; a corrupt record shows as null.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The stored text is already what `value()` serialises to: `of` wrote it compact, in
    /// its keys' order, with serde_json's own number formatting, so it goes out as it is.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

fn check_json_strings(value: &Value, path: &str) -> Result<(), String> {
    match value {
        Value::String(s) => check_text(s, true).map_err(|e| format!("{path} {e}")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_json_strings(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_text(k, false).map_err(|e| format!("{path} key {e}"))?;
            check_json_strings(v, &format!("{path}.{k}"))
        }),
        _ => Ok(()),
    }
}

/// `custom_field_values`: an array of objects, `{"custom_field_id": "...", "value": <any>}` expected;
/// other keys are kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomFieldValues(JsonText);

impl FieldValue for CustomFieldValues {
    fn parse(value: &Value) -> Result<Self, String> {
        for (i, item) in expect_array(value)?.iter().enumerate() {
            let object = item
                .as_object()
                .ok_or_else(|| format!("item {i} must be an object, not {}", kind_of(item)))?;
            if let Some(id) = object.get("custom_field_id") {
                if !id.is_string() {
                    return Err(format!("item {i}: custom_field_id must be a string"));
                }
            }
            check_json_strings(item, &format!("item {i}"))?;
        }
        Ok(CustomFieldValues(JsonText::of(value)))
    }
    fn to_json(&self) -> Value {
        self.0.value()
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        self.0.write_json(out);
    }
    fn schema() -> Value {
        array_schema(json!({
            "type": "object",
            "properties": {"custom_field_id": notes_schema()},
            "propertyNames": text_schema(),
            "additionalProperties": json_value_schema(),
        }))
    }
}

/// An array of arbitrary JSON values (e.g. `sys_calculated_field_errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonList(JsonText);

impl FieldValue for JsonList {
    fn parse(value: &Value) -> Result<Self, String> {
        expect_array(value)?;
        check_json_strings(value, "value")?;
        Ok(JsonList(JsonText::of(value)))
    }
    fn to_json(&self) -> Value {
        self.0.value()
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        self.0.write_json(out);
    }
    fn schema() -> Value {
        array_schema(json_value_schema())
    }
}

/// Who made the last change: the key, its role, when, and in which request. Set by the server
/// only.
///
/// Stored with all four fields (bincode has no optional fields). Values of format 1 have only
/// the first three: the hand-written `Deserialize` below reads the layout the codec announces
/// (see [`super::layout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityContext {
    pub key_id: String,
    pub role: String,
    pub at: Timestamp,
    /// The `X-Request-Id` of the request that made the change. `None` in records stored in
    /// format 1 and for changes no request made (the demo data).
    pub request_id: Option<String>,
}

impl SecurityContext {
    /// The context of a change made under `ctx`.
    pub fn of(ctx: &WriteContext) -> Self {
        SecurityContext {
            key_id: ctx.actor.key_id.clone(),
            role: ctx.actor.role.as_str().to_owned(),
            at: ctx.at,
            request_id: ctx.request_id.clone(),
        }
    }
}

/// The fields of each layout, in stored order.
const CONTEXT_FIELDS_V1: &[&str] = &["key_id", "role", "at"];
const CONTEXT_FIELDS_V2: &[&str] = &["key_id", "role", "at", "request_id"];

impl<'de> Deserialize<'de> for SecurityContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = match layout::being_read() {
            Layout::V1 => CONTEXT_FIELDS_V1,
            Layout::V2 | Layout::V3 | Layout::V4 | Layout::V5 | Layout::V7 => CONTEXT_FIELDS_V2,
        };
        // As a derived struct does: bincode reads it as a tuple of exactly `fields.len()`
        // values, self-describing formats as a map.
        deserializer.deserialize_struct("SecurityContext", fields, ContextVisitor { fields })
    }
}

struct ContextVisitor {
    fields: &'static [&'static str],
}

impl<'de> Visitor<'de> for ContextVisitor {
    type Value = SecurityContext;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a security context ({})", self.fields.join(", "))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SecurityContext, A::Error> {
        let missing = |i: usize| de::Error::invalid_length(i, &self);
        let key_id = seq.next_element()?.ok_or_else(|| missing(0))?;
        let role = seq.next_element()?.ok_or_else(|| missing(1))?;
        let at = seq.next_element()?.ok_or_else(|| missing(2))?;
        let request_id = if self.fields.len() > 3 {
            seq.next_element()?.ok_or_else(|| missing(3))?
        } else {
            None
        };
        Ok(SecurityContext {
            key_id,
            role,
            at,
            request_id,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecurityContext, A::Error> {
        let (mut key_id, mut role, mut at, mut request_id) = (None, None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "key_id" => key_id = Some(map.next_value()?),
                "role" => role = Some(map.next_value()?),
                "at" => at = Some(map.next_value()?),
                "request_id" => request_id = map.next_value()?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(SecurityContext {
            key_id: key_id.ok_or_else(|| de::Error::missing_field("key_id"))?,
            role: role.ok_or_else(|| de::Error::missing_field("role"))?,
            at: at.ok_or_else(|| de::Error::missing_field("at"))?,
            request_id,
        })
    }
}

impl FieldValue for SecurityContext {
    fn parse(value: &Value) -> Result<Self, String> {
        let object = value.as_object().ok_or("must be an object")?;
        let text = |name: &str| -> Result<String, String> {
            object
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{name} must be a string"))
        };
        let request_id = match object.get("request_id") {
            None | Some(Value::Null) => None,
            Some(_) => Some(text("request_id")?),
        };
        Ok(SecurityContext {
            key_id: text("key_id")?,
            role: text("role")?,
            at: Timestamp::parse_rfc3339(&text("at")?)?,
            request_id,
        })
    }
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("key_id".into(), Value::String(self.key_id.clone()));
        map.insert("role".into(), Value::String(self.role.clone()));
        map.insert("at".into(), self.at.to_json());
        if let Some(id) = &self.request_id {
            map.insert("request_id".into(), Value::String(id.clone()));
        }
        Value::Object(map)
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"key_id\":");
        write_json_str(out, &self.key_id);
        out.extend_from_slice(b",\"role\":");
        write_json_str(out, &self.role);
        out.extend_from_slice(b",\"at\":");
        self.at.write_json(out);
        if let Some(id) = &self.request_id {
            out.extend_from_slice(b",\"request_id\":");
            write_json_str(out, id);
        }
        out.push(b'}');
    }
    fn schema() -> Value {
        json!({
            "type": "object",
            "description": "The key that made the last change, its role, when, and the request's X-Request-Id.",
            "required": ["key_id", "role", "at"],
            "properties": {
                "key_id": {"type": "string"},
                "role": {"type": "string"},
                "at": <Timestamp as FieldValue>::schema(),
                "request_id": {"type": "string"},
            },
            "additionalProperties": false,
        })
    }
}

macro_rules! enum_field {
    ($ty:ty) => {
        impl FieldValue for $ty {
            fn parse(value: &Value) -> Result<Self, String> {
                <$ty>::parse(expect_str(value)?)
            }
            fn to_json(&self) -> Value {
                Value::String(self.as_str().to_owned())
            }
            fn write_json(&self, out: &mut Vec<u8>) {
                write_json_str(out, self.as_str());
            }
            fn as_key_text(&self) -> Option<&str> {
                Some(self.as_str())
            }
            fn schema() -> Value {
                <$ty>::schema()
            }
        }
    };
}

enum_field!(RegistrationStatus);
enum_field!(OrderStatus);
enum_field!(BillingStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_byte_test_never_misses_a_control_character() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let text = format!("ab{c}cd");
            if c.is_control() {
                assert!(may_hold_control(text.as_bytes()), "U+{:04X}", c as u32);
            }
        }
        assert!(!may_hold_control("Zoë Ångström 東京 – plain".as_bytes()));
        assert!(may_hold_control("a\tb".as_bytes()));
    }

    #[test]
    fn text_rejects_control_characters_but_notes_keep_newlines() {
        assert!(Text::parse(&json!("a\u{0}b")).is_err());
        assert!(Text::parse(&json!("a\nb")).is_err());
        assert!(Notes::parse(&json!("line 1\nline 2\tend")).is_ok());
        assert!(Notes::parse(&json!("bell \u{7}")).is_err());
        assert!(Text::parse(&json!("x".repeat(MAX_TEXT_CHARS + 1))).is_err());
        assert!(Text::parse(&json!(5)).is_err());
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        assert_eq!(u64::parse(&json!(2)), Ok(2));
        assert_eq!(u64::parse(&json!(2.0)), Ok(2));
        assert_eq!(u64::parse(&json!(0.0)), Ok(0));
        assert!(u64::parse(&json!(2.5)).is_err());
        assert!(u64::parse(&json!(-1)).is_err());
        assert!(u64::parse(&json!(-2.0)).is_err());
        assert!(u64::parse(&json!(1e20)).is_err());
        assert!(u64::parse(&json!("2")).is_err());
    }

    #[test]
    fn numbers_must_be_finite_and_whole_ones_print_as_integers() {
        assert_eq!(f64::parse(&json!(2.5)), Ok(2.5));
        assert!(f64::parse(&json!("2")).is_err());
        assert_eq!(number_to_json(3.0), json!(3));
        assert_eq!(number_to_json(3.25), json!(3.25));
        assert!(Percentage::parse(&json!(100.5)).is_err());
        assert!(Percentage::parse(&json!(-1)).is_err());
    }

    fn context(request_id: Option<&str>) -> SecurityContext {
        SecurityContext {
            key_id: "k1".into(),
            role: "write".into(),
            at: Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").unwrap(),
            request_id: request_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_security_context_shows_its_request_id_only_when_it_has_one() {
        let with = context(Some("req-1"));
        assert_eq!(
            with.to_json(),
            json!({"key_id": "k1", "role": "write", "at": "2026-01-02T03:04:05Z", "request_id": "req-1"})
        );
        assert_eq!(SecurityContext::parse(&with.to_json()), Ok(with));
        let without = context(None);
        assert_eq!(
            without.to_json(),
            json!({"key_id": "k1", "role": "write", "at": "2026-01-02T03:04:05Z"})
        );
        assert_eq!(
            SecurityContext::parse(&without.to_json()),
            Ok(without.clone())
        );
        let mut null = without.to_json();
        null["request_id"] = Value::Null;
        assert_eq!(SecurityContext::parse(&null), Ok(without));
        let mut number = null;
        number["request_id"] = json!(7);
        assert!(SecurityContext::parse(&number).is_err());
    }

    #[test]
    fn a_security_context_reads_from_self_describing_formats_too() {
        for ctx in [context(Some("req-1")), context(None)] {
            let as_json = serde_json::to_value(&ctx).unwrap();
            assert_eq!(
                serde_json::from_value::<SecurityContext>(as_json).unwrap(),
                ctx
            );
        }
        let old = json!({"key_id": "k1", "role": "write", "at": {"secs": 0, "nanos": 0}});
        assert_eq!(
            serde_json::from_value::<SecurityContext>(old)
                .unwrap()
                .request_id,
            None
        );
    }

    #[test]
    fn custom_field_values_keep_their_shape() {
        let v = json!([{"custom_field_id": "cf1", "value": {"nested": [1, "two"]}, "extra": true}]);
        assert_eq!(CustomFieldValues::parse(&v).unwrap().to_json(), v);
        assert!(CustomFieldValues::parse(&json!([1])).is_err());
        assert!(CustomFieldValues::parse(&json!([{"custom_field_id": 1}])).is_err());
    }
}
