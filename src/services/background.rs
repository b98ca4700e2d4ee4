//! The service's background loops (fleet snapshots, notifications, retention,
//! checkpoints, the sessions sweep) have one owner: each is started through one
//! tracker, told to stop by one token, and waited for when the service stops,
//! so none outlives the writer it writes through.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Started loops, and the token that stops them.
#[derive(Default)]
pub struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Starts `work`, handing it the stop token.
    pub fn spawn<F>(&self, name: &'static str, work: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let work = work(self.stop.clone());
        self.tracker.spawn(async move {
            work.await;
            tracing::debug!(task = name, "background task stopped");
        });
    }

    /// Tells every loop to stop and waits for them, at most `within` (a purge in
    /// the middle of a step finishes it; a loop still busy after that ends
    /// when the writer it waits on has stopped).
    pub async fn stop(&self, within: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.tracker.len(),
                "background tasks still busy at shutdown; not waiting for them longer"
            );
        }
    }
}

/// Waits `pause`, or until `stop` is cancelled; true when stopped.
pub async fn pause(stop: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(pause) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn loops_stop_when_told_and_are_waited_for() {
        let background = Background::default();
        let finished = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let finished = finished.clone();
            background.spawn("test loop", |stop| async move {
                while !pause(&stop, Duration::from_secs(3600)).await {}
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        let started = std::time::Instant::now();
        background.stop(Duration::from_secs(10)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 3, "all joined");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
