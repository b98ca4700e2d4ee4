//! `tasks add|list`: the task registry.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, open, open_existing, CliError};
use crate::domain::TaskId;
use crate::storage::queries;

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

pub fn run(db: &Path, cmd: TasksCommand) -> Result<ExitCode, CliError> {
    // Only `add` may create the database.
    let conn = match cmd {
        TasksCommand::Add { .. } => open(db)?,
        TasksCommand::List { .. } => open_existing(db)?,
    };
    match cmd {
        TasksCommand::Add { id, name } => {
            let task_id = TaskId::parse(&id).map_err(fail)?;
            if let Some(n) = &name {
                check_name(n)?;
            }
            let created = queries::register_task(&conn, &task_id, name.as_deref()).map_err(fail)?;
            match (created, &name) {
                (true, _) => say!("registered task {task_id}")?,
                (false, Some(n)) => say!("updated task {task_id}: name {n:?}")?,
                (false, None) => say!("task {task_id} is already registered; nothing changed")?,
            }
        }
        TasksCommand::List { json } => {
            let tasks = queries::list_tasks(&conn).map_err(fail)?;
            if json {
                say!("{}", serde_json::to_string(&tasks).map_err(fail)?)?;
            } else {
                say!("{:<38} {:>8} {:<25} NAME", "TASK", "UPLOADS", "LAST UPLOAD")?;
                for t in tasks {
                    say!(
                        "{:<38} {:>8} {:<25} {}",
                        t.task_id,
                        t.upload_count,
                        t.last_received_at.as_deref().unwrap_or("-"),
                        t.name.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
