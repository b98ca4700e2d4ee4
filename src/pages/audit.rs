use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::login::CsrfForm;
use super::{html, viewer, Nav, PageError};
use crate::ledger;
use crate::startup::AppState;
use crate::storage::history::{self, VerificationRecord};
use crate::storage::queries::{self, RejectionFilter, RejectionRow};
use crate::storage::writer::{now_ms, REJECTIONS_KEPT};

/// The ledger verification running in the background, if any (one at a time).
#[derive(Default)]
pub struct VerificationJob {
    running: Mutex<Option<Progress>>,
}

#[derive(Clone)]
struct Progress {
    checked: Arc<AtomicU64>,
    total: i64,
}

impl VerificationJob {
    /// (entries checked, entries in the ledger) while a verification runs.
    pub fn progress(&self) -> Option<(u64, i64)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .as_ref()
            .map(|p| (p.checked.load(Ordering::Relaxed), p.total))
    }

    /// Starts a verification on its own thread unless one is running; its result
    /// is recorded in the `verifications` table.
    pub fn start(state: web::Data<AppState>, total: i64, requested_by: String) {
        let progress = {
            let mut running = state
                .verification
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if running.is_some() {
                return;
            }
            let p = Progress {
                checked: Arc::new(AtomicU64::new(0)),
                total,
            };
            *running = Some(p.clone());
            p
        };
        let spawned = std::thread::Builder::new()
            .name("sms-audit-verify".into())
            .spawn(move || {
                let started = now_ms();
                let checked = progress.checked.clone();
                let result = state
                    .reads
                    .with(|conn| ledger::verify(conn, |n| checked.store(n, Ordering::Relaxed)));
                match result {
                    Ok(v) => {
                        if let Err(e) = state.writer.execute_blocking(move |conn| {
                            history::record_verification(conn, &v, started, &requested_by)
                        }) {
                            tracing::error!(error = %e, "recording a verification failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "ledger verification failed to run"),
                }
                *state
                    .verification
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a verification");
        }
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    status: Option<String>,
    error_code: Option<String>,
    credential: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    csrf_token: String,
    head_id: i64,
    head_hash: Option<String>,
    last: Option<VerificationRecord>,
    running: Option<(u64, i64)>,
    kept: i64,
    filter_status: String,
    filter_code: String,
    filter_credential: String,
    rejections: Vec<RejectionRow>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn page(
    req: HttpRequest,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = viewer(&req, &state).await?;
    let status = match non_empty(&query.status) {
        Some(s) => Some(s.parse::<u16>().map_err(|_| {
            PageError::BadRequest("status: must be an HTTP status such as 401".into())
        })?),
        None => None,
    };
    let filter = RejectionFilter {
        status,
        error_code: non_empty(&query.error_code),
        credential_name: non_empty(&query.credential),
    };
    let (overview, rejections) = state
        .read(move |conn| {
            Ok((
                history::overview(conn)?,
                queries::recent_rejections(conn, 200, &filter)?,
            ))
        })
        .await?;
    let body = AuditPage {
        nav: Some(Nav::from(&session)),
        csrf_token: session.csrf_token.clone(),
        head_id: overview.head_id,
        head_hash: overview.head_hash,
        last: overview.last_verification,
        running: state.verification.progress(),
        kept: REJECTIONS_KEPT,
        filter_status: query.status.clone().unwrap_or_default(),
        filter_code: query.error_code.clone().unwrap_or_default(),
        filter_credential: query.credential.clone().unwrap_or_default(),
        rejections,
    }
    .render()?;
    Ok(html(body))
}

pub async fn start_verification(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    let session = viewer(&req, &state).await?;
    session.check_csrf(&form.csrf_token)?;
    let total = state
        .read(|conn| Ok(history::overview(conn)?.head_id))
        .await?;
    VerificationJob::start(state, total, format!("page:{}", session.credential.name));
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/audit"))
        .finish())
}
