//! Asking witnesses (C2SP `tlog-witness`) to cosign the service's checkpoints:
//! within a second of each checkpoint, every configured witness gets `add-checkpoint` with
//! the consistency proof from the size it cosigned last. Each returned
//! cosignature is verified against the witness's key before it is stored. A
//! witness that is down, slow or answers garbage is retried with the outbox's
//! backoff, on a loop of its own: ingest never waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use signed_note::{Note, VerifierList};
use tokio_util::sync::CancellationToken;

use crate::domain::cosignature::CosignatureVerifier;
use crate::domain::now_ms;
use crate::domain::witness::{AddCheckpoint, SIZE_CONTENT_TYPE};
use crate::services::outbox::RetryPolicy;
use crate::storage::checkpoints::{self, StoredCheckpoint};
use crate::storage::witnesses::{self, WitnessRow};
use crate::storage::writer::WriterHandle;
use crate::storage::{tree, ReadPool, StorageError};

/// A witness the service asks (`--witness URL=VKEY`).
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// Its submission prefix (`add-checkpoint` is appended).
    pub url: String,
    /// Its cosignature/v1 key.
    pub verifier: CosignatureVerifier,
}

/// `--witness` and `--witness-quorum`.
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    /// The witnesses.
    pub targets: Vec<WitnessTarget>,
    /// Cosignatures a checkpoint needs to count as witnessed.
    pub quorum: usize,
    /// How long one request may take.
    pub timeout: Duration,
}

impl WitnessSettings {
    /// How long one request to a witness may take.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The witnesses' verifier keys.
    pub fn vkeys(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| t.verifier.vkey().to_string())
            .collect()
    }
}

/// What one request to a witness came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// Nothing to ask: it cosigned the latest checkpoint already.
    UpToDate,
    /// Cosigned; its cosignature verified and stored.
    Cosigned(u64),
    /// It refused the checkpoint as inconsistent with what it cosigned (422), or
    /// says it cosigned a larger tree than this log has.
    Refused(String),
    /// Failed for now (down, slow, garbage, 4xx): retried after a backoff.
    Failed(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FailureLabels {
    witness: String,
    reason: &'static str,
}

/// Per witness: the size it cosigned last, and its failures by reason.
#[derive(Default)]
pub struct WitnessMetrics {
    cosigned_size: Family<WitnessLabel, Gauge>,
    failures: Family<FailureLabels, Counter>,
}

impl WitnessMetrics {
    /// Adds them to `/metrics`.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "sms_audit_witness_cosigned_size",
            "The tree size each witness cosigned last",
            self.cosigned_size.clone(),
        );
        r.register(
            "sms_audit_witness_failures",
            "Requests to a witness that did not end in a stored cosignature, by reason (unreachable, refused, http_error, bad_answer)",
            self.failures.clone(),
        );
    }

    fn set_size(&self, vkey: &str, size: u64) {
        let witness = vkey.split('+').next().unwrap_or_default().to_string();
        self.cosigned_size
            .get_or_create(&WitnessLabel { witness })
            .set(size as i64);
    }

    fn fail(&self, vkey: &str, reason: &'static str) {
        let witness = vkey.split('+').next().unwrap_or_default().to_string();
        self.failures
            .get_or_create(&FailureLabels { witness, reason })
            .inc();
    }
}

/// The service's side of witnessing.
pub struct Witnessing {
    settings: WitnessSettings,
    reads: ReadPool,
    writer: WriterHandle,
    client: reqwest::Client,
    /// Per witness (by row id): failures in a row and when to try again.
    backoff: Mutex<HashMap<i64, (u32, Instant)>>,
    /// Where checkpoint files go, rewritten with cosignatures.
    dir: Option<std::path::PathBuf>,
    /// One rewrite of the files at a time: two witnesses answering together
    /// must not let the rewrite that read fewer cosignatures write last.
    rewriting: tokio::sync::Mutex<()>,
    metrics: WitnessMetrics,
}

