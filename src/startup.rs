//! Putting the process together: the writer, the outbox sender, the shared state
//! each handler takes, and the HTTP server; [`Application::build`] binds (port 0
//! in tests) and reports its address.

pub mod witness;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use governor::{Quota, RateLimiter};

use crate::domain::{Role, TaskPolicy};
use crate::http::auth::AuthCache;
use crate::http::auth_failures::AuthFailures;
use crate::http::body_budget::BodyBudget;
use crate::http::{Access, Delivery, Evidence, HttpSettings, IngestSettings, Metrics};

/// Open connections each HTTP worker serves at most; more wait to be accepted.
const MAX_CONNECTIONS_PER_WORKER: usize = 10_000;
/// How long a stop waits for the background loops to end.
const BACKGROUND_STOP_WITHIN: Duration = Duration::from_secs(10);
use crate::http::metrics::{HttpMetrics, MetricsEndpoint};
use crate::services::background::Background;
use crate::services::checkpoints::{self, CheckpointSettings, Checkpointer};
use crate::services::fleet::snapshot_loop;
use crate::services::notify::notify_loop;
use crate::services::outbox::{ServiceSender, UpstreamSettings};
use crate::services::proxy::{Proxy, ProxyLog, ProxySettings};
use crate::services::reconcile::{passive_close_loop, PassiveReconciliation};
use crate::services::replay::ServerReplays;
use crate::services::retention::retention_loop;
use crate::services::retention::RetentionSettings;
use crate::services::sessions::sweep_loop;
use crate::services::verification::VerificationJob;
use crate::services::witnessing::Witnessing;
use crate::storage::credentials::{self, KeyPair, NewCredential};
use crate::storage::lock::{LockError, LockKind, ProcessLock};
use crate::storage::writer::{self, WriterHandle, WriterSettings, WriterThread};
use crate::storage::{prepare, ReadPool, StorageError};

/// Where `serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything `serve` needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The SQLite database (`--db`), created on first start.
    pub db: PathBuf,
    /// Where to listen (`--listen`); port 0 picks a free port.
    pub listen: String,
    /// Whether an upload may register its task (`--task-policy`).
    pub task_policy: TaskPolicy,
    /// Limits and lifetimes of requests, sessions and cached credentials.
    pub http: HttpSettings,
    /// Durability, WAL checkpoints and the write queue.
    pub writer: WriterSettings,
    /// Purge uploads older than this (`--retention`).
    pub retention: Option<RetentionSettings>,
    /// What stamps uploads (`received_at`); tests make histories with another.
    pub clock: UploadClock,
    /// `/metrics` only for `Authorization: Bearer <this>` (`--metrics-token`).
    pub metrics_token: Option<String>,
    /// Where events are announced (`--notify-url`).
    pub notify: Option<crate::services::notify::NotifySettings>,
    /// Peers whose `X-Forwarded-For` is stored (`--trusted-proxy`).
    pub trusted_proxies: Vec<IpAddr>,
    /// Uploads per second per credential; `None` is unlimited.
    pub rate_limit: Option<NonZeroU32>,
    /// Accept and answer uploads without storing them (benchmark ceiling only).
    pub null_store: bool,
    /// HTTP worker threads (`--workers`; one per core when absent).
    pub workers: Option<usize>,
    /// Stop on SIGINT/SIGTERM (off for in-process tests).
    pub handle_signals: bool,
    /// The real SMS endpoint, for forwarding and web replays.
    pub upstream: Option<UpstreamSettings>,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Pass every other `/v3/` call on to the upstream (`--proxy`).
    pub proxy: Option<ProxySettings>,
    /// Signed checkpoints of the Merkle tree (off only for `--null-store`).
    pub checkpoints: Option<CheckpointSettings>,
    /// Witnesses asked to cosign each checkpoint (`--witness`, `--witness-quorum`).
    pub witnesses: Option<crate::services::witnessing::WitnessSettings>,
    /// `--reconcile-interval`: reconciliations with the upstream SMS.
    pub reconcile: Option<crate::services::reconcile::Schedule>,
    /// `/checkpoint` and `/tile/…` open to anyone.
    pub public_log: bool,
    /// The address people reach the service at (`--public-url`), for links
    /// that must work off the page (the printed report's evidence link).
    pub public_url: Option<String>,
    /// Refuse a signing or TLS key others may read, instead of warning.
    pub strict_permissions: bool,
}

