//! Reconciliation with SMS: read each task's results back from SMS (paced, signed
//! as forwarding signs), match them with the ledger, store each task's outcome
//! with SMS's answer, and sign the finished run's summary with the log's key.
//! A run that SMS fails mid-way stops as `partial`; resuming checks the rest.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::domain::checkpoint::CheckpointKey;
use crate::domain::reconcile::{self, finished_time_ms, TaskFindings, Verdict};
use crate::domain::{format_timestamp, now_ms};
use crate::services::upstream::{SmsReadBack, Upstream};
use crate::storage::reconciliation::{self as store, Run, RunKind, RunState, TaskOutcome};
use crate::storage::writer::WriterHandle;
use crate::storage::{ReadPool, StorageError};

mod passive;
pub use passive::{close_loop as passive_close_loop, PassiveReconciliation, PASSIVE_ANSWER_LIMIT};

/// How a run reads SMS.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most tasks read per second (`--rate`).
    pub rate: NonZeroU32,
    /// Reads at the same time (each still waits for its turn of the rate).
    pub concurrency: usize,
    /// How far SMS's `finished_time` may lie from the delivery of an upload that
    /// sent none of its own.
    pub tolerance: Duration,
    /// Tries per task before SMS counts as failing (429, 5xx, no answer).
    pub tries: u32,
    /// The wait before the second try (doubled each time; `Retry-After` wins).
    pub backoff: Duration,
}

impl Settings {
    /// `--rate`'s default: 10 tasks a second, so 10,000 tasks take 17 minutes.
    pub const DEFAULT_RATE: NonZeroU32 = NonZeroU32::new(10).unwrap();
    /// The default tolerance between a delivery and SMS's clock.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate: Self::DEFAULT_RATE,
            concurrency: 4,
            tolerance: Self::DEFAULT_TOLERANCE,
            tries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Start times one every `1/rate` seconds: each read waits for its slot, so a
/// fleet is read evenly over time, never in a burst.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    /// A pacer for `rate` starts a second.
    pub fn new(rate: NonZeroU32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.get(),
            next: parking_lot::Mutex::new(None),
        }
    }

    /// The start time of the next read asked for at `now`.
    pub fn slot(&self, now: tokio::time::Instant) -> tokio::time::Instant {
        let mut next = self.next.lock();
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        let slot = self.slot(tokio::time::Instant::now());
        tokio::time::sleep_until(slot).await;
    }
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The summary could not be signed.
    #[error("signing the summary: {0}")]
    Signing(String),
    /// The service's writer did not take the write.
    #[error("storing the outcome: {0}")]
    Writer(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every task in scope has its outcome; the summary is signed.
    Finished,
    /// SMS failed: the run stopped here (`--resume` goes on).
    Partial(String),
}

/// What one read of SMS came to.
enum Read {
    /// An outcome to store.
    Outcome(Box<TaskOutcome>),
    /// SMS is failing or refusing the service: stop the run.
    Stop(String),
}

/// Where a run reads the ledger and keeps its outcomes: the command's own
/// connection, or the running service's read pool and writer thread.
pub enum RunStorage<'a> {
    /// `reconcile`'s connection (behind a lock, so that a run can be sent
    /// between threads).
    Connection(&'a std::sync::Mutex<Connection>),
    /// The service's storage: reads on blocking threads, writes by the writer.
    Service {
        /// Read connections.
        reads: ReadPool,
        /// The writer thread.
        writer: WriterHandle,
    },
}

