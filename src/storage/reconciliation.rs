//! Reconciliation runs and their per-task outcomes; and a task's uploads as the
//! matcher needs them (counts, `finished_time`, when SMS accepted each).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::StorageError;
use crate::domain::reconcile::{DirCounts, OurUpload, TaskFindings, Verdict};
use crate::domain::Timestamp;

/// Which tasks and rounds a run compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Only these tasks (all the ledger's when empty).
    pub tasks: Vec<String>,
    /// Only uploads received, and SMS rounds finished, from this time on.
    pub since: Option<Timestamp>,
}

/// Where a run stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum RunState {
    /// Reading SMS now (or killed while it did).
    Running,
    /// Every task in scope has its outcome.
    Finished,
    /// SMS failed mid-run; `reconcile --resume` goes on.
    Partial,
}

/// How a run came to read SMS.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum RunKind {
    /// `reconcile`, `replay --reconcile` or `serve --reconcile-interval` read
    /// each task in scope.
    Active,
    /// The answers agents read through `--proxy`, gathered over one UTC day.
    Passive,
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its id.
    pub id: i64,
    /// When it began.
    pub started_at: Timestamp,
    /// When it ended (finished or stopped).
    pub finished_at: Option<Timestamp>,
    /// The SMS endpoint read.
    pub target: String,
    /// Its scope.
    pub scope: Scope,
    /// Uploads in the ledger when it began.
    pub ledger_size: i64,
    /// Where it stands.
    pub state: RunState,
    /// Why a partial run stopped.
    pub stopped_by: Option<String>,
    /// The signed summary, once finished.
    pub summary_note: Option<String>,
    /// Active or passive.
    pub kind: RunKind,
}

const RUN_COLUMNS: &str =
    "id, started_at, finished_at, target, scope, ledger_size, state, stopped_by, summary_note, kind";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let scope: String = r.get(4)?;
    let state: String = r.get(6)?;
    Ok(Run {
        id: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        target: r.get(3)?,
        scope: serde_json::from_str(&scope).unwrap_or_default(),
        ledger_size: r.get(5)?,
        state: state.parse().unwrap_or(RunState::Partial),
        stopped_by: r.get(7)?,
        summary_note: r.get(8)?,
        kind: r.get::<_, String>(9)?.parse().unwrap_or(RunKind::Active),
    })
}

/// Starts a run against `target`, comparing with the ledger as it is now.
pub fn start_run(
    conn: &Connection,
    target: &str,
    scope: &Scope,
    now: Timestamp,
) -> Result<Run, StorageError> {
    start_run_of(conn, RunKind::Active, target, scope, now)
}

/// Starts a run of `kind`.
pub fn start_run_of(
    conn: &Connection,
    kind: RunKind,
    target: &str,
    scope: &Scope,
    now: Timestamp,
) -> Result<Run, StorageError> {
    let ledger_size: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM uploads", [], |r| r.get(0))?;
    let scope_json = serde_json::to_string(scope).expect("a scope is JSON");
    conn.execute(
        "INSERT INTO reconciliation_runs (started_at, target, scope, ledger_size, state, kind)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
        params![now, target, scope_json, ledger_size, kind.to_string()],
    )?;
    Ok(run(conn, conn.last_insert_rowid())?.expect("the run just stored"))
}

/// The run with this id.
pub fn run(conn: &Connection, id: i64) -> Result<Option<Run>, StorageError> {
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = ?1"),
            [id],
            run_from_row,
        )
        .optional()?)
}

/// The newest runs first, at most `limit`.
pub fn runs(conn: &Connection, limit: u32) -> Result<Vec<Run>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], run_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest active run that stopped before its end (partial, or killed while
/// running).
pub fn resumable(conn: &Connection) -> Result<Option<Run>, StorageError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {RUN_COLUMNS} FROM reconciliation_runs
                 WHERE state IN ('partial', 'running') AND kind = 'active'
                 ORDER BY id DESC LIMIT 1"
            ),
            [],
            run_from_row,
        )
        .optional()?)
}

