//! The `uploads` table and its result rows (`upload_results`): the statements the
//! writer runs to store an upload (its chain entry, result rows and the task's
//! summary) here, and the reads in [`read`].

pub mod read;

pub use read::*;

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::chain::{EntryFields, Head};
use crate::domain::signing::sha256_hex;
use crate::domain::{AuthMethod, TaskId, Timestamp, UploadBody};

/// An upload that passed every check, ready to be stored.
#[derive(Debug)]
pub struct NewUpload {
    /// The `X-Request-Id` it is answered with.
    pub request_id: String,
    /// The task it is uploaded to.
    pub task_id: TaskId,
    /// The credential that sent it.
    pub credential_name: String,
    /// How that credential signed.
    pub auth_method: AuthMethod,
    /// The `X-Project-Id` header, if sent.
    pub project_id: Option<String>,
    /// The TCP peer.
    pub peer_addr: String,
    /// `X-Forwarded-For`, kept only from trusted proxies.
    pub forwarded_for: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The body, byte for byte.
    pub raw_body: Vec<u8>,
    /// The body, parsed.
    pub body: UploadBody,
}

#[cfg(any(test, feature = "testing"))]
impl NewUpload {
    /// The `n`th upload of `task` with one result item (tests).
    pub fn for_test(n: usize, task: &str, dir: &str, counts: [u32; 4]) -> Self {
        let [t, d, m, x] = counts;
        let body = format!(
            r#"{{"consistency_result":[{{"dir_check":"{dir}","num_total_files":{t},"num_different_files":{d},"num_target_miss_files":{m},"num_target_more_files":{x}}}]}}"#
        );
        Self::for_test_body(n, task, body)
    }

    /// The `n`th upload of `task` with this body (tests; it must be valid).
    pub fn for_test_body(n: usize, task: &str, body: String) -> Self {
        NewUpload {
            request_id: format!("00000000-0000-4000-8000-{n:012}"),
            task_id: TaskId::parse(task).unwrap(),
            credential_name: "agent".into(),
            auth_method: AuthMethod::Token,
            project_id: None,
            peer_addr: "127.0.0.1".into(),
            forwarded_for: None,
            user_agent: None,
            body: UploadBody::parse(body.as_bytes(), 30).unwrap(),
            raw_body: body.into_bytes(),
        }
    }
}

/// What the writer answers for a stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Its id (its place in the chain).
    pub id: i64,
    /// Its entry hash.
    pub entry_hash: String,
    /// SHA-256 of its body.
    pub body_sha256: String,
    /// When it was stored.
    pub received_at: Timestamp,
    /// The earlier upload of the task with the same bytes, if any.
    pub duplicate_of: Option<i64>,
    /// Different + missing + extra files over all results.
    pub problems: i64,
    /// More problems than the task's previous upload.
    pub regressed: bool,
}

/// Upload-count and time changes to one task's summary row within a batch.
pub struct TaskDelta {
    /// Uploads added.
    pub count: i64,
    /// The first one's time.
    pub first_at: Timestamp,
    /// The last one's time.
    pub last_at: Timestamp,
    /// The last one's id.
    pub last_id: i64,
    /// The last one's problems.
    pub last_problems: i64,
    /// Whether the last one regressed.
    pub last_regressed: bool,
}

/// The latest upload of a task, as the writer last stored it.
#[derive(Clone)]
pub struct LastUpload {
    /// Its id.
    pub id: i64,
    /// SHA-256 of its body.
    pub body_sha256: String,
    /// Its problems.
    pub problems: i64,
    /// It had at least one result item.
    pub has_results: bool,
}

/// The latest upload of a task, from its summary row.
pub fn last_upload_of(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<LastUpload>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT u.id, u.body_sha256, u.different_files + u.target_miss_files + u.target_more_files,
                u.result_count > 0
         FROM tasks t JOIN uploads u ON u.id = t.last_upload_id
         WHERE t.task_id = ?1",
    )?
    .query_row(params![task_id], |r| {
        Ok(LastUpload {
            id: r.get(0)?,
            body_sha256: r.get(1)?,
            problems: r.get(2)?,
            has_results: r.get(3)?,
        })
    })
    .optional()
}