impl RunStorage<'_> {
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, ReconcileError> {
        Ok(match self {
            RunStorage::Connection(conn) => f(&conn.lock().unwrap_or_else(|e| e.into_inner()))?,
            RunStorage::Service { reads, .. } => reads.with_blocking(f).await?,
        })
    }

    /// Run `id`, as stored now.
    async fn run(&self, id: i64) -> Result<Run, ReconcileError> {
        self.read(move |conn| store::run(conn, id))
            .await?
            .ok_or_else(|| ReconcileError::Writer(format!("run {id} was not found")))
    }

    async fn write(
        &self,
        f: impl Fn(&Connection) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), ReconcileError> {
        match self {
            RunStorage::Connection(conn) => Ok(f(&conn.lock().unwrap_or_else(|e| e.into_inner()))?),
            RunStorage::Service { writer, .. } => writer
                .execute_when_room(move |conn| f(conn).map_err(rusqlite::Error::from))
                .await
                .map_err(|e| ReconcileError::Writer(e.to_string())),
        }
    }
}

/// A run against one SMS endpoint.
pub struct Reconciler<'a> {
    /// Where the ledger is read and outcomes kept.
    pub storage: RunStorage<'a>,
    /// SMS.
    pub upstream: Upstream,
    /// Pace and patience.
    pub settings: Settings,
    /// The log's key, which signs finished runs' summaries.
    pub key: CheckpointKey,
}

impl Reconciler<'_> {
    /// Checks every task of `run` not checked yet; `each` sees each outcome as
    /// it is stored. Stops early, as a partial run, when `stop` is cancelled.
    pub async fn go(
        &self,
        run: &Run,
        stop: &tokio_util::sync::CancellationToken,
        mut each: impl FnMut(&TaskOutcome),
    ) -> Result<Ended, ReconcileError> {
        let (id, scope) = (run.id, run.scope.clone());
        let tasks = self
            .storage
            .read(move |conn| store::tasks_to_check(conn, id, &scope))
            .await?;
        let pacer = Pacer::new(self.settings.rate);
        let mut reads = futures_util::stream::iter(tasks)
            .map(|task| {
                let pacer = &pacer;
                async move {
                    pacer.wait().await;
                    let read_at = now_ms();
                    let answer = self.read(&task).await;
                    (task, read_at, answer)
                }
            })
            .buffered(self.settings.concurrency.max(1));
        loop {
            let next = tokio::select! {
                next = reads.next() => next,
                () = stop.cancelled() => return self.stop(id, "the service stopped".into()).await,
            };
            let Some((task, read_at, answer)) = next else {
                break;
            };
            let tolerance = self.settings.tolerance;
            match judge(&self.storage, tolerance, run, &task, read_at, answer).await? {
                Read::Outcome(outcome) => {
                    let stored = outcome.clone();
                    self.storage
                        .write(move |conn| store::record_task(conn, id, &stored))
                        .await?;
                    each(&outcome);
                }
                Read::Stop(why) => {
                    return self
                        .stop(id, format!("stopped at task {task}: {why}"))
                        .await
                }
            }
        }
        finish(&self.storage, &self.key, run).await?;
        Ok(Ended::Finished)
    }

    /// Ends the run as partial, saying why.
    async fn stop(&self, id: i64, why: String) -> Result<Ended, ReconcileError> {
        let stored = why.clone();
        self.storage
            .write(move |conn| {
                store::end_run(conn, id, RunState::Partial, Some(&stored), None, now_ms())
            })
            .await?;
        Ok(Ended::Partial(why))
    }

    /// SMS's answer for `task`, tried again on 429, 5xx and no answer.
    async fn read(&self, task: &str) -> Result<SmsReadBack, String> {
        let mut wait = self.settings.backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = self.upstream.consistency_results(task).await;
            let retry = match &answer {
                Ok(a) if a.status == 429 || a.status >= 500 => a.retry_after.or(Some(wait)),
                Ok(_) => None,
                Err(_) => Some(wait),
            };
            match retry {
                Some(delay) if tries < self.settings.tries => {
                    tokio::time::sleep(delay.min(Duration::from_secs(60))).await;
                    wait *= 2;
                }
                _ => return answer,
            }
        }
    }
}

