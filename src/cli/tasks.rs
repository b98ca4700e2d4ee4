//! `tasks add|list`: the task registry.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, open, CliError};
use crate::domain::TaskId;
use crate::storage::queries;

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Register a task (or rename a registered one).
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List tasks with their upload counts.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(db: &Path, cmd: TasksCommand) -> Result<ExitCode, CliError> {
    let conn = open(db)?;
    match cmd {
        TasksCommand::Add { id, name } => {
            let task_id = TaskId::parse(&id).map_err(fail)?;
            let created = queries::register_task(&conn, &task_id, name.as_deref()).map_err(fail)?;
            say!(
                "{} task {task_id}",
                if created { "registered" } else { "updated" }
            )?;
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
