//! Rendering: strict undefined variables (a typo is an error, not an empty string), HTML
//! auto-escaping for the html part only, and, through `sandbox`, bounds on work, time and
//! output, since templates come from API clients. These bounds give precise messages; the
//! guarantee on memory and time is the worker process (`worker`) this runs in.

use super::sandbox::{self, MAX_OUTPUT_BYTES};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Wall-clock time one render (all its parts) may take. The sandbox checks it at every print
/// and filter call; the worker pool kills a worker still busy shortly after it.
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(3);

/// Longest piece of template source quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 80;

/// A template: a subject and an HTML and/or a text body, in minijinja syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTemplate {
    /// Rendered without escaping; must come out as one line (it becomes a header).
    pub subject: String,
    /// Rendered with HTML auto-escaping, since values come from client-written records.
    pub html: Option<String>,
    /// Rendered without escaping.
    pub text: Option<String>,
}

/// A rendered message: what `SmtpRelay::send` delivers and what the outbox keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedEmail {
    /// One line, trimmed.
    pub subject: String,
    /// Present exactly when the template had an html part.
    pub html: Option<String>,
    /// Present exactly when the template had a text part.
    pub text: Option<String>,
}

/// Which part failed and where; `line` is 1-based within that part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// `"subject"`, `"html"` or `"text"`: clients map it to the field they sent.
    pub part: &'static str,
    /// None when the failure belongs to the whole part (too large, multi-line subject).
    pub line: Option<usize>,
    /// What went wrong, without the part and line (`Display` adds those).
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} template, line {line}: {}", self.part, self.message),
            None => write!(f, "{} template: {}", self.part, self.message),
        }
    }
}

impl std::error::Error for RenderError {}

/// Renders every part of `template` with the top-level keys of `scope` as variables.
pub fn render(
    template: &EmailTemplate,
    scope: &serde_json::Value,
) -> Result<RenderedEmail, RenderError> {
    render_reporting(template, scope, |_| {})
}