/// What SMS's answer for `task`, asked for at `read_at`, means against the
/// ledger (uploads up to the run's ledger size, deliveries SMS had accepted by
/// `read_at`).
async fn judge(
    storage: &RunStorage<'_>,
    tolerance: Duration,
    run: &Run,
    task: &str,
    read_at: i64,
    answer: Result<SmsReadBack, String>,
) -> Result<Read, ReconcileError> {
    let answer = match answer {
        Err(e) => return Ok(Read::Stop(format!("SMS did not answer: {e}"))),
        Ok(a) => a,
    };
    let code = answer.error_code.as_deref().unwrap_or("");
    let status = answer.status;
    if status == 401 || status == 403 {
        return Ok(Read::Stop(format!(
            "SMS refused the service's credentials: {status} {code}"
        )));
    }
    if status == 429 || status >= 500 {
        return Ok(Read::Stop(format!("SMS is failing: {status} {code}")));
    }
    let mut outcome = TaskOutcome {
        task_id: task.to_string(),
        verdict: Verdict::NotChecked,
        reason: None,
        checked_at: now_ms(),
        http_status: Some(status),
        answer_sha256: Some(hex::encode(Sha256::digest(&answer.body))),
        answer: Some(answer.body),
        findings: TaskFindings::default(),
    };
    if !(200..300).contains(&status) {
        outcome.reason = Some(if status == 404 {
            format!("task unknown to SMS ({status} {code})")
        } else {
            format!("SMS refused the read ({status} {code})")
        });
        return Ok(Read::Outcome(Box::new(outcome)));
    }
    let rounds = match reconcile::parse_answer(outcome.answer.as_deref().unwrap_or_default()) {
        Ok(rounds) => rounds,
        Err(e) => {
            outcome.reason = Some(e.to_string());
            return Ok(Read::Outcome(Box::new(outcome)));
        }
    };
    let tolerance = tolerance.as_millis() as i64;
    // Rounds before `--since` are left out, as the uploads before it are.
    let in_scope: Vec<usize> = (0..rounds.len())
        .filter(|&i| match (run.scope.since, rounds[i].finished_time) {
            (Some(since), Some(t)) => finished_time_ms(t) >= since - tolerance,
            _ => true,
        })
        .collect();
    let kept: Vec<_> = in_scope.iter().map(|&i| rounds[i].clone()).collect();
    let (task_id, since, last, target) = (
        task.to_string(),
        run.scope.since,
        run.ledger_size,
        run.target.clone(),
    );
    let uploads = storage
        .read(move |conn| store::task_uploads(conn, &task_id, since, last, &target, read_at))
        .await?;
    let mut findings = reconcile::match_task(&kept, &uploads, tolerance);
    // Round indexes name SMS's own list, as stored.
    findings
        .matched
        .iter_mut()
        .for_each(|m| m.0 = in_scope[m.0]);
    findings
        .differs
        .iter_mut()
        .for_each(|d| d.0 = in_scope[d.0]);
    findings.foreign.iter_mut().for_each(|f| *f = in_scope[*f]);
    outcome.verdict = findings.verdict();
    outcome.findings = findings;
    Ok(Read::Outcome(Box::new(outcome)))
}

/// Ends `run` as finished, with its summary signed by the log's key.
async fn finish(
    storage: &RunStorage<'_>,
    key: &CheckpointKey,
    run: &Run,
) -> Result<(), ReconcileError> {
    let (id, note) = (run.id, sign_summary(storage, key, run).await?);
    storage
        .write(move |conn| {
            store::end_run(conn, id, RunState::Finished, None, Some(&note), now_ms())
        })
        .await
}

/// A finished run's summary, signed by the log's key.
async fn sign_summary(
    storage: &RunStorage<'_>,
    key: &CheckpointKey,
    run: &Run,
) -> Result<String, ReconcileError> {
    let (run, origin) = (run.clone(), key.origin().to_string());
    let text = storage
        .read(move |conn| summary_text(conn, &run, &origin, now_ms()))
        .await?;
    key.sign_note(&text)
        .map_err(|e| ReconcileError::Signing(e.to_string()))
}

