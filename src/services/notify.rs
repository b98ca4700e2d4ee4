//! Notifications (`--notify-url`): a loop that finds events (a regressed upload, a
//! delivery to SMS failed or dead, a verification that found damage, SMS failing
//! for longer than `--notify-upstream-after`, a witness refusing a checkpoint, a
//! reconciliation that found tasks not matching), stores each once (its key
//! deduplicates), and POSTs it as JSON with a `text` field (what Slack-,
//! Mattermost- and Teams-style incoming webhooks show) to every URL, retried with
//! the outbox's policy until delivered, failed or dead.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::domain::{format_timestamp, now_ms, DeliveryState, Timestamp};
use crate::services::outbox::policy::{self, RetryPolicy};
use crate::services::upstream::parse_retry_after;
use crate::storage::notifications::{self, DueSend, Event};
use crate::storage::writer::WriterHandle;
use crate::storage::{ledger, reconciliation, ReadPool, StorageError};

/// How often the loop looks for events and due sends.
const TICK: Duration = Duration::from_millis(500);
/// Sends made per tick at most.
const SENDS_PER_TICK: u32 = 32;

/// `--notify-url` and how announcements are sent.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Where each event is posted.
    pub urls: Vec<String>,
    /// SMS failing for longer than this is announced.
    pub upstream_after: Duration,
    /// How failed posts are retried and when they are given up.
    pub policy: RetryPolicy,
    /// How long one post may take.
    pub timeout: Duration,
}

impl NotifySettings {
    /// `--notify-upstream-after`'s default.
    pub const DEFAULT_UPSTREAM_AFTER: Duration = Duration::from_secs(600);
}

/// Where each scan goes on from.
struct Cursors {
    regressed_after: i64,
    verification_after: i64,
    /// Reconciliation runs announced up to this id.
    reconciliation_after: i64,
    /// Deliveries given up after this time (ms).
    given_up_since: Timestamp,
}

/// Finds events and posts them to every URL, until `stop`.
pub async fn notify_loop(
    settings: NotifySettings,
    reads: ReadPool,
    writer: WriterHandle,
    stop: tokio_util::sync::CancellationToken,
) {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sms-audit/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with rustls");
    let started = now_ms();
    let cursors = reads
        .with_blocking(move |conn| {
            let last = ledger::last_id(conn)?;
            let verifications = notifications::last_verification_id(conn)?;
            Ok(Cursors {
                // On a first start, history is not announced; after a restart,
                // scans go on from the last event announced.
                regressed_after: notifications::announced_up_to(
                    conn,
                    "regressed",
                    "regressed:upload:",
                )?
                .unwrap_or(last),
                verification_after: notifications::announced_up_to(
                    conn,
                    "verification_broken",
                    "verification:",
                )?
                .unwrap_or(verifications),
                reconciliation_after: notifications::announced_up_to(
                    conn,
                    "reconciliation",
                    "reconciliation:",
                )?
                .unwrap_or(reconciliation::last_run_id(conn)?),
                // Dedup keys make a re-scan of the last minutes harmless.
                given_up_since: started - 600_000,
            })
        })
        .await;
    let cursors = match cursors {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            tracing::error!("notifications are off: {e}");
            return;
        }
    };
    tracing::info!(urls = settings.urls.len(), "notifications on");
    loop {
        if let Err(e) = tick(&settings, &reads, &writer, &client, &cursors).await {
            tracing::warn!("notifications: {e}");
        }
        if super::background::pause(&stop, TICK).await {
            return;
        }
    }
}

/// Why one round of notifications stopped (the next round tries again).
#[derive(Debug, thiserror::Error)]
enum TickError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Writer(#[from] crate::storage::writer::SubmitError),
}

async fn tick(
    settings: &NotifySettings,
    reads: &ReadPool,
    writer: &WriterHandle,
    client: &reqwest::Client,
    cursors: &Arc<Mutex<Cursors>>,
) -> Result<(), TickError> {
    let after = settings.upstream_after;
    let scan_cursors = cursors.clone();
    let events = reads
        .with_blocking(move |conn| find_events(conn, &scan_cursors, after))
        .await?;
    if !events.is_empty() {
        let (urls, now) = (settings.urls.clone(), now_ms());
        writer
            .execute(move |conn| {
                for e in &events {
                    notifications::add(conn, e, &urls, now)?;
                }
                Ok(())
            })
            .await?;
    }
    let due = reads
        .with_blocking(|conn| notifications::due(conn, now_ms(), SENDS_PER_TICK))
        .await?;
    for send in due {
        // A stored URL is sent to only while it is still configured: a restored or
        // edited database must not choose where events go.
        let (state, next, status, error) = if settings.urls.contains(&send.url) {
            attempt(client, &send, &settings.policy).await
        } else {
            let why = "not sent: the URL is not one of this service's --notify-url";
            (
                DeliveryState::Failed.as_str(),
                now_ms(),
                None,
                Some(why.to_string()),
            )
        };
        let now = now_ms();
        writer
            .execute(move |conn| {
                notifications::record(conn, send.id, state, next, status, error.as_deref(), now)
            })
            .await?;
    }
    Ok(())
}

/// One POST; the send's new state, next time, status and error.
async fn attempt(
    client: &reqwest::Client,
    send: &DueSend,
    policy: &RetryPolicy,
) -> (&'static str, Timestamp, Option<u16>, Option<String>) {
    let answer = client
        .post(&send.url)
        .header("Content-Type", "application/json")
        .body(send.payload.clone())
        .send()
        .await;
    let (status, error, retry_after) = match answer {
        Ok(r) => {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let status = r.status().as_u16();
            let error = (!r.status().is_success()).then(|| format!("answered {status}"));
            (Some(status), error, retry_after)
        }
        Err(e) => (None, Some(e.to_string()), None),
    };
    let (state, next) = policy::after_attempt(
        policy,
        (status, retry_after),
        send.attempts,
        send.created_at,
        now_ms(),
    );
    (state.as_str(), next, status, error)
}

