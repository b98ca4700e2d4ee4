//! Retention: purging old uploads' raw bodies and result rows while their ledger
//! entries stay verifiable, a short step at a time so that ingest waits at most
//! one step, then handing the freed pages back to the file system. Each purge is
//! recorded in the admin log.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use crate::domain::Timestamp;
use crate::storage::retention::{self, Candidates, NewAdminEntry, Purged};
use crate::storage::StorageError;

/// One write, run in a transaction by whoever owns the writing: the service's
/// writer thread, or the command line's own connection.
pub type Step = Box<dyn Fn(&Connection) -> Result<(), rusqlite::Error> + Send>;

/// Runs a [`Step`] in a transaction of its own and commits it.
pub type Writes<'a> = &'a dyn Fn(Step) -> Result<(), WriteError>;

/// Why a step was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The writer refused or failed.
    #[error(transparent)]
    Writer(#[from] crate::storage::writer::SubmitError),
    /// A dry run writes nothing.
    #[error("a dry run writes nothing")]
    DryRun,
}

/// Why a purge stopped.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A purge step failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A purge step failed after earlier steps had purged.
    #[error("the purge stopped after {}: {source}", crate::domain::counted(*purged, "upload"))]
    Stopped {
        /// Uploads purged before it failed.
        purged: u64,
        /// Why it failed.
        #[source]
        source: WriteError,
    },
}

/// Ids per first purge step, and the bounds steps are sized within.
const FIRST_STEP_IDS: i64 = 1024;
const MAX_STEP_IDS: i64 = 1 << 20;
const MIN_STEP_IDS: i64 = 16;
const FIRST_STEP_PAGES: u32 = 256;

/// What a purge removes, and whether it only reports.
#[derive(Debug, Clone)]
pub struct PurgeSettings {
    /// Uploads received before this are purged.
    pub before: Timestamp,
    /// Who asked (the admin log's "who").
    pub actor: String,
    /// The longest one step may hold the write lock (and so delay ingest).
    pub step: Duration,
    /// Only report what would be purged.
    pub dry_run: bool,
}

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    /// Uploads received before this were candidates.
    pub before: Timestamp,
    /// The last upload received before `before` (0: none).
    pub up_to_id: i64,
    /// What the purge found to do (what a dry run reports).
    pub plan: Candidates,
    /// What was purged.
    pub purged: Purged,
    /// Pages handed back to the file system, and whether the database can.
    pub freed_pages: u64,
    /// Whether freed pages were returned to the file system.
    pub incremental_vacuum: bool,
    /// Nothing was purged, only counted.
    pub dry_run: bool,
    /// The admin log's row (none for a dry run or when nothing was due).
    pub log_id: Option<i64>,
}

/// Sizes steps to take between a quarter and half of the target time (what is
/// measured is the step's SQL; its commit writes and syncs the pages it changed
/// on top, and the next step may be slower than the last): doubles after a
/// quick one, halves after a slow one.
struct StepSize {
    target: Duration,
}

impl StepSize {
    fn next(&self, size: i64, took: Duration, (min, max): (i64, i64)) -> i64 {
        if took < self.target / 4 {
            (size * 2).min(max)
        } else if took > self.target / 2 {
            (size / 2).max(min)
        } else {
            size
        }
    }
}

/// Purges the uploads received before `settings.before` (those with a pending
/// delivery stay), then returns free pages. `read` plans the purge; every write
/// goes through `writes`. Uses `now` for the admin log and `purged_at`.
pub fn purge(
    read: &Connection,
    writes: Writes<'_>,
    settings: &PurgeSettings,
    now: &dyn Fn() -> Timestamp,
) -> Result<PurgeReport, PurgeError> {
    let up_to_id = retention::last_id_before(read, settings.before)?;
    let plan = retention::candidates(read, up_to_id)?;
    let incremental_vacuum = retention::incremental_vacuum(read)?;
    let mut report = PurgeReport {
        before: settings.before,
        up_to_id,
        plan: plan.clone(),
        purged: Purged::default(),
        freed_pages: 0,
        incremental_vacuum,
        dry_run: settings.dry_run,
        log_id: None,
    };
    if settings.dry_run || plan.uploads == 0 {
        return Ok(report);
    }
    let started_at = now();
    let log_id = log_start(writes, settings, up_to_id, started_at)?;
    report.log_id = Some(log_id);
    let sizing = StepSize {
        target: settings.step,
    };
    let mut purged = Purged::default();
    let (mut after, mut width) = (0i64, FIRST_STEP_IDS);
    while after < up_to_id {
        let until = (after + width).min(up_to_id);
        let step_out = Arc::new(Mutex::new((Purged::default(), Duration::ZERO)));
        let out = step_out.clone();
        let written = writes(Box::new(move |conn| {
            let t = Instant::now();
            let p = retention::purge_range(conn, after, until, started_at)?;
            *out.lock() = (p, t.elapsed());
            Ok(())
        }));
        if let Err(e) = written {
            let failed = format!("failed: {e}");
            let _ = writes(Box::new(move |conn| {
                // Stamped with its start: `now` may not be called from here.
                retention::finish(conn, log_id, started_at, &failed, Some(purged), None)
            }));
            return Err(PurgeError::Stopped {
                purged: purged.uploads,
                source: e,
            });
        }
        let (p, took) = *step_out.lock();
        purged += p;
        width = sizing.next(width, took, (MIN_STEP_IDS, MAX_STEP_IDS));
        after = until;
    }
    let finished_at = now();
    let kept = plan.kept_pending;
    writes(Box::new(move |conn| {
        retention::finish(conn, log_id, finished_at, "done", Some(purged), Some(kept))
    }))?;
    report.purged = purged;
    if incremental_vacuum {
        report.freed_pages = vacuum(writes, &sizing)?;
    }
    Ok(report)
}