/// `serve --reconcile-interval`: how often the service reconciles, and how.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Pace and patience of each run.
    pub settings: Settings,
}

/// The service's reconciliations: every `schedule.interval`, a run over every
/// task (or the rest of a run that SMS or a stop cut short), until `stop`.
pub async fn reconcile_loop(
    schedule: Schedule,
    upstream: Upstream,
    key: CheckpointKey,
    reads: ReadPool,
    writer: WriterHandle,
    stop: tokio_util::sync::CancellationToken,
) {
    let reconciler = Reconciler {
        storage: RunStorage::Service { reads, writer },
        upstream,
        settings: schedule.settings,
        key,
    };
    loop {
        if super::background::pause(&stop, schedule.interval).await {
            return;
        }
        match reconciler.next_run(&stop).await {
            Ok((id, Ended::Finished)) => {
                tracing::info!(run = id, "reconciliation with SMS finished")
            }
            Ok((id, Ended::Partial(why))) => {
                tracing::warn!(run = id, "reconciliation with SMS is partial: {why}")
            }
            Err(e) => tracing::warn!("reconciliation with SMS: {e}"),
        }
    }
}

impl Reconciler<'_> {
    /// Goes on with the run against this endpoint that was cut short, or starts
    /// one over every task.
    async fn next_run(
        &self,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(i64, Ended), ReconcileError> {
        let target = self.upstream.endpoint.clone();
        let stopped = self.storage.read(store::resumable).await?;
        let id = match stopped.filter(|r| r.target == target) {
            Some(run) => run.id,
            None => {
                let t = target.clone();
                self.storage
                    .write(move |conn| {
                        store::start_run(conn, &t, &store::Scope::default(), now_ms()).map(drop)
                    })
                    .await?;
                let run = self.storage.read(store::resumable).await?;
                run.map(|r| r.id)
                    .ok_or_else(|| ReconcileError::Writer("the new run was not found".into()))?
            }
        };
        self.storage
            .write(move |conn| store::mark_running(conn, id))
            .await?;
        let run = self.storage.run(id).await?;
        Ok((id, self.go(&run, stop, |_| {}).await?))
    }
}

/// The first line of every reconciliation summary.
pub const SUMMARY_HEADER: &str = "sms-audit reconciliation v1";

/// The text a finished run's signed note carries (docs/reconciliation.md).
pub fn summary_text(
    conn: &Connection,
    run: &Run,
    origin: &str,
    finished_at: i64,
) -> Result<String, StorageError> {
    let counts = store::verdict_counts(conn, run.id)?;
    let tasks: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut text = format!(
        "{SUMMARY_HEADER}\norigin {origin}\nrun {}\ntarget {}\nstarted {}\nfinished {}\nledger-size {}\nsince {}\ntasks {tasks}\n",
        run.id,
        run.target,
        format_timestamp(run.started_at),
        format_timestamp(finished_at),
        run.ledger_size,
        run.scope.since.map_or("-".into(), format_timestamp),
    );
    if run.kind == RunKind::Passive {
        text.push_str("kind passive\n");
    }
    for (verdict, n) in counts {
        text.push_str(&format!("{verdict} {n}\n"));
    }
    text.push_str(&format!(
        "answers-sha256 {}\n",
        store::answers_digest(conn, run.id)?
    ));
    Ok(text)
}

/// The format name of an exported reconciliation.
pub const EXPORT_FORMAT: &str = "sms-audit-reconciliation/1";

/// A finished run as `reconcile export` writes it: the signed summary, the log's
/// verifier key, and every task's outcome with SMS's answer (base64).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Export {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The run.
    pub run: i64,
    /// The endpoint read.
    pub target: String,
    /// The log's verifier key (an auditor pins their own with `--vkey`).
    pub verifier_key: String,
    /// The signed summary.
    pub summary: String,
    /// Every task's outcome, in task order.
    pub tasks: Vec<ExportedTask>,
}

