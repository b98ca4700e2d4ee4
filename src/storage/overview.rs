//! Figures over several tables at once: the overview the dashboard, audit page and
//! `status` open with, and what `/metrics` reads at each scrape. Each is a few
//! cheap queries (counts from indexes, the head by primary key).

use rusqlite::{Connection, OptionalExtension};

use super::uploads::first_id_at_or_after;
use super::verifications::{last_verification, VerificationRecord};
use super::StorageError;
use crate::domain::{now_ms, Timestamp};

/// The ledger at a glance.
pub struct Overview {
    /// Registered tasks.
    pub tasks: i64,
    /// Uploads stored.
    pub uploads: i64,
    /// Uploads received in the last 24 hours.
    pub uploads_24h: i64,
    /// The newest entry's id (0 when empty).
    pub head_id: i64,
    /// The newest entry's hash.
    pub head_hash: Option<String>,
    /// The newest verification run.
    pub last_verification: Option<VerificationRecord>,
}

/// The ledger at a glance.
pub fn overview(conn: &Connection) -> Result<Overview, StorageError> {
    let tasks: i64 = conn
        .prepare_cached("SELECT count(*) FROM tasks")?
        .query_row([], |r| r.get(0))?;
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, entry_hash FROM uploads ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let head_id = head.as_ref().map_or(0, |h| h.0);
    // Ids have no gaps and times never decrease, so counts are id differences.
    let first_recent = first_id_at_or_after(conn, now_ms() - 86_400_000)?;
    Ok(Overview {
        tasks,
        uploads: head_id,
        uploads_24h: (head_id - first_recent + 1).max(0),
        head_id,
        head_hash: head.map(|h| h.1),
        last_verification: last_verification(conn)?,
    })
}

/// What `/metrics` reads from the database at each scrape (each a cheap query:
/// the head by primary key, deliveries by their state, verification runs).
#[derive(Debug, Default)]
pub struct MetricsSnapshot {
    /// Entries in the chain.
    pub entries: i64,
    /// (state, count) for every state any delivery is in.
    pub deliveries: Vec<(String, i64)>,
    /// When the oldest pending delivery was queued.
    pub oldest_pending_created_at: Option<Timestamp>,
    /// (intact, runs) over every recorded verification.
    pub verifications: Vec<(bool, i64)>,
    /// The newest run's verdict.
    pub last_verification_intact: Option<bool>,
    /// Tasks per verdict in the newest finished reconciliation (none before one).
    pub reconciled_tasks: Vec<(crate::domain::reconcile::Verdict, u64)>,
}

/// What `/metrics` reads at a scrape.
pub fn metrics_snapshot(conn: &Connection) -> Result<MetricsSnapshot, StorageError> {
    let deliveries = conn
        .prepare_cached("SELECT state, count(*) FROM deliveries GROUP BY state")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let verifications = conn
        .prepare_cached("SELECT first_bad_id IS NULL, count(*) FROM verifications GROUP BY 1")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(MetricsSnapshot {
        entries: super::ledger::last_id(conn)?,
        deliveries,
        oldest_pending_created_at: super::outbox::pending_overall(conn)?.1,
        verifications,
        last_verification_intact: last_verification(conn)?.map(|v| v.first_bad_id.is_none()),
        reconciled_tasks: match super::reconciliation::last_finished_run_id(conn)? {
            Some(run) => super::reconciliation::verdict_counts(conn, run)?,
            None => Vec::new(),
        },
    })
}