/// Adds a batch's uploads of one task to its summary row.
pub fn update_task_summary(
    conn: &Connection,
    task_id: &str,
    d: &TaskDelta,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO tasks (task_id, registered_at, registered_by, upload_count,
            first_upload_at, last_upload_at, last_upload_id, last_problems, last_regressed)
         VALUES (?1, ?2, 'upload', ?3, ?2, ?4, ?5, ?6, ?7)
         ON CONFLICT (task_id) DO UPDATE SET
            upload_count = upload_count + excluded.upload_count,
            first_upload_at = coalesce(first_upload_at, excluded.first_upload_at),
            last_upload_at = excluded.last_upload_at,
            last_upload_id = excluded.last_upload_id,
            last_problems = excluded.last_problems,
            last_regressed = excluded.last_regressed",
    )?
    .execute(params![
        task_id,
        d.first_at,
        d.count,
        d.last_at,
        d.last_id,
        d.last_problems,
        d.last_regressed
    ])?;
    Ok(())
}

/// Inserts one upload and its result rows as the entry after `head`, and
/// records them as its task's latest counts per directory.
pub fn insert_upload(
    conn: &Connection,
    head: &Head,
    previous: Option<&LastUpload>,
    upload: &NewUpload,
    now: Timestamp,
) -> Result<Receipt, rusqlite::Error> {
    let id = head.id + 1;
    // Never earlier than the previous entry, so the chain reads in time order.
    let received_at = now.max(head.received_at);
    let body_sha256 = sha256_hex(&upload.raw_body);
    let task_id = upload.task_id.as_str();
    let duplicate_of = previous
        .filter(|p| p.body_sha256 == body_sha256)
        .map(|p| p.id);

    let entry_hash = EntryFields {
        id,
        request_id: upload.request_id.as_bytes(),
        task_id: task_id.as_bytes(),
        received_at,
        credential_name: upload.credential_name.as_bytes(),
        auth_method: upload.auth_method.as_str().as_bytes(),
        body_sha256: body_sha256.as_bytes(),
        prev_hash: head.hash.as_bytes(),
    }
    .entry_hash();

    let problems = upload.body.totals().problems();
    let regressed = previous.is_some_and(|p| problems > p.problems);
    let receipt = Receipt {
        id,
        entry_hash,
        body_sha256,
        received_at,
        duplicate_of,
        problems,
        regressed,
    };
    insert_row(conn, &receipt, &head.hash, upload)?;
    // The Merkle tree grows with the chain, in the same transaction.
    let leaf = super::tree::entry_bytes(&receipt.entry_hash)?;
    super::tree::append(conn, id as u64 - 1, &leaf)?;
    insert_results(conn, id, &upload.body.results)?;
    Ok(receipt)
}

/// The upload's own row: where it came from, its body, its totals and its
/// place in the chain.
fn insert_row(
    conn: &Connection,
    receipt: &Receipt,
    prev_hash: &str,
    upload: &NewUpload,
) -> rusqlite::Result<()> {
    let totals = upload.body.totals();
    conn.prepare_cached(
        "INSERT INTO uploads (id, request_id, task_id, received_at, credential_name,
            auth_method, project_id, peer_addr, forwarded_for, user_agent, raw_body,
            body_sha256, finished_time, result_count, total_files, different_files,
            target_miss_files, target_more_files, duplicate_of, prev_hash, entry_hash,
            regressed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22)",
    )?
    .execute(params![
        receipt.id,
        upload.request_id,
        upload.task_id.as_str(),
        receipt.received_at,
        upload.credential_name,
        upload.auth_method.as_str(),
        upload.project_id,
        upload.peer_addr,
        upload.forwarded_for,
        upload.user_agent,
        upload.raw_body,
        receipt.body_sha256,
        upload.body.finished_time,
        upload.body.results.len() as i64,
        totals.num_total_files,
        totals.num_different_files,
        totals.num_target_miss_files,
        totals.num_target_more_files,
        receipt.duplicate_of,
        prev_hash,
        receipt.entry_hash,
        receipt.regressed,
    ])?;
    Ok(())
}

/// One row per result item, in the body's order.
fn insert_results(
    conn: &Connection,
    id: i64,
    results: &[crate::domain::ConsistencyResult],
) -> rusqlite::Result<()> {
    let mut insert_result = conn.prepare_cached(
        "INSERT INTO upload_results (upload_id, ordinal, dir_check, num_total_files,
            num_different_files, num_target_miss_files, num_target_more_files)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (ordinal, r) in results.iter().enumerate() {
        let [t, d, m, x] = r.counts().map(|c| c.get());
        insert_result.execute(params![
            id,
            ordinal as i64,
            r.dir_check.as_str(),
            t,
            d,
            m,
            x
        ])?;
    }
    Ok(())
}
