//! Export and import of a tenant's records as NDJSON or CSV, and backups of the database.
//!
//! Both directions stream: an export writes record after record as the store scans them, an
//! import reads rows, parses them with the records' own parsers, and hands them to the writer
//! thread in chunks of [`CHUNK_ROWS`] (one transaction each) while it parses the next chunk;
//! one flush at the end makes the whole import durable. They run on a plain thread (the CLI's,
//! or one the HTTP handler starts) and read and write through `std::io`.

use crate::domain::access::WriteContext;
use crate::domain::error::DomainError;
use crate::domain::ids::{RecordId, TenantId};
use crate::domain::transfer::{
    csv_cells, csv_columns, parse_line, parse_row, BulkLoad, CsvHeader, ImportRow, ParsedRow,
    RecordKind, StoredRecord,
};
use crate::error::{ApiError, ErrorCode};
use crate::store::records::BackupReport;
use crate::store::write::{ImportOutcome, ImportRows};
use crate::store::{Db, Queued, StoreError};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// Rows per transaction: large enough that a commit's fixed cost is spread thin, small enough
/// that a chunk's buffered writes stay a few megabytes and other writers wait little.
pub const CHUNK_ROWS: usize = 1000;
/// Chunks handed to the writer and not yet answered: one committing while the next waits, so
/// parsing and committing overlap without queueing the whole file.
const CHUNKS_IN_FLIGHT: usize = 2;
/// Most rows an all-or-nothing import takes. It is one transaction, held in memory whole until
/// it commits: measured ~37 KB of memory a 2 KB registration row, most of it inside the
/// engine's commit (10,000 rows: +370 MB; 100,000 rows: 5.3 GB).
pub const MAX_ALL_OR_NOTHING_ROWS: usize = 10_000;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line: `{"kind", "record"}` for any kind, or a bare registration.
    Ndjson,
    /// Registrations only: a header row of field names, one registration a row.
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            _ => Err("must be ndjson or csv".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// The media type an export is served as.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The format of a file, by its extension (`.csv`; anything else is NDJSON).
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Ndjson,
        }
    }
}

/// How an import runs.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Write nothing when any row is refused.
    pub all_or_nothing: bool,
    /// The file's name, kept in `sys_bulk_load_source_file`.
    pub source_file: Option<String>,
}

/// A refused row: its number (1-based; a CSV header is not a row) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFailure {
    pub row: u64,
    pub code: ErrorCode,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    pub bulk_load_id: String,
    pub all_or_nothing: bool,
    /// Data rows read (blank NDJSON lines are not rows).
    pub rows: u64,
    pub imported: u64,
    /// In row order.
    pub failed: Vec<RowFailure>,
}

impl ImportReport {
    pub fn to_json(&self) -> Value {
        let failed: Vec<Value> = self
            .failed
            .iter()
            .map(|f| json!({"row": f.row, "code": f.code.as_str(), "reason": f.reason}))
            .collect();
        json!({
            "bulk_load_id": self.bulk_load_id,
            "all_or_nothing": self.all_or_nothing,
            "rows": self.rows,
            "imported": self.imported,
            "failed": failed,
        })
    }
}

/// Where an import or export is: bytes of input read (import) and records done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes: u64,
    pub records: u64,
}

fn failure(row: u64, error: &ApiError) -> RowFailure {
    RowFailure {
        row,
        code: error.code,
        reason: row_reason(error),
    }
}

/// Rows as they come out of a file: parsed, or refused with a reason.
trait RowSource {
    /// The next row, `None` at the end; an `Err` is a fault of the input as a whole.
    fn next_row(&mut self) -> Option<Result<Result<ParsedRow, RowFailure>, ApiError>>;
    /// Bytes read so far.
    fn position(&self) -> u64;
}

struct NdjsonRows<R> {
    input: BufReader<R>,
    line: Vec<u8>,
    number: u64,
    bytes: u64,
}

