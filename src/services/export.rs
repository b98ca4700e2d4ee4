//! Export for auditors: CSV (one row per result item) or JSON lines (one object per
//! upload, with its raw body, so the chain can be re-verified offline). Rows are
//! streamed in id order; nothing is buffered beyond a write buffer.

use std::io::Write;

use rusqlite::Connection;
use serde::Serialize;

use crate::domain::{escape_invisible, format_timestamp};
pub use crate::storage::export::{estimate, ExportFilter};
use crate::storage::export::{scan, ExportedResult, ExportedUpload};
use crate::storage::StorageError;

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values, one upload a row, formulas neutralised.
    Csv,
    /// One JSON object a line, the raw body kept byte for byte.
    Jsonl,
}

impl Format {
    /// The HTTP `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }

    /// The file name extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the uploads failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
}

/// Write errors keep their I/O kind, so that a closed pipe is told apart.
impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => std::io::Error::other(format!("{other:?}")),
        })
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Write(match e.io_error_kind() {
            Some(kind) => std::io::Error::new(kind, e),
            None => std::io::Error::other(e),
        })
    }
}

/// The CSV's columns, in order.
pub const CSV_HEADER: [&str; 19] = [
    "upload_id",
    "request_id",
    "task_id",
    "received_at",
    "credential_name",
    "auth_method",
    "project_id",
    "peer_addr",
    "body_sha256",
    "entry_hash",
    "duplicate_of",
    "finished_time",
    "ordinal",
    "dir_check",
    "num_total_files",
    "num_different_files",
    "num_target_miss_files",
    "num_target_more_files",
    "purged_at",
];

#[derive(Serialize)]
struct JsonResult {
    dir_check: String,
    num_total_files: i64,
    num_different_files: i64,
    num_target_miss_files: i64,
    num_target_more_files: i64,
}

#[derive(Serialize)]
struct JsonUpload {
    id: i64,
    request_id: String,
    task_id: String,
    received_at: String,
    credential_name: String,
    auth_method: String,
    project_id: Option<String>,
    peer_addr: String,
    user_agent: Option<String>,
    body_sha256: String,
    prev_hash: String,
    entry_hash: String,
    duplicate_of: Option<i64>,
    finished_time: Option<i64>,
    results: Vec<JsonResult>,
    raw_body: String,
    /// Retention emptied `raw_body` and `results` then (the entry stays).
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_at: Option<String>,
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(std::io::BufWriter<W>),
}

/// Writes every upload the filter selects, in id order; returns how many.
/// `progress` is called with the count every 1,000 uploads and at the end.
pub fn write(
    conn: &Connection,
    filter: &ExportFilter,
    format: Format,
    out: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    let mut count = 0u64;
    let mut sink = match format {
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(64 * 1024)
                .from_writer(out);
            w.write_record(CSV_HEADER)?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => Sink::Jsonl(std::io::BufWriter::with_capacity(64 * 1024, out)),
    };
    let mut pending: Option<JsonUpload> = None;
    scan(
        conn,
        filter,
        format == Format::Jsonl,
        |new_upload, u: &ExportedUpload, result: Option<&ExportedResult>| {
            if new_upload {
                count += 1;
                if count.is_multiple_of(1000) {
                    progress(count);
                }
            }
            match &mut sink {
                Sink::Csv(w) => w.write_record(csv_record(u, result))?,
                Sink::Jsonl(out) => {
                    if new_upload {
                        if let Some(done) = pending.take() {
                            serde_json::to_writer(&mut *out, &done)?;
                            out.write_all(b"\n")?;
                        }
                        pending = Some(JsonUpload::new(u));
                    }
                    if let (Some(r), Some(p)) = (result, pending.as_mut()) {
                        p.results.push(JsonResult {
                            dir_check: r.dir_check.clone(),
                            num_total_files: r.counts[0],
                            num_different_files: r.counts[1],
                            num_target_miss_files: r.counts[2],
                            num_target_more_files: r.counts[3],
                        });
                    }
                }
            }
            Ok::<_, ExportError>(())
        },
    )?;
    match &mut sink {
        Sink::Csv(w) => w.flush()?,
        Sink::Jsonl(out) => {
            if let Some(done) = pending.take() {
                serde_json::to_writer(&mut *out, &done)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
    }
    progress(count);
    Ok(count)
}

/// A CSV row: the upload's fields and one result item (empty without results).
/// Text that agents or operators chose goes through [`cell`].
fn csv_record(u: &ExportedUpload, r: Option<&ExportedResult>) -> [String; 19] {
    let int = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    [
        u.id.to_string(),
        cell(&u.request_id),
        cell(&u.task_id),
        format_timestamp(u.received_at),
        cell(&u.credential_name),
        cell(&u.auth_method),
        cell(u.project_id.as_deref().unwrap_or_default()),
        cell(&u.peer_addr),
        cell(&u.body_sha256),
        cell(&u.entry_hash),
        int(u.duplicate_of),
        int(u.finished_time),
        int(r.map(|r| r.ordinal)),
        cell(r.map(|r| r.dir_check.as_str()).unwrap_or_default()),
        int(r.map(|r| r.counts[0])),
        int(r.map(|r| r.counts[1])),
        int(r.map(|r| r.counts[2])),
        int(r.map(|r| r.counts[3])),
        u.purged_at.map(format_timestamp).unwrap_or_default(),
    ]
}

/// A text cell that a spreadsheet would run as a formula (it begins with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`: spreadsheets show
/// it as text and do not run it. JSON lines keep every value as stored.
pub fn cell(text: &str) -> String {
    // Control and bidirectional characters first become visible escapes.
    let text = escape_invisible(text, false);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.into_owned()
    }
}

impl JsonUpload {
    fn new(u: &ExportedUpload) -> Self {
        JsonUpload {
            id: u.id,
            request_id: u.request_id.clone(),
            task_id: u.task_id.clone(),
            received_at: format_timestamp(u.received_at),
            credential_name: u.credential_name.clone(),
            auth_method: u.auth_method.clone(),
            project_id: u.project_id.clone(),
            peer_addr: u.peer_addr.clone(),
            user_agent: u.user_agent.clone(),
            body_sha256: u.body_sha256.clone(),
            prev_hash: u.prev_hash.clone(),
            entry_hash: u.entry_hash.clone(),
            duplicate_of: u.duplicate_of,
            finished_time: u.finished_time,
            results: Vec::new(),
            raw_body: String::from_utf8_lossy(u.raw_body.as_deref().unwrap_or_default())
                .into_owned(),
            purged_at: u.purged_at.map(format_timestamp),
        }
    }
}
