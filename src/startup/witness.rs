//! `witness serve`: a C2SP tlog-witness process of its own, with its own
//! database and key, built like the service (bind first, port 0 in tests).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use parking_lot::Mutex;

use crate::http::witness::{configure, WitnessState};
use crate::services::witness::{load_or_create_key, Witness};
use crate::storage::lock::{LockKind, ProcessLock};

/// What `witness serve` needs.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witness's database.
    pub db: PathBuf,
    /// Its key file (created when missing).
    pub key: PathBuf,
    /// The name of a key it creates.
    pub name: String,
    /// The logs it cosigns for: (origin, the log's verifier key).
    pub logs: Vec<(String, String)>,
    /// Where it listens (`127.0.0.1:0` picks a port).
    pub listen: String,
    /// Whether SIGINT/SIGTERM stop it (off in tests, which stop it themselves).
    pub handle_signals: bool,
}

/// A witness bound to its address.
pub struct WitnessServer {
    address: std::net::SocketAddr,
    verifier_key: String,
    server: Server,
    _lock: ProcessLock,
}

impl WitnessServer {
    /// Takes the database's lock, opens it and the key, and binds.
    pub fn build(config: WitnessConfig) -> Result<Self, String> {
        let lock = ProcessLock::acquire(&config.db, LockKind::Writer).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let key = load_or_create_key(&config.key, &config.name)?;
        let verifier_key = key.verifier_key();
        let witness = Witness::new(key, &config.logs)?;
        let conn = crate::storage::witness::prepare(&config.db)
            .map_err(|e| format!("{}: {e}", config.db.display()))?;
        let state = web::Data::new(Arc::new(WitnessState {
            witness,
            db: Mutex::new(conn),
        }));
        let mut server =
            HttpServer::new(move || App::new().app_data(state.clone()).configure(configure))
                .workers(2)
                .shutdown_timeout(10);
        if !config.handle_signals {
            server = server.disable_signals();
        }
        let server = server.listen(listener).map_err(|e| e.to_string())?.run();
        tracing::info!(%address, verifier_key = %verifier_key, "witness listening on http://{address}");
        Ok(Self {
            address,
            verifier_key,
            server,
            _lock: lock,
        })
    }

    /// The bound address.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// The witness's verifier key (cosignature/v1).
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Serves until stopped (a signal, or the handle's `stop`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let _lock = self._lock;
        self.server.await
    }

    /// A handle that stops it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}