/// One task of an exported run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportedTask {
    /// The task.
    pub task_id: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why it was not checked.
    pub reason: Option<String>,
    /// SMS's HTTP status.
    pub http_status: Option<u16>,
    /// SMS's answer, base64.
    pub answer_base64: Option<String>,
    /// Its SHA-256 (hex).
    pub answer_sha256: Option<String>,
    /// Which rounds matched which uploads, and what did not.
    pub findings: TaskFindings,
}

/// Run `run_id` as an [`Export`]; only a finished run has a summary to export.
pub fn export(conn: &Connection, run_id: i64, verifier_key: &str) -> Result<Export, String> {
    use base64::Engine;
    let run = store::run(conn, run_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no reconciliation {run_id}"))?;
    let summary = run.summary_note.clone().ok_or_else(|| {
        format!(
            "reconciliation {run_id} is {}: only a finished run has a signed summary",
            run.state
        )
    })?;
    let outcomes = store::outcomes(conn, run_id, None, "", u32::MAX).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Export {
        format: EXPORT_FORMAT.into(),
        run: run_id,
        target: run.target,
        verifier_key: verifier_key.into(),
        summary,
        tasks: outcomes
            .into_iter()
            .map(|o| ExportedTask {
                task_id: o.task_id,
                verdict: o.verdict,
                reason: o.reason,
                http_status: o.http_status,
                answer_base64: o.answer.map(|a| b64.encode(a)),
                answer_sha256: o.answer_sha256,
                findings: o.findings,
            })
            .collect(),
    })
}

/// Checks an exported run offline: the summary's signature (by `vkey`, or the
/// export's own key), each answer against its hash, the answers' digest, the
/// run and the counts per verdict against the summary.
pub fn verify_export(export: &Export, vkey: Option<&str>) -> Result<String, String> {
    use base64::Engine;
    use signed_note::{Note, StandardVerifier, Verifier, VerifierList};
    let vkey = vkey.unwrap_or(&export.verifier_key);
    let verifier = StandardVerifier::new(vkey).map_err(|e| format!("verifier key: {e}"))?;
    let note = Note::from_bytes(export.summary.as_bytes()).map_err(|e| format!("summary: {e}"))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
        .map_err(|e| format!("summary: not signed by {vkey}: {e}"))?;
    let text = String::from_utf8_lossy(note.text()).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .map(str::to_string)
            .ok_or_else(|| format!("summary: no {name} line"))
    };
    if text.lines().next() != Some(SUMMARY_HEADER) {
        return Err(format!("summary: not a {SUMMARY_HEADER}"));
    }
    if field("run")? != export.run.to_string() {
        return Err(format!(
            "summary: it is of run {}, not {}",
            field("run")?,
            export.run
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut digest = Sha256::new();
    for task in &export.tasks {
        if let Some(answer) = &task.answer_base64 {
            let bytes = b64
                .decode(answer)
                .map_err(|e| format!("task {}: answer: {e}", task.task_id))?;
            if task.answer_sha256.as_deref() != Some(&hex::encode(Sha256::digest(&bytes))) {
                return Err(format!(
                    "task {}: SMS's answer does not match its hash",
                    task.task_id
                ));
            }
        }
        digest.update(format!(
            "{} {}\n",
            task.task_id,
            task.answer_sha256.as_deref().unwrap_or("-")
        ));
    }
    if field("answers-sha256")? != hex::encode(digest.finalize()) {
        return Err("summary: the answers are not those it signed (answers-sha256)".into());
    }
    use strum::VariantArray;
    let mut shown = Vec::new();
    for verdict in Verdict::VARIANTS {
        let n = export
            .tasks
            .iter()
            .filter(|t| t.verdict == *verdict)
            .count();
        if field(verdict.as_str())? != n.to_string() {
            return Err(format!(
                "summary: it counts {} {verdict}, the export holds {n}",
                field(verdict.as_str())?
            ));
        }
        shown.push(format!("{n} {verdict}"));
    }
    if field("tasks")? != export.tasks.len().to_string() {
        return Err("summary: its task count is not the export's".into());
    }
    Ok(format!(
        "reconciliation intact: run {} against {}, {}: {}; signed by {}",
        export.run,
        field("target")?,
        crate::domain::counted(export.tasks.len() as u64, "task"),
        shown.join(", "),
        verifier.name()
    ))
}

/// One task's outcome beside what SMS and the ledger hold: what the page and
/// the API show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskDetail {
    /// The task.
    pub task_id: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why it was not checked.
    pub reason: Option<String>,
    /// SMS's HTTP status.
    pub http_status: Option<u16>,
    /// The SHA-256 of SMS's answer.
    pub answer_sha256: Option<String>,
    /// Round indexes and upload ids, as stored.
    pub findings: TaskFindings,
    /// SMS's rounds, each with what it was found to be.
    pub sms_rounds: Vec<RoundDetail>,
    /// The uploads the findings name, each with what it was found to be.
    pub uploads: Vec<UploadDetail>,
}

/// One of SMS's rounds, with its finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundDetail {
    /// Its place in SMS's `result_list`.
    pub index: usize,
    /// As SMS gives it, and read as a time.
    pub finished_time: Option<i64>,
    /// `finished_time` as RFC 3339, when it reads as a time.
    pub finished_at: String,
    /// SMS's own verdict, as given.
    pub check_result: Option<String>,
    /// The directories' counts.
    pub dirs: Vec<reconcile::DirCounts>,
    /// `match`, `foreign` or `differs`.
    pub finding: Verdict,
    /// The upload it matches or differs from.
    pub upload_id: Option<i64>,
}

