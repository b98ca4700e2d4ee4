//! Logins to the pages end in the database when they expire, not only at the
//! next login: the sweep deletes expired sessions every [`SWEEP_EVERY`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::storage::sessions;
use crate::storage::writer::{SubmitError, WriterHandle};

/// How often expired sessions are deleted while the service runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Deletes expired sessions at start and every [`SWEEP_EVERY`] until `stop`.
pub async fn sweep_loop(writer: WriterHandle, stop: CancellationToken) {
    loop {
        let now = now_ms();
        match writer
            .execute(move |conn| sessions::delete_expired(conn, now))
            .await
        {
            Ok(()) => {}
            Err(SubmitError::Closed) => return,
            Err(e) => tracing::warn!("expired sessions not deleted: {e}"),
        }
        if super::background::pause(&stop, SWEEP_EVERY).await {
            return;
        }
    }
}
