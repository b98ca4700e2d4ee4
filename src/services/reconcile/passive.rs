//! Passive reconciliation (`serve --proxy`): the answers SMS gives the agents'
//! own `ShowConsistencyResult` calls are matched as a run's reads are, and kept
//! in one passive run per UTC day, closed and signed once its day is over (or
//! when the endpoint changes). SMS is never asked anything more for it.

use std::sync::Arc;
use std::time::Duration;

use super::{finish, judge, Read, ReconcileError, RunStorage};
use crate::domain::{now_ms, Timestamp};
use crate::services::upstream::SmsReadBack;
use crate::storage::reconciliation::{self as store, Run, RunKind, Scope};
use crate::storage::writer::WriterHandle;
use crate::storage::ReadPool;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// How often the service looks for a passive run whose day is over.
const CLOSE_CHECK: Duration = Duration::from_secs(600);

/// The largest answer read passively: far more than any task's rounds (a round
/// of ten directories is under 1 KiB); a larger one is passed on, hashed in the
/// proxy log, and not matched.
pub const PASSIVE_ANSWER_LIMIT: usize = 1024 * 1024;

/// Answers waiting to be matched at most; more are not matched (a burst of
/// agents reading their results must never grow memory without bound).
const MAX_WAITING: usize = 256;

/// The passive side of reconciliation against one SMS endpoint.
pub struct PassiveReconciliation {
    storage: RunStorage<'static>,
    target: String,
    key: crate::domain::checkpoint::CheckpointKey,
    tolerance: Duration,
    /// One answer at a time, so that a day's run is opened once.
    turn: tokio::sync::Mutex<()>,
    /// Answers handed over and not yet matched.
    waiting: std::sync::atomic::AtomicUsize,
    /// Answers not matched because too many waited.
    skipped: std::sync::atomic::AtomicU64,
}

/// An answer's place in the queue, given back when it has been matched.
pub struct Waiting(Arc<PassiveReconciliation>);