/// One upload the findings name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadDetail {
    /// Its id.
    pub id: i64,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// The `finished_time` the agent sent.
    pub finished_time: Option<i64>,
    /// Whether it was delivered to this endpoint from here.
    pub delivered: bool,
    /// Its directories (`None` once purged).
    pub dirs: Option<Vec<reconcile::DirCounts>>,
    /// `match`, `missing-in-sms` or `differs`.
    pub finding: Verdict,
    /// The round it matches or differs from.
    pub round: Option<usize>,
}

/// `outcome` of `run` with SMS's rounds read from its answer and the uploads its
/// findings name read from the ledger.
pub fn detail(
    conn: &Connection,
    run: &Run,
    outcome: TaskOutcome,
) -> Result<TaskDetail, StorageError> {
    let rounds = outcome
        .answer
        .as_deref()
        .and_then(|a| reconcile::parse_answer(a).ok())
        .unwrap_or_default();
    let f = &outcome.findings;
    let round_finding = |i: usize| {
        if let Some((_, u)) = f.matched.iter().find(|m| m.0 == i) {
            (Verdict::Match, Some(*u))
        } else if let Some((_, u)) = f.differs.iter().find(|d| d.0 == i) {
            (Verdict::Differs, Some(*u))
        } else {
            (Verdict::Foreign, None)
        }
    };
    let sms_rounds = rounds
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let (finding, upload_id) = round_finding(index);
            RoundDetail {
                index,
                finished_at: show_finished_time(r.finished_time),
                finished_time: r.finished_time,
                check_result: r.check_result,
                dirs: r.dirs,
                finding,
                upload_id,
            }
        })
        .collect();
    let named: Vec<(i64, Verdict, Option<usize>)> = f
        .matched
        .iter()
        .map(|(r, u)| (*u, Verdict::Match, Some(*r)))
        .chain(
            f.differs
                .iter()
                .map(|(r, u)| (*u, Verdict::Differs, Some(*r))),
        )
        .chain(
            f.missing_in_sms
                .iter()
                .map(|u| (*u, Verdict::MissingInSms, None)),
        )
        .collect();
    let mut uploads = Vec::new();
    if !named.is_empty() {
        let (task, last, target) = (&outcome.task_id, run.ledger_size, &run.target);
        for up in store::task_uploads(conn, task, None, last, target, i64::MAX)? {
            if let Some((_, finding, round)) = named.iter().find(|n| n.0 == up.id) {
                uploads.push(UploadDetail {
                    id: up.id,
                    received_at: format_timestamp(up.received_at),
                    finished_time: up.finished_time,
                    delivered: !up.delivered.is_empty(),
                    dirs: up.dirs,
                    finding: *finding,
                    round: *round,
                });
            }
        }
    }
    Ok(TaskDetail {
        task_id: outcome.task_id,
        verdict: outcome.verdict,
        reason: outcome.reason,
        http_status: outcome.http_status,
        answer_sha256: outcome.answer_sha256,
        findings: outcome.findings,
        sms_rounds,
        uploads,
    })
}