impl<R: Read> RowSource for NdjsonRows<R> {
    fn next_row(&mut self) -> Option<Result<Result<ParsedRow, RowFailure>, ApiError>> {
        loop {
            self.line.clear();
            match self.input.read_until(b'\n', &mut self.line) {
                Err(e) => return Some(Err(unreadable(self.number, e))),
                Ok(0) => return None,
                Ok(read) => self.bytes += read as u64,
            }
            self.number += 1;
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let row = self.number;
            let parsed = parse_line(&self.line)
                .and_then(|(kind, body)| parse_row(kind, &body, row))
                .map_err(|e| failure(row, &e.into()));
            return Some(Ok(parsed));
        }
    }

    fn position(&self) -> u64 {
        self.bytes
    }
}

struct CsvRows<R> {
    input: csv::Reader<R>,
    header: CsvHeader,
    record: csv::ByteRecord,
    number: u64,
}

impl<R: Read> CsvRows<R> {
    fn open(input: R) -> Result<Self, ApiError> {
        let mut input = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(input);
        let names = input.byte_headers().map_err(|e| bad_csv(0, &e))?.clone();
        let names: Vec<&str> = names
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<_, _>>()
            .map_err(|_| ApiError::field("header", "is not UTF-8"))?;
        // A byte-order mark is how some spreadsheets start a UTF-8 file.
        let names: Vec<&str> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 {
                    n.trim_start_matches('\u{feff}')
                } else {
                    n
                }
            })
            .collect();
        let header = CsvHeader::parse(names)?;
        Ok(CsvRows {
            input,
            header,
            record: csv::ByteRecord::new(),
            number: 0,
        })
    }
}

fn bad_csv(row: u64, e: &csv::Error) -> ApiError {
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!("the CSV could not be read at row {row}: {e}"),
    )
}

fn unreadable(row: u64, e: std::io::Error) -> ApiError {
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!("the input could not be read after row {row}: {e}"),
    )
}

impl<R: Read> RowSource for CsvRows<R> {
    fn next_row(&mut self) -> Option<Result<Result<ParsedRow, RowFailure>, ApiError>> {
        match self.input.read_byte_record(&mut self.record) {
            Err(e) => return Some(Err(bad_csv(self.number + 1, &e))),
            Ok(false) => return None,
            Ok(true) => {}
        }
        self.number += 1;
        let row = self.number;
        let cells: Result<Vec<&str>, _> = self.record.iter().map(std::str::from_utf8).collect();
        let parsed = match cells {
            Err(_) => Err(DomainError::invalid("the row is not UTF-8")),
            Ok(cells) => self
                .header
                .row_to_json(cells)
                .and_then(|body| parse_row(RecordKind::Registration, &body, row)),
        };
        Some(Ok(parsed.map_err(|e| failure(row, &e.into()))))
    }

    fn position(&self) -> u64 {
        self.input.position().byte()
    }
}

/// Sums what the store made of the chunks.
struct Tally {
    imported: u64,
    failed: Vec<RowFailure>,
}

impl Tally {
    fn add(&mut self, outcome: ImportOutcome) {
        self.imported += outcome.imported as u64;
        for (row, refused) in outcome.refused {
            self.failed.push(failure(row, &ApiError::from(refused)));
        }
    }
}

/// Refuses an import into a tenant that does not exist, before any of the body is read.
pub fn import_target_exists(store: &Db, tenant: &TenantId) -> Result<(), ApiError> {
    match store.tenant(tenant) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorCode::TenantNotFound,
            format!("tenant {tenant} not found"),
        )),
    }
}

