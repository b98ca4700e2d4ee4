//! Replays: sending stored uploads to SMS again, after an outage or to another
//! region or account. A replay is a set of deliveries created in one transaction;
//! whoever runs it (the command line, or the service for web replays) sends them
//! with the same sender as live forwarding. Delivered ones are never sent again,
//! so an interrupted replay is continued with `--resume`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::domain::{TaskId, Timestamp};
use crate::outbox::{self, DeliveryState, Outcome, Recorder};
use crate::storage::queries::id_range;
use crate::storage::writer::now_ms;
use crate::storage::StorageError;

/// Which uploads a replay sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayFilter {
    #[serde(default)]
    pub tasks: Vec<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only uploads whose latest delivery is in this state; `None` is any upload.
    pub state: Option<String>,
    #[serde(default)]
    pub latest_per_task: bool,
}

impl ReplayFilter {
    pub fn validate(&self) -> Result<(), String> {
        for t in &self.tasks {
            TaskId::parse(t)?;
        }
        if let Some(s) = &self.state {
            if s != "any" && DeliveryState::parse(s).is_none() {
                return Err(format!(
                    "state: must be pending, failed, dead, delivered, superseded or any, not {s:?}"
                ));
            }
        }
        Ok(())
    }
}

/// The uploads a filter selects, oldest first.
#[derive(Debug, Default, Serialize)]
pub struct Selection {
    pub uploads: Vec<(i64, String)>,
    /// Uploads per task.
    pub per_task: BTreeMap<String, usize>,
}

pub fn select(conn: &Connection, filter: &ReplayFilter) -> Result<Selection, StorageError> {
    let (lo, hi) = id_range(conn, filter.since, filter.until)?;
    let state = filter.state.as_deref().filter(|s| *s != "any");
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.task_id,
            (SELECT d.state FROM deliveries d WHERE d.upload_id = u.id ORDER BY d.id DESC LIMIT 1)
         FROM uploads u
         WHERE u.id >= ?1 AND u.id < ?2 AND (?3 IS NULL OR u.task_id = ?3)
         ORDER BY u.id",
    )?;
    let mut uploads: Vec<(i64, String)> = Vec::new();
    let tasks: Vec<Option<&str>> = if filter.tasks.is_empty() {
        vec![None]
    } else {
        filter.tasks.iter().map(|t| Some(t.as_str())).collect()
    };
    for task in tasks {
        let rows = stmt.query_map(params![lo, hi, task], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, task, last_state) = row?;
            if state.is_none() || last_state.as_deref() == state {
                uploads.push((id, task));
            }
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

/// Who sends a replay's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRunner {
    Server,
    Cli,
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
    let now = now_ms();
    conn.execute(
        "INSERT INTO replays (created_at, requested_by, runner, target, filter, total)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now,
            requested_by,
            match runner {
                ReplayRunner::Server => "server",
                ReplayRunner::Cli => "cli",
            },
            target,
            serde_json::to_string(filter).unwrap_or_default(),
            selection.uploads.len() as i64
        ],
    )?;
    let replay_id = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (upload_id, task_id, target, trigger, replay_id, state, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, 'replay', ?4, 'pending', ?5, ?5)",
    )?;
    for (id, task) in &selection.uploads {
        insert.execute(params![id, task, target, replay_id, now])?;
    }
    Ok(replay_id)
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

/// Counts of a replay's deliveries by state.
pub fn states(conn: &Connection, replay_id: i64) -> Result<BTreeMap<String, i64>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, count(*) FROM deliveries WHERE replay_id = ?1 GROUP BY state",
    )?;
    let rows = stmt.query_map(params![replay_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn finish(conn: &Connection, replay_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE replays SET finished_at = ?2 WHERE id = ?1 AND finished_at IS NULL",
        params![replay_id, now_ms()],
    )?;
    Ok(())
}

/// Records outcomes through the replay command's own connection (the command is
/// a process of its own, next to a running service).
pub struct DirectRecorder(pub Arc<Mutex<Connection>>);

impl DirectRecorder {
    async fn run(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), String> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

impl Recorder for DirectRecorder {
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), String> {
        self.run(move |c| {
            let tx = c.unchecked_transaction()?;
            outcomes.iter().try_for_each(|o| outbox::record(&tx, o))?;
            tx.commit()
        })
        .await
    }
}
