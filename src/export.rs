//! Export for auditors: CSV (one row per result item) or JSON lines (one object per
//! upload, with its raw body, so the chain can be re-verified offline). Rows are
//! streamed from one query in id order; nothing is buffered beyond a write buffer.

use std::io::Write;

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::domain::{format_timestamp, TaskId, Timestamp};
use crate::storage::queries::id_range;
use crate::storage::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub task_id: Option<TaskId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
}

impl From<rusqlite::Error> for ExportError {
    fn from(e: rusqlite::Error) -> Self {
        ExportError::Storage(e.into())
    }
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(std::io::Error::other(e))
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Write(std::io::Error::other(e))
    }
}

/// How many uploads the filter covers, at most (for progress bars).
pub fn estimate(conn: &Connection, filter: &ExportFilter) -> Result<u64, StorageError> {
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    let n: i64 = match &filter.task_id {
        Some(t) => conn
            .prepare_cached(
                "SELECT count(*) FROM uploads WHERE task_id = ?1 AND id >= ?2 AND id < ?3",
            )?
            .query_row(params![t.as_str(), lo, hi], |r| r.get(0))?,
        None => {
            let max: Option<i64> =
                conn.query_row("SELECT max(id) FROM uploads", [], |r| r.get(0))?;
            (hi.min(max.unwrap_or(0) + 1) - lo.max(1)).max(0)
        }
    };
    Ok(n as u64)
}

pub const CSV_HEADER: [&str; 18] = [
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
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    // One statement: the snapshot is consistent, and rows come in (id, ordinal) order
    // from the primary keys without sorting.
    let sql = format!(
        "SELECT u.id, u.request_id, u.task_id, u.received_at, u.credential_name, u.auth_method,
                u.project_id, u.peer_addr, u.user_agent, u.body_sha256, u.prev_hash, u.entry_hash,
                u.duplicate_of, u.finished_time, {},
                r.ordinal, r.dir_check, r.num_total_files, r.num_different_files,
                r.num_target_miss_files, r.num_target_more_files
         FROM uploads u LEFT JOIN upload_results r ON r.upload_id = u.id
         WHERE u.id >= ?1 AND u.id < ?2 {}
         ORDER BY u.id, r.ordinal",
        if format == Format::Jsonl {
            "u.raw_body"
        } else {
            "NULL"
        },
        if filter.task_id.is_some() {
            "AND u.task_id = ?3"
        } else {
            "AND ?3 IS NULL"
        }
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params![lo, hi, filter.task_id.as_ref().map(TaskId::as_str)])?;

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
    let mut last_id = None;

    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let new_upload = last_id != Some(id);
        if new_upload {
            last_id = Some(id);
            count += 1;
            if count.is_multiple_of(1000) {
                progress(count);
            }
        }
        let ordinal: Option<i64> = r.get(15)?;
        match &mut sink {
            Sink::Csv(w) => {
                let text = |i: usize| -> rusqlite::Result<String> {
                    Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
                };
                let int = |i: usize| -> rusqlite::Result<String> {
                    Ok(r.get::<_, Option<i64>>(i)?
                        .map(|n| n.to_string())
                        .unwrap_or_default())
                };
                w.write_record([
                    id.to_string(),
                    text(1)?,
                    text(2)?,
                    format_timestamp(r.get(3)?),
                    text(4)?,
                    text(5)?,
                    text(6)?,
                    text(7)?,
                    text(9)?,
                    text(11)?,
                    int(12)?,
                    int(13)?,
                    int(15)?,
                    text(16)?,
                    int(17)?,
                    int(18)?,
                    int(19)?,
                    int(20)?,
                ])?;
            }
            Sink::Jsonl(out) => {
                if new_upload {
                    if let Some(done) = pending.take() {
                        serde_json::to_writer(&mut *out, &done)?;
                        out.write_all(b"\n")?;
                    }
                    let raw: Vec<u8> = r.get(14)?;
                    pending = Some(JsonUpload {
                        id,
                        request_id: r.get(1)?,
                        task_id: r.get(2)?,
                        received_at: format_timestamp(r.get(3)?),
                        credential_name: r.get(4)?,
                        auth_method: r.get(5)?,
                        project_id: r.get(6)?,
                        peer_addr: r.get(7)?,
                        user_agent: r.get(8)?,
                        body_sha256: r.get(9)?,
                        prev_hash: r.get(10)?,
                        entry_hash: r.get(11)?,
                        duplicate_of: r.get(12)?,
                        finished_time: r.get(13)?,
                        results: Vec::new(),
                        raw_body: String::from_utf8_lossy(&raw).into_owned(),
                    });
                }
                if ordinal.is_some() {
                    if let Some(u) = pending.as_mut() {
                        u.results.push(JsonResult {
                            dir_check: r.get(16)?,
                            num_total_files: r.get(17)?,
                            num_different_files: r.get(18)?,
                            num_target_miss_files: r.get(19)?,
                            num_target_more_files: r.get(20)?,
                        });
                    }
                }
            }
        }
    }
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
