//! `status`: one screen on the database's state, for an operator's first look.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::{fail, CliError};
use crate::domain::format_timestamp;
use crate::storage::retention::{self, DiskUse};
use crate::storage::{self, checkpoints, outbox, overview};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    database: String,
    entries: i64,
    head_hash: Option<String>,
    tasks: i64,
    uploads_last_24h: i64,
    pending_deliveries: i64,
    oldest_pending_since: Option<String>,
    last_checkpoint: Option<String>,
    last_checkpoint_size: Option<u64>,
    last_verification: Option<String>,
    last_verification_intact: Option<bool>,
    last_backup: Option<String>,
    last_purge: Option<String>,
    purged_uploads: i64,
    disk: DiskUse,
}

pub fn run(db: &Path, args: StatusArgs) -> Result<ExitCode, CliError> {
    super::existing_database(db)?;
    // Read-only: a status never changes or migrates what it looks at.
    let conn = storage::open_read(db).map_err(fail)?;
    let status = gather(db, &conn).map_err(fail)?;
    if args.json {
        say!("{}", serde_json::to_string(&status).map_err(fail)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let or_never = |t: &Option<String>| t.clone().unwrap_or_else(|| "never".into());
    let d = &status.disk;
    say!("database          {}", status.database)?;
    say!(
        "ledger            {}, head {}",
        crate::domain::counted(status.entries, "entry"),
        status.head_hash.as_deref().unwrap_or("(empty)")
    )?;
    say!(
        "tasks             {} ({} in the last 24 h)",
        status.tasks,
        crate::domain::counted(status.uploads_last_24h, "upload")
    )?;
    say!(
        "deliveries        {} pending{}",
        status.pending_deliveries,
        status
            .oldest_pending_since
            .as_ref()
            .map(|t| format!(", the oldest since {t}"))
            .unwrap_or_default()
    )?;
    say!(
        "last checkpoint   {}{}",
        or_never(&status.last_checkpoint),
        status
            .last_checkpoint_size
            .map(|n| format!(" ({})", crate::domain::counted(n, "upload")))
            .unwrap_or_default()
    )?;
    say!(
        "last verification {}{}",
        or_never(&status.last_verification),
        match status.last_verification_intact {
            Some(true) => " (intact)",
            Some(false) => " (BROKEN)",
            None => "",
        }
    )?;
    say!("last backup       {}", or_never(&status.last_backup))?;
    say!(
        "last purge        {} ({} purged in all)",
        or_never(&status.last_purge),
        crate::domain::counted(status.purged_uploads, "upload")
    )?;
    say!(
        "disk              database {}, WAL {}, {} free pages ({})",
        crate::http::pages::bytes(d.database_bytes),
        crate::http::pages::bytes(d.wal_bytes),
        d.free_pages,
        crate::http::pages::bytes(d.free_pages * d.page_size)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn gather(db: &Path, conn: &rusqlite::Connection) -> Result<Status, storage::StorageError> {
    let overview = overview::overview(conn)?;
    let (pending, oldest) = outbox::pending_overall(conn)?;
    let checkpoint = checkpoints::latest(conn)?;
    let done = |action| -> Result<Option<String>, storage::StorageError> {
        Ok(retention::last_done(conn, action)?
            .and_then(|e| e.finished_at)
            .map(format_timestamp))
    };
    Ok(Status {
        database: db.display().to_string(),
        entries: overview.head_id,
        head_hash: overview.head_hash,
        tasks: overview.tasks,
        uploads_last_24h: overview.uploads_24h,
        pending_deliveries: pending,
        oldest_pending_since: oldest.map(format_timestamp),
        last_checkpoint_size: checkpoint.as_ref().map(|c| c.tree_size),
        last_checkpoint: checkpoint.map(|c| format_timestamp(c.time)),
        last_verification_intact: overview
            .last_verification
            .as_ref()
            .map(|v| v.first_bad_id.is_none()),
        last_verification: overview
            .last_verification
            .map(|v| format_timestamp(v.finished_at)),
        last_backup: done("backup")?,
        last_purge: done("purge")?,
        purged_uploads: retention::purged_total(conn)?,
        disk: retention::disk_use(conn, db)?,
    })
}
