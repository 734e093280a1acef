//! `registrar check`: the store's consistency check run offline, its report printed for a
//! person (or as JSON), and an exit status a script can act on.

use crate::config::CheckArgs;
use crate::store::check::{CheckReport, Observed, Problem, Scope};
use crate::store::StoreError;
use crate::store::{check_offline, OfflineError};
use std::process::ExitCode;

/// Nothing is left to fix.
const CLEAN: u8 = 0;
/// Problems remain.
const PROBLEMS: u8 = 1;
/// The check could not run.
const FAILED: u8 = 2;

/// Runs the check as the command line asks, prints the report, and says how it went.
pub fn run(args: &CheckArgs) -> ExitCode {
    let scope = match &args.tenant {
        Some(tenant) => Scope::One(tenant.clone()),
        None => Scope::Every,
    };
    let report = match &args.database_url {
        Some(url) => check_database(url, scope, args.repair),
        None => check_offline(&args.data_dir, &scope, args.repair).map_err(|e| {
            match (&e, &args.tenant) {
                (OfflineError::Store(StoreError::TenantNotFound), Some(tenant)) => {
                    format!("there is no tenant {tenant} in {}", args.data_dir.display())
                }
                _ => e.to_string(),
            }
        }),
    };
    let report = match report {
        Ok(report) => report,
        Err(message) => {
            eprintln!("registrar check: {message}");
            return ExitCode::from(FAILED);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("registrar check: cannot write the report: {e}");
                return ExitCode::from(FAILED);
            }
        }
    } else {
        print!("{}", render(&report));
    }
    ExitCode::from(if report.clean { CLEAN } else { PROBLEMS })
}

/// The PostgreSQL engine's check (`Maintenance::check`), as `POST /admin/check` runs it: no
/// server has to stop, and a repair takes each tenant's counters row as a write does.
fn check_database(url: &str, scope: Scope, repair: bool) -> Result<CheckReport, String> {
    let store = crate::cli::open_database(url).map_err(|e| e.to_string())?;
    let runtime = crate::cli::runtime().map_err(|e| e.to_string())?;
    let tenant = match &scope {
        Scope::One(tenant) => Some(tenant.clone()),
        Scope::Every => None,
    };
    runtime
        .block_on(store.check(scope, repair))
        .map_err(|e| match (e, tenant) {
            (StoreError::TenantNotFound, Some(tenant)) => {
                format!("there is no tenant {tenant} in the database")
            }
            (e, _) => format!("the check failed: {e}"),
        })
}

/// The report for a person: what was read, each problem on a line, what to do next.
pub fn render(report: &CheckReport) -> String {
    let mut out = format!("checked {} tenant(s)\n", report.tenants.len());
    let list = |counts: &std::collections::BTreeMap<String, u64>| {
        counts
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("  records read: {}\n", list(&report.records)));
    out.push_str(&format!(
        "  derived entries read: {}\n",
        list(&report.entries)
    ));
    if report.older_layout > 0 {
        out.push_str(&format!(
            "  {} index entries in an earlier build's layout (status only, no date): not \
             problems, they read correctly; a repair rewrites them in the current layout\n",
            report.older_layout
        ));
    }
    let repairable = report.problems.iter().filter(|p| p.repairable).count();
    if report.problems.is_empty() {
        out.push_str("no problems\n");
    } else {
        out.push_str(&format!(
            "{} problem(s), {repairable} repairable:\n",
            report.problems.len()
        ));
        for problem in &report.problems {
            out.push_str(&format!("  {}\n", describe(problem)));
        }
    }
    match &report.repair {
        None if repairable > 0 => out.push_str(
            "run `registrar check --repair` (a data dir's server stopped; a database's nodes \
             may run) or POST /admin/check with {\"repair\": true} to rebuild them from the \
             records\n",
        ),
        None => {}
        Some(repair) => {
            out.push_str(&format!("repair: {} change(s)\n", repair.changes.len()));
            if repair.upgraded > 0 {
                out.push_str(&format!(
                    "  {} index entries rewritten in the current layout\n",
                    repair.upgraded
                ));
            }
            for change in &repair.changes {
                out.push_str(&format!(
                    "  {}: {}\n",
                    change.action.as_str(),
                    describe(&change.problem)
                ));
            }
            if repair.remaining.is_empty() {
                out.push_str("no problems remain\n");
            } else {
                out.push_str(&format!(
                    "{} problem(s) remain, which a repair cannot fix (they are in the \
                     records themselves):\n",
                    repair.remaining.len()
                ));
                for problem in &repair.remaining {
                    out.push_str(&format!("  {}\n", describe(problem)));
                }
            }
        }
    }
    out
}

