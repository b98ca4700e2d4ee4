//! Reading the `uploads` table and its result rows: a task's uploads a page at a
//! time, one upload whole, chart points, sparklines and time bounds. Every query
//! is served by the primary key or an index; none scans all uploads.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{Timestamp, Totals};
use crate::storage::outbox::{deliveries_of, DeliveryRecord};
use crate::storage::StorageError;

/// The four counts from columns `first..first + 4` of a row.
pub fn totals_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    Ok(Totals {
        num_total_files: r.get(first)?,
        num_different_files: r.get(first + 1)?,
        num_target_miss_files: r.get(first + 2)?,
        num_target_more_files: r.get(first + 3)?,
    })
}

/// An upload as a task's list of uploads shows it.
#[derive(Debug)]
pub struct UploadSummary {
    /// Its id (its place in the chain).
    pub id: i64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// How many result items it holds.
    pub result_count: i64,
    /// The sums of its result items.
    pub totals: Totals,
    /// The earlier upload of the task with the same bytes, if any.
    pub duplicate_of: Option<i64>,
    /// The agent's `finished_time`, as sent.
    pub finished_time: Option<i64>,
    /// More problems (different + missing + extra files) than the previous upload.
    pub regressed: bool,
}

/// Which of a task's uploads to list.
#[derive(Default)]
pub struct UploadPageQuery {
    /// Uploads on the page.
    pub limit: u32,
    /// Only uploads older than this one (the next page).
    pub before_id: Option<i64>,
    /// Only uploads received at or after this time.
    pub since: Option<Timestamp>,
    /// Only uploads received before this time.
    pub until: Option<Timestamp>,
    /// Only uploads that regressed.
    pub regressed_only: bool,
}

/// The smallest upload id received at or after `t` (one past the last id when
/// none is). `received_at` never decreases as ids grow, so this is a binary search
/// over the primary key instead of an index on time.
pub fn first_id_at_or_after(conn: &Connection, t: Timestamp) -> Result<i64, StorageError> {
    let mut probe = conn
        .prepare_cached("SELECT id, received_at FROM uploads WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM uploads")?
        .query_row([], |r| r.get(0))?;
    let (mut lo, mut hi) = (1, last.unwrap_or(0) + 1);
    // Invariant: every id < lo is before t; every id >= hi is at or after t.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match probe
            .query_row(params![mid], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?
        {
            Some((id, at)) if at < t => lo = id + 1,
            Some(_) | None => hi = mid,
        }
    }
    Ok(lo)
}

/// `since` (inclusive) and `until` (exclusive) as an id range `[lo, hi)`.
pub fn id_range(
    conn: &Connection,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(i64, i64), StorageError> {
    let lo = since.map_or(Ok(i64::MIN), |t| first_id_at_or_after(conn, t))?;
    let hi = until.map_or(Ok(i64::MAX), |t| first_id_at_or_after(conn, t))?;
    Ok((lo, hi))
}

/// One page of a task's uploads, newest first, and the `before_id` of the next page.
pub fn task_uploads(
    conn: &Connection,
    task_id: &str,
    q: &UploadPageQuery,
) -> Result<(Vec<UploadSummary>, Option<i64>), StorageError> {
    let (lo, hi) = id_range(conn, q.since, q.until)?;
    // Two statements so that each has its index (the regressed one is partial).
    let mut stmt = conn.prepare_cached(if q.regressed_only {
        "SELECT id, received_at, result_count, total_files, different_files,
                target_miss_files, target_more_files, duplicate_of, finished_time, regressed
         FROM uploads
         WHERE task_id = ?1 AND id >= ?2 AND id < ?3 AND regressed = 1
         ORDER BY id DESC LIMIT ?4"
    } else {
        "SELECT id, received_at, result_count, total_files, different_files,
                target_miss_files, target_more_files, duplicate_of, finished_time, regressed
         FROM uploads
         WHERE task_id = ?1 AND id >= ?2 AND id < ?3
         ORDER BY id DESC LIMIT ?4"
    })?;
    let rows = stmt.query_map(
        params![
            task_id,
            lo,
            hi.min(q.before_id.unwrap_or(i64::MAX)),
            i64::from(q.limit) + 1
        ],
        |r| {
            Ok(UploadSummary {
                id: r.get(0)?,
                received_at: r.get(1)?,
                result_count: r.get(2)?,
                totals: totals_from_row(r, 3)?,
                duplicate_of: r.get(7)?,
                finished_time: r.get(8)?,
                regressed: r.get(9)?,
            })
        },
    )?;
    let mut uploads: Vec<UploadSummary> = rows.collect::<Result<_, _>>()?;
    let next = if uploads.len() > q.limit as usize {
        uploads.truncate(q.limit as usize);
        uploads.last().map(|u| u.id)
    } else {
        None
    };
    Ok((uploads, next))
}

/// One result item of an upload, as stored.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// Its place in the upload's `consistency_result`, from 0.
    pub ordinal: i64,
    /// The directory it checked.
    pub dir_check: String,
    /// Files checked.
    pub num_total_files: i64,
    /// Files that differ.
    pub num_different_files: i64,
    /// Files missing on the target.
    pub num_target_miss_files: i64,
    /// Files only on the target.
    pub num_target_more_files: i64,
}

