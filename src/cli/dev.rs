//! Developer tools for the benchmark scripts, built only with `--features dev`:
//! `dev seed` stores synthetic uploads through the real writer, `dev
//! fake-upstream` is a stand-in SMS that answers every request 200.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::{fail, CliError};
use crate::domain::{AuthMethod, TaskId, UploadBody};
use crate::services::upstream;
use crate::storage::lock::{LockKind, ProcessLock};
use crate::storage::writer::{self, Clock};

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Stores synthetic uploads through the real writer (group commit, ledger,
    /// summaries), for benchmarks.
    Seed {
        /// How many uploads to store.
        #[arg(long, default_value_t = 1_000_000)]
        uploads: u64,
        /// Over how many tasks.
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// Also queue a live delivery of each upload to this endpoint.
        #[arg(long)]
        forward_to: Option<String>,
        /// Spread the uploads' times evenly over this span, ending now (e.g. 90d),
        /// instead of stamping each with the time it is stored.
        #[arg(long, value_parser = super::parse_duration)]
        span: Option<std::time::Duration>,
    },
    /// A stand-in SMS endpoint that answers every request 200 (drain benchmark).
    FakeUpstream {
        /// The address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Answer each request after this many milliseconds (SMS across a network).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// A stand-in SMS that holds exactly what the database's agents sent: it
    /// answers `GET /v3/tasks/{id}/consistency-result` with a round per upload
    /// (finished at its arrival), read from the database once at start, and
    /// every other request 200 (reconciliation benchmark).
    StandinSms {
        /// The address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// The benchmarks' ceiling: a bare actix-web endpoint at the upload path that
    /// parses the body as JSON and answers `{}` (no auth, no storage).
    BareEndpoint {
        /// The address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

pub async fn run(db: &Path, cmd: DevCommand) -> Result<ExitCode, CliError> {
    match cmd {
        DevCommand::Seed {
            uploads,
            tasks,
            forward_to,
            span,
        } => seed(db, uploads, tasks, forward_to, span).await,
        DevCommand::FakeUpstream { listen, delay_ms } => fake_upstream(&listen, delay_ms).await,
        DevCommand::BareEndpoint { listen } => bare_endpoint(&listen).await,
        DevCommand::StandinSms { listen } => standin_sms(db, &listen).await,
    }
}

/// Each task's `ShowConsistencyResult` answer: a round per upload.
fn answers_of(
    db: &Path,
) -> Result<std::collections::HashMap<String, actix_web::web::Bytes>, CliError> {
    use crate::storage::reconciliation::task_uploads;
    let conn = super::open_existing(db)?;
    let tasks: Vec<String> = conn
        .prepare("SELECT task_id FROM tasks")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(fail)?;
    let mut answers = std::collections::HashMap::new();
    for task in tasks {
        let rounds: Vec<serde_json::Value> = task_uploads(&conn, &task, None, i64::MAX, "", i64::MAX)
            .map_err(fail)?
            .into_iter()
            .map(|u| {
                let dirs: Vec<serde_json::Value> = u
                    .dirs
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| {
                        serde_json::json!({"dir_check": d.dir_check, "num_total_files": d.counts[0],
                            "num_different_files": d.counts[1], "num_target_miss_files": d.counts[2],
                            "num_target_more_files": d.counts[3]})
                    })
                    .collect();
                serde_json::json!({"finished_time": u.received_at, "check_result": "success",
                    "consistency_result": dirs})
            })
            .collect();
        let body = serde_json::json!({"task_id": task, "result_list": rounds}).to_string();
        answers.insert(task, actix_web::web::Bytes::from(body));
    }
    Ok(answers)
}

async fn standin_sms(db: &Path, listen: &str) -> Result<ExitCode, CliError> {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let answers = std::sync::Arc::new(answers_of(db)?);
    eprintln!(
        "stand-in SMS holds the rounds of {}",
        crate::domain::counted(answers.len() as u64, "task")
    );
    let server = HttpServer::new(move || {
        let answers = answers.clone();
        App::new().default_service(web::to(move |req: HttpRequest, _body: web::Bytes| {
            let answers = answers.clone();
            async move {
                let task = req
                    .path()
                    .strip_prefix("/v3/tasks/")
                    .and_then(|p| p.strip_suffix("/consistency-result"));
                match (req.method().as_str(), task) {
                    ("GET", Some(task)) => match answers.get(task) {
                        Some(body) => HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body.clone()),
                        None => HttpResponse::NotFound()
                            .content_type("application/json")
                            .body(r#"{"error_code":"SMS.6503","error_msg":"no such task"}"#),
                    },
                    _ => HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{}"),
                }
            }
        }))
    })
    .bind(listen)
    .map_err(fail)?;
    for addr in server.addrs() {
        eprintln!("stand-in SMS listening on http://{addr}");
    }
    server.run().await.map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

async fn bare_endpoint(listen: &str) -> Result<ExitCode, CliError> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(|| {
        App::new().route(
            "/v3/tasks/{task_id}/consistency-result",
            web::post().to(|body: web::Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{}"),
                    Err(_) => HttpResponse::BadRequest().finish(),
                }
            }),
        )
    })
    .bind(listen)
    .map_err(fail)?;
    for addr in server.addrs() {
        eprintln!("bare endpoint listening on http://{addr}");
    }
    server.run().await.map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

async fn fake_upstream(listen: &str, delay_ms: u64) -> Result<ExitCode, CliError> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let delay = std::time::Duration::from_millis(delay_ms);
    let server = HttpServer::new(move || {
        // The body is read so that the connection is kept alive, as SMS does (actix
        // closes a connection whose request body was left unread).
        App::new().default_service(web::to(move |_body: web::Bytes| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            HttpResponse::Ok()
                .content_type("application/json")
                .insert_header(("X-Request-Id", uuid::Uuid::now_v7().to_string()))
                .body("{}")
        }))
    })
    .bind(listen)
    .map_err(fail)?;
    for addr in server.addrs() {
        eprintln!("fake upstream listening on http://{addr}");
    }
    server.run().await.map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}