impl Witnessing {
    /// The service's witnessing; the witnesses are registered when it runs.
    pub fn new(
        settings: WitnessSettings,
        reads: ReadPool,
        writer: WriterHandle,
        dir: Option<std::path::PathBuf>,
    ) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("sms-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            settings,
            reads,
            writer,
            client,
            backoff: Mutex::new(HashMap::new()),
            dir,
            rewriting: tokio::sync::Mutex::new(()),
            metrics: WitnessMetrics::default(),
        }))
    }

    /// Its metrics, for `/metrics`.
    pub fn metrics(&self) -> &WitnessMetrics {
        &self.metrics
    }

    /// Registers the configured witnesses in the database.
    async fn register(&self) -> Result<(), String> {
        for target in &self.settings.targets {
            let (vkey, url) = (target.verifier.vkey().to_string(), target.url.clone());
            self.writer
                .execute_when_room(move |conn| witnesses::ensure(conn, &vkey, &url).map(|_| ()))
                .await
                .map_err(|e| format!("registering witness {}: {e}", target.url))?;
        }
        Ok(())
    }

    /// Asks every due witness once a second (so within a second of each
    /// checkpoint), until stopped.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if let Err(e) = self.register().await {
            tracing::error!("witnesses not asked: {e}");
            return;
        }
        loop {
            if super::background::pause(&stop, Duration::from_secs(1)).await {
                return;
            }
            if let Err(e) = self.round().await {
                tracing::warn!("witnesses not asked: {e}");
            }
        }
    }

    /// One round: each witness that is due and behind is asked, all at once.
    pub async fn round(&self) -> Result<Vec<Asked>, StorageError> {
        let vkeys = self.settings.vkeys();
        let (rows, latest) = self
            .reads
            .with_blocking(move |conn| {
                Ok((
                    witnesses::by_vkeys(conn, &vkeys)?,
                    checkpoints::latest(conn)?,
                ))
            })
            .await?;
        let Some(latest) = latest else {
            return Ok(vec![]);
        };
        for row in &rows {
            self.metrics
                .set_size(&row.vkey, row.cosigned_size.unwrap_or(0));
        }
        let now = Instant::now();
        let due: Vec<(WitnessRow, WitnessTarget)> = rows
            .into_iter()
            .zip(self.settings.targets.iter().cloned())
            .filter(|(row, _)| {
                row.cosigned_size.is_none_or(|s| s < latest.tree_size)
                    && self
                        .backoff
                        .lock()
                        .get(&row.id)
                        .is_none_or(|(_, at)| *at <= now)
            })
            .collect();
        let asks = due
            .iter()
            .map(|(row, target)| self.ask(row, target, &latest));
        Ok(futures_util::future::join_all(asks).await)
    }

    async fn ask(
        &self,
        row: &WitnessRow,
        target: &WitnessTarget,
        latest: &StoredCheckpoint,
    ) -> Asked {
        let mut old = row.cosigned_size.unwrap_or(0);
        // One retry from the size a 409 names.
        for _ in 0..2 {
            match self.request(target, latest, old).await {
                Ok(Answer::Conflict(size)) if size != old && size <= latest.tree_size => {
                    old = size;
                    continue;
                }
                Ok(Answer::Conflict(size)) if size > latest.tree_size => {
                    let why = format!(
                        "{} has cosigned a tree of {}, larger than this log's {}: this database may be an older copy (a fork)",
                        target.url,
                        crate::domain::counted(size, "upload"),
                        latest.tree_size
                    );
                    return self.failed(row, why, true).await;
                }
                Ok(Answer::Conflict(size)) => {
                    return self
                        .failed(
                            row,
                            format!("{} answered 409 with size {size} again", target.url),
                            false,
                        )
                        .await;
                }
                Ok(Answer::Cosigned(lines)) => {
                    return self.cosigned(row, target, latest, &lines).await
                }
                Ok(Answer::Refused(422, body)) => {
                    let why = format!(
                        "{} refused checkpoint {} as inconsistent: {}",
                        target.url,
                        latest.tree_size,
                        body.trim()
                    );
                    return self.failed(row, why, true).await;
                }
                Ok(Answer::Refused(status, body)) => {
                    let why = format!("{} answered {status}: {}", target.url, body.trim());
                    return self.failed(row, why, false).await;
                }
                Err(e) => {
                    return self
                        .failed(row, format!("{}: {e}", target.url), false)
                        .await
                }
            }
        }
        self.failed(row, format!("{} kept answering 409", target.url), false)
            .await
    }

    async fn request(
        &self,
        target: &WitnessTarget,
        latest: &StoredCheckpoint,
        old: u64,
    ) -> Result<Answer, String> {
        let size = latest.tree_size;
        let proof = if old == 0 || old >= size {
            vec![]
        } else {
            self.reads
                .with_blocking(move |conn| tree::consistency_proof(conn, size, old))
                .await
                .map_err(|e| e.to_string())?
        };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: latest.note.as_bytes().to_vec(),
        };
        let url = format!("{}/add-checkpoint", target.url.trim_end_matches('/'));
        let answer = self
            .client
            .post(url)
            .body(body.to_bytes())
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = answer.status().as_u16();
        let is_size = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(SIZE_CONTENT_TYPE));
        // A witness's answer is a few lines: never read more than 64 KiB of it.
        let text = read_limited(answer, 64 * 1024).await?;
        Ok(match status {
            200 => Answer::Cosigned(text),
            409 if is_size => Answer::Conflict(
                text.trim_end_matches('\n')
                    .parse()
                    .map_err(|_| format!("409 with a size that is not a number: {text:?}"))?,
            ),
            _ => Answer::Refused(status, text.chars().take(300).collect()),
        })
    }

    async fn cosigned(
        &self,
        row: &WitnessRow,
        target: &WitnessTarget,
        latest: &StoredCheckpoint,
        lines: &str,
    ) -> Asked {
        let Some((line, signed_at)) = verified_cosignature(&latest.note, lines, &target.verifier)
        else {
            let why = format!(
                "{} answered 200 without a valid cosignature of its key",
                target.url
            );
            return self.failed(row, why, false).await;
        };
        let (id, size) = (row.id, latest.tree_size);
        let stored = self
            .writer
            .execute_when_room(move |conn| {
                witnesses::record_cosignature(conn, id, size, signed_at, &line, now_ms())
            })
            .await;
        if let Err(e) = stored {
            return Asked::Failed(e.to_string());
        }
        self.backoff.lock().remove(&row.id);
        self.metrics.set_size(&row.vkey, size);
        self.rewrite_files(latest).await;
        Asked::Cosigned(size)
    }

    async fn failed(&self, row: &WitnessRow, why: String, inconsistent: bool) -> Asked {
        let reason = match (
            inconsistent,
            why.contains("no answer") || why.contains("broke off"),
        ) {
            (true, _) => "refused",
            (false, true) => "unreachable",
            (false, false) if why.contains(" answered ") => "http_error",
            (false, false) => "bad_answer",
        };
        self.metrics.fail(&row.vkey, reason);
        let id = row.id;
        let error = why.clone();
        let _ = self
            .writer
            .execute_when_room(move |conn| {
                witnesses::record_failure(conn, id, &error, inconsistent, now_ms())
            })
            .await;
        let mut backoff = self.backoff.lock();
        let attempts = backoff.get(&id).map_or(0, |(n, _)| *n) + 1;
        let wait = RetryPolicy::DEFAULT.backoff(attempts, None);
        backoff.insert(id, (attempts, Instant::now() + wait));
        if inconsistent {
            tracing::error!("witness refused: {why}");
            Asked::Refused(why)
        } else {
            tracing::warn!("witness not reached: {why}");
            Asked::Failed(why)
        }
    }

    /// The checkpoint files carry the cosignatures too.
    async fn rewrite_files(&self, latest: &StoredCheckpoint) {
        let Some(dir) = self.dir.clone() else { return };
        // Read and written under the lock: each rewrite reads after its own
        // cosignature was stored, so the last one written holds them all.
        let _one_at_a_time = self.rewriting.lock().await;
        let size = latest.tree_size;
        let note = latest.note.clone();
        let text = self
            .reads
            .with_blocking(move |conn| cosigned_note(conn, &note, size))
            .await;
        let written = text.map_err(|e| e.to_string()).and_then(|text| {
            crate::services::checkpoints::write_files(&dir, size, &text).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!("checkpoint files not rewritten with cosignatures: {e}");
        }
    }
}

