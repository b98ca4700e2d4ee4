//! Building and running the HTTP service.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rusqlite::Connection;

use crate::auth::AuthCache;
use crate::credentials::{self, KeyPair, NewCredential};
use crate::domain::{upload_body::DEFAULT_MAX_RESULTS, Role};
use crate::error::SmsError;
use crate::outbox::{RetryPolicy, Runner, Sender, SenderConfig};
use crate::routes;
use crate::storage::writer::{self, WriterHandle, WriterThread};
use crate::storage::{prepare, ReadPool, StorageError, SyncMode};
use crate::upstream::{Upstream, UpstreamAuth};

/// Whether an upload may register its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskPolicy {
    /// The first upload of a task registers it.
    Open,
    /// Only tasks registered with `tasks add` accept uploads.
    Registered,
}

/// Everything `serve` needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub listen: String,
    pub task_policy: TaskPolicy,
    pub max_body_bytes: usize,
    pub max_results: usize,
    pub sync: SyncMode,
    pub trusted_proxies: Vec<IpAddr>,
    /// Uploads per second per credential; `None` is unlimited.
    pub rate_limit: Option<NonZeroU32>,
    pub queue_capacity: usize,
    /// Accept and answer uploads without storing them (benchmark ceiling only).
    pub null_store: bool,
    pub workers: Option<usize>,
    /// Stop on SIGINT/SIGTERM (off for in-process tests).
    pub handle_signals: bool,
    /// How long a looked-up credential is trusted without reading it again (so a
    /// revocation takes effect within this time).
    pub credential_cache_ttl: Duration,
    /// How long a login lasts.
    pub session_lifetime: Duration,
    /// The real SMS endpoint, for forwarding and web replays.
    pub upstream: Option<UpstreamSettings>,
}

/// Where and how uploads go to SMS.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub endpoint: String,
    pub auth: UpstreamAuth,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Add a delivery for every upload as it is stored (`serve --forward`).
    pub forward: bool,
    pub deliver_all: bool,
    pub policy: RetryPolicy,
}

impl UpstreamSettings {
    pub fn client_for(&self, endpoint: &str) -> Upstream {
        Upstream::new(endpoint.to_string(), self.auth.clone(), self.timeout)
    }
}

impl ServeConfig {
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            listen: "127.0.0.1:8080".into(),
            task_policy: TaskPolicy::Open,
            max_body_bytes: 65536,
            max_results: DEFAULT_MAX_RESULTS,
            sync: SyncMode::Full,
            trusted_proxies: Vec::new(),
            rate_limit: None,
            queue_capacity: 4096,
            null_store: false,
            workers: None,
            handle_signals: true,
            credential_cache_ttl: Duration::from_secs(1),
            session_lifetime: Duration::from_secs(12 * 3600),
            upstream: None,
        }
    }
}

/// Shared by every request handler.
pub struct AppState {
    pub config: ServeConfig,
    pub reads: ReadPool,
    pub writer: WriterHandle,
    pub limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub auth_cache: AuthCache,
    pub verification: crate::pages::VerificationJob,
    /// Wakes the delivery sender (new uploads, new web replays).
    pub outbox_wake: Arc<Notify>,
}

impl AppState {
    /// Runs a read on a blocking thread with a pooled read-only connection.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, SmsError> {
        let pool = self.reads.clone();
        web::block(move || pool.with(f))
            .await
            .map_err(|e| SmsError::Storage(e.to_string()))?
            .map_err(|e| SmsError::Storage(e.to_string()))
    }
}