/// The passive runs still gathering answers (one, unless the endpoint changed).
pub fn open_passive_runs(conn: &Connection) -> Result<Vec<Run>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs
         WHERE state = 'running' AND kind = 'passive' ORDER BY id"
    ))?;
    let rows = stmt.query_map([], run_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A passive run's ledger size becomes the ledger's as it closes: each of its
/// answers was compared with the ledger as it was when read, never a larger one.
pub fn close_ledger_size(conn: &Connection, id: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE reconciliation_runs SET ledger_size = (SELECT COALESCE(MAX(id), 0) FROM uploads)
         WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Marks a run as going again (resumed).
pub fn mark_running(conn: &Connection, id: i64) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE reconciliation_runs SET state = 'running', stopped_by = NULL, finished_at = NULL
         WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Ends a run: finished (with its signed summary) or partial (with why).
pub fn end_run(
    conn: &Connection,
    id: i64,
    state: RunState,
    stopped_by: Option<&str>,
    summary_note: Option<&str>,
    now: Timestamp,
) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE reconciliation_runs SET state = ?2, stopped_by = ?3, summary_note = ?4,
         finished_at = ?5 WHERE id = ?1",
        params![id, state.to_string(), stopped_by, summary_note, now],
    )?;
    Ok(())
}

/// One task's outcome in a run.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The task.
    pub task_id: String,
    /// What was found.
    pub verdict: Verdict,
    /// Why it was not checked.
    pub reason: Option<String>,
    /// When SMS was asked.
    pub checked_at: Timestamp,
    /// SMS's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// SMS's answer, byte for byte.
    pub answer: Option<Vec<u8>>,
    /// Its SHA-256 (hex).
    pub answer_sha256: Option<String>,
    /// Which rounds matched which uploads, and what did not.
    pub findings: TaskFindings,
}

/// Stores a task's outcome (again, on a resumed run).
pub fn record_task(conn: &Connection, run_id: i64, o: &TaskOutcome) -> Result<(), StorageError> {
    conn.execute(
        "INSERT OR REPLACE INTO reconciliation_tasks
         (run_id, task_id, verdict, reason, checked_at, http_status, answer, answer_sha256, findings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            run_id,
            o.task_id,
            o.verdict.as_str(),
            o.reason,
            o.checked_at,
            o.http_status,
            o.answer,
            o.answer_sha256,
            serde_json::to_string(&o.findings).expect("findings are JSON"),
        ],
    )?;
    Ok(())
}

fn outcome_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskOutcome> {
    let verdict: String = r.get(1)?;
    let findings: String = r.get(7)?;
    Ok(TaskOutcome {
        task_id: r.get(0)?,
        verdict: verdict.parse().unwrap_or(Verdict::NotChecked),
        reason: r.get(2)?,
        checked_at: r.get(3)?,
        http_status: r.get(4)?,
        answer: r.get(5)?,
        answer_sha256: r.get(6)?,
        findings: serde_json::from_str(&findings).unwrap_or_default(),
    })
}

/// A run's outcomes in task order, after `after_task`, at most `limit`, only of
/// `verdict` when given.
pub fn outcomes(
    conn: &Connection,
    run_id: i64,
    verdict: Option<Verdict>,
    after_task: &str,
    limit: u32,
) -> Result<Vec<TaskOutcome>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT task_id, verdict, reason, checked_at, http_status, answer, answer_sha256, findings
         FROM reconciliation_tasks
         WHERE run_id = ?1 AND (?2 IS NULL OR verdict = ?2) AND task_id > ?3
         ORDER BY task_id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![run_id, verdict.map(Verdict::as_str), after_task, limit],
        outcome_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many of a run's tasks have each verdict, in `Verdict`'s order.
pub fn verdict_counts(conn: &Connection, run_id: i64) -> Result<Vec<(Verdict, u64)>, StorageError> {
    use strum::VariantArray;
    let mut counts: Vec<(Verdict, u64)> = Verdict::VARIANTS.iter().map(|v| (*v, 0)).collect();
    let mut stmt = conn.prepare(
        "SELECT verdict, COUNT(*) FROM reconciliation_tasks WHERE run_id = ?1 GROUP BY verdict",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (verdict, n) = row?;
        if let Some(slot) = counts.iter_mut().find(|(v, _)| v.as_str() == verdict) {
            slot.1 = n as u64;
        }
    }
    Ok(counts)
}

