//! The audit page: the ledger's head and last verification, starting a new one,
//! and the rejection log.

use super::filters;
use crate::http::Evidence;
use crate::storage::{overview, rejections};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::login::CsrfOnly;
use super::{html, Nav, PageError};
use crate::domain::{now_ms, Timestamp};
use crate::http::extract::Query;
use crate::http::extract::{CsrfForm, PageUser};
use crate::services::evidence;
use crate::storage::checkpoints::{self, StoredCheckpoint};
use crate::storage::rejections::Rejection;
use crate::storage::rejections::RejectionCount;
use crate::storage::rejections::RejectionFilter;
use crate::storage::retention::{self, AdminEntry, DiskUse};
use crate::storage::verifications::VerificationRecord;
use crate::storage::witnesses::{self, WitnessRow};
use crate::storage::writer::REJECTIONS_KEPT;
use crate::storage::ReadPool;

/// Admin log rows on the page, newest first.
const ADMIN_LOG_SHOWN: u32 = 50;

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
    rejections: Vec<Rejection>,
    /// The largest per-minute refusal counts of the last hour.
    floods: Vec<RejectionCount>,
    verifier_key: Option<String>,
    checkpoints: Vec<StoredCheckpoint>,
    /// (from, to, whether the newest checkpoint extends the one before).
    consistency: Option<(u64, u64, bool)>,
    disk: DiskUse,
    admin_log: Vec<AdminEntry>,
    /// The witnesses asked to cosign, and how many make a quorum.
    witnesses: Vec<WitnessView>,
    witness_quorum: usize,
}

/// A witness as the audit page shows it.
struct WitnessView {
    name: String,
    url: String,
    /// `good`, `same` or `bad`, and its words.
    state: (&'static str, &'static str),
    cosigned_size: Option<i64>,
    cosigned_at: Option<Timestamp>,
    last_error: String,
}

impl From<WitnessRow> for WitnessView {
    fn from(w: WitnessRow) -> Self {
        let state = match (w.refused_inconsistent, &w.last_error, w.cosigned_size) {
            (true, _, _) => ("bad", "refused a checkpoint as inconsistent"),
            (false, Some(_), _) => ("same", "failing, retried"),
            (false, None, None) => ("same", "not asked yet"),
            (false, None, Some(_)) => ("good", "cosigning"),
        };
        WitnessView {
            name: w.vkey.split('+').next().unwrap_or_default().to_string(),
            url: w.url,
            state,
            cosigned_size: w.cosigned_size.map(|s| s as i64),
            cosigned_at: w.cosigned_at,
            last_error: w.last_error.unwrap_or_default(),
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn page(
    query: Query<AuditQuery>,
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    PageUser(session): PageUser,
) -> Result<HttpResponse, PageError> {
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
    let db = reads.path().to_path_buf();
    let vkeys = evidence
        .witnesses
        .as_ref()
        .map(|w| w.vkeys())
        .unwrap_or_default();
    let (
        overview,
        rejections,
        floods,
        checkpoints,
        consistency,
        (disk, admin_log, shown_witnesses),
    ) = reads
        .with_blocking(move |conn| {
            Ok((
                overview::overview(conn)?,
                rejections::recent_rejections(conn, 200, &filter)?,
                rejections::rejection_counts(conn, now_ms() - 3_600_000, 20)?,
                checkpoints::list(conn, 10, None)?,
                evidence::latest_two_consistent(conn).ok().flatten(),
                (
                    retention::disk_use(conn, &db)?,
                    retention::recent(conn, ADMIN_LOG_SHOWN)?,
                    witnesses::by_vkeys(conn, &vkeys)?,
                ),
            ))
        })
        .await?;
    let body = AuditPage {
        nav: Some(Nav::from(&session)),
        csrf_token: session.csrf_token.clone(),
        head_id: overview.head_id,
        head_hash: overview.head_hash,
        last: overview.last_verification,
        running: evidence.verification.progress(),
        kept: REJECTIONS_KEPT,
        filter_status: query.status.clone().unwrap_or_default(),
        filter_code: query.error_code.clone().unwrap_or_default(),
        filter_credential: query.credential.clone().unwrap_or_default(),
        rejections,
        floods,
        verifier_key: evidence.verifier_key(),
        checkpoints,
        consistency,
        disk,
        admin_log,
        witnesses: shown_witnesses.into_iter().map(WitnessView::from).collect(),
        witness_quorum: evidence.witnesses.as_ref().map_or(0, |w| w.quorum),
    }
    .render()?;
    Ok(html(body))
}

pub async fn start_verification(
    reads: web::Data<ReadPool>,
    evidence: web::Data<Evidence>,
    form: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    let PageUser(session) = form.who;
    let total = reads
        .with_blocking(|conn| Ok(overview::overview(conn)?.head_id))
        .await?;
    evidence
        .verification
        .start(total, format!("page:{}", session.credential.name));
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/audit"))
        .finish())
}