impl Waiting {
    /// Matches and stores the answer (see [`PassiveReconciliation::observe`]),
    /// decoded first when SMS compressed it (`Content-Encoding` gzip or deflate;
    /// any other encoding is not matched).
    pub async fn observe(
        self,
        task: String,
        read_at: Timestamp,
        status: u16,
        (body, encoding): (Vec<u8>, Option<String>),
    ) -> Result<(), ReconcileError> {
        match decoded(body, encoding.as_deref()) {
            Ok(body) => self.0.observe(task, read_at, status, body).await,
            Err(why) => {
                tracing::warn!(
                    task,
                    "passive reconciliation: SMS's answer is not matched: {why}"
                );
                Ok(())
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PassiveReconciliation {
    /// Passive reconciliation against `target`, signed with `key`.
    pub fn new(
        reads: ReadPool,
        writer: WriterHandle,
        target: String,
        key: crate::domain::checkpoint::CheckpointKey,
    ) -> Self {
        Self {
            storage: RunStorage::Service { reads, writer },
            target,
            key,
            tolerance: super::Settings::DEFAULT_TOLERANCE,
            turn: tokio::sync::Mutex::new(()),
            waiting: Default::default(),
            skipped: Default::default(),
        }
    }

    /// A place in the queue of answers to match, unless it is full (then the
    /// answer is counted as skipped, and said in the log now and then, never
    /// once per answer).
    pub fn enqueue(self: &Arc<Self>) -> Option<Waiting> {
        use std::sync::atomic::Ordering;
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let place = Waiting(self.clone());
        if before < MAX_WAITING {
            return Some(place);
        }
        let skipped = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        if skipped % 10_000 == 1 {
            tracing::warn!(
                skipped,
                "passive reconciliation is behind: read-backs passed on but not matched so far"
            );
        }
        None
    }

    /// Judges and stores SMS's answer to a `ShowConsistencyResult` call for `task`
    /// that arrived at `read_at`. Only an answer that says what SMS holds counts:
    /// a 2xx, or a 404 (the task unknown to SMS); any other error says nothing.
    /// Only tasks with an upload here are reconciled, as in an active run.
    pub async fn observe(
        &self,
        task: String,
        read_at: Timestamp,
        status: u16,
        body: Vec<u8>,
    ) -> Result<(), ReconcileError> {
        if !(200..300).contains(&status) && status != 404 {
            return Ok(());
        }
        let t = task.clone();
        if !self
            .storage
            .read(move |conn| store::has_uploads(conn, &t))
            .await?
        {
            return Ok(());
        }
        let error_code = crate::services::upstream::error_code_of(&body);
        let _turn = self.turn.lock().await;
        let run = self.current_run(now_ms()).await?;
        // Every upload is looked at; those not delivered by `read_at` are never
        // expected in SMS, only matched.
        let against = Run {
            ledger_size: i64::MAX,
            ..run.clone()
        };
        let answer = SmsReadBack {
            status,
            body,
            error_code,
            retry_after: None,
        };
        let judged = judge(
            &self.storage,
            self.tolerance,
            &against,
            &task,
            read_at,
            Ok(answer),
        )
        .await?;
        if let Read::Outcome(outcome) = judged {
            let id = run.id;
            self.storage
                .write(move |conn| store::record_task(conn, id, &outcome))
                .await?;
        }
        Ok(())
    }

    /// Closes and signs the passive runs begun on a day before `now`'s, or
    /// against another endpoint.
    pub async fn close_ended(&self, now: Timestamp) -> Result<(), ReconcileError> {
        for run in self.storage.read(store::open_passive_runs).await? {
            if run.target != self.target
                || run.started_at.div_euclid(DAY_MS) < now.div_euclid(DAY_MS)
            {
                self.close(run).await?;
            }
        }
        Ok(())
    }

    /// Today's passive run, opened when it is the day's first answer.
    async fn current_run(&self, now: Timestamp) -> Result<Run, ReconcileError> {
        self.close_ended(now).await?;
        let target = self.target.clone();
        let open = |runs: Vec<Run>| runs.into_iter().find(|r| r.target == target);
        if let Some(run) = open(self.storage.read(store::open_passive_runs).await?) {
            return Ok(run);
        }
        let t = self.target.clone();
        self.storage
            .write(move |conn| {
                store::start_run_of(conn, RunKind::Passive, &t, &Scope::default(), now).map(drop)
            })
            .await?;
        open(self.storage.read(store::open_passive_runs).await?)
            .ok_or_else(|| ReconcileError::Writer("the new passive run was not found".into()))
    }

    /// Ends `run` as finished, its summary signed.
    async fn close(&self, run: Run) -> Result<(), ReconcileError> {
        let id = run.id;
        self.storage
            .write(move |conn| store::close_ledger_size(conn, id))
            .await?;
        let run = self.storage.run(id).await?;
        finish(&self.storage, &self.key, &run).await?;
        tracing::info!(run = id, "passive reconciliation closed for its day");
        Ok(())
    }
}

/// `body` as sent before its `Content-Encoding`, at most `PASSIVE_ANSWER_LIMIT`.
fn decoded(body: Vec<u8>, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let reader: Box<dyn Read> = match encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => return Ok(body),
        Some(e) if e.is_empty() || e == "identity" => return Ok(body),
        Some(e) if e == "gzip" || e == "x-gzip" => {
            Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(body)))
        }
        Some(e) if e == "deflate" => {
            Box::new(flate2::read::ZlibDecoder::new(std::io::Cursor::new(body)))
        }
        Some(e) => return Err(format!("it is encoded as {e:?}")),
    };
    let mut out = Vec::new();
    reader
        .take(PASSIVE_ANSWER_LIMIT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("it does not decode: {e}"))?;
    if out.len() > PASSIVE_ANSWER_LIMIT {
        return Err("decoded, it is longer than 1 MiB".into());
    }
    Ok(out)
}

/// Closes each passive run once its day is over, even when no agent reads
/// anything the next day; at start, and every ten minutes until `stop`.
pub async fn close_loop(
    passive: Arc<PassiveReconciliation>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        {
            let _turn = passive.turn.lock().await;
            if let Err(e) = passive.close_ended(now_ms()).await {
                tracing::warn!("passive reconciliation: {e}");
            }
        }
        if crate::services::background::pause(&stop, CLOSE_CHECK).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn compressed_answers_are_read_as_sent_and_bounded() {
        let answer = br#"{"task_id":"t","result_list":[]}"#.to_vec();
        assert_eq!(decoded(answer.clone(), None).unwrap(), answer);
        assert_eq!(decoded(answer.clone(), Some("identity")).unwrap(), answer);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&answer).unwrap();
        assert_eq!(decoded(gz.finish().unwrap(), Some("gzip")).unwrap(), answer);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&answer).unwrap();
        assert_eq!(
            decoded(z.finish().unwrap(), Some("Deflate")).unwrap(),
            answer
        );
        assert!(decoded(answer.clone(), Some("br")).is_err());
        assert!(decoded(answer, Some("gzip")).is_err(), "not gzip");
        // A small bomb stays small.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![b' '; 4 * PASSIVE_ANSWER_LIMIT])
            .unwrap();
        let err = decoded(bomb.finish().unwrap(), Some("gzip")).unwrap_err();
        assert!(err.contains("longer than 1 MiB"), "{err}");
    }
}