/// The writer's clock, in a [`ServeConfig`].
#[derive(Clone)]
pub struct UploadClock(pub writer::Clock);

impl std::fmt::Debug for UploadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadClock")
    }
}

impl ServeConfig {
    /// The defaults (each subsystem's `DEFAULT`) for the database at `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        let db = db.into();
        Self {
            checkpoints: Some(CheckpointSettings::for_db(&db)),
            witnesses: None,
            reconcile: None,
            public_log: false,
            public_url: None,
            strict_permissions: false,
            db,
            listen: DEFAULT_LISTEN.into(),
            task_policy: TaskPolicy::default(),
            http: HttpSettings::DEFAULT,
            writer: WriterSettings::DEFAULT,
            retention: None,
            clock: UploadClock(std::sync::Arc::new(crate::domain::now_ms)),
            metrics_token: None,
            notify: None,
            trusted_proxies: Vec::new(),
            rate_limit: None,
            null_store: false,
            workers: None,
            handle_signals: true,
            upstream: None,
            tls: None,
            proxy: None,
        }
    }
}

/// The PEM files of a TLS certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A rustls server configuration from PEM files: a chain, and a PKCS#8, RSA or
/// EC key that belongs to its first certificate; TLS 1.2 and 1.3 only.
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: String| StartError::Tls(what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| bad(format!("certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "certificate {}: no certificate in it",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad(format!("key {}: {e}", files.key.display())))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
    .map_err(|e| bad(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        bad(format!(
            "{} and {} do not make a certificate and its key: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

/// The state handlers take, a `web::Data` per subsystem: storage (reads, the
/// writer), ingest, access, delivery, evidence, the fleet's cache, metrics, and
/// with `--proxy` the proxy log (handlers tell by its presence).
#[derive(Clone)]
struct SharedState {
    reads: web::Data<ReadPool>,
    writer: web::Data<WriterHandle>,
    ingest: web::Data<IngestSettings>,
    access: web::Data<Access>,
    delivery: web::Data<Delivery>,
    evidence: web::Data<Evidence>,
    fleet_states: web::Data<crate::services::fleet::StateCache>,
    metrics: web::Data<Metrics>,
    proxy_log: Option<web::Data<ProxyLog>>,
}

impl SharedState {
    fn register(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.reads.clone())
            .app_data(self.writer.clone())
            .app_data(self.ingest.clone())
            .app_data(self.access.clone())
            .app_data(self.delivery.clone())
            .app_data(self.evidence.clone())
            .app_data(self.fleet_states.clone())
            .app_data(self.metrics.clone());
        if let Some(log) = &self.proxy_log {
            cfg.app_data(log.clone());
        }
    }
}

/// What a start claims before anything runs: the writer lock, the listener, and
/// the database (migrated, with its first credential).
struct Claimed {
    lock: Option<ProcessLock>,
    listener: TcpListener,
    address: SocketAddr,
    admin_token: Option<String>,
}

/// The writer and its read side.
struct Storage {
    writer: WriterHandle,
    writer_thread: WriterThread,
    reads: ReadPool,
    /// Wakes the outbox's sender when the writer queues deliveries.
    outbox_wake: Arc<Notify>,
}

/// Everything that can be checked before anything is touched: the TLS files,
/// and that `--proxy` has an upstream.
fn check_before_start(config: &ServeConfig) -> Result<Option<rustls::ServerConfig>, StartError> {
    if let Some(files) = &config.tls {
        crate::storage::files::check_private(&files.key, "the TLS key", config.strict_permissions)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let tls = config.tls.as_ref().map(tls_config).transpose()?;
    if config.proxy.is_some() && config.upstream.is_none() {
        return Err(StartError::ProxyWithoutUpstream);
    }
    Ok(tls)
}

/// The port before anything is created (a start that cannot listen creates
/// nothing: no lock file, no database, not the admin credential whose token would
/// then never be shown), the lock before the database is touched (a second writer
/// must change nothing), then the database and, on one without credentials, `admin`.
fn claim(config: &ServeConfig) -> Result<Claimed, StartError> {
    let bind_error = |source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&config.listen).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let lock = (!config.null_store)
        .then(|| ProcessLock::acquire(&config.db, LockKind::Writer))
        .transpose()?;
    let conn = prepare(&config.db, config.writer.sync)?;
    let admin_token = if credentials::is_empty(&conn)? {
        let admin = NewCredential {
            name: "admin",
            role: Role::Operator,
            tasks: None,
            key_pair: KeyPair::None,
        };
        Some(credentials::add(&conn, admin)?.token)
    } else {
        None
    };
    Ok(Claimed {
        lock,
        listener,
        address,
        admin_token,
    })
}

/// The writer thread (or the benchmarks' null one) and the read pool.
fn start_storage(config: &ServeConfig) -> Result<Storage, StartError> {
    let outbox_wake = Arc::new(Notify::new());
    let forwarding = config
        .upstream
        .as_ref()
        .filter(|u| u.forward)
        .map(|u| writer::Forwarding {
            target: u.endpoint.clone(),
            wake: outbox_wake.clone(),
            latest_wins: !u.deliver_all,
        });
    let (writer, writer_thread) = if config.null_store {
        writer::spawn_null(config.writer.queue_capacity)
    } else {
        let writer_config = writer::WriterConfig {
            settings: config.writer,
            forwarding,
            clock: config.clock.0.clone(),
        };
        writer::spawn(&config.db, writer_config)?
    };
    Ok(Storage {
        writer,
        writer_thread,
        reads: ReadPool::new(&config.db),
        outbox_wake,
    })
}

/// Says at start, loudly, when the database is not the history the signing key
/// signed last (the checkpointer then signs nothing until the fork is accepted).
fn warn_of_a_fork(config: &ServeConfig, settings: &CheckpointSettings) {
    use crate::services::fork;
    let found = fork::read_head(&settings.key_path).and_then(|head| {
        let Some(head) = head else { return Ok(None) };
        let conn = crate::storage::open_read(&config.db).map_err(|e| e.to_string())?;
        fork::fork_in(&conn, head).map_err(|e| e.to_string())
    });
    match found {
        Ok(None) => {}
        Ok(Some(why)) => tracing::error!(
            "not signing checkpoints: {why}; if this is intended (a restore), run `sms-audit --db {} evidence accept-fork --reason TEXT`",
            config.db.display()
        ),
        Err(e) => tracing::error!("the signed head could not be checked: {e}"),
    }
}

/// The background loops, and the parts of them handlers reach, as started.
#[derive(Default)]
struct Started {
    background: Background,
    checkpointer: Option<Arc<Checkpointer>>,
    witnessing: Option<Arc<Witnessing>>,
    /// With `--proxy`: reads SMS's answers to the agents' result reads.
    passive: Option<Arc<PassiveReconciliation>>,
}

/// The loops that run beside the requests, and the checkpointer (one of them);
/// none with `--null-store`.
fn start_background(config: &ServeConfig, storage: &Storage) -> Result<Started, StartError> {
    let background = Background::default();
    if config.null_store {
        return Ok(Started::default());
    }
    let (reads, writer) = (&storage.reads, &storage.writer);
    let w = writer.clone();
    background.spawn("sessions sweep", |stop| sweep_loop(w, stop));
    let (r, w) = (reads.clone(), writer.clone());
    background.spawn("fleet snapshots", |stop| snapshot_loop(r, w, stop));
    if let Some(notify) = config.notify.clone() {
        let (r, w) = (reads.clone(), writer.clone());
        background.spawn("notifications", |stop| notify_loop(notify, r, w, stop));
    }
    if let Some(retention) = config.retention.clone() {
        let (db, r, w) = (config.db.clone(), reads.clone(), writer.clone());
        background.spawn("retention", |stop| {
            retention_loop(db, retention, r, w, stop)
        });
    }
    let Some(settings) = &config.checkpoints else {
        return Ok(Started {
            background,
            ..Started::default()
        });
    };
    crate::storage::files::check_private(
        &settings.key_path,
        "the checkpoint signing key",
        config.strict_permissions,
    )
    .map_err(|why| checkpoints::CheckpointError::Key {
        path: settings.key_path.display().to_string(),
        why: why.to_string(),
    })?;
    let key = checkpoints::load_or_create_key(&settings.key_path, &settings.origin)?;
    warn_of_a_fork(config, settings);
    let checkpointer = Checkpointer::new(key, settings.clone(), reads.clone(), writer.clone());
    let c = checkpointer.clone();
    background.spawn("checkpoints", |stop| c.run(stop));
    if let (Some(schedule), Some(upstream)) = (config.reconcile.clone(), config.upstream.as_ref()) {
        let key = checkpoints::load_or_create_key(&settings.key_path, &settings.origin)?;
        let client = crate::services::upstream::Upstream::new(
            upstream.endpoint.clone(),
            upstream.auth.clone(),
            upstream.timeout,
        );
        let (r, w) = (reads.clone(), writer.clone());
        background.spawn("reconciliation", |stop| {
            crate::services::reconcile::reconcile_loop(schedule, client, key, r, w, stop)
        });
    }
    let passive = match (&config.proxy, &config.upstream) {
        (Some(_), Some(upstream)) => {
            let key = checkpoints::load_or_create_key(&settings.key_path, &settings.origin)?;
            let (r, w, target) = (reads.clone(), writer.clone(), upstream.endpoint.clone());
            let passive = Arc::new(PassiveReconciliation::new(r, w, target, key));
            let p = passive.clone();
            background.spawn("passive reconciliation", |stop| passive_close_loop(p, stop));
            Some(passive)
        }
        _ => None,
    };
    let mut witnessing = None;
    if let Some(witnesses) = config.witnesses.clone() {
        let dir = settings.dir.clone();
        let w = Witnessing::new(witnesses, reads.clone(), writer.clone(), dir)
            .map_err(StartError::Witnesses)?;
        witnessing = Some(w.clone());
        background.spawn("witnesses", |stop| w.run(stop));
    }
    Ok(Started {
        background,
        checkpointer: Some(checkpointer),
        witnessing,
        passive,
    })
}

/// The `/metrics` registry: every part's metrics, registered once.
fn metrics_registry(
    http: &HttpMetrics,
    body_budget: &BodyBudget,
    writer: &WriterHandle,
    sender: Option<&ServiceSender>,
    proxy_log: Option<&ProxyLog>,
    witnessing: Option<&Witnessing>,
    tiles: &crate::services::tiles::TileCache,
) -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::default();
    http.register(&mut registry);
    body_budget.register(&mut registry);
    writer.register_metrics(&mut registry);
    if let Some(sender) = sender {
        sender.metrics().register(&mut registry);
    }
    if let Some(log) = proxy_log {
        log.register(&mut registry);
    }
    if let Some(w) = witnessing {
        w.metrics().register(&mut registry);
    }
    tiles.register(&mut registry);
    registry
}

/// With `--proxy`, the log of passed-on calls: never keeping the service's own
/// credential, and handing SMS's answers to the passive reconciliation.
fn proxy_log(
    config: &ServeConfig,
    writer: &WriterHandle,
    passive: Option<Arc<PassiveReconciliation>>,
) -> Option<ProxyLog> {
    let mut log = ProxyLog::new(writer.clone(), config.proxy.clone()?);
    if let Some(upstream) = &config.upstream {
        log = log.hiding(&upstream.auth);
    }
    Some(match passive {
        Some(passive) => log.reconciling(passive),
        None => log,
    })
}

/// The state every HTTP worker shares.
fn shared_state(
    config: &ServeConfig,
    storage: &Storage,
    checkpointer: Option<Arc<Checkpointer>>,
    sender: Option<&ServiceSender>,
    witnessing: Option<&Witnessing>,
    passive: Option<Arc<PassiveReconciliation>>,
) -> SharedState {
    let Storage {
        reads,
        writer,
        outbox_wake,
        ..
    } = storage;
    let proxy_log = proxy_log(config, writer, passive);
    let http_metrics = HttpMetrics::default();
    let tiles = Arc::new(crate::services::tiles::TileCache::default());
    let body_budget = BodyBudget::new(config.http.max_buffered_bytes);
    let registry = metrics_registry(
        &http_metrics,
        &body_budget,
        writer,
        sender,
        proxy_log.as_ref(),
        witnessing,
        &tiles,
    );
    SharedState {
        metrics: web::Data::new(Metrics {
            http: http_metrics,
            endpoint: MetricsEndpoint::new(registry, config.metrics_token.as_deref()),
        }),
        ingest: web::Data::new(IngestSettings {
            task_policy: config.task_policy,
            max_body_bytes: config.http.max_body_bytes,
            max_results: config.http.max_results,
            trusted_proxies: config.trusted_proxies.clone(),
            rate_limiter: config
                .rate_limit
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            body_timeout: config.http.body_timeout,
            body_budget,
            seen_signatures: Default::default(),
        }),
        access: web::Data::new(Access {
            credentials: AuthCache::new(config.http.credential_cache_ttl),
            failures: AuthFailures::default(),
            max_header_bytes: config.http.max_header_bytes,
            session_lifetime: config.http.session_lifetime,
            db_flag: crate::domain::shell_word(&format!(
                "--db={}",
                std::path::absolute(&config.db)
                    .unwrap_or_else(|_| config.db.clone())
                    .display()
            )),
        }),
        delivery: web::Data::new(Delivery {
            upstream: config.upstream.clone(),
            replays: ServerReplays {
                reads: reads.clone(),
                writer: writer.clone(),
                wake: outbox_wake.clone(),
            },
        }),
        evidence: web::Data::new(Evidence {
            checkpointer,
            public_log: config.public_log,
            public_url: config.public_url.clone(),
            verification: VerificationJob::new(reads.clone(), writer.clone()),
            witnesses: config.witnesses.clone(),
            tiles,
        }),
        fleet_states: web::Data::new(crate::services::fleet::StateCache::default()),
        proxy_log: proxy_log.map(web::Data::new),
        reads: web::Data::new(reads.clone()),
        writer: web::Data::new(writer.clone()),
    }
}

/// The HTTP server on `listener`, each worker with the shared state (and, with
/// `--proxy`, an SMS client of its own, so its connections to SMS are driven by
/// its own event loop); our signal handlers when asked for.
fn http_server(
    config: &ServeConfig,
    state: SharedState,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> Result<Server, StartError> {
    let proxy_upstream = config.proxy.as_ref().and(config.upstream.clone());
    let mut server = HttpServer::new(move || {
        let proxy = proxy_upstream
            .as_ref()
            .map(|u| web::Data::new(Proxy::new(u.endpoint.clone(), u.auth.clone(), u.timeout)));
        App::new()
            .configure(|cfg| state.register(cfg))
            .configure(|cfg| {
                if let Some(proxy) = proxy {
                    cfg.app_data(proxy);
                }
            })
            .configure(crate::http::configure)
            .wrap(middleware::from_fn(
                crate::http::middleware::request_context,
            ))
    })
    .shutdown_timeout(30)
    // A client gets this long to send its request's head, then is dropped;
    // idle keep-alive connections are closed after 5 s.
    .client_request_timeout(config.http.header_timeout)
    .keep_alive(Duration::from_secs(5))
    .max_connections(MAX_CONNECTIONS_PER_WORKER)
    // Signals are ours (below): actix's are only listened for once the server
    // runs, and it stops at once on SIGINT.
    .disable_signals();
    if let Some(n) = config.workers {
        server = server.workers(n);
    }
    let bind_error = |source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    };
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(bind_error)?
    .run();
    if config.handle_signals {
        stop_gracefully_on_signals(server.handle()).map_err(|source| StartError::Bind {
            addr: "signal handlers".into(),
            source,
        })?;
    }
    Ok(server)
}

/// `--listen 8080` names only a port: say what was probably meant.
fn listen_hint(addr: &str) -> String {
    match addr.trim().parse::<u16>() {
        Ok(port) => format!(" (an address and a port are needed: did you mean 127.0.0.1:{port}?)"),
        Err(_) => String::new(),
    }
}

/// SIGTERM and SIGINT stop the service gracefully: requests in flight finish, then
/// everything queued is committed. The handlers are in place before the service
/// says it is listening, so no signal finds the process without them.
fn stop_gracefully_on_signals(server: ServerHandle) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    actix_web::rt::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            "{name}: stopping; requests in flight finish and every accepted upload is committed"
        );
        server.stop(true).await;
    });
    Ok(())
}

/// The running service: its address, its server handle, and what stops with it.
pub struct Application {
    server: Server,
    checkpointer: Option<Arc<Checkpointer>>,
    sender: Option<ServiceSender>,
    address: SocketAddr,
    writer: WriterHandle,
    writer_thread: WriterThread,
    admin_token: Option<String>,
    https: bool,
    /// Released once the writer has stopped.
    lock: Option<ProcessLock>,
    /// The loops that write through the writer: stopped before it.
    background: Background,
}

/// Why the service did not start (exit 2); nothing is left half-made.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened, migrated or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process writes to the database.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The signing key could not be read, made or trusted.
    #[error(transparent)]
    Checkpoints(#[from] checkpoints::CheckpointError),
    /// The witnesses' client could not be made.
    #[error("witnesses: {0}")]
    Witnesses(String),
    /// `--proxy` without an upstream to pass calls on to.
    #[error("--proxy needs an upstream SMS endpoint and credentials")]
    ProxyWithoutUpstream,
    /// The first credential could not be made.
    #[error("cannot create the admin credential: {0}")]
    Admin(#[from] credentials::CredentialError),
    /// The address could not be listened on.
    #[error("cannot listen on {addr}: {source}{}", listen_hint(addr))]
    Bind {
        /// As given (`--listen`).
        addr: String,
        /// Why not.
        source: std::io::Error,
    },
}

impl Application {
    /// Opens (and migrates) the database, starts the writer and binds the listener.
    /// On a database without credentials, creates the `admin` operator credential.
    /// The steps, in order: what can be checked before anything is touched, the
    /// database claimed, storage started, background work started, the metrics
    /// registry and shared state put together, the HTTP server.
    pub async fn build(config: ServeConfig) -> Result<Self, StartError> {
        let tls = check_before_start(&config)?;
        let claimed = claim(&config)?;
        let storage = start_storage(&config)?;
        let Started {
            background,
            checkpointer,
            witnessing,
            passive,
        } = start_background(&config, &storage)?;
        let sender = config
            .upstream
            .clone()
            .filter(|_| !config.null_store)
            .map(|settings| {
                let Storage {
                    reads,
                    writer,
                    outbox_wake,
                    ..
                } = &storage;
                ServiceSender::spawn(settings, reads.clone(), writer.clone(), outbox_wake.clone())
            });
        let state = shared_state(
            &config,
            &storage,
            checkpointer.clone(),
            sender.as_ref(),
            witnessing.as_deref(),
            passive,
        );
        let server = http_server(&config, state, claimed.listener, tls)?;
        Ok(Self {
            server,
            checkpointer,
            sender,
            address: claimed.address,
            writer: storage.writer,
            writer_thread: storage.writer_thread,
            admin_token: claimed.admin_token,
            https: config.tls.is_some(),
            lock: claimed.lock,
            background,
        })
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The token of the `admin` credential created by this start, if it made one.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Stops the server from elsewhere (tests, the signal handlers).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (signal or [`ServerHandle::stop`]); in-flight requests
    /// finish, then everything queued is committed before this returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let Application {
            writer,
            writer_thread,
            sender,
            lock,
            checkpointer,
            background,
            ..
        } = self;
        // No loop writes after this (one in the middle of a step finishes it).
        background.stop(BACKGROUND_STOP_WITHIN).await;
        // The last checkpoint covers every upload stored.
        if let Some(checkpointer) = checkpointer {
            if let Err(e) = checkpointer.make_now().await {
                tracing::error!("final checkpoint not made: {e}");
            }
        }
        // Sends in flight finish and are recorded before the writer stops.
        if let Some(sender) = sender {
            let _ = tokio::task::spawn_blocking(move || sender.stop()).await;
        }
        tokio::task::spawn_blocking(move || {
            writer.shutdown();
            writer_thread.join();
        })
        .await
        .map_err(std::io::Error::other)?;
        drop(lock);
        served
    }
}