/// The clock of a seeded history: `span` long, ending now, one step per upload
/// (the writer asks it once per upload, in order); now without a span.
fn spread_over(span: Option<std::time::Duration>, uploads: u64) -> Result<Clock, CliError> {
    let Some(span) = span else {
        return Ok(std::sync::Arc::new(crate::domain::now_ms));
    };
    let span_ms = i64::try_from(span.as_millis()).map_err(fail)?;
    let start = crate::domain::now_ms() - span_ms;
    let step = span_ms / i64::try_from(uploads.max(1)).map_err(fail)?;
    let next = std::sync::atomic::AtomicI64::new(0);
    Ok(std::sync::Arc::new(move || {
        start + step * next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }))
}

/// Seeded upload `i` of `tasks` tasks: a deterministic spread of counts, most
/// uploads clean, some not.
fn seed_upload(i: u64, tasks: u64) -> crate::storage::uploads::NewUpload {
    let task = i % tasks;
    let round = i / tasks;
    let noise = (i.wrapping_mul(2_654_435_761) >> 7) % 50;
    let different = noise.saturating_sub(35);
    let body = format!(
        r#"{{"consistency_result":[{{"dir_check":"/srv/data","num_total_files":{},"num_different_files":{different},"num_target_miss_files":{},"num_target_more_files":0}},{{"dir_check":"/etc","num_total_files":420,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":{}}},{{"dir_check":"/var/lib/app","num_total_files":{},"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#,
        10_000 + round * 3,
        noise % 3,
        noise % 2,
        5_000 + task % 1000
    );
    let parsed = UploadBody::parse(body.as_bytes(), 30).expect("seed bodies are valid");
    crate::storage::uploads::NewUpload {
        request_id: uuid::Uuid::now_v7().to_string(),
        task_id: TaskId::parse(&format!("task-{task:05}")).expect("valid id"),
        credential_name: "seed".into(),
        auth_method: AuthMethod::Token,
        project_id: None,
        peer_addr: "127.0.0.1".into(),
        forwarded_for: None,
        user_agent: Some("sms-audit-seed".into()),
        raw_body: body.into_bytes(),
        body: parsed,
    }
}

async fn seed(
    db: &Path,
    uploads: u64,
    tasks: u64,
    forward_to: Option<String>,
    span: Option<std::time::Duration>,
) -> Result<ExitCode, CliError> {
    use futures_util::stream::{self, StreamExt};

    // Seeding trades power-loss safety for speed; the data is synthetic.
    let forwarding = forward_to
        .map(|url| upstream::normalize_endpoint(&url).map_err(fail))
        .transpose()?
        .map(|target| writer::Forwarding {
            target,
            wake: Default::default(),
            latest_wins: true,
        });
    let _lock = ProcessLock::acquire(db, LockKind::Writer).map_err(fail)?;
    let clock = spread_over(span, uploads)?;
    let config = writer::WriterConfig {
        settings: writer::WriterSettings {
            sync: crate::storage::SyncMode::Normal,
            queue_capacity: 8192,
            ..writer::WriterSettings::DEFAULT
        },
        forwarding,
        clock,
    };
    let (handle, thread) = writer::spawn(db, config).map_err(fail)?;
    let bar = indicatif::ProgressBar::new(uploads);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} uploads, {per_sec}, {eta} left",
        )
        .map_err(fail)?,
    );
    let tasks = tasks.max(1);
    {
        let results = stream::iter(0..uploads)
            .map(|i| {
                let handle = handle.clone();
                async move { handle.submit(seed_upload(i, tasks)).await }
            })
            .buffer_unordered(2048);
        let mut results = std::pin::pin!(results);
        while let Some(result) = results.next().await {
            result.map_err(fail)?;
            bar.inc(1);
        }
    }
    bar.finish();
    handle.shutdown();
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}