/// Imports `input` into `tenant`. Refused rows are reported and the others land (or, all or
/// nothing, none do). Errors are about the input or the request as a whole (an unreadable
/// stream, a bad CSV header, too many rows for one transaction); rows imported before
/// such an error stay, and the message says so. Runs on a thread that may block.
pub fn import(
    store: &Db,
    tenant: &TenantId,
    format: Format,
    input: impl Read,
    options: &ImportOptions,
    ctx: &WriteContext,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportReport, ApiError> {
    let mut source: Box<dyn RowSource> = match format {
        Format::Ndjson => Box::new(NdjsonRows {
            input: BufReader::with_capacity(256 * 1024, input),
            line: Vec::new(),
            number: 0,
            bytes: 0,
        }),
        Format::Csv => Box::new(CsvRows::open(input)?),
    };
    let load = BulkLoad::new(options.source_file.clone());
    let mut tally = Tally {
        imported: 0,
        failed: Vec::new(),
    };
    let mut rows_read = 0u64;
    let mut chunk: Vec<ImportRow> = Vec::with_capacity(CHUNK_ROWS);
    let mut in_flight: VecDeque<Queued<ImportOutcome>> = VecDeque::new();
    // Each row's change event names the import as its bulk operation.
    let ctx = WriteContext {
        bulk_operation: Some(load.id.clone()),
        ..ctx.clone()
    };
    let submit = |rows: Vec<ImportRow>, refused_earlier: bool| {
        store.import_rows(ImportRows {
            tenant: tenant.clone(),
            rows,
            load: load.clone(),
            ctx: ctx.clone(),
            all_or_nothing: options.all_or_nothing,
            refused_earlier,
        })
    };
    let stopped = loop {
        let next = match source.next_row() {
            None => break None,
            Some(Err(fault)) => break Some(fault),
            Some(Ok(next)) => next,
        };
        rows_read += 1;
        match next {
            Ok(parsed) => chunk.push(parsed.with_id(RecordId::generate)),
            Err(refused) => tally.failed.push(refused),
        }
        if options.all_or_nothing {
            if chunk.len() + tally.failed.len() > MAX_ALL_OR_NOTHING_ROWS {
                break Some(ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "an all-or-nothing import is one transaction of at most \
                         {MAX_ALL_OR_NOTHING_ROWS} rows; split the file or import without it"
                    ),
                ));
            }
            continue;
        }
        if chunk.len() == CHUNK_ROWS {
            let rows = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
            in_flight.push_back(submit(rows, false).map_err(ApiError::from)?);
            while in_flight.len() > CHUNKS_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    tally.add(oldest.wait().map_err(ApiError::from)?);
                }
            }
            progress(Progress {
                bytes: source.position(),
                records: tally.imported,
            });
        }
    };
    if let Some(fault) = stopped {
        if options.all_or_nothing {
            return Err(fault);
        }
        // What was handed to the writer stays: say how much, and make it durable.
        for queued in in_flight {
            tally.add(queued.wait().map_err(ApiError::from)?);
        }
        store.flush().map_err(ApiError::from)?;
        return Err(ApiError::new(
            fault.code,
            format!(
                "{}; {} rows before it were imported (bulk load {})",
                fault.message, tally.imported, load.id
            ),
        ));
    }
    if !chunk.is_empty() || (options.all_or_nothing && !tally.failed.is_empty()) {
        let refused_earlier = !tally.failed.is_empty();
        in_flight.push_back(submit(chunk, refused_earlier).map_err(ApiError::from)?);
    }
    for queued in in_flight {
        tally.add(queued.wait().map_err(ApiError::from)?);
    }
    store.flush().map_err(ApiError::from)?;
    progress(Progress {
        bytes: source.position(),
        records: tally.imported,
    });
    tally.failed.sort_by_key(|f| f.row);
    Ok(ImportReport {
        bulk_load_id: load.id,
        all_or_nothing: options.all_or_nothing,
        rows: rows_read,
        imported: tally.imported,
        failed: tally.failed,
    })
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(e.into())
    }
}

