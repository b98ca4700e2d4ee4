//! `tasks add|list`: the task registry.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, open, open_existing, CliError, UpstreamArgs};
use crate::domain::{format_timestamp, TaskId};
use crate::http::json::{self, TaskJson};
use crate::services::upstream::TaskPage;
use crate::storage::tasks;

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Register a task (or rename a registered one).
    Add {
        /// The SMS task id (1 to 36 characters of A-Z a-z 0-9 _ -).
        id: String,
        /// A name shown on the pages (at most 200 printable characters).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tasks with their upload counts.
    List {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read the task list from SMS (`GET /v3/tasks`, 100 a page, signed with the
    /// upstream credentials from the environment) and store each task's name and
    /// state; tasks not registered yet are registered.
    Sync {
        #[command(flatten)]
        upstream: UpstreamArgs,
        /// Replace names set by hand (`tasks add --name`) with SMS's too; by
        /// default they are kept, and the report says which SMS names otherwise.
        #[arg(long)]
        overwrite_names: bool,
    },
    /// Store names and states from a saved `ListTasks` answer (one JSON object
    /// with `count` and `tasks`, or an array of them: one per page).
    Import {
        /// The saved answer.
        file: std::path::PathBuf,
        /// Replace names set by hand with SMS's too (as `sync --overwrite-names`).
        #[arg(long)]
        overwrite_names: bool,
    },
}

/// What storing a task list did.
#[derive(Default)]
struct Synced {
    /// Replace names set by hand.
    overwrite_names: bool,
    tasks: usize,
    new: usize,
    /// (task, its name before, SMS's name) for every name changed.
    renamed: Vec<(String, Option<String>, String)>,
    /// Tasks whose name set by hand was kept though SMS names them otherwise.
    kept_names: usize,
    /// Ids that are not valid task ids, or names that are not printable text.
    skipped_ids: usize,
    skipped_names: usize,
}

fn store(
    conn: &rusqlite::Connection,
    tasks: &[crate::services::upstream::SmsTask],
    now: i64,
    synced: &mut Synced,
) -> Result<(), CliError> {
    let tx = conn.unchecked_transaction().map_err(fail)?;
    for t in tasks {
        let Ok(id) = TaskId::parse(&t.id) else {
            synced.skipped_ids += 1;
            continue;
        };
        let name = t.name.as_deref().filter(|n| check_name(n).is_ok());
        if t.name.is_some() && name.is_none() {
            synced.skipped_names += 1;
        }
        let state = t
            .state
            .as_deref()
            .filter(|s| s.len() <= 64 && crate::domain::printable(s));
        let source = t
            .source_server
            .as_ref()
            .and_then(|s| s.id.as_deref())
            .filter(|s| s.len() <= 64 && crate::domain::printable(s));
        let task = tasks::SmsTask {
            task_id: &id,
            name,
            state,
            source_id: source,
        };
        let stored =
            tasks::record_sms_task(&tx, &task, synced.overwrite_names, now).map_err(fail)?;
        synced.new += usize::from(stored.new);
        synced.kept_names += usize::from(stored.kept_name);
        if let (Some(before), Some(after)) = (stored.renamed_from, name) {
            synced
                .renamed
                .push((id.to_string(), before, after.to_string()));
        }
        synced.tasks += 1;
    }
    tx.commit().map_err(fail)
}

fn report(synced: &Synced, from: &str) -> Result<(), CliError> {
    for (task, before, after) in &synced.renamed {
        match before {
            Some(b) => say!("renamed task {task}: {b:?} → {after:?} (as SMS names it)")?,
            None => say!("named task {task} {after:?} (as SMS names it)")?,
        }
    }
    if synced.kept_names > 0 {
        say!(
            "kept the names set by hand of {} that SMS names otherwise (--overwrite-names replaces them)",
            crate::domain::counted(synced.kept_names as u64, "task")
        )?;
    }
    say!(
        "stored {} from {from} ({} newly registered){}{}",
        crate::domain::counted(synced.tasks as u64, "task"),
        synced.new,
        if synced.skipped_ids > 0 {
            format!(
                "; skipped {} whose id is not a valid task id",
                synced.skipped_ids
            )
        } else {
            String::new()
        },
        if synced.skipped_names > 0 {
            format!(
                "; kept no name for {} whose name is not printable text of 1 to 200 characters",
                synced.skipped_names
            )
        } else {
            String::new()
        }
    )
}

/// Tasks asked for per page of `ListTasks`.
const PAGE: u32 = 100;

async fn sync(
    conn: &rusqlite::Connection,
    upstream: &UpstreamArgs,
    overwrite_names: bool,
) -> Result<(), CliError> {
    let endpoint = upstream.endpoint()?;
    let client = crate::services::upstream::Upstream::new(
        endpoint.clone(),
        upstream.auth()?,
        upstream.upstream_timeout.0,
    );
    let now = crate::domain::now_ms();
    let mut synced = Synced {
        overwrite_names,
        ..Synced::default()
    };
    let mut offset = 0u32;
    loop {
        let page = client.list_tasks(PAGE, offset).await.map_err(|e| {
            fail(format!(
                "GET {endpoint}/v3/tasks?limit={PAGE}&offset={offset}: {e}"
            ))
        })?;
        store(conn, &page.tasks, now, &mut synced)?;
        offset = offset.saturating_add(page.tasks.len() as u32);
        // The last page, or a short one (SMS's count may change meanwhile).
        if page.tasks.len() < PAGE as usize || u64::from(offset) >= page.count {
            break;
        }
    }
    report(&synced, &endpoint)
}

/// Task names are shown on pages: printable text of a sensible length.
fn check_name(name: &str) -> Result<(), CliError> {
    if name.trim().is_empty() || name.chars().count() > 200 || !crate::domain::printable(name) {
        return Err(fail(
            "--name must be 1 to 200 printable characters (no control or bidirectional characters)",
        ));
    }
    Ok(())
}

pub async fn run(db: &Path, cmd: TasksCommand) -> Result<ExitCode, CliError> {
    // Only `add` may create the database.
    let conn = match cmd {
        TasksCommand::Add { .. } => open(db)?,
        _ => open_existing(db)?,
    };
    match cmd {
        TasksCommand::Add { id, name } => {
            let task_id = TaskId::parse(&id).map_err(fail)?;
            if let Some(n) = &name {
                check_name(n)?;
            }
            let created = tasks::register_task(&conn, &task_id, name.as_deref()).map_err(fail)?;
            match (created, &name) {
                (true, _) => say!("registered task {task_id}")?,
                (false, Some(n)) => say!("updated task {task_id}: name {n:?}")?,
                (false, None) => say!("task {task_id} is already registered; nothing changed")?,
            }
        }
        TasksCommand::List { json } => {
            let tasks = tasks::list_tasks(&conn).map_err(fail)?;
            if json {
                say!(
                    "{}",
                    serde_json::to_string(&json::all::<_, TaskJson>(tasks)).map_err(fail)?
                )?;
            } else {
                say!(
                    "{:<38} {:>8} {:<25} {:<12} NAME",
                    "TASK",
                    "UPLOADS",
                    "LAST UPLOAD",
                    "SMS STATE"
                )?;
                for t in tasks {
                    say!(
                        "{:<38} {:>8} {:<25} {:<12} {}",
                        t.task_id,
                        t.upload_count,
                        t.last_received_at.map_or("-".into(), format_timestamp),
                        t.sms_state.as_deref().unwrap_or("-"),
                        t.name.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        TasksCommand::Sync {
            upstream,
            overwrite_names,
        } => sync(&conn, &upstream, overwrite_names).await?,
        TasksCommand::Import {
            file,
            overwrite_names,
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
            let pages: Vec<TaskPage> = match serde_json::from_slice::<Vec<TaskPage>>(&bytes) {
                Ok(pages) => pages,
                Err(_) => vec![TaskPage::parse(&bytes)
                    .map_err(|e| fail(format!("{}: {e}", file.display())))?],
            };
            let mut synced = Synced {
                overwrite_names,
                ..Synced::default()
            };
            let now = crate::domain::now_ms();
            for page in &pages {
                store(&conn, &page.tasks, now, &mut synced)?;
            }
            report(&synced, &file.display().to_string())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