pub struct Application {
    server: Server,
    sender: Option<(Arc<AtomicBool>, Arc<Notify>, std::thread::JoinHandle<()>)>,
    address: SocketAddr,
    writer: WriterHandle,
    writer_thread: WriterThread,
    admin_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot create the admin credential: {0}")]
    Admin(#[from] credentials::CredentialError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl Application {
    /// Opens (and migrates) the database, starts the writer and binds the listener.
    /// On a database without credentials, creates the `admin` operator credential.
    pub async fn build(config: ServeConfig) -> Result<Self, StartError> {
        let conn = prepare(&config.db, config.sync)?;
        let admin_token = if credentials::is_empty(&conn)? {
            let issued = credentials::add(
                &conn,
                NewCredential {
                    name: "admin",
                    role: Role::Operator,
                    tasks: None,
                    key_pair: KeyPair::None,
                },
            )?;
            Some(issued.token)
        } else {
            None
        };
        drop(conn);

        let outbox_wake = Arc::new(Notify::new());
        let forwarding =
            config
                .upstream
                .as_ref()
                .filter(|u| u.forward)
                .map(|u| writer::Forwarding {
                    target: u.endpoint.clone(),
                    wake: outbox_wake.clone(),
                    latest_wins: !u.deliver_all,
                });
        let (writer, writer_thread) = if config.null_store {
            writer::spawn_null(config.queue_capacity)
        } else {
            writer::spawn(&config.db, config.sync, config.queue_capacity, forwarding)?
        };
        let reads = ReadPool::new(&config.db);
        let sender = config
            .upstream
            .clone()
            .filter(|_| !config.null_store)
            .map(|settings| {
                let stop = Arc::new(AtomicBool::new(false));
                let sender = Sender {
                    reads: reads.clone(),
                    recorder: Arc::new(writer.clone()),
                    upstream: Arc::new(move |endpoint: &str| settings.client_for(endpoint)),
                    config: SenderConfig {
                        runner: Runner::Server,
                        concurrency: config.upstream.as_ref().map_or(16, |u| u.concurrency),
                        deliver_all: config.upstream.as_ref().is_some_and(|u| u.deliver_all),
                        policy: config
                            .upstream
                            .as_ref()
                            .map(|u| u.policy.clone())
                            .unwrap_or_default(),
                        rate: None,
                    },
                    wake: outbox_wake.clone(),
                    stop: stop.clone(),
                    tally: Default::default(),
                };
                // Its own runtime on two threads: sending and recording deliveries
                // must not compete with the HTTP workers' event loops.
                let task = std::thread::Builder::new()
                    .name("sms-audit-outbox".into())
                    .spawn(move || {
                        tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(2)
                            .thread_name("sms-audit-outbox")
                            .enable_all()
                            .build()
                            .expect("a runtime for the outbox")
                            .block_on(sender.run(false))
                    })
                    .expect("spawning the outbox thread");
                (stop, outbox_wake.clone(), task)
            });
        let listener = TcpListener::bind(&config.listen).map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;

        let state = web::Data::new(AppState {
            outbox_wake,
            reads,
            writer: writer.clone(),
            limiter: config
                .rate_limit
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            auth_cache: AuthCache::new(config.credential_cache_ttl),
            verification: Default::default(),
            config: config.clone(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(crate::pages::configure)
                .configure(routes::configure)
                .wrap(middleware::from_fn(crate::middleware::request_context))
                .wrap(crate::middleware::security_headers())
        })
        .shutdown_timeout(30);
        if !config.handle_signals {
            server = server.disable_signals();
        }
        if let Some(n) = config.workers {
            server = server.workers(n);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind {
                addr: config.listen.clone(),
                source,
            })?
            .run();

        Ok(Self {
            server,
            sender,
            address,
            writer,
            writer_thread,
            admin_token,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The token of the `admin` credential created by this start, if it made one.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

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
            ..
        } = self;
        // Sends in flight finish and are recorded before the writer stops.
        if let Some((stop, wake, task)) = sender {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            wake.notify_one();
            let _ = tokio::task::spawn_blocking(move || task.join()).await;
        }
        tokio::task::spawn_blocking(move || {
            writer.shutdown();
            writer_thread.join();
        })
        .await
        .map_err(std::io::Error::other)?;
        served
    }
}