/// Writes the tenant's records to `out`: as NDJSON every kind, catalog first (in the order an
/// import needs), registrations last; as CSV the registrations. Returns how many.
pub fn export(
    store: &Db,
    tenant: &TenantId,
    format: Format,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, ExportError> {
    let mut count = 0u64;
    let mut tick = |count: u64| {
        if count.is_multiple_of(1000) {
            progress(Progress {
                bytes: 0,
                records: count,
            });
        }
    };
    match format {
        Format::Ndjson => {
            for kind in RecordKind::EXPORT_ORDER {
                for record in store.export_records(tenant, kind) {
                    serde_json::to_writer(&mut *out, &record?.into_line())
                        .map_err(std::io::Error::from)?;
                    out.write_all(b"\n")?;
                    count += 1;
                    tick(count);
                }
            }
            out.flush()?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(csv_columns())?;
            for record in store.export_records(tenant, RecordKind::Registration) {
                if let StoredRecord::Registration(registration) = record? {
                    writer.write_record(csv_cells(&registration))?;
                    count += 1;
                    tick(count);
                }
            }
            writer.flush()?;
        }
    }
    progress(Progress {
        bytes: 0,
        records: count,
    });
    Ok(count)
}

/// The data dir's file that holds a generated operator key (written by `startup`).
const OPERATOR_KEY_FILE: &str = "operator.key";

/// Backs the database up into `to` (new or empty): a consistent copy taken on
/// the writer thread, plus the operator key file when there is one. `to` is then a data dir
/// a server can be started on.
///
/// The copy is written beside `to` under a hidden temporary name
/// (`.<name>.partial-<ulid>`), synced to disk, and only then renamed to `to`: a backup that
/// fails or is killed midway never leaves a complete-looking `to`, at most a dir whose name
/// says it is partial (a failure removes it).
pub async fn backup(store: &Db, to: &Path) -> Result<BackupReport, ApiError> {
    crate::store::files::check_backup_target(to).map_err(|e| ApiError::field("to", e))?;
    let (parent, name) = match (to.parent(), to.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => {
            return Err(ApiError::field(
                "to",
                format!("{} has no parent dir to write beside", to.display()),
            ))
        }
    };
    std::fs::create_dir_all(parent)
        .map_err(|e| ApiError::field("to", format!("cannot create {}: {e}", parent.display())))?;
    let partial = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        ulid::Ulid::new()
    ));
    crate::store::files::create_private_dir(&partial)
        .map_err(|e| ApiError::field("to", format!("cannot create {}: {e}", partial.display())))?;
    let outcome = write_backup(store, &partial, to, parent).await;
    if outcome.is_err() {
        if let Err(e) = std::fs::remove_dir_all(&partial) {
            log::warn!("backup: cannot remove {}: {e}", partial.display());
        }
    }
    outcome
}

/// Fills `partial`, makes it durable, and renames it to `to`.
async fn write_backup(
    store: &Db,
    partial: &Path,
    to: &Path,
    parent: &Path,
) -> Result<BackupReport, ApiError> {
    let report = store.backup(partial).await.map_err(|e| {
        log::error!("backup into {} failed: {e}", partial.display());
        ApiError::from(e)
    })?;
    let key_file = store.data_dir().map(|dir| dir.join(OPERATOR_KEY_FILE));
    if let Some(key_file) = key_file.filter(|file| file.exists()) {
        copy_private(&key_file, &partial.join(OPERATOR_KEY_FILE)).map_err(|e| {
            log::error!("backup: cannot copy {}: {e}", key_file.display());
            ApiError::internal()
        })?;
    }
    // fsync of every file may take a while: off the async worker.
    let (partial, to, parent) = (partial.to_owned(), to.to_owned(), parent.to_owned());
    tokio::task::spawn_blocking(move || {
        let failed = |what: &str, path: &Path, e: std::io::Error| {
            log::error!("backup: cannot {what} {}: {e}", path.display());
            ApiError::internal()
        };
        crate::store::files::sync_tree(&partial).map_err(|e| failed("sync", &partial, e))?;
        // rename(2) replaces an empty dir `to` (allowed by `check_backup_target`) atomically.
        std::fs::rename(&partial, &to).map_err(|e| failed("rename into place", &partial, e))?;
        crate::store::files::sync_path(&parent).map_err(|e| failed("sync", &parent, e))
    })
    .await
    .map_err(|e| {
        log::error!("backup: the sync task failed: {e}");
        ApiError::internal()
    })??;
    Ok(report)
}

/// Copies a secret file, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The reason a report gives for a refused row: each field's problem when it failed
/// validation, the message otherwise (which names the record it is about).
pub fn row_reason(error: &ApiError) -> String {
    if error.code != ErrorCode::ValidationFailed || error.details.is_empty() {
        error.message.clone()
    } else {
        error
            .details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