fn find_events(
    conn: &rusqlite::Connection,
    cursors: &Mutex<Cursors>,
    upstream_after: Duration,
) -> Result<Vec<Event>, StorageError> {
    let mut c = cursors.lock();
    let mut events = regression_events(conn, &mut c)?;
    let scan_from = c.given_up_since;
    c.given_up_since = now_ms() - 60_000;
    for d in notifications::given_up_since(conn, scan_from)? {
        let kind = if d.state == "dead" {
            "delivery_dead"
        } else {
            "delivery_failed"
        };
        let why = match (d.last_status, &d.last_error) {
            (Some(s), Some(e)) => format!("{s} {e}"),
            (Some(s), None) => s.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        };
        let text = format!(
            "sms-audit: delivery {} of upload #{} (task {}) to {} is {}: {why}",
            d.id, d.upload_id, d.task_id, d.target, d.state
        );
        events.push(event(
            format!("delivery:{}:{}", d.id, d.state),
            kind,
            text,
            json!({"delivery_id": d.id, "upload_id": d.upload_id, "task_id": d.task_id,
                   "target": d.target, "state": d.state, "last_status": d.last_status}),
        ));
    }
    for v in notifications::broken_verifications_after(conn, c.verification_after)? {
        c.verification_after = v.id;
        let text = format!(
            "sms-audit: ledger verification {} ({}) found damage at entry {}: {}",
            v.id, v.requested_by, v.first_bad_id, v.problem
        );
        events.push(event(
            format!("verification:{}", v.id),
            "verification_broken",
            text,
            json!({"verification_id": v.id, "first_bad_id": v.first_bad_id, "problem": v.problem}),
        ));
    }
    events.extend(reconciliation_events(conn, &mut c)?);
    for w in crate::storage::witnesses::refused(conn)? {
        let at = w.last_error_at.unwrap_or_default();
        let why = w.last_error.unwrap_or_default();
        events.push(event(
            // One announcement per refusal, not per retry: keyed by what was refused.
            format!(
                "witness-refused:{}:{}",
                w.id,
                crate::domain::signing::sha256_hex(why.as_bytes())
            ),
            "witness_refused",
            format!("sms-audit: a witness refused a checkpoint: {why}"),
            json!({"witness": w.vkey, "url": w.url, "error": why, "at": format_timestamp(at)}),
        ));
    }
    if let Some(since) = notifications::upstream_failing_since(conn)? {
        let failing = now_ms() - since;
        if failing > upstream_after.as_millis() as i64 {
            let text = format!(
                "sms-audit: SMS has failed every delivery attempt since {} ({} min)",
                format_timestamp(since),
                failing / 60_000
            );
            events.push(event(
                format!("upstream-down:{since}"),
                "upstream_down",
                text,
                json!({"failing_since": format_timestamp(since)}),
            ));
        }
    }
    Ok(events)
}

/// Finished reconciliations since the last look that found tasks SMS holds
/// otherwise than the agents sent them.
fn reconciliation_events(
    conn: &rusqlite::Connection,
    c: &mut Cursors,
) -> Result<Vec<Event>, StorageError> {
    let mut events = Vec::new();
    for (run, counts, named) in
        reconciliation::discrepant_runs_after(conn, c.reconciliation_after, 10)?
    {
        c.reconciliation_after = run.id;
        let shown: Vec<String> = counts
            .iter()
            .filter(|(v, n)| v.is_discrepancy() && *n > 0)
            .map(|(v, n)| format!("{n} {v}"))
            .collect();
        let tasks: Vec<String> = named.iter().map(|(t, v)| format!("{t} ({v})")).collect();
        let text = format!(
            "sms-audit: reconciliation {} with {} found {}: {} (/reconciliation?run={})",
            run.id,
            run.target,
            shown.join(", "),
            tasks.join(", "),
            run.id
        );
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(v, n)| (v.to_string(), json!(n)))
            .collect();
        events.push(event(
            format!("reconciliation:{}", run.id),
            "reconciliation",
            text,
            json!({"run": run.id, "target": run.target, "counts": counts,
                   "tasks": named.iter().map(|(t, v)| json!({"task_id": t, "verdict": v})).collect::<Vec<_>>()}),
        ));
    }
    Ok(events)
}

/// Uploads stored since the last look that regressed.
fn regression_events(
    conn: &rusqlite::Connection,
    c: &mut Cursors,
) -> Result<Vec<Event>, StorageError> {
    let head = ledger::last_id(conn)?;
    let (regressed, reached) = notifications::regressed_between(conn, c.regressed_after, head)?;
    c.regressed_after = reached;
    Ok(regressed
        .into_iter()
        .map(|r| {
            let text = format!(
                "sms-audit: task {} regressed: upload #{} has {}, more than the upload before it (/uploads/{})",
                r.task_id,
                r.id,
                crate::domain::counted(r.problems, "problem"),
                r.id
            );
            event(
                format!("regressed:upload:{}", r.id),
                "regressed",
                text,
                json!({"task_id": r.task_id, "upload_id": r.id, "problems": r.problems}),
            )
        })
        .collect())
}

fn event(key: String, kind: &'static str, text: String, mut details: serde_json::Value) -> Event {
    details["text"] = json!(text);
    details["event"] = json!(key);
    details["kind"] = json!(kind);
    details["service"] = json!("sms-audit");
    Event {
        payload: details.to_string(),
        key,
        kind,
        text,
    }
}
