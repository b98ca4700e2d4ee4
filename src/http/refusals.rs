//! The upload endpoint's refusals, in the order its checks run: the one source of
//! the manual's error table (`docs/agents.md`, held to it by `tests/docs.rs`) and
//! of the upload operations' error responses in the OpenAPI description.
//! `tests/api/errors.rs` provokes each of them.

/// One way an upload is refused.
pub struct Refusal {
    /// What was wrong, in the manual's words (Markdown).
    pub problem: &'static str,
    pub status: u16,
    /// The `error_code` answered, and what else comes with it.
    pub code: &'static str,
    /// Whether it can happen to the upload operation itself (rows about any path
    /// are in the manual's table only).
    pub upload_operation: bool,
}

const fn refusal(problem: &'static str, status: u16, code: &'static str) -> Refusal {
    Refusal {
        problem,
        status,
        code,
        upload_operation: true,
    }
}

const fn any_path(problem: &'static str, status: u16, code: &'static str) -> Refusal {
    Refusal {
        problem,
        status,
        code,
        upload_operation: false,
    }
}

/// Every refusal; the first check that fails answers.
pub const UPLOAD_REFUSALS: &[Refusal] = &[
    refusal("more header bytes than `--max-header-bytes`, any path", 431, "`SMS.9001`"),
    refusal("more than 30 failed authentications from this address lately (below)", 429, "`APIGW.0308` (with `Retry-After`)"),
    refusal("no credentials, unknown token or AK, bad signature, clock skew, revoked credential, a signature already used, `UNSIGNED-PAYLOAD`", 401, "`APIGW.0301`"),
    refusal("credential may not upload (role, or task outside its `--tasks`)", 403, "`SMS.9004`"),
    refusal("too many uploads from this credential (`--rate-limit`)", 429, "`APIGW.0308`"),
    refusal("`task_id` not 1–36 characters of `[A-Za-z0-9_-]`", 400, "`SMS.9001`"),
    refusal("task unknown under `--task-policy registered`", 404, "`SMS.7703`"),
    refusal("`Content-Type` missing", 400, "`SMS.2005`"),
    refusal("`Content-Type` not `application/json` (parameters allowed)", 400, "`SMS.2006`"),
    refusal("body larger than `--max-body-bytes`", 413, "`SMS.2004`"),
    refusal("body not arrived within `--body-timeout`", 408, "`SMS.9001`"),
    refusal("body not UTF-8 JSON, not an object, duplicate keys, a field rule broken", 400, "`SMS.9001`"),
    refusal("storage failed; nothing stored", 500, "`SMS.2007`"),
    refusal("write queue full / shutting down, or `--max-buffered-bytes` of bodies already held", 503, "`SMS.0201` (with `Retry-After: 1`)"),
    refusal("another method than `POST` on the upload path (`GET` goes to SMS with `--proxy`)", 405, "`SMS.2003`"),
    any_path("unknown path (other `/v3/` calls go to SMS with `--proxy`)", 404, "`APIGW.0101`"),
    any_path("`CONNECT`, any path", 405, "`SMS.2003`"),
    any_path("a request target that is a whole URL (`GET http://host/…`, absolute form), or two `Host` or `Content-Length` headers, any path", 400, "`SMS.9001` (actix's parser refuses most doubled headers itself, with an empty 400)"),
];

/// The manual's table of them.
pub fn markdown_table() -> String {
    let mut table = String::from("| problem | status | error_code |\n|---|---|---|\n");
    for r in UPLOAD_REFUSALS {
        table.push_str(&format!("| {} | {} | {} |\n", r.problem, r.status, r.code));
    }
    table
}

/// The upload operation's answers of one status, as one OpenAPI description.
pub fn describe_status(status: u16) -> Option<String> {
    let lines: Vec<String> = UPLOAD_REFUSALS
        .iter()
        .filter(|r| r.upload_operation && r.status == status)
        .map(|r| format!("{}: {}", r.problem, r.code))
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Every status the upload operation can refuse with, ascending.
pub fn upload_statuses() -> Vec<u16> {
    let mut statuses: Vec<u16> = UPLOAD_REFUSALS
        .iter()
        .filter(|r| r.upload_operation)
        .map(|r| r.status)
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}