/// The header of a run's CSV.
pub const CSV_COLUMNS: [&str; 10] = [
    "run",
    "task_id",
    "verdict",
    "reason",
    "http_status",
    "answer_sha256",
    "matched",
    "missing_in_sms",
    "foreign",
    "differs",
];

/// A run's outcomes as CSV, one task a row (`matched` and `differs` as
/// `round:upload` pairs, SMS's round indexes and upload ids, space-separated).
pub fn write_csv(
    run_id: i64,
    outcomes: &[TaskOutcome],
    out: impl std::io::Write,
) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    let pairs = |p: &[(usize, i64)]| {
        p.iter()
            .map(|(r, u)| format!("{r}:{u}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let list = |l: &mut dyn Iterator<Item = String>| l.collect::<Vec<_>>().join(" ");
    for o in outcomes {
        let f = &o.findings;
        w.write_record([
            run_id.to_string(),
            crate::services::export::cell(&o.task_id),
            o.verdict.to_string(),
            crate::services::export::cell(o.reason.as_deref().unwrap_or("")),
            o.http_status.map(|s| s.to_string()).unwrap_or_default(),
            o.answer_sha256.clone().unwrap_or_default(),
            pairs(&f.matched),
            list(&mut f.missing_in_sms.iter().map(i64::to_string)),
            list(&mut f.foreign.iter().map(usize::to_string)),
            pairs(&f.differs),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// A round's `finished_time` for people: RFC 3339 when it reads as a time.
pub fn show_finished_time(t: Option<i64>) -> String {
    match t {
        None => "no finished_time".into(),
        Some(t) => Utc
            .timestamp_millis_opt(finished_time_ms(t))
            .single()
            .map_or_else(|| t.to_string(), |_| format_timestamp(finished_time_ms(t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_tasks_at_fifty_a_second_span_two_hundred_seconds() {
        let pacer = Pacer::new(NonZeroU32::new(50).unwrap());
        let start = tokio::time::Instant::now();
        // Every read asked for at once, as a run's reads are.
        let slots: Vec<_> = (0..10_000).map(|_| pacer.slot(start)).collect();
        let span = *slots.last().unwrap() - start;
        assert!(span >= Duration::from_millis(199_980), "{span:?}");
        assert!(span < Duration::from_secs(201), "{span:?}");
        // Never two in the same 20 ms.
        assert!(slots
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_millis(20)));
    }

    #[test]
    fn a_late_asker_is_not_sent_into_the_past() {
        let pacer = Pacer::new(NonZeroU32::new(10).unwrap());
        let start = tokio::time::Instant::now();
        assert_eq!(pacer.slot(start), start);
        let later = start + Duration::from_secs(5);
        assert_eq!(pacer.slot(later), later);
        assert_eq!(pacer.slot(later), later + Duration::from_millis(100));
    }
}