/// One problem on one line: where, which record, expected and found.
fn describe(problem: &Problem) -> String {
    let mut line = format!(
        "{}: {} in {}",
        problem.tenant.as_deref().unwrap_or("(no tenant)"),
        problem.kind.as_str(),
        problem.tree
    );
    if let Some(counter) = &problem.counter {
        line.push_str(&format!(", counter {counter}"));
    }
    match &problem.record_id {
        Some(id) => line.push_str(&format!(", record {id}")),
        None if problem.counter.is_none() => line.push_str(&format!(", key {}", problem.key)),
        None => {}
    }
    if problem.expected.is_some() || problem.found.is_some() {
        let show = |value: &Option<Observed>| match value {
            None => "nothing".to_owned(),
            Some(Observed::Count(n)) => n.to_string(),
            Some(Observed::Text(text)) => format!("{text:?}"),
        };
        line.push_str(&format!(
            ": expected {}, found {}",
            show(&problem.expected),
            show(&problem.found)
        ));
    }
    if let Some(detail) = &problem.detail {
        line.push_str(&format!(" ({detail})"));
    }
    if !problem.repairable {
        line.push_str(" [not repairable]");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::check::ProblemKind;

    fn problem(kind: ProblemKind, repairable: bool) -> Problem {
        Problem {
            kind,
            tenant: Some("acme".into()),
            tree: "idx_student",
            record_id: Some("01ABC".into()),
            counter: None,
            key: "00".into(),
            expected: Some(Observed::Text("registered".into())),
            found: None,
            repairable,
            detail: None,
        }
    }

    #[test]
    fn each_problem_is_one_line_that_names_its_record() {
        let report = CheckReport {
            clean: false,
            tenants: vec!["acme".into()],
            records: [("registrations".to_owned(), 2)].into(),
            entries: [("idx_student".to_owned(), 1)].into(),
            older_layout: 0,
            problem_count: 1,
            problems: vec![problem(ProblemKind::MissingIndexEntry, true)],
            repair: None,
        };
        let text = render(&report);
        assert!(text.contains(
            "acme: missing_index_entry in idx_student, record 01ABC: expected \"registered\", \
             found nothing\n"
        ));
        assert!(text.contains("records read: 2 registrations"));
        assert!(text.contains("registrar check --repair"));
    }

    #[test]
    fn what_a_repair_cannot_fix_is_listed_as_remaining() {
        let mut unreadable = problem(ProblemKind::UndecodableRecord, false);
        (unreadable.expected, unreadable.detail) = (None, Some("cannot decode".into()));
        let report = CheckReport {
            clean: false,
            tenants: vec!["acme".into()],
            records: Default::default(),
            entries: Default::default(),
            older_layout: 0,
            problem_count: 1,
            problems: vec![unreadable.clone()],
            repair: Some(crate::store::check::RepairOutcome {
                changes: vec![],
                upgraded: 0,
                remaining: vec![unreadable],
            }),
        };
        let text = render(&report);
        assert!(text.contains("repair: 0 change(s)"));
        assert!(text.contains(
            "1 problem(s) remain, which a repair cannot fix (they are in the records themselves):\n  acme: undecodable_record in idx_student, record 01ABC (cannot decode) [not repairable]"
        ));
    }
}