/// The purge's entry in the admin log (and any purge that never finished marked
/// interrupted); its id.
fn log_start(
    writes: Writes<'_>,
    settings: &PurgeSettings,
    up_to_id: i64,
    started_at: Timestamp,
) -> Result<i64, WriteError> {
    let log_id = Arc::new(Mutex::new(0i64));
    let (out, actor, before) = (log_id.clone(), settings.actor.clone(), settings.before);
    writes(Box::new(move |conn| {
        retention::mark_interrupted(conn, started_at)?;
        *out.lock() = retention::start(
            conn,
            &NewAdminEntry {
                started_at,
                actor: &actor,
                action: "purge",
                before_time: Some(before),
                up_to_id: Some(up_to_id),
                detail: None,
            },
        )?;
        Ok(())
    }))?;
    let id = *log_id.lock();
    Ok(id)
}

/// Hands free pages back to the file system, a step at a time.
fn vacuum(writes: Writes<'_>, sizing: &StepSize) -> Result<u64, WriteError> {
    let mut pages = FIRST_STEP_PAGES;
    let mut freed = 0;
    loop {
        let out = Arc::new(Mutex::new((0u64, Duration::ZERO)));
        let step_out = out.clone();
        writes(Box::new(move |conn| {
            let t = Instant::now();
            let n = retention::vacuum_step(conn, pages)?;
            *step_out.lock() = (n, t.elapsed());
            Ok(())
        }))?;
        let (n, took) = *out.lock();
        if n == 0 {
            return Ok(freed);
        }
        freed += n;
        pages = sizing.next(i64::from(pages), took, (16, 1 << 20)) as u32;
    }
}

/// How often `serve --retention` looks for uploads to purge.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// `serve --retention`: what to keep, and how long one step may take.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Uploads received longer ago than this are purged.
    pub keep: Duration,
    /// How long one purge step may hold the writer.
    pub step: Duration,
}

impl RetentionSettings {
    /// The longest one purge or vacuum step holds the writer, unless told.
    pub const DEFAULT_STEP: Duration = Duration::from_millis(50);
}

/// Purges what is older than `settings.keep` at start and then every hour, for
/// as long as the service runs; each step goes through the writer with ingest.
pub async fn retention_loop(
    db: std::path::PathBuf,
    settings: RetentionSettings,
    reads: crate::storage::ReadPool,
    writer: crate::storage::writer::WriterHandle,
    stop: tokio_util::sync::CancellationToken,
) {
    let actor = format!("serve --retention {}", settings.keep.as_secs() / 86_400);
    loop {
        let (db, reads, writer, actor, settings2) = (
            db.clone(),
            reads.clone(),
            writer.clone(),
            actor.clone(),
            settings.clone(),
        );
        let ran =
            tokio::task::spawn_blocking(move || -> Result<Option<PurgeReport>, PurgeError> {
                use crate::storage::lock::{LockKind, ProcessLock};
                // Another purge (the command line's) is at it: next time.
                let Ok(_purging) = ProcessLock::acquire(&db, LockKind::Purge) else {
                    return Ok(None);
                };
                let now = crate::domain::now_ms();
                let purge = PurgeSettings {
                    before: now.saturating_sub(settings2.keep.as_millis() as i64),
                    actor,
                    step: settings2.step,
                    dry_run: false,
                };
                let writes = |step: Step| Ok(writer.execute_blocking(step)?);
                reads
                    .with(|read| Ok(self::purge(read, &writes, &purge, &crate::domain::now_ms)))?
                    .map(Some)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match ran {
            Ok(Some(r)) if r.purged.uploads > 0 => tracing::info!(
                uploads = r.purged.uploads,
                result_rows = r.purged.result_rows,
                bytes = r.purged.bytes,
                kept_pending = r.plan.kept_pending,
                freed_pages = r.freed_pages,
                before = %crate::domain::format_timestamp(r.before),
                "retention: purged old uploads' bodies and result rows (ledger entries kept)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("retention: the purge failed: {e}"),
        }
        if super::background::pause(&stop, RETENTION_EVERY).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_grow_when_quick_and_shrink_when_slow_within_bounds() {
        let s = StepSize {
            target: Duration::from_millis(50),
        };
        assert_eq!(s.next(100, Duration::from_millis(10), (16, 1000)), 200);
        assert_eq!(s.next(800, Duration::from_millis(10), (16, 1000)), 1000);
        assert_eq!(s.next(100, Duration::from_millis(20), (16, 1000)), 100);
        assert_eq!(s.next(100, Duration::from_millis(30), (16, 1000)), 50);
        assert_eq!(s.next(20, Duration::from_millis(80), (16, 1000)), 16);
    }
}
