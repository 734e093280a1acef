//! Rendering: strict undefined variables (a typo is an error, not an empty string), HTML
//! auto-escaping for the html part only, and bounds on work and output so a hostile template
//! cannot loop forever or fill memory.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use std::fmt;

/// Most instructions one part may execute.
const FUEL: u64 = 200_000;
/// Largest rendered part.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// A template: a subject and an HTML and/or a text body, in minijinja syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTemplate {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// Which part failed and where; `line` is 1-based within that part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub part: &'static str,
    pub line: Option<usize>,
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

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn render_part(
    part: &'static str,
    source: &str,
    scope: &serde_json::Value,
) -> Result<String, RenderError> {
    let fail = |e: minijinja::Error| RenderError {
        part,
        line: e.line(),
        message: match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    let mut env = environment();
    env.add_template(part, source).map_err(fail)?;
    let template = env.get_template(part).map_err(fail)?;
    let output = template
        .render(minijinja::Value::from_serialize(scope))
        .map_err(fail)?;
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(RenderError {
            part,
            line: None,
            message: format!("renders to more than {MAX_OUTPUT_BYTES} bytes"),
        });
    }
    Ok(output)
}

/// Renders every part of `template` with the top-level keys of `scope` as variables.
pub fn render(
    template: &EmailTemplate,
    scope: &serde_json::Value,
) -> Result<RenderedEmail, RenderError> {
    let subject = render_part("subject", &template.subject, scope)?;
    let subject = subject.trim().to_owned();
    if subject.contains(['\r', '\n']) {
        return Err(RenderError {
            part: "subject",
            line: None,
            message: "renders to more than one line".into(),
        });
    }
    let html = template
        .html
        .as_deref()
        .map(|s| render_part("html", s, scope))
        .transpose()?;
    let text = template
        .text
        .as_deref()
        .map(|s| render_part("text", s, scope))
        .transpose()?;
    Ok(RenderedEmail {
        subject,
        html,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(subject: &str, html: Option<&str>, text: Option<&str>) -> EmailTemplate {
        EmailTemplate {
            subject: subject.into(),
            html: html.map(Into::into),
            text: text.map(Into::into),
        }
    }

    fn scope() -> serde_json::Value {
        json!({"registration": {"name": "Ada <Lovelace>", "number": 7}, "course": null})
    }

    #[test]
    fn variables_render_and_only_html_is_escaped() {
        let out = render(
            &template(
                "Hi {{ registration.name }}",
                Some("<b>{{ registration.name }}</b>"),
                Some("{{ registration.name }} #{{ registration.number }}"),
            ),
            &scope(),
        )
        .unwrap();
        assert_eq!(out.subject, "Hi Ada <Lovelace>");
        assert_eq!(out.html.unwrap(), "<b>Ada &lt;Lovelace&gt;</b>");
        assert_eq!(out.text.unwrap(), "Ada <Lovelace> #7");
    }

    #[test]
    fn an_undefined_variable_is_an_error_on_its_line() {
        let err = render(
            &template("s", Some("line one\n{{ registration.nmae }}"), None),
            &scope(),
        )
        .unwrap_err();
        assert_eq!((err.part, err.line), ("html", Some(2)));
        assert!(
            err.to_string().starts_with("html template, line 2"),
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = render(&template("s", None, Some("ok\nok\n{% if %}")), &scope()).unwrap_err();
        assert_eq!((err.part, err.line), ("text", Some(3)));
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let err = render(&template("s", None, Some("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")), &scope())
            .unwrap_err();
        assert_eq!(err.part, "text");
    }

    #[test]
    fn a_subject_must_be_one_line() {
        assert!(render(&template("a\nb", None, Some("x")), &scope()).is_err());
        assert_eq!(
            render(&template("  padded \n", None, Some("x")), &scope())
                .unwrap()
                .subject,
            "padded"
        );
    }
}