/// Like `render`, telling `starting` the name of each part before it is rendered: the render
/// worker passes it on, so that a worker killed mid-render can be blamed on its part.
pub fn render_reporting(
    template: &EmailTemplate,
    scope: &serde_json::Value,
    mut starting: impl FnMut(&'static str),
) -> Result<RenderedEmail, RenderError> {
    // One deadline for all parts: the stated cap is per render, not per part.
    let deadline = Instant::now() + MAX_RENDER_TIME;
    // Converted once: every part sees the same (cheaply cloned) value.
    let scope = Value::from_serialize(scope);
    starting("subject");
    let subject = render_part("subject", &template.subject, &scope, deadline)?;
    // A trailing newline is what `{% endif %}\n` leaves behind, not a second line.
    let subject = subject.trim().to_owned();
    if subject.chars().any(char::is_control) {
        // A header cannot hold a line break, and silently joining lines would send a
        // subject the author never wrote.
        return Err(RenderError {
            part: "subject",
            line: None,
            message: "must render to a single line without control characters".into(),
        });
    }
    let html = template
        .html
        .as_deref()
        .map(|s| {
            starting("html");
            render_part("html", s, &scope, deadline)
        })
        .transpose()?;
    let text = template
        .text
        .as_deref()
        .map(|s| {
            starting("text");
            render_part("text", s, &scope, deadline)
        })
        .transpose()?;
    Ok(RenderedEmail {
        subject,
        html,
        text,
    })
}

fn render_part(
    part: &'static str,
    source: &str,
    scope: &Value,
    deadline: Instant,
) -> Result<String, RenderError> {
    // minijinja is not meant to panic, but it runs whatever a client wrote, and a panic here
    // would end the worker's loop with it.
    panic::catch_unwind(AssertUnwindSafe(|| {
        render_part_unguarded(part, source, scope, deadline)
    }))
    .unwrap_or_else(|_| {
        Err(RenderError {
            part,
            line: None,
            message: "cannot be rendered".into(),
        })
    })
}

fn render_part_unguarded(
    part: &'static str,
    source: &str,
    scope: &Value,
    deadline: Instant,
) -> Result<String, RenderError> {
    let fail = |e: minijinja::Error| RenderError {
        part,
        line: e.line(),
        message: describe(&e, source),
    };
    let env = environment(deadline);
    let template = env.template_from_named_str(part, source).map_err(fail)?;
    let mut out = CappedBuffer::default();
    match template.render_captured_to(scope.clone(), &mut out) {
        Ok(_) => {}
        Err(_) if out.overflowed => {
            return Err(RenderError {
                part,
                line: None,
                message: format!("renders to more than {MAX_OUTPUT_BYTES} bytes"),
            })
        }
        Err(e) => return Err(fail(e)),
    }
    String::from_utf8(out.bytes).map_err(|_| RenderError {
        part,
        line: None,
        message: "renders to invalid UTF-8".into(),
    })
}

/// minijinja's own message for an undefined value names neither the variable nor the
/// attribute; the span it reports does, so quote it.
fn describe(e: &minijinja::Error, source: &str) -> String {
    let quoted = e
        .range()
        .and_then(|r| source.get(r))
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.contains('\n'));
    match (e.kind(), e.detail(), quoted) {
        (ErrorKind::UndefinedError, _, Some(expr)) => {
            format!("{} '{}'", e.kind(), shorten(expr))
        }
        (kind, Some(detail), _) => format!("{kind}: {detail}"),
        (kind, None, _) => kind.to_string(),
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn environment(deadline: Instant) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Templates are named after their part, so only the html part is escaped.
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    sandbox::bound(&mut env, deadline);
    env
}

/// The rendered part, refusing to grow past `MAX_OUTPUT_BYTES`: the error stops minijinja
/// mid-render, and `overflowed` tells that error apart from the template's own.
#[derive(Default)]
struct CappedBuffer {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("rendered part too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn template(subject: &str, html: Option<&str>, text: Option<&str>) -> EmailTemplate {
        EmailTemplate {
            subject: subject.into(),
            html: html.map(Into::into),
            text: text.map(Into::into),
        }
    }

    fn scope() -> serde_json::Value {
        json!({
            "registration": {"name": "Ada <Lovelace> & \"co\"", "number": 7, "tags": ["a", "b"]},
            "contact": {"first_name": "Ada"},
            "course": null,
        })
    }

    fn text(source: &str) -> Result<String, RenderError> {
        render(&template("s", None, Some(source)), &scope()).map(|r| r.text.unwrap_or_default())
    }

    fn html(source: &str) -> Result<String, RenderError> {
        render(&template("s", Some(source), None), &scope()).map(|r| r.html.unwrap_or_default())
    }

    #[test]
    fn variables_render_and_only_html_is_escaped() {
        let out = render(
            &template(
                "Hi {{ registration.name }}",
                Some("<b>{{ registration.name }}</b>{{ '<i>ok</i>'|safe }}"),
                Some("{{ registration.name }} #{{ registration.number }}"),
            ),
            &scope(),
        )
        .unwrap();
        assert_eq!(out.subject, "Hi Ada <Lovelace> & \"co\"");
        assert_eq!(
            out.html.unwrap(),
            "<b>Ada &lt;Lovelace&gt; &amp; &quot;co&quot;</b><i>ok</i>"
        );
        assert_eq!(out.text.unwrap(), "Ada <Lovelace> & \"co\" #7");
    }

    #[test]
    fn only_the_parts_given_are_rendered() {
        let out = render(&template("s", None, Some("t")), &scope()).unwrap();
        assert_eq!((out.html, out.text.as_deref()), (None, Some("t")));
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it_on_its_line() {
        let err = html("line one\n<p>{{ registration.nmae }}</p>").unwrap_err();
        assert_eq!((err.part, err.line), ("html", Some(2)));
        assert_eq!(
            err.to_string(),
            "html template, line 2: undefined value 'registration.nmae'"
        );

        let err = text("a\nb\n{% if nope %}x{% endif %}").unwrap_err();
        assert_eq!((err.part, err.line), ("text", Some(3)));
        assert!(err.message.contains("'nope'"), "{err}");

        let err = render(&template("{{ course.name }}", None, Some("x")), &scope()).unwrap_err();
        assert_eq!(
            (err.part, err.line),
            ("subject", Some(1)),
            "null has no attributes"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = text("ok\nok\n{% if %}").unwrap_err();
        assert_eq!((err.part, err.line), ("text", Some(3)));
        assert!(err.message.starts_with("syntax error"), "{err}");
        let err = html("{{ registration.name").unwrap_err();
        assert_eq!((err.part, err.line), ("html", Some(1)));
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let err = text(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert_eq!(err.part, "text");
        assert!(err.message.contains("fuel"), "{err}");
        let err = text("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert_eq!(err.part, "text");
    }

    #[test]
    fn output_is_capped_while_it_is_written() {
        let err = text("{{ 'x' * 2000000 }}").unwrap_err();
        assert_eq!((err.part, err.line), ("text", None));
        assert!(err.message.contains("more than"), "{err}");

        // Printed in full this list is gigabytes; it must stop at the cap, and quickly.
        let start = Instant::now();
        let err = html("{{ registration.tags * 100000000 }}").unwrap_err();
        assert_eq!(err.part, "html");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn captured_output_counts_toward_the_budget() {
        // A `{% set %}` block never reaches the output writer.
        let err = text(
            "{% set x %}{% for i in range(10) %}{{ 'y' * 1000000 }}{% endfor %}{% endset %}ok",
        )
        .unwrap_err();
        assert!(err.message.contains("prints more than"), "{err}");
    }

    #[test]
    fn indentation_widths_are_capped() {
        assert_eq!(text("{{ 'a\nb'|indent(2) }}").unwrap(), "a\n  b");
        assert_eq!(
            text("{{ 'a\nb'|indent(width=2, first=true) }}").unwrap(),
            "  a\n  b"
        );
        assert_eq!(text("{{ [1]|tojson(indent=2) }}").unwrap(), "[\n  1\n]");
        assert_eq!(text("{{ [1]|tojson(true) }}").unwrap(), "[\n  1\n]");
        assert_eq!(text("{{ [1]|tojson }}").unwrap(), "[1]");
        for hostile in [
            "{{ 'a\nb'|indent(100000000000) }}",
            "{{ 'a\nb'|indent(width=100000000000) }}",
            "{{ [1]|tojson(indent=100000000000) }}",
            "{{ [1]|tojson(100000000000) }}",
        ] {
            let err = text(hostile).unwrap_err();
            assert!(err.message.contains("limited"), "{hostile}: {err}");
        }
    }

    #[test]
    fn a_subject_must_be_one_line() {
        let err = render(&template("a\nb", None, Some("x")), &scope()).unwrap_err();
        assert_eq!((err.part, err.line), ("subject", None));
        let err = render(
            &template("{{ 'a' ~ '\r\n' ~ 'Bcc: x@example.org' }}", None, Some("x")),
            &scope(),
        )
        .unwrap_err();
        assert_eq!(err.part, "subject");
        assert!(render(&template("bell \u{7}", None, Some("x")), &scope()).is_err());
        let padded = render(
            &template("  {% if true %}padded{% endif %} \n", None, Some("x")),
            &scope(),
        )
        .unwrap();
        assert_eq!(padded.subject, "padded");
    }

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        for source in [
            "{{",
            "{%",
            "{% endfor %}",
            "{{ 1 / 0 }}",
            "{{ 9223372036854775807 + 1 }}",
            "{{ registration.number * 'x' }}",
            "{% include 'other' %}",
            "{% extends 'base' %}",
            "{{ range(10000000) }}",
            "{{ registration.name[1000] }}",
            "{{ registration.tags * 100000000 * 100000000 * 100000000 }}",
            "{{ (registration.tags * 100000000 * 100000000 * 100000000)|length }}",
            "{{ ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1 }}",
        ] {
            let _ = text(source);
            let _ = html(source);
        }
        // A scope that is not an object has no variables, but is no reason to fail.
        assert_eq!(
            render(&template("s", None, Some("plain")), &json!([1, 2]))
                .unwrap()
                .text
                .unwrap(),
            "plain"
        );
        assert!(render(&template("s", None, Some("{{ a }}")), &json!(null)).is_err());
    }
}