enum Answer {
    Cosigned(String),
    Conflict(u64),
    Refused(u16, String),
}

async fn read_limited(mut answer: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| format!("answer broke off: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(format!(
                "answer longer than {}",
                crate::domain::counted(limit as u64, "byte")
            ));
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The witness's verified cosignature line among `lines`, with its timestamp;
/// lines of other keys are ignored, as the protocol says.
pub fn verified_cosignature(
    note: &str,
    lines: &str,
    verifier: &CosignatureVerifier,
) -> Option<(String, u64)> {
    lines.lines().find_map(|line| {
        let candidate = Note::from_bytes(format!("{note}{line}\n").as_bytes()).ok()?;
        let known = VerifierList::new(vec![Box::new(verifier.clone())]);
        let (verified, _) = candidate.verify(&known).ok()?;
        let signed_at = CosignatureVerifier::timestamp(verified.first()?.signature())?;
        Some((line.to_string(), signed_at))
    })
}

/// A checkpoint's note with every stored cosignature's line appended.
pub fn cosigned_note(
    conn: &rusqlite::Connection,
    note: &str,
    tree_size: u64,
) -> Result<String, StorageError> {
    let mut text = note.to_string();
    for c in witnesses::cosignatures(conn, tree_size)? {
        text.push_str(&c.line);
        text.push('\n');
    }
    Ok(text)
}