/// The tasks of `scope` not yet checked in run `run_id`, in task order.
pub fn tasks_to_check(
    conn: &Connection,
    run_id: i64,
    scope: &Scope,
) -> Result<Vec<String>, StorageError> {
    let done: std::collections::HashSet<String> = {
        let mut stmt =
            conn.prepare("SELECT task_id FROM reconciliation_tasks WHERE run_id = ?1")?;
        let rows = stmt.query_map([run_id], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut tasks: Vec<String> = if scope.tasks.is_empty() {
        // A task with an upload in the scope's time (each task's last upload is kept
        // on its summary, so no upload is scanned).
        let mut stmt = conn.prepare(
            "SELECT task_id FROM tasks WHERE last_upload_at IS NOT NULL AND last_upload_at >= ?1
             ORDER BY task_id",
        )?;
        let rows = stmt.query_map([scope.since.unwrap_or(i64::MIN)], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    } else {
        scope.tasks.clone()
    };
    tasks.retain(|t| !done.contains(t));
    Ok(tasks)
}

/// Whether the ledger holds an upload of the task (only such tasks are
/// reconciled, actively or passively).
pub fn has_uploads(conn: &Connection, task_id: &str) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1 AND last_upload_at IS NOT NULL)",
        )?
        .query_row([task_id], |r| r.get(0))?)
}

/// A task's uploads (received from `since` on, up to `last_id`) as the matcher
/// sees them: counts, `finished_time`, and when `target` accepted each from here
/// (deliveries SMS had accepted by `delivered_by`, when SMS was read; one still
/// under way then may or may not be in SMS's answer, so it is not expected).
pub fn task_uploads(
    conn: &Connection,
    task_id: &str,
    since: Option<Timestamp>,
    last_id: i64,
    target: &str,
    delivered_by: Timestamp,
) -> Result<Vec<OurUpload>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.received_at, u.finished_time, length(u.raw_body) = 0
         FROM uploads u WHERE u.task_id = ?1 AND u.id <= ?2 AND u.received_at >= ?3
         ORDER BY u.id",
    )?;
    let rows = stmt.query_map(params![task_id, last_id, since.unwrap_or(i64::MIN)], |r| {
        Ok((
            OurUpload {
                id: r.get(0)?,
                received_at: r.get(1)?,
                finished_time: r.get(2)?,
                delivered: Vec::new(),
                dirs: None,
            },
            r.get::<_, bool>(3)?,
        ))
    })?;
    // Each delivery to `target` that SMS accepted: its successful attempt.
    let mut deliveries = conn.prepare_cached(
        "SELECT a.at, a.at + a.latency_ms FROM deliveries d
         JOIN delivery_attempts a ON a.delivery_id = d.id
         WHERE d.upload_id = ?1 AND d.target = ?2 AND d.state = 'delivered'
           AND a.http_status BETWEEN 200 AND 299 AND a.at + a.latency_ms <= ?3
         ORDER BY a.id",
    )?;
    let mut dirs = conn.prepare_cached(
        "SELECT dir_check, num_total_files, num_different_files, num_target_miss_files,
                num_target_more_files
         FROM upload_results WHERE upload_id = ?1 ORDER BY ordinal",
    )?;
    let mut uploads = Vec::new();
    for row in rows {
        let (mut upload, purged) = row?;
        upload.delivered = deliveries
            .query_map(params![upload.id, target, delivered_by], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        if !purged {
            let found = dirs.query_map([upload.id], |r| {
                Ok(DirCounts {
                    dir_check: r.get(0)?,
                    counts: [
                        r.get::<_, u32>(1)?.into(),
                        r.get::<_, u32>(2)?.into(),
                        r.get::<_, u32>(3)?.into(),
                        r.get::<_, u32>(4)?.into(),
                    ],
                })
            })?;
            upload.dirs = Some(found.collect::<Result<_, _>>()?);
        }
        uploads.push(upload);
    }
    Ok(uploads)
}

