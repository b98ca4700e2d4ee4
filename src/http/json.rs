//! The JSON shapes of the read API (and of `tasks list --json`): storage's rows
//! as the API writes them, with times as RFC 3339 strings. Storage returns typed
//! rows; what a client reads is decided here.

use serde::Serialize;

use crate::domain::{format_timestamp, DeliveryState, Timestamp, Totals, Trigger};
use crate::services::fleet::{Change, VerdictCounts};
use crate::storage::checkpoints::StoredCheckpoint;
use crate::storage::credentials::CredentialSummary;
use crate::storage::fleet::TaskState;
use crate::storage::outbox::{AttemptRow, DeliveryRecord};
use crate::storage::proxy_log::CallRow;
use crate::storage::rejections::{Rejection, RejectionCount};
use crate::storage::tasks::TaskSummary;
use crate::storage::uploads::{ResultRow, UploadRecord, UploadSummary};

fn time(at: Option<Timestamp>) -> Option<String> {
    at.map(format_timestamp)
}

/// A task in `GET /api/v1/tasks` (now or as of a moment: one shape, null where
/// unknown) and `tasks list --json`.
#[derive(Debug, Serialize)]
pub struct TaskJson {
    task_id: String,
    name: Option<String>,
    registered_at: Option<String>,
    registered_by: Option<String>,
    upload_count: i64,
    first_received_at: Option<String>,
    last_received_at: Option<String>,
    last_upload_id: Option<i64>,
    latest_totals: Option<Totals>,
    /// Result items in the latest upload: 0 is "no results", never clean.
    latest_result_count: Option<i64>,
    problems: Option<i64>,
    regressed: Option<bool>,
    sms_state: Option<String>,
    sms_synced_at: Option<String>,
}

impl TaskJson {
    /// A task as of a moment: its latest upload by then (`state`), its upload
    /// count and first upload by then, and its registration. SMS's state is
    /// not known as of a moment: null.
    pub fn as_of(
        state: &TaskState,
        (upload_count, first): (i64, Option<Timestamp>),
        registration: Option<(Timestamp, String)>,
    ) -> Self {
        let (registered_at, registered_by) = registration.unzip();
        TaskJson {
            task_id: state.task_id.clone(),
            name: state.name.clone(),
            registered_at: time(registered_at),
            registered_by,
            upload_count,
            first_received_at: time(first),
            last_received_at: Some(format_timestamp(state.received_at)),
            last_upload_id: Some(state.upload_id),
            latest_totals: Some(state.totals),
            latest_result_count: Some(state.results),
            problems: Some(state.problems),
            regressed: Some(state.regressed),
            sms_state: None,
            sms_synced_at: None,
        }
    }
}

impl From<TaskSummary> for TaskJson {
    fn from(t: TaskSummary) -> Self {
        TaskJson {
            task_id: t.task_id,
            name: t.name,
            registered_at: Some(format_timestamp(t.registered_at)),
            registered_by: Some(t.registered_by),
            upload_count: t.upload_count,
            first_received_at: time(t.first_received_at),
            last_received_at: time(t.last_received_at),
            last_upload_id: t.last_upload_id,
            latest_totals: t.latest_totals,
            latest_result_count: t.latest_result_count,
            problems: t.problems,
            regressed: t.last_upload_id.map(|_| t.regressed),
            sms_state: t.sms_state,
            sms_synced_at: time(t.sms_synced_at),
        }
    }
}

/// An upload in `GET /api/v1/tasks/{id}/uploads`.
#[derive(Debug, Serialize)]
pub struct UploadSummaryJson {
    id: i64,
    received_at: String,
    result_count: i64,
    totals: Totals,
    duplicate_of: Option<i64>,
    finished_time: Option<i64>,
    regressed: bool,
}

impl From<UploadSummary> for UploadSummaryJson {
    fn from(u: UploadSummary) -> Self {
        UploadSummaryJson {
            id: u.id,
            received_at: format_timestamp(u.received_at),
            result_count: u.result_count,
            totals: u.totals,
            duplicate_of: u.duplicate_of,
            finished_time: u.finished_time,
            regressed: u.regressed,
        }
    }
}

/// One result item in `GET /api/v1/uploads/{id}`.
#[derive(Debug, Serialize)]
pub struct ResultJson {
    ordinal: i64,
    dir_check: String,
    num_total_files: i64,
    num_different_files: i64,
    num_target_miss_files: i64,
    num_target_more_files: i64,
}

impl From<ResultRow> for ResultJson {
    fn from(r: ResultRow) -> Self {
        ResultJson {
            ordinal: r.ordinal,
            dir_check: r.dir_check,
            num_total_files: r.num_total_files,
            num_different_files: r.num_different_files,
            num_target_miss_files: r.num_target_miss_files,
            num_target_more_files: r.num_target_more_files,
        }
    }
}

