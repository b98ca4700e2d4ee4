//! `POST /api/v1/replays`: operators ask the running service to send stored uploads
//! to SMS again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::credentials::Credential;
use crate::domain::{parse_time_arg, Role};
use crate::error::SmsError;
use crate::replay::{self, ReplayFilter, ReplayRunner};
use crate::startup::AppState;
use crate::upstream;

#[derive(Debug, Default, Deserialize)]
pub struct ReplayRequest {
    #[serde(default)]
    pub tasks: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub state: Option<String>,
    #[serde(default)]
    pub latest_per_task: bool,
    /// Another endpoint than the configured one.
    pub to: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct ReplayAnswer {
    pub replay_id: Option<i64>,
    pub target: String,
    pub count: usize,
    pub tasks: BTreeMap<String, usize>,
    pub dry_run: bool,
}

pub fn require_operator(credential: &Credential) -> Result<(), SmsError> {
    if credential.role == Role::Operator {
        Ok(())
    } else {
        Err(SmsError::Forbidden(format!(
            "credential {:?} is an {} credential; replays need an operator",
            credential.name, credential.role
        )))
    }
}

fn time(name: &str, v: &Option<String>) -> Result<Option<i64>, SmsError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => parse_time_arg(v)
            .map(Some)
            .map_err(|e| SmsError::bad_request(format!("{name}: {e}"))),
    }
}

/// Selects (and unless `dry_run`, creates in one transaction) a server replay.
pub async fn start(
    state: &AppState,
    request: ReplayRequest,
    requested_by: &str,
) -> Result<ReplayAnswer, SmsError> {
    let settings = state.config.upstream.as_ref().ok_or_else(|| {
        SmsError::bad_request(
            "no upstream is configured: start serve with --upstream-endpoint or --upstream-region",
        )
    })?;
    let target = match request.to.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(url) => upstream::normalize_endpoint(url)
            .map_err(|e| SmsError::bad_request(format!("to: {e}")))?,
        None => settings.endpoint.clone(),
    };
    let filter = ReplayFilter {
        tasks: request
            .tasks
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        since: time("since", &request.since)?,
        until: time("until", &request.until)?,
        state: request.state.clone().filter(|s| !s.is_empty()),
        latest_per_task: request.latest_per_task,
    };
    filter.validate().map_err(SmsError::bad_request)?;
    if request.dry_run {
        let f = filter.clone();
        let selection = state.read(move |conn| replay::select(conn, &f)).await?;
        return Ok(ReplayAnswer {
            replay_id: None,
            target,
            count: selection.uploads.len(),
            tasks: selection.per_task,
            dry_run: true,
        });
    }
    // Selected and created in the writer's transaction: what is counted is sent.
    let created: Arc<Mutex<Option<(i64, replay::Selection)>>> = Arc::default();
    let (out, by, to) = (created.clone(), requested_by.to_string(), target.clone());
    state
        .writer
        .execute(move |conn| {
            let selection = replay::select(conn, &filter)?;
            let id = replay::create(conn, &selection, &filter, &to, ReplayRunner::Server, &by)?;
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, selection));
            Ok(())
        })
        .await
        .map_err(|e| SmsError::Storage(e.to_string()))?;
    let (id, selection) = created
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| SmsError::Storage("the replay was not created".into()))?;
    state.outbox_wake.notify_one();
    tracing::info!(replay = id, count = selection.uploads.len(), target = %target, by = requested_by, "replay started");
    Ok(ReplayAnswer {
        replay_id: Some(id),
        target,
        count: selection.uploads.len(),
        tasks: selection.per_task,
        dry_run: false,
    })
}

pub async fn create(
    req: HttpRequest,
    body: web::Json<ReplayRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, SmsError> {
    let credential = auth::reader(&req, &state).await?;
    require_operator(&credential)?;
    let dry_run = body.dry_run;
    let answer = start(
        &state,
        body.into_inner(),
        &format!("api:{}", credential.name),
    )
    .await?;
    Ok(if dry_run {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::Created().json(answer)
    })
}