/// The SHA-256 over a run's answers that its summary signs: of one line per
/// task, in task order, `<task id> <answer's SHA-256 or ->\n`.
pub fn answers_digest(conn: &Connection, run_id: i64) -> Result<String, StorageError> {
    use sha2::{Digest, Sha256};
    let mut stmt = conn.prepare(
        "SELECT task_id, answer_sha256 FROM reconciliation_tasks WHERE run_id = ?1
         ORDER BY task_id",
    )?;
    let mut rows = stmt.query([run_id])?;
    let mut hasher = Sha256::new();
    while let Some(r) = rows.next()? {
        let task: String = r.get(0)?;
        let hash: Option<String> = r.get(1)?;
        hasher.update(format!("{task} {}\n", hash.as_deref().unwrap_or("-")));
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A finished run that found tasks not matching, with its counts per verdict
/// and some of those tasks.
pub type DiscrepantRun = (Run, Vec<(Verdict, u64)>, Vec<(String, Verdict)>);

/// Finished runs after run `after_id` that found tasks not matching, oldest
/// first, each with its counts and up to `sample` such tasks (what a
/// notification names).
pub fn discrepant_runs_after(
    conn: &Connection,
    after_id: i64,
    sample: u32,
) -> Result<Vec<DiscrepantRun>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM reconciliation_runs r
         WHERE r.id > ?1 AND r.state = 'finished' AND EXISTS (
           SELECT 1 FROM reconciliation_tasks t WHERE t.run_id = r.id
             AND t.verdict IN ('missing-in-sms', 'foreign', 'differs'))
         ORDER BY r.id"
    ))?;
    let runs: Vec<Run> = stmt
        .query_map([after_id], run_from_row)?
        .collect::<Result<_, _>>()?;
    let mut tasks = conn.prepare(
        "SELECT task_id, verdict FROM reconciliation_tasks
         WHERE run_id = ?1 AND verdict IN ('missing-in-sms', 'foreign', 'differs')
         ORDER BY task_id LIMIT ?2",
    )?;
    let mut found = Vec::new();
    for run in runs {
        let named = tasks
            .query_map(params![run.id, sample], |r| {
                let v: String = r.get(1)?;
                Ok((r.get(0)?, v.parse().unwrap_or(Verdict::NotChecked)))
            })?
            .collect::<Result<_, _>>()?;
        found.push((run.clone(), verdict_counts(conn, run.id)?, named));
    }
    Ok(found)
}

/// The newest run's id (0 when there is none).
pub fn last_run_id(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM reconciliation_runs",
        [],
        |r| r.get(0),
    )?)
}

/// The newest finished active run's id (a passive one covers only the tasks
/// agents read).
pub fn last_finished_run_id(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn.query_row(
        "SELECT MAX(id) FROM reconciliation_runs WHERE state = 'finished' AND kind = 'active'",
        [],
        |r| r.get(0),
    )?)
}

/// A task's outcome in the newest run that checked it.
#[derive(Debug, Clone)]
pub struct LatestOutcome {
    /// The run.
    pub run_id: i64,
    /// Its verdict for the task.
    pub verdict: Verdict,
    /// When SMS was asked.
    pub checked_at: Timestamp,
    /// Why it was not checked.
    pub reason: Option<String>,
}

/// The task's newest outcome, in whichever run (active or passive) checked it
/// last.
pub fn latest_outcome_of(
    conn: &Connection,
    task_id: &str,
) -> Result<Option<LatestOutcome>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT run_id, verdict, checked_at, reason FROM reconciliation_tasks
             WHERE task_id = ?1 ORDER BY checked_at DESC, run_id DESC LIMIT 1",
            [task_id],
            |r| {
                let verdict: String = r.get(1)?;
                Ok(LatestOutcome {
                    run_id: r.get(0)?,
                    verdict: verdict.parse().unwrap_or(Verdict::NotChecked),
                    checked_at: r.get(2)?,
                    reason: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// The task's verdict in run `run_id`, if that run checked it.
pub fn verdict_in(
    conn: &Connection,
    run_id: i64,
    task_id: &str,
) -> Result<Option<Verdict>, StorageError> {
    let verdict: Option<String> = conn
        .prepare_cached(
            "SELECT verdict FROM reconciliation_tasks WHERE run_id = ?1 AND task_id = ?2",
        )?
        .query_row(params![run_id, task_id], |r| r.get(0))
        .optional()?;
    Ok(verdict.map(|v| v.parse().unwrap_or(Verdict::NotChecked)))
}