/// The latest checkpoint with its cosignatures, or with `witnessed`, the latest
/// that at least the quorum of those witnesses cosigned.
pub fn latest_note(
    conn: &rusqlite::Connection,
    witnessed: Option<&WitnessSettings>,
) -> Result<Option<(StoredCheckpoint, String)>, StorageError> {
    let checkpoint = match witnessed {
        None => checkpoints::latest(conn)?,
        Some(settings) => {
            match witnesses::latest_witnessed(conn, &settings.vkeys(), settings.quorum)? {
                Some(size) => checkpoints::at(conn, size)?,
                None => None,
            }
        }
    };
    let Some(checkpoint) = checkpoint else {
        return Ok(None);
    };
    let note = cosigned_note(conn, &checkpoint.note, checkpoint.tree_size)?;
    Ok(Some((checkpoint, note)))
}

/// A checkpoint's cosignatures for the API: who, when, and whether the quorum is met.
pub fn witness_json(
    conn: &rusqlite::Connection,
    tree_size: u64,
    settings: &WitnessSettings,
) -> Result<serde_json::Value, StorageError> {
    let vkeys = settings.vkeys();
    let cosigned: Vec<serde_json::Value> = witnesses::cosignatures(conn, tree_size)?
        .into_iter()
        .filter(|c| vkeys.contains(&c.vkey))
        .map(|c| {
            serde_json::json!({
                "witness": c.vkey,
                "signed_at": crate::domain::format_timestamp(c.signed_at as i64 * 1000),
            })
        })
        .collect();
    let state = if cosigned.len() >= settings.quorum {
        "witnessed"
    } else {
        "awaiting witnesses"
    };
    Ok(serde_json::json!({ "quorum": settings.quorum, "state": state, "cosignatures": cosigned }))
}