/// A delivery attempt in `GET /api/v1/uploads/{id}`.
#[derive(Debug, Serialize)]
pub struct AttemptJson {
    at: String,
    target_url: String,
    trigger: Trigger,
    http_status: Option<u16>,
    upstream_request_id: Option<String>,
    error_code: Option<String>,
    error_msg: Option<String>,
    transport_error: Option<String>,
    response_head: Option<String>,
    latency_ms: i64,
}

impl From<AttemptRow> for AttemptJson {
    fn from(a: AttemptRow) -> Self {
        AttemptJson {
            at: format_timestamp(a.at),
            target_url: a.target_url,
            trigger: a.trigger,
            http_status: a.http_status,
            upstream_request_id: a.upstream_request_id,
            error_code: a.error_code,
            error_msg: a.error_msg,
            transport_error: a.transport_error,
            response_head: a.response_head,
            latency_ms: a.latency_ms,
        }
    }
}

/// A delivery in `GET /api/v1/uploads/{id}`.
#[derive(Debug, Serialize)]
pub struct DeliveryJson {
    id: i64,
    target: String,
    trigger: Trigger,
    replay_id: Option<i64>,
    state: DeliveryState,
    created_at: String,
    next_attempt_at: Option<String>,
    finished_at: Option<String>,
    last_error: Option<String>,
    attempts: Vec<AttemptJson>,
}

impl From<DeliveryRecord> for DeliveryJson {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryJson {
            id: d.id,
            target: d.target,
            trigger: d.trigger,
            replay_id: d.replay_id,
            state: d.state,
            created_at: format_timestamp(d.created_at),
            next_attempt_at: time(d.next_attempt_at),
            finished_at: time(d.finished_at),
            last_error: d.last_error,
            attempts: d.attempts.into_iter().map(AttemptJson::from).collect(),
        }
    }
}

/// `GET /api/v1/uploads/{id}`: one upload whole.
#[derive(Debug, Serialize)]
pub struct UploadJson {
    id: i64,
    request_id: String,
    task_id: String,
    received_at: String,
    credential_name: String,
    auth_method: String,
    project_id: Option<String>,
    peer_addr: String,
    forwarded_for: Option<String>,
    user_agent: Option<String>,
    body_sha256: String,
    finished_time: Option<i64>,
    result_count: i64,
    totals: Totals,
    duplicate_of: Option<i64>,
    prev_hash: String,
    entry_hash: String,
    results: Vec<ResultJson>,
    deliveries: Vec<DeliveryJson>,
    raw_body: String,
    purged_at: Option<String>,
}

impl From<UploadRecord> for UploadJson {
    fn from(u: UploadRecord) -> Self {
        UploadJson {
            id: u.id,
            request_id: u.request_id,
            task_id: u.task_id,
            received_at: format_timestamp(u.received_at),
            credential_name: u.credential_name,
            auth_method: u.auth_method,
            project_id: u.project_id,
            peer_addr: u.peer_addr,
            forwarded_for: u.forwarded_for,
            user_agent: u.user_agent,
            body_sha256: u.body_sha256,
            finished_time: u.finished_time,
            result_count: u.result_count,
            totals: u.totals,
            duplicate_of: u.duplicate_of,
            prev_hash: u.prev_hash,
            entry_hash: u.entry_hash,
            results: u.results.into_iter().map(ResultJson::from).collect(),
            deliveries: u.deliveries.into_iter().map(DeliveryJson::from).collect(),
            raw_body: u.raw_body,
            purged_at: time(u.purged_at),
        }
    }
}

/// A refused request in `GET /api/v1/rejections`.
#[derive(Debug, Serialize)]
pub struct RejectionJson {
    at: String,
    peer_addr: String,
    method: String,
    path: String,
    status: u16,
    error_code: String,
    /// The message the client was answered with (null in rows logged before
    /// messages were kept).
    error_msg: Option<String>,
    credential_name: Option<String>,
    request_id: String,
}

impl From<Rejection> for RejectionJson {
    fn from(r: Rejection) -> Self {
        RejectionJson {
            at: format_timestamp(r.at),
            peer_addr: r.peer_addr,
            method: r.method,
            path: r.path,
            status: r.status,
            error_code: r.error_code,
            error_msg: r.error_msg,
            credential_name: r.credential_name,
            request_id: r.request_id,
        }
    }
}

/// A minute's refusals in `GET /api/v1/rejections/counts`.
#[derive(Debug, Serialize)]
pub struct RejectionCountJson {
    minute: String,
    peer_addr: String,
    error_code: String,
    count: i64,
}