/// One upload whole: who sent it, its chain entry, its results, its raw body and
/// its deliveries to SMS.
#[derive(Debug)]
pub struct UploadRecord {
    /// Its id (its place in the chain).
    pub id: i64,
    /// The `X-Request-Id` it was answered with.
    pub request_id: String,
    /// The task it was uploaded to.
    pub task_id: String,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The credential that sent it.
    pub credential_name: String,
    /// How that credential signed (`token` or `aksk`).
    pub auth_method: String,
    /// The `X-Project-Id` header, if sent.
    pub project_id: Option<String>,
    /// The TCP peer.
    pub peer_addr: String,
    /// `X-Forwarded-For`, kept only from trusted proxies.
    pub forwarded_for: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// SHA-256 of the raw body.
    pub body_sha256: String,
    /// The agent's `finished_time`, as sent.
    pub finished_time: Option<i64>,
    /// How many result items it holds.
    pub result_count: i64,
    /// The sums of its result items.
    pub totals: Totals,
    /// The earlier upload of the task with the same bytes, if any.
    pub duplicate_of: Option<i64>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub entry_hash: String,
    /// Its result items, in order (none once purged).
    pub results: Vec<ResultRow>,
    /// Deliveries to SMS (live and replays), each with its attempts.
    pub deliveries: Vec<DeliveryRecord>,
    /// The stored bytes as a string (lossy only if they were not UTF-8, which the
    /// ingest path never accepts); empty once purged.
    pub raw_body: String,
    /// When retention purged the raw body and result rows (the entry stays).
    pub purged_at: Option<Timestamp>,
}

/// One upload whole, or `None` if there is no upload with that id.
pub fn upload(conn: &Connection, id: i64) -> Result<Option<UploadRecord>, StorageError> {
    let record = conn
        .prepare_cached(
            "SELECT id, request_id, task_id, received_at, credential_name, auth_method,
                    project_id, peer_addr, forwarded_for, user_agent, body_sha256,
                    finished_time, result_count, total_files, different_files,
                    target_miss_files, target_more_files, duplicate_of, prev_hash,
                    entry_hash, raw_body, purged_at
             FROM uploads WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            let raw: Vec<u8> = r.get(20)?;
            Ok(UploadRecord {
                id: r.get(0)?,
                request_id: r.get(1)?,
                task_id: r.get(2)?,
                received_at: r.get(3)?,
                credential_name: r.get(4)?,
                auth_method: r.get(5)?,
                project_id: r.get(6)?,
                peer_addr: r.get(7)?,
                forwarded_for: r.get(8)?,
                user_agent: r.get(9)?,
                body_sha256: r.get(10)?,
                finished_time: r.get(11)?,
                result_count: r.get(12)?,
                totals: totals_from_row(r, 13)?,
                duplicate_of: r.get(17)?,
                prev_hash: r.get(18)?,
                entry_hash: r.get(19)?,
                results: Vec::new(),
                deliveries: Vec::new(),
                raw_body: String::from_utf8_lossy(&raw).into_owned(),
                purged_at: r.get(21)?,
            })
        })
        .optional()?;
    let Some(mut record) = record else {
        return Ok(None);
    };
    record.results = results_of(conn, id)?;
    record.deliveries = deliveries_of(conn, id)?;
    Ok(Some(record))
}

