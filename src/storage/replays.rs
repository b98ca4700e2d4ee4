//! The replays table: selecting the uploads a replay sends, creating the replay
//! with its deliveries in one transaction, and reading its progress.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::uploads::id_range;
use super::StorageError;
use crate::domain::{now_ms, DeliveryState, ReplayFilter, ReplayRunner};

/// The uploads a filter selects, oldest first.
#[derive(Debug, Default)]
pub struct Selection {
    /// The uploads selected, by id, with their tasks.
    pub uploads: Vec<(i64, String)>,
    /// Uploads per task.
    pub per_task: BTreeMap<String, usize>,
}

/// Selects the uploads a replay with `filter` sends.
pub fn select(conn: &Connection, filter: &ReplayFilter) -> Result<Selection, StorageError> {
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    // One pass over the range, whatever the number of tasks named.
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.task_id,
            (SELECT d.state FROM deliveries d WHERE d.upload_id = u.id ORDER BY d.id DESC LIMIT 1)
         FROM uploads u
         WHERE u.id >= ?1 AND u.id < ?2
           AND (?3 IS NULL OR u.task_id IN (SELECT value FROM json_each(?3)))
           AND u.purged_at IS NULL
         ORDER BY u.id",
    )?;
    let tasks = (!filter.tasks.is_empty()).then(|| {
        serde_json::to_string(&filter.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>())
            .expect("strings serialize")
    });
    let mut uploads: Vec<(i64, String)> = Vec::new();
    let rows = stmt.query_map(params![lo, hi, tasks], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<DeliveryState>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, task, last_state) = row?;
        if filter.state.is_none() || last_state == filter.state {
            uploads.push((id, task));
        }
    }
    uploads.sort();
    uploads.dedup();
    if filter.latest_per_task {
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        for (id, task) in &uploads {
            newest.insert(task.clone(), *id);
        }
        uploads.retain(|(id, task)| newest.get(task) == Some(id));
    }
    let mut per_task = BTreeMap::new();
    for (_, task) in &uploads {
        *per_task.entry(task.clone()).or_insert(0) += 1;
    }
    Ok(Selection { uploads, per_task })
}

/// Creates the replay and a pending delivery per selected upload, atomically.
pub fn create(
    conn: &Connection,
    selection: &Selection,
    filter: &ReplayFilter,
    target: &str,
    runner: ReplayRunner,
    requested_by: &str,
) -> rusqlite::Result<i64> {
    let replay_id = create_replay(
        conn,
        selection.uploads.len(),
        filter,
        target,
        runner,
        requested_by,
    )?;
    add_deliveries(conn, replay_id, target, &selection.uploads)?;
    Ok(replay_id)
}

/// The replay's own row, for `total` deliveries to be added.
pub fn create_replay(
    conn: &Connection,
    total: usize,
    filter: &ReplayFilter,
    target: &str,
    runner: ReplayRunner,
    requested_by: &str,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO replays (created_at, requested_by, runner, target, filter, total)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now_ms(),
            requested_by,
            runner.as_str(),
            target,
            serde_json::to_string(filter).unwrap_or_default(),
            total as i64
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// A pending delivery of each of `uploads` (id, task) for the replay.
pub fn add_deliveries(
    conn: &Connection,
    replay_id: i64,
    target: &str,
    uploads: &[(i64, String)],
) -> rusqlite::Result<()> {
    let now = now_ms();
    let mut insert = conn.prepare_cached(
        // An upload purged since it was selected has no body left to send.
        "INSERT INTO deliveries (upload_id, task_id, target, trigger, replay_id, state, created_at, next_attempt_at)
         SELECT ?1, ?2, ?3, 'replay', ?4, 'pending', ?5, ?5
         WHERE (SELECT purged_at FROM uploads WHERE id = ?1) IS NULL",
    )?;
    for (id, task) in uploads {
        insert.execute(params![id, task, target, replay_id, now])?;
    }
    Ok(())
}

/// The newest command-line replay that still has pending deliveries.
pub fn resumable(conn: &Connection) -> Result<Option<(i64, String)>, StorageError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT r.id, r.target FROM replays r
             WHERE r.runner = 'cli' AND EXISTS
               (SELECT 1 FROM deliveries d WHERE d.replay_id = r.id AND d.state = 'pending')
             ORDER BY r.id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// A replay's deliveries counted by state.
#[derive(Debug, Default)]
pub struct StateCounts(BTreeMap<&'static str, i64>);

impl StateCounts {
    /// Deliveries in this state.
    pub fn get(&self, state: DeliveryState) -> i64 {
        self.0.get(state.as_str()).copied().unwrap_or(0)
    }
}

/// Counts of a replay's deliveries by state.
pub fn states(conn: &Connection, replay_id: i64) -> Result<StateCounts, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, count(*) FROM deliveries WHERE replay_id = ?1 GROUP BY state",
    )?;
    let rows = stmt.query_map(params![replay_id], |r| {
        Ok((r.get::<_, DeliveryState>(0)?.as_str(), r.get(1)?))
    })?;
    Ok(StateCounts(rows.collect::<Result<_, _>>()?))
}

/// Marks a replay finished (nothing of it pending).
pub fn finish(conn: &Connection, replay_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE replays SET finished_at = ?2 WHERE id = ?1 AND finished_at IS NULL",
        params![replay_id, now_ms()],
    )?;
    Ok(())
}

/// The tasks a replay sends uploads of, in task order.
pub fn tasks_of(conn: &Connection, replay_id: i64) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn
        .prepare("SELECT DISTINCT task_id FROM deliveries WHERE replay_id = ?1 ORDER BY task_id")?;
    let rows = stmt.query_map([replay_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