impl From<RejectionCount> for RejectionCountJson {
    fn from(c: RejectionCount) -> Self {
        RejectionCountJson {
            minute: format_timestamp(c.minute),
            peer_addr: c.peer_addr,
            error_code: c.error_code,
            count: c.count,
        }
    }
}

/// A call passed on to SMS in `GET /api/v1/proxy-log`.
#[derive(Debug, Serialize)]
pub struct CallJson {
    id: i64,
    at: String,
    request_id: String,
    credential_name: String,
    peer_addr: String,
    method: String,
    path: String,
    query: String,
    status: u16,
    outcome: String,
    error: Option<String>,
    latency_ms: f64,
    upstream_request_id: Option<String>,
    request_bytes: i64,
    response_bytes: i64,
    /// The SHA-256 of SMS's answer, when it passed whole.
    response_sha256: Option<String>,
    /// The kept start of each body (as text, lossily), with `--proxy-log-bodies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<String>,
}

impl From<CallRow> for CallJson {
    fn from(c: CallRow) -> Self {
        CallJson {
            id: c.id,
            at: format_timestamp(c.at),
            request_id: c.request_id,
            credential_name: c.credential_name,
            peer_addr: c.peer_addr,
            method: c.method,
            path: c.path,
            query: c.query,
            status: c.status,
            outcome: c.outcome,
            error: c.error,
            latency_ms: c.latency_ms,
            upstream_request_id: c.upstream_request_id,
            request_bytes: c.request_bytes,
            response_bytes: c.response_bytes,
            response_sha256: c.response_sha256,
            request_body: c.request_body,
            response_body: c.response_body,
        }
    }
}

/// A credential in `credentials list --json`: never its secrets.
#[derive(Debug, Serialize)]
pub struct CredentialJson {
    name: String,
    role: String,
    access_key: Option<String>,
    tasks: Option<Vec<String>>,
    created_at: String,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
}

impl From<CredentialSummary> for CredentialJson {
    fn from(c: CredentialSummary) -> Self {
        CredentialJson {
            name: c.name,
            role: c.role,
            access_key: c.access_key,
            tasks: c.tasks,
            created_at: format_timestamp(c.created_at),
            revoked_at: time(c.revoked_at),
            last_used_at: time(c.last_used_at),
        }
    }
}

/// A checkpoint in `GET /api/v1/checkpoints`.
#[derive(Debug, Serialize)]
pub struct CheckpointJson {
    tree_size: u64,
    /// Standard base64.
    root_hash: String,
    time: String,
    /// The signed note, as served at `/api/v1/checkpoints/latest`.
    note: String,
}

impl From<StoredCheckpoint> for CheckpointJson {
    fn from(c: StoredCheckpoint) -> Self {
        CheckpointJson {
            tree_size: c.tree_size,
            root_hash: c.root_hash,
            time: format_timestamp(c.time),
            note: c.note,
        }
    }
}

/// A task as of a moment, in `changes`.
fn task_state(s: &TaskState) -> serde_json::Value {
    serde_json::json!({
        "upload_id": s.upload_id,
        "received_at": format_timestamp(s.received_at),
        "totals": s.totals,
        "problems": s.problems,
        "regressed": s.regressed,
        "result_count": s.results,
    })
}

/// One page of the changes the filter kept.
pub struct ChangesPage {
    /// Every row the filter kept.
    pub total: usize,
    /// Where the next page starts (none: this is the last).
    pub next_offset: Option<usize>,
    /// This page's rows.
    pub rows: Vec<Change>,
}

/// What changed between two moments: `GET /api/v1/changes` and
/// `changes --format json` write this one shape.
pub fn changes(
    from: Timestamp,
    to: Timestamp,
    counts: &VerdictCounts,
    page: &ChangesPage,
) -> serde_json::Value {
    let task = |c: &Change| {
        serde_json::json!({
            "task_id": c.task_id,
            "name": c.name,
            "verdict": c.verdict,
            "clean": c.clean,
            "problems_change": c.problems_change,
            "from": c.from.as_ref().map(task_state),
            "to": task_state(&c.to),
        })
    };
    serde_json::json!({
        "from": format_timestamp(from),
        "to": format_timestamp(to),
        "counts": counts,
        "total": page.total,
        "next_offset": page.next_offset,
        "tasks": page.rows.iter().map(task).collect::<Vec<_>>(),
    })
}

/// Rows as their JSON shapes.
pub fn all<R, J: From<R>>(rows: Vec<R>) -> Vec<J> {
    rows.into_iter().map(J::from).collect()
}