fn results_of(conn: &Connection, upload_id: i64) -> Result<Vec<ResultRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ordinal, dir_check, num_total_files, num_different_files,
                num_target_miss_files, num_target_more_files
         FROM upload_results WHERE upload_id = ?1 ORDER BY ordinal",
    )?;
    let rows = stmt.query_map(params![upload_id], |r| {
        Ok(ResultRow {
            ordinal: r.get(0)?,
            dir_check: r.get(1)?,
            num_total_files: r.get(2)?,
            num_different_files: r.get(3)?,
            num_target_miss_files: r.get(4)?,
            num_target_more_files: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One upload in a chart: when, and the four counts.
pub struct ChartPoint {
    /// The upload's id.
    pub id: i64,
    /// When it arrived.
    pub at: Timestamp,
    /// Total, different, missing and extra files.
    pub values: [i64; 4],
    /// The upload had results (without, its zeros mean nothing: a gap).
    pub has_results: bool,
}

/// The four counts of a task's latest `limit` uploads with ids in `range`
/// (oldest first), totals or of one directory.
pub fn chart_points(
    conn: &Connection,
    task_id: &str,
    dir: Option<&str>,
    range: (i64, i64),
    limit: i64,
) -> Result<Vec<ChartPoint>, StorageError> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(ChartPoint {
            id: r.get(0)?,
            at: r.get(1)?,
            values: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
            has_results: r.get(6)?,
        })
    };
    let mut points: Vec<ChartPoint> = match dir {
        None => conn
            .prepare_cached(
                "SELECT id, received_at, total_files, different_files, target_miss_files,
                        target_more_files, result_count > 0
                 FROM uploads WHERE task_id = ?1 AND id >= ?2 AND id < ?3
                 ORDER BY id DESC LIMIT ?4",
            )?
            .query_map(params![task_id, range.0, range.1, limit], map)?
            .collect::<Result<_, _>>()?,
        Some(dir) => conn
            .prepare_cached(
                "SELECT u.id, u.received_at, sum(r.num_total_files), sum(r.num_different_files),
                        sum(r.num_target_miss_files), sum(r.num_target_more_files), 1
                 FROM uploads u JOIN upload_results r ON r.upload_id = u.id
                 WHERE u.task_id = ?1 AND u.id >= ?2 AND u.id < ?3 AND r.dir_check = ?5
                 GROUP BY u.id ORDER BY u.id DESC LIMIT ?4",
            )?
            .query_map(params![task_id, range.0, range.1, limit, dir], map)?
            .collect::<Result<_, _>>()?,
    };
    points.reverse();
    Ok(points)
}

/// How many uploads a sparkline covers.
pub const TREND_UPLOADS: i64 = 20;

/// Problems per upload of a task's latest [`TREND_UPLOADS`] uploads with id
/// `<= upto`, oldest first (a sparkline).
pub fn recent_problems(
    conn: &Connection,
    task_id: &str,
    upto: i64,
) -> Result<Vec<i64>, StorageError> {
    let mut values: Vec<i64> = conn
        .prepare_cached(
            "SELECT different_files + target_miss_files + target_more_files FROM uploads
             WHERE task_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT ?3",
        )?
        .query_map(params![task_id, upto, TREND_UPLOADS], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    values.reverse();
    Ok(values)
}

/// Every directory a task reported in its latest `recent` uploads, by name.
pub fn task_dirs(
    conn: &Connection,
    task_id: &str,
    recent: u32,
) -> Result<Vec<String>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT r.dir_check FROM upload_results r
             WHERE r.upload_id IN
               (SELECT id FROM uploads WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY r.dir_check",
        )?
        .query_map(params![task_id, recent], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The previous and next upload of the same task.
pub fn neighbours(
    conn: &Connection,
    task_id: &str,
    id: i64,
) -> Result<(Option<i64>, Option<i64>), StorageError> {
    let previous = conn
        .prepare_cached("SELECT max(id) FROM uploads WHERE task_id = ?1 AND id < ?2")?
        .query_row(params![task_id, id], |r| r.get(0))?;
    let next = conn
        .prepare_cached("SELECT min(id) FROM uploads WHERE task_id = ?1 AND id > ?2")?
        .query_row(params![task_id, id], |r| r.get(0))?;
    Ok((previous, next))
}

/// The four counts upload `id` reported for directory `dir` (summed, were it
/// listed twice); none when the upload did not report it.
pub fn dir_totals(conn: &Connection, id: i64, dir: &str) -> Result<Option<Totals>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), sum(num_total_files), sum(num_different_files),
                    sum(num_target_miss_files), sum(num_target_more_files)
             FROM upload_results WHERE upload_id = ?1 AND dir_check = ?2",
        )?
        .query_row(params![id, dir], |r| {
            let rows: i64 = r.get(0)?;
            Ok(if rows == 0 {
                None
            } else {
                Some(totals_from_row(r, 1)?)
            })
        })?)
}

