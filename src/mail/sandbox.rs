//! What one template may cost. Templates come from API clients, so rendering one must not
//! hang a worker or take the process down with it.
//!
//! minijinja's fuel counts instructions, but one instruction can do unbounded work: a filter
//! walks a list repeated a hundred million times (`tags * 100000000` is lazy and costs one
//! instruction), `indent(10**11)` asks for a hundred gigabytes of spaces, and a failed
//! allocation aborts the process rather than fail the render. So every builtin filter is
//! replaced by a wrapper that first checks what the call is about to cost, values are
//! measured before they are printed, and both check a wall-clock deadline.
//!
//! Not covered, because minijinja has no hook for operators: `~`, `+` and `*` themselves
//! (`*` on strings stops at 100 MB per operation inside minijinja; `~` doubling a string
//! through `{% set %}` has no bound), and `in`/`==` walking a lazily repeated list; the
//! deadline catches such work only at the next print or filter call. That is why templates
//! are rendered in a worker process with OS limits on its memory and CPU, killed at the
//! deadline (`worker`): these checks give clear messages, the process boundary the guarantee.

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{filters, Environment, Error, ErrorKind, State, Value};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Instructions one part may execute (the number docs/API.md states): far above any real
/// email (a loop over a few hundred items with some branches), far below what keeps a worker
/// busy for long.
pub(super) const FUEL: u64 = 200_000;
/// Largest rendered part.
pub(super) const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Bytes that values may print in one part, counting captures (`{% set %}…{% endset %}`,
/// macro calls, `{% filter %}` blocks), which the output writer never sees.
const MAX_EMITTED_BYTES: usize = 4 * MAX_OUTPUT_BYTES;
/// Most a filter's input may weigh (see `weight`) and a filter may be asked to produce.
const MAX_WEIGHT: usize = 4 * MAX_OUTPUT_BYTES;
/// Deepest nesting a value may have when measured; deeper is refused, not walked.
const MAX_DEPTH: usize = 64;
/// Widest indentation (`indent`, `tojson`) and printf width or precision (`format`).
const MAX_WIDTH: usize = 256;
/// Most groups `batch` and `slice` may be asked for.
const MAX_GROUPS: usize = 10_000;
/// Puts the bounds on `env`; `deadline` (the render's, see `MAX_RENDER_TIME`) is checked at
/// every print and filter call: fuel bounds instructions, but not how long each one takes.
/// Use a fresh environment per part: the print budget lives in it and must not be shared.
pub(super) fn bound(env: &mut Environment<'static>, deadline: Instant) {
    env.set_fuel(Some(FUEL));
    let budget = Arc::new(Budget {
        printed: AtomicUsize::new(0),
        deadline,
    });
    let for_printing = budget.clone();
    env.set_formatter(move |out, state, value| {
        for_printing.check_time()?;
        for_printing.print(value)?;
        minijinja::escape_formatter(out, state, value)
    });
    for (name, builtin, check) in guarded_filters() {
        let budget = budget.clone();
        env.add_filter(
            name,
            move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
                budget.check_time()?;
                if let Some(input) = args.first() {
                    if weight(input, MAX_WEIGHT).is_none() {
                        return Err(too_much(format!(
                            "the input of {name} is larger than {MAX_WEIGHT} bytes or nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                check(&args, &kwargs)?;
                let mut all = args.0;
                // Only pass keyword arguments on when there are some: a filter that takes
                // none would see an empty map as one argument too many.
                if kwargs.args().next().is_some() {
                    all.push(Value::from(kwargs));
                }
                builtin.call(state, &all)
            },
        );
    }
}

/// What one render has spent.
struct Budget {
    printed: AtomicUsize,
    deadline: Instant,
}

impl Budget {
    fn check_time(&self) -> Result<(), Error> {
        if Instant::now() > self.deadline {
            return Err(too_much(format!(
                "takes longer than {} s to render",
                super::render::MAX_RENDER_TIME.as_secs()
            )));
        }
        Ok(())
    }

    fn print(&self, value: &Value) -> Result<(), Error> {
        let refused = || too_much(format!("prints more than {MAX_EMITTED_BYTES} bytes"));
        let len = printed_len(value, MAX_EMITTED_BYTES).ok_or_else(refused)?;
        let total = self
            .printed
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        if total > MAX_EMITTED_BYTES {
            return Err(refused());
        }
        Ok(())
    }
}

type Check = fn(&[Value], &Kwargs) -> Result<(), Error>;

fn no_check(_: &[Value], _: &Kwargs) -> Result<(), Error> {
    Ok(())
}

/// Every builtin filter, with what its arguments may ask for beyond the size of its input.
fn guarded_filters() -> Vec<(&'static str, Value, Check)> {
    let escape = Value::from_function(filters::escape);
    let default = Value::from_function(filters::default);
    let length = Value::from_function(filters::length);
    vec![
        ("safe", Value::from_function(filters::safe), no_check),
        ("escape", escape.clone(), no_check),
        ("e", escape, no_check),
        (
            "capitalize",
            Value::from_function(filters::capitalize),
            no_check,
        ),
        ("length", length.clone(), no_check),
        ("count", length, no_check),
        (
            "selectattr",
            Value::from_function(filters::selectattr),
            no_check,
        ),
        (
            "rejectattr",
            Value::from_function(filters::rejectattr),
            no_check,
        ),
        ("lower", Value::from_function(filters::lower), no_check),
        ("upper", Value::from_function(filters::upper), no_check),
        ("title", Value::from_function(filters::title), no_check),
        (
            "replace",
            Value::from_function(filters::replace),
            check_replace,
        ),
        (
            "dictsort",
            Value::from_function(filters::dictsort),
            no_check,
        ),
        ("items", Value::from_function(filters::items), no_check),
        ("reverse", Value::from_function(filters::reverse), no_check),
        ("trim", Value::from_function(filters::trim), no_check),
        ("join", Value::from_function(filters::join), check_join),
        ("split", Value::from_function(filters::split), no_check),
        ("lines", Value::from_function(filters::lines), no_check),
        ("default", default.clone(), no_check),
        ("d", default, no_check),
        ("round", Value::from_function(filters::round), no_check),
        ("abs", Value::from_function(filters::abs), no_check),
        ("int", Value::from_function(filters::int), no_check),
        ("float", Value::from_function(filters::float), no_check),
        ("attr", Value::from_function(filters::attr), no_check),
        ("first", Value::from_function(filters::first), no_check),
        ("last", Value::from_function(filters::last), no_check),
        ("min", Value::from_function(filters::min), no_check),
        ("max", Value::from_function(filters::max), no_check),
        ("sort", Value::from_function(filters::sort), no_check),
        ("list", Value::from_function(filters::list), no_check),
        ("string", Value::from_function(filters::string), no_check),
        ("bool", Value::from_function(filters::bool), no_check),
        ("batch", Value::from_function(filters::batch), check_groups),
        ("slice", Value::from_function(filters::slice), check_groups),
        ("sum", Value::from_function(filters::sum), no_check),
        (
            "indent",
            Value::from_function(filters::indent),
            check_indent,
        ),
        ("select", Value::from_function(filters::select), no_check),
        ("reject", Value::from_function(filters::reject), no_check),
        ("map", Value::from_function(filters::map), no_check),
        ("groupby", Value::from_function(filters::groupby), no_check),
        ("unique", Value::from_function(filters::unique), no_check),
        (
            "chain",
            Value::from_function(filters::chain),
            check_all_args,
        ),
        ("zip", Value::from_function(filters::zip), check_all_args),
        ("pprint", Value::from_function(filters::pprint), no_check),
        (
            "format",
            Value::from_function(filters::format),
            check_format,
        ),
        (
            "tojson",
            Value::from_function(filters::tojson),
            check_tojson,
        ),
    ]
}

fn too_much(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// A count an argument asks for, when it is one; anything else the builtin rejects itself.
fn count(value: Option<&Value>) -> Option<usize> {
    value
        .filter(|v| v.kind() == ValueKind::Number)
        .and_then(|v| usize::try_from(v.clone()).ok())
}

fn positional_or_keyword(
    args: &[Value],
    index: usize,
    kwargs: &Kwargs,
    key: &str,
) -> Option<Value> {
    args.get(index)
        .cloned()
        .or_else(|| kwargs.peek::<Option<Value>>(key).ok().flatten())
}

fn at_most(what: &str, n: Option<usize>, limit: usize) -> Result<(), Error> {
    match n {
        Some(n) if n > limit => Err(too_much(format!("{what} is limited to {limit}"))),
        _ => Ok(()),
    }
}

fn check_indent(args: &[Value], kwargs: &Kwargs) -> Result<(), Error> {
    let width = positional_or_keyword(args, 1, kwargs, "width");
    at_most("the width of indent", count(width.as_ref()), MAX_WIDTH)
}

fn check_tojson(args: &[Value], kwargs: &Kwargs) -> Result<(), Error> {
    // `true`/`false` mean pretty or not; `count` skips them.
    let indent = positional_or_keyword(args, 1, kwargs, "indent");
    at_most("the indent of tojson", count(indent.as_ref()), MAX_WIDTH)
}

fn check_groups(args: &[Value], _: &Kwargs) -> Result<(), Error> {
    at_most(
        "the count of batch and slice",
        count(args.get(1)),
        MAX_GROUPS,
    )
}

fn check_all_args(args: &[Value], _: &Kwargs) -> Result<(), Error> {
    if args.iter().skip(1).any(|a| weight(a, MAX_WEIGHT).is_none()) {
        return Err(too_much(format!(
            "an argument is larger than {MAX_WEIGHT} bytes"
        )));
    }
    Ok(())
}

fn check_join(args: &[Value], _: &Kwargs) -> Result<(), Error> {
    let joiner = args.get(1).and_then(Value::as_str).map_or(0, str::len);
    let items = args.first().and_then(Value::len).unwrap_or(0);
    at_most(
        "what join produces",
        Some(items.saturating_mul(joiner)),
        MAX_WEIGHT,
    )
}

fn check_replace(args: &[Value], _: &Kwargs) -> Result<(), Error> {
    let len = |i: usize| args.get(i).and_then(Value::as_str).map_or(0, str::len);
    let (input, from, to) = (len(0), len(1), len(2));
    // An empty `from` matches between every two characters.
    let matches = input / from.max(1) + 1;
    at_most(
        "what replace produces",
        Some(input.saturating_add(matches.saturating_mul(to))),
        MAX_WEIGHT,
    )
}

/// printf widths and precisions pad in one allocation; `*` takes them from an argument.
fn check_format(args: &[Value], _: &Kwargs) -> Result<(), Error> {
    let Some(spec) = args.first().and_then(Value::as_str) else {
        return Ok(());
    };
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            continue;
        }
        // Mapping key, flags, then width and precision: digits or `*`.
        if chars.peek() == Some(&'(') {
            for c in chars.by_ref() {
                if c == ')' {
                    break;
                }
            }
        }
        while chars.peek().is_some_and(|c| "-+ #0".contains(*c)) {
            chars.next();
        }
        for _ in 0..2 {
            if chars.peek() == Some(&'*') {
                return Err(too_much("format does not take a width from `*`".into()));
            }
            let mut n: usize = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                chars.next();
            }
            at_most("a width or precision in format", Some(n), MAX_WIDTH)?;
            if chars.peek() == Some(&'.') {
                chars.next();
            } else {
                break;
            }
        }
    }
    Ok(())
}

/// A lower bound on what walking or printing `value` costs: values visited plus the bytes of
/// their strings. None once that passes `limit` or the nesting passes `MAX_DEPTH`, found out
/// without walking further, so a value repeated a hundred million times is refused at once.
pub(super) fn weight(value: &Value, limit: usize) -> Option<usize> {
    let mut total: usize = 0;
    let mut pending = vec![(value.clone(), 0usize)];
    while let Some((value, depth)) = pending.pop() {
        total = total
            .checked_add(1)?
            .checked_add(value.as_str().map_or(0, str::len))?;
        if total > limit || depth > MAX_DEPTH {
            return None;
        }
        let is_map = match value.kind() {
            ValueKind::Map => true,
            ValueKind::Seq | ValueKind::Iterable => false,
            _ => continue,
        };
        if value.len().is_some_and(|n| n > limit - total) {
            return None;
        }
        let Ok(items) = value.try_iter() else {
            continue;
        };
        for item in items {
            // Everything pending weighs at least one, so this bounds the walk itself.
            if total.saturating_add(pending.len()) > limit {
                return None;
            }
            if is_map {
                if let Ok(v) = value.get_item(&item) {
                    pending.push((v, depth + 1));
                }
            }
            pending.push((item, depth + 1));
        }
    }
    Some(total)
}

/// The bytes `value` prints to, or None past `limit`. Measured before printing: a lazily
/// repeated list prints to gigabytes, and its `Display` cannot be stopped part way.
fn printed_len(value: &Value, limit: usize) -> Option<usize> {
    if let Some(s) = value.as_str() {
        return Some(s.len());
    }
    weight(value, limit)?;
    let mut counter = ByteCounter { bytes: 0, limit };
    write!(counter, "{value}").ok()?;
    Some(counter.bytes)
}

struct ByteCounter {
    bytes: usize,
    limit: usize,
}

impl fmt::Write for ByteCounter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes = self.bytes.saturating_add(s.len());
        if self.bytes > self.limit {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::render::MAX_RENDER_TIME;
    use std::time::Duration;

    fn render(source: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        bound(&mut env, Instant::now() + MAX_RENDER_TIME);
        env.render_str(
            source,
            minijinja::context! { tags => vec!["a", "b"], name => "Ada" },
        )
    }

    fn refused(source: &str) -> String {
        let start = Instant::now();
        let err = match render(source) {
            Ok(out) => panic!("{source} rendered {} bytes", out.len()),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{source} took {:?}",
            start.elapsed()
        );
        err
    }

    #[test]
    fn ordinary_filters_work_as_the_builtins_do() {
        let unbounded = |source: &str| {
            Environment::new()
                .render_str(
                    source,
                    minijinja::context! { tags => vec!["a", "b"], name => "Ada" },
                )
                .unwrap()
        };
        for source in [
            "{{ tags|join(', ') }}",
            "{{ tags|map('upper')|join }}",
            "{{ name|replace('d', 'D') }}",
            "{{ tags|batch(1)|list|length }}",
            "{{ tags|slice(2, 'x')|list }}",
            "{{ '%5s|%-3d|%.2f'|format('ab', 7, 1.234) }}",
            "{{ '100%%'|format }}",
            "{{ tags|tojson }} {{ tags|tojson(true) }} {{ tags|tojson(indent=3) }}",
            "{{ name|default('x') }} {{ nope|d('y') }}",
            "{{ tags|length }} {{ tags|count }} {{ tags|first }} {{ tags|last }}",
            "{{ tags|sort(reverse=true)|join }}",
            "{{ tags|selectattr('x', 'none')|list }}",
            "{{ 'a\nb'|indent(2, true) }} {{ 'a\nb'|indent(width=2, blank=true) }}",
            "{{ '<b>'|e }} {{ '<b>'|safe }} {{ name|upper|lower|title|capitalize }}",
            "{{ {'b': 1, 'a': 2}|dictsort }} {{ {'a': 1}|items|list }}",
            "{{ [3, 1]|min }} {{ [3, 1]|max }} {{ [3, 1]|sum }} {{ [1, 1]|unique|list }}",
        ] {
            assert_eq!(render(source).unwrap(), unbounded(source), "{source}");
        }
    }

    #[test]
    fn filters_refuse_huge_inputs_at_once() {
        for source in [
            "{{ (tags * 100000000)|join }}",
            "{{ (tags * 100000000)|list|length }}",
            "{{ (tags * 100000000)|sort }}",
            "{{ (tags * 100000000)|unique|first }}",
            "{{ (tags * 100000000)|last }}",
            "{{ tags|chain(tags * 100000000)|length }}",
            "{{ ('x' * 10000000)|upper|length }}",
            "{{ tags * 100000000 }}",
        ] {
            refused(source);
        }
    }

    #[test]
    fn filters_refuse_arguments_that_ask_for_huge_outputs() {
        for source in [
            "{{ name|indent(100000000000) }}",
            "{{ name|indent(width=100000000000) }}",
            "{{ tags|tojson(100000000000) }}",
            "{{ tags|tojson(indent=100000000000) }}",
            "{{ tags|batch(10000000000, 'x')|list }}",
            "{{ tags|slice(10000000000)|list }}",
            "{{ '%10000000000s'|format(name) }}",
            "{{ '%.10000000000f'|format(1.5) }}",
            "{{ '%*s'|format(10000000000, name) }}",
            "{{ ('x' * 100000)|replace('', 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy') }}",
            "{{ ('x' * 100000)|list|join('yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy') }}",
        ] {
            let err = refused(source);
            assert!(
                err.contains("limited") || err.contains("`*`"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn deep_values_are_refused_not_walked() {
        let mut deep = "1".to_owned();
        for _ in 0..100 {
            deep = format!("[{deep}]");
        }
        let v = Value::from_serialize(serde_json::from_str::<serde_json::Value>(&deep).unwrap());
        assert!(weight(&v, MAX_WEIGHT).is_none());
        assert_eq!(weight(&Value::from(vec!["ab", "c"]), 100), Some(1 + 3 + 2));
    }

    #[test]
    fn slow_templates_stop_at_the_deadline() {
        // Each `upper` walks a 3 MB string: little fuel, a lot of time.
        let start = Instant::now();
        let err = render(
            "{% set big = 'x' * 3000000 %}{% for i in range(30000) %}{{ big|upper|length }}{% endfor %}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("takes longer than"), "{err}");
        assert!(start.elapsed() < MAX_RENDER_TIME + Duration::from_secs(2));
    }

    #[test]
    fn printing_counts_captures_too() {
        let err = refused(
            "{% set x %}{% for i in range(10) %}{{ 'y' * 1000000 }}{% endfor %}{% endset %}ok",
        );
        assert!(err.contains("prints more than"), "{err}");
    }
}
