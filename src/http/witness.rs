//! The witness's HTTP interface (C2SP `tlog-witness`): `POST /add-checkpoint`
//! and the monitoring read `GET /<origin hash>/checkpoint`. Plain text, as the
//! protocol defines it; the witness's database is used on a blocking thread.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use parking_lot::Mutex;
use rusqlite::Connection;

use crate::domain::witness::{Inconsistent, SIZE_CONTENT_TYPE};
use crate::services::witness::{monitoring_checkpoint, posix_now, Refusal, Witness};

/// The largest request body: a signed note is at most 1 MB (signed-note's own
/// bound), and 63 proof lines add little.
pub const MAX_REQUEST_BYTES: usize = 1_100_000;

/// A witness and its database.
pub struct WitnessState {
    /// The witness.
    pub witness: Witness,
    /// Its database, one request at a time (each answer is one transaction).
    pub db: Mutex<Connection>,
}

/// The witness's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_REQUEST_BYTES))
        .route("/add-checkpoint", web::post().to(add_checkpoint))
        .route("/{origin_hash}/checkpoint", web::get().to(checkpoint));
}

fn text(status: u16, content_type: &str, body: String) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body)
}

async fn add_checkpoint(state: web::Data<Arc<WitnessState>>, body: web::Bytes) -> HttpResponse {
    let answered = web::block(move || {
        // The signature is checked before the state is locked: a flood of large
        // notes does not hold up the requests behind it.
        let signed = state.witness.signed_request(&body)?;
        let mut conn = state.db.lock();
        state.witness.cosign(&mut conn, signed, posix_now())
    })
    .await;
    match answered {
        Ok(Ok(lines)) => text(200, "text/plain; charset=utf-8", lines),
        Ok(Err(Refusal::Inconsistent(Inconsistent::Conflict { witnessed, .. }))) => {
            text(409, SIZE_CONTENT_TYPE, format!("{witnessed}\n"))
        }
        Ok(Err(refusal)) => {
            tracing::warn!(
                status = refusal.status(),
                "add-checkpoint refused: {refusal}"
            );
            text(
                refusal.status(),
                "text/plain; charset=utf-8",
                format!("{refusal}\n"),
            )
        }
        Err(e) => text(500, "text/plain; charset=utf-8", format!("{e}\n")),
    }
}

async fn checkpoint(
    state: web::Data<Arc<WitnessState>>,
    origin_hash: web::Path<String>,
) -> HttpResponse {
    let hash = origin_hash.into_inner();
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return text(
            404,
            "text/plain; charset=utf-8",
            "not a log's origin hash\n".into(),
        );
    }
    let found = web::block(move || monitoring_checkpoint(&state.db.lock(), &hash)).await;
    match found {
        Ok(Ok(Some(note))) => text(200, "text/plain; charset=utf-8", note),
        Ok(Ok(None)) => text(
            404,
            "text/plain; charset=utf-8",
            "no checkpoint of that log cosigned\n".into(),
        ),
        Ok(Err(e)) => text(500, "text/plain; charset=utf-8", format!("{e}\n")),
        Err(e) => text(500, "text/plain; charset=utf-8", format!("{e}\n")),
    }
}