/// The problems (different + missing + extra files) of upload `id`, if there is one.
pub fn problems_of(conn: &Connection, id: i64) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT different_files + target_miss_files + target_more_files FROM uploads
             WHERE id = ?1",
        )?
        .query_row(params![id], |r| r.get(0))
        .optional()?)
}

/// The entry hash of upload `id`, if there is one.
pub fn entry_hash(conn: &Connection, id: i64) -> Result<Option<String>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT entry_hash FROM uploads WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?)
}

/// A task's first upload time and how many of its uploads regressed.
pub fn task_history_summary(
    conn: &Connection,
    task_id: &str,
) -> Result<(Option<Timestamp>, i64), StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(received_at), coalesce(sum(regressed), 0) FROM uploads WHERE task_id = ?1",
        )?
        .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_become_id_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let conn =
            crate::storage::prepare(&dir.path().join("t.db"), crate::storage::SyncMode::Normal)
                .unwrap();
        // ids with a gap at 4; times never decrease.
        for (id, at) in [(1i64, 10i64), (2, 10), (3, 20), (5, 30), (6, 30), (7, 40)] {
            conn.execute(
                "INSERT INTO uploads (id, request_id, task_id, received_at, credential_name,
                    auth_method, peer_addr, raw_body, body_sha256, result_count, total_files,
                    different_files, target_miss_files, target_more_files, prev_hash, entry_hash)
                 VALUES (?1, ?1, 't', ?2, 'c', 'token', 'p', x'', '', 0, 0, 0, 0, 0, '', '')",
                params![id, at],
            )
            .unwrap();
        }
        let rows = [(1, 10), (2, 10), (3, 20), (5, 30), (6, 30), (7, 40)];
        for t in 0..=45 {
            let bound = first_id_at_or_after(&conn, t).unwrap();
            for (id, at) in rows {
                assert_eq!(id >= bound, at >= t, "t={t} bound={bound} id={id}");
            }
        }
        assert_eq!(first_id_at_or_after(&conn, 41).unwrap(), 8);
        assert_eq!(
            id_range(&conn, None, Some(30)).unwrap(),
            (i64::MIN, first_id_at_or_after(&conn, 30).unwrap())
        );
    }
}
