//! `serve`: run the service.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::ops::RangeInclusive;
use std::time::Duration;

use clap::Args;

use super::{duration_in, fail, CliError, FlagDuration, UpstreamArgs};
use crate::domain::cosignature::CosignatureVerifier;
use crate::domain::TaskPolicy;
use crate::http::HttpSettings;
use crate::services::checkpoints::CheckpointSettings;
use crate::services::notify::NotifySettings;
use crate::services::outbox::{RetryPolicy, UpstreamSettings};
use crate::services::proxy::ProxySettings;
use crate::services::retention::RetentionSettings;
use crate::services::upstream::ReplayTargets;
use crate::services::witnessing::{WitnessSettings, WitnessTarget};
use crate::startup::{Application, ServeConfig, TlsFiles, DEFAULT_LISTEN};
use crate::storage::writer::WriterSettings;
use crate::storage::{SyncMode, WalCheckpoints};

/// `--session-lifetime`'s range: a minute to a year.
const SESSION_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(365 * 86_400);
const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

// Every default below is the settings struct's own (written once, there).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "SMS_AUDIT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// `open`: the first upload of a task registers it; `registered`: only tasks
    /// added with `tasks add` accept uploads.
    #[arg(long, env = "SMS_AUDIT_TASK_POLICY", value_enum, default_value_t = TaskPolicy::default())]
    pub task_policy: TaskPolicy,
    /// Largest accepted upload body, in bytes.
    #[arg(long, env = "SMS_AUDIT_MAX_BODY_BYTES", default_value_t = HTTP.max_body_bytes,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64 * 1024 * 1024))]
    pub max_body_bytes: usize,
    /// The most bytes of request bodies held in memory at once, across every
    /// request (uploads, and bodies the pass-through reads whole); beyond it 503.
    #[arg(long, env = "SMS_AUDIT_MAX_BUFFERED_BYTES", default_value_t = HTTP.max_buffered_bytes,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65_536..=16 * 1024 * 1024 * 1024))]
    pub max_buffered_bytes: usize,
    /// Most `consistency_result` items in one upload.
    #[arg(long, env = "SMS_AUDIT_MAX_RESULTS", default_value_t = HTTP.max_results,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_results: usize,
    /// `full`: fsync every commit (survives power loss); `normal`: survives a
    /// crash of the process only.
    #[arg(long, env = "SMS_AUDIT_SYNC", value_enum, default_value_t = WRITER.sync)]
    pub sync: SyncMode,
    /// `passive`: sms-audit copies the WAL into the database twice a second without
    /// waiting for readers; `off`: it never does, for Litestream (which holds a
    /// read transaction and checkpoints itself) to do alone.
    #[arg(long, env = "SMS_AUDIT_CHECKPOINT_MODE", value_enum, default_value_t = WRITER.wal_checkpoints)]
    pub checkpoint_mode: WalCheckpoints,
    /// Keep uploads' raw bodies and result rows this long (e.g. 365d; a bare
    /// number is days), then purge them (at start and every hour; the ledger
    /// entries stay). Off when absent.
    #[arg(long, env = "SMS_AUDIT_RETENTION", value_name = "D",
        value_parser = duration_in(DAY, DAY..=DAY * 36_500))]
    pub retention: Option<FlagDuration>,
    /// The longest one purge or vacuum step holds the writer (and so delays
    /// uploads), e.g. 50ms; a bare number is seconds.
    #[arg(long, env = "SMS_AUDIT_PURGE_STEP", value_name = "D",
        default_value_t = FlagDuration(RetentionSettings::DEFAULT_STEP),
        value_parser = duration_in(SECOND, MILLISECOND..=SECOND * 60))]
    pub purge_step: FlagDuration,
    /// The older spelling of --purge-step, in milliseconds.
    #[arg(long, env = "SMS_AUDIT_PURGE_STEP_MS", hide = true, conflicts_with = "purge_step",
        value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub purge_step_ms: Option<u64>,
    /// `/metrics` answers only `Authorization: Bearer <this token>` (give it in
    /// the environment rather than on the command line, where `ps` shows it).
    #[arg(long, env = "SMS_AUDIT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// POST a JSON message (with a `text` field, as chat webhooks take it) here
    /// when an upload regresses, a delivery fails or dies, a verification finds
    /// damage, or SMS keeps failing (repeatable; comma-separated in the env).
    #[arg(long, env = "SMS_AUDIT_NOTIFY_URL", value_delimiter = ',', value_parser = parse_notify_url)]
    pub notify_url: Vec<String>,
    /// Announce SMS failing every delivery attempt for longer than this.
    #[arg(long, env = "SMS_AUDIT_NOTIFY_UPSTREAM_AFTER", value_name = "D",
        default_value_t = FlagDuration(NotifySettings::DEFAULT_UPSTREAM_AFTER), value_parser = any_duration())]
    pub notify_upstream_after: FlagDuration,
    /// Peer address whose X-Forwarded-For header is stored (repeatable).
    #[arg(long, env = "SMS_AUDIT_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<IpAddr>,
    /// Uploads per second allowed per credential (429 APIGW.0308 beyond); unlimited
    /// when absent.
    #[arg(long, env = "SMS_AUDIT_RATE_LIMIT")]
    pub rate_limit: Option<NonZeroU32>,
    /// Uploads waiting for the writer before new ones get 503 SMS.0201.
    #[arg(long, env = "SMS_AUDIT_QUEUE_CAPACITY", default_value_t = WRITER.queue_capacity,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub queue_capacity: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SMS_AUDIT_WORKERS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
    /// How long a credential once looked up is trusted without reading it again,
    /// e.g. 1s or 250ms: a revocation takes effect within this time (0: every
    /// request reads its credential).
    #[arg(long, env = "SMS_AUDIT_CREDENTIAL_CACHE", value_name = "D",
        default_value_t = FlagDuration(HTTP.credential_cache_ttl),
        value_parser = duration_in(SECOND, Duration::ZERO..=SECOND * 3600))]
    pub credential_cache: FlagDuration,
    /// The older spelling of --credential-cache, in milliseconds.
    #[arg(long, env = "SMS_AUDIT_CREDENTIAL_CACHE_MS", hide = true, conflicts_with = "credential_cache",
        value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub credential_cache_ms: Option<u64>,
    /// Forward every upload to SMS as it is stored (needs an upstream endpoint or
    /// region and credentials).
    #[arg(long, env = "SMS_AUDIT_FORWARD")]
    pub forward: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Pass every other SMS API call (`/v3/…`) on to the upstream, signed with its
    /// credentials, and record it in the proxy log (needs an upstream).
    #[arg(long, env = "SMS_AUDIT_PROXY")]
    pub proxy: bool,
    /// Largest request body passed on by --proxy, in bytes (log uploads are large).
    #[arg(long, env = "SMS_AUDIT_PROXY_MAX_BODY_BYTES", default_value_t = PROXY.max_body_bytes,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024 * 1024 * 1024))]
    pub proxy_max_body_bytes: usize,
    /// Keep the first 16 KiB of each proxied request and answer body in the proxy
    /// log (never a task's certkey or passphrase answer).
    #[arg(long, env = "SMS_AUDIT_PROXY_LOG_BODIES")]
    pub proxy_log_bodies: bool,
    /// How long proxied calls stay in the proxy log (e.g. 90d).
    #[arg(long, env = "SMS_AUDIT_PROXY_LOG_RETENTION", value_name = "D",
        default_value_t = FlagDuration(PROXY.retention), value_parser = any_duration())]
    pub proxy_log_retention: FlagDuration,
    /// Send every upload, not only each task's newest (SMS keeps only the newest).
    #[arg(long, env = "SMS_AUDIT_DELIVER_ALL")]
    pub deliver_all: bool,
    /// Give a delivery up (`dead`) when it is still failing after this long
    /// (e.g. 72h, 30m, 3d).
    #[arg(long, env = "SMS_AUDIT_MAX_DELIVERY_AGE", value_name = "D",
        default_value_t = FlagDuration(RetryPolicy::DEFAULT.max_age), value_parser = any_duration())]
    pub max_delivery_age: FlagDuration,
    /// Deliveries sent at the same time.
    #[arg(long, env = "SMS_AUDIT_FORWARD_CONCURRENCY", default_value_t = UpstreamSettings::DEFAULT_CONCURRENCY,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub forward_concurrency: usize,
    /// How long a login to the pages lasts (e.g. 12h, 30m).
    #[arg(long, env = "SMS_AUDIT_SESSION_LIFETIME", value_name = "D",
        default_value_t = FlagDuration(HTTP.session_lifetime),
        value_parser = duration_in(SECOND, SESSION_RANGE))]
    pub session_lifetime: FlagDuration,
    /// The older spelling of --session-lifetime, in hours.
    #[arg(long, env = "SMS_AUDIT_SESSION_HOURS", hide = true, conflicts_with = "session_lifetime",
        value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub session_hours: Option<u64>,
    /// How long a client may take to send a request's head before it is
    /// disconnected (e.g. 5s; at least 1 s).
    #[arg(long, env = "SMS_AUDIT_HEADER_TIMEOUT", value_name = "D",
        default_value_t = FlagDuration(HTTP.header_timeout), value_parser = any_duration())]
    pub header_timeout: FlagDuration,
    /// How long a client may take to send an upload's body (then 408; at least 1 s).
    #[arg(long, env = "SMS_AUDIT_BODY_TIMEOUT", value_name = "D",
        default_value_t = FlagDuration(HTTP.body_timeout), value_parser = any_duration())]
    pub body_timeout: FlagDuration,
    /// The most bytes of headers a request may send (then 431).
    #[arg(long, env = "SMS_AUDIT_MAX_HEADER_BYTES", default_value_t = HTTP.max_header_bytes,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=131_072))]
    pub max_header_bytes: usize,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "SMS_AUDIT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or EC) of --tls-cert.
    #[arg(long, env = "SMS_AUDIT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A URL web replays may also send to, besides the upstream and the SDK's
    /// regions (repeatable; HTTPS, or plain HTTP on loopback).
    #[arg(long, env = "SMS_AUDIT_REPLAY_TARGET", value_delimiter = ',')]
    pub replay_target: Vec<String>,
    /// The log's name, line 1 of every signed checkpoint (default
    /// `sms-audit/<hostname>`).
    #[arg(long, env = "SMS_AUDIT_LOG_ORIGIN")]
    pub log_origin: Option<String>,
    /// The Ed25519 key that signs checkpoints (default `<db>.signing-key`, created
    /// with mode 0600 when missing; never stored in the database).
    #[arg(long, env = "SMS_AUDIT_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// How often a checkpoint is made when the tree has grown (e.g. 60s, 5m; at
    /// least 100 ms).
    #[arg(long, env = "SMS_AUDIT_CHECKPOINT_INTERVAL", value_name = "D",
        default_value_t = FlagDuration(CheckpointSettings::DEFAULT_INTERVAL), value_parser = any_duration())]
    pub checkpoint_interval: FlagDuration,
    /// Also write each checkpoint to DIR as `<size>.checkpoint` and `latest`.
    #[arg(long, env = "SMS_AUDIT_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// A witness to ask to cosign each checkpoint (C2SP tlog-witness): its
    /// submission prefix and its cosignature/v1 verifier key (repeatable).
    #[arg(long = "witness", env = "SMS_AUDIT_WITNESS", value_delimiter = ',',
        value_name = "URL=VKEY", value_parser = parse_witness)]
    pub witness: Vec<WitnessTarget>,
    /// How many witnesses must cosign a checkpoint for it to count as witnessed
    /// (default: all of them).
    #[arg(long, env = "SMS_AUDIT_WITNESS_QUORUM", value_name = "K",
        value_parser = clap::value_parser!(u32).range(1..=100))]
    pub witness_quorum: Option<u32>,
    /// Reconcile with SMS this often (e.g. 6h): read every task's results back
    /// from the upstream and match them with the ledger (docs/reconciliation.md);
    /// off when absent. Needs --upstream-endpoint or --upstream-region.
    #[arg(long, env = "SMS_AUDIT_RECONCILE_INTERVAL", value_name = "D",
        value_parser = duration_in(SECOND, SECOND..=Duration::MAX))]
    pub reconcile_interval: Option<FlagDuration>,
    /// Most tasks a reconciliation reads from SMS per second.
    #[arg(long, env = "SMS_AUDIT_RECONCILE_RATE", value_name = "N",
        default_value_t = crate::services::reconcile::Settings::DEFAULT_RATE)]
    pub reconcile_rate: std::num::NonZeroU32,
    /// Serve `/checkpoint` and `/tile/…` (C2SP tlog-tiles) to anyone, for
    /// monitors and witnesses (default: auditors and operators only).
    #[arg(long, env = "SMS_AUDIT_PUBLIC_LOG")]
    pub public_log: bool,
    /// The address people reach this service at (`https://audit.example.com`),
    /// for links that must work off the page, such as the printed report's
    /// evidence link (default: the address the request came to).
    #[arg(long, env = "SMS_AUDIT_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Benchmarks only: answer uploads without storing them. Exists only in
    /// builds with the `dev` feature, so no flag, variable or file can switch
    /// storage off in a real one.
    #[cfg(feature = "dev")]
    #[arg(long, hide = true)]
    pub null_store: bool,
}

impl ServeArgs {
    /// `--null-store`, in the builds that have it.
    fn stores_nothing(&self) -> bool {
        #[cfg(feature = "dev")]
        return self.null_store;
        #[cfg(not(feature = "dev"))]
        false
    }
}

const HTTP: HttpSettings = HttpSettings::DEFAULT;
const WRITER: WriterSettings = WriterSettings::DEFAULT;
const PROXY: ProxySettings = ProxySettings::DEFAULT;

/// A duration of up to 100 years; a bare number is seconds.
fn any_duration() -> impl Fn(&str) -> Result<FlagDuration, String> + Clone + Send + Sync + 'static {
    duration_in(SECOND, Duration::ZERO..=Duration::MAX)
}

impl ServeArgs {
    pub fn into_config(self, db: PathBuf) -> Result<ServeConfig, CliError> {
        let upstream = self.upstream_settings()?;
        let reconcile = self.reconcile_schedule()?;
        let null_store = self.stores_nothing();
        let http = HttpSettings {
            max_body_bytes: self.max_body_bytes,
            max_buffered_bytes: self.max_buffered_bytes,
            max_results: self.max_results,
            max_header_bytes: self.max_header_bytes,
            header_timeout: self.header_timeout.0.max(SECOND),
            body_timeout: self.body_timeout.0.max(SECOND),
            session_lifetime: match self.session_hours {
                Some(hours) => Duration::from_secs(hours * 3600),
                None => self.session_lifetime.0,
            },
            credential_cache_ttl: match self.credential_cache_ms {
                Some(ms) => Duration::from_millis(ms),
                None => self.credential_cache.0,
            },
        };
        let purge_step = match self.purge_step_ms {
            Some(ms) => Duration::from_millis(ms),
            None => self.purge_step.0,
        };
        Ok(ServeConfig {
            upstream,
            reconcile,
            listen: self.listen,
            task_policy: self.task_policy,
            http,
            writer: WriterSettings {
                sync: self.sync,
                wal_checkpoints: self.checkpoint_mode,
                queue_capacity: self.queue_capacity.max(1),
            },
            metrics_token: self.metrics_token.clone(),
            notify: (!self.notify_url.is_empty()).then(|| NotifySettings {
                urls: self.notify_url.clone(),
                upstream_after: self.notify_upstream_after.0,
                policy: RetryPolicy {
                    max_age: Duration::from_secs(24 * 3600),
                    ..RetryPolicy::default()
                },
                timeout: Duration::from_secs(10),
            }),
            retention: self.retention.map(|keep| RetentionSettings {
                keep: keep.0,
                step: purge_step,
            }),
            trusted_proxies: self.trusted_proxy,
            rate_limit: self.rate_limit,
            null_store,
            workers: self.workers,
            handle_signals: true,
            proxy: self.proxy.then_some(ProxySettings {
                max_body_bytes: self.proxy_max_body_bytes,
                log_bodies: self.proxy_log_bodies,
                retention: self.proxy_log_retention.0,
            }),
            checkpoints: Some({
                let defaults = CheckpointSettings::for_db(&db);
                CheckpointSettings {
                    origin: self.log_origin.unwrap_or(defaults.origin),
                    key_path: self.signing_key.unwrap_or(defaults.key_path),
                    interval: self.checkpoint_interval.0.max(Duration::from_millis(100)),
                    dir: self.checkpoint_dir,
                }
            }),
            witnesses: witness_settings(self.witness, self.witness_quorum)?,
            public_log: self.public_log,
            public_url: self.public_url,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            },
            ..ServeConfig::new(db)
        })
    }

    /// `--reconcile-interval` and `--reconcile-rate`, which need the upstream.
    fn reconcile_schedule(&self) -> Result<Option<crate::services::reconcile::Schedule>, CliError> {
        match (self.reconcile_interval, self.upstream.configured()) {
            (None, _) => Ok(None),
            (Some(_), false) => Err(fail(
                "--reconcile-interval needs --upstream-endpoint URL or --upstream-region R",
            )),
            (Some(interval), true) => Ok(Some(crate::services::reconcile::Schedule {
                interval: interval.0,
                settings: crate::services::reconcile::Settings {
                    rate: self.reconcile_rate,
                    ..Default::default()
                },
            })),
        }
    }

    /// The upstream SMS, when one is configured; `--forward` and `--proxy` need one.
    fn upstream_settings(&self) -> Result<Option<UpstreamSettings>, CliError> {
        for (on, flag) in [(self.forward, "--forward"), (self.proxy, "--proxy")] {
            if on && !self.upstream.configured() {
                return Err(fail(format!(
                    "{flag} needs --upstream-endpoint URL or --upstream-region R"
                )));
            }
        }
        if !self.upstream.configured() {
            return Ok(None);
        }
        let endpoint = self.upstream.endpoint()?;
        Ok(Some(UpstreamSettings {
            replay_targets: ReplayTargets::new(Some(&endpoint), &self.replay_target)
                .map_err(fail)?,
            endpoint,
            auth: self.upstream.auth()?,
            timeout: self.upstream.upstream_timeout.0,
            concurrency: self.forward_concurrency.max(1),
            forward: self.forward,
            deliver_all: self.deliver_all,
            policy: RetryPolicy {
                max_age: self.max_delivery_age.0,
                ..RetryPolicy::default()
            },
        }))
    }
}

/// The first credential's token goes to a person, never into a log: on a terminal
/// it is printed once; otherwise (under systemd, in a container, piped into a log
/// collector) it is written to `DB.admin-token`, readable by the owner only, and
/// only that file's path is logged.
fn hand_over_admin_token(db: &Path, token: &str) -> Result<(), CliError> {
    let more = format!(
        "Make more with: sms-audit --db {} credentials add --name NAME --role agent|auditor|operator [--aksk]",
        db.display()
    );
    if std::io::stderr().is_terminal() {
        eprintln!(
            "Created operator credential \"admin\". Its token, shown only this once:\n\n    {token}\n\n{more}\n"
        );
        return Ok(());
    }
    let path = PathBuf::from(format!("{}.admin-token", db.display()));
    // A new owner-only file replaces whatever is at the name (a link too).
    let written = crate::storage::files::replace(&path, format!("{token}\n").as_bytes());
    written.map_err(|e| {
        fail(format!(
            "cannot write the admin token to {}: {e}",
            path.display()
        ))
    })?;
    tracing::warn!(
        "created operator credential \"admin\"; its token was written to {} (readable by this user only): read it, keep it, delete the file. {more}",
        path.display()
    );
    Ok(())
}

pub async fn run(config: ServeConfig) -> Result<ExitCode, CliError> {
    let db = config.db.clone();
    let stores_nothing = config.null_store;
    if stores_nothing {
        tracing::warn!("--null-store: uploads are answered and NOT stored (benchmarks only)");
    }
    if let Some(u) = &config.upstream {
        // The endpoint and how we sign in, never the secrets.
        tracing::info!(endpoint = %crate::domain::without_userinfo(&u.endpoint), auth = ?u.auth, forward = u.forward, deliver_all = u.deliver_all,
            proxy = config.proxy.is_some(),
            "upstream SMS configured{}{}", if u.forward { ": forwarding every upload" } else { " for replays" },
            if config.proxy.is_some() { "; passing every other /v3/ call on (--proxy)" } else { "" });
    }
    let app = Application::build(config).await.map_err(fail)?;
    if let Some(token) = app.admin_token() {
        hand_over_admin_token(&db, token)?;
    }
    tracing::info!(address = %app.address(), db = %db.display(), "listening on {}://{}", app.scheme(), app.address());
    app.run_until_stopped().await.map_err(fail)?;
    if stores_nothing {
        tracing::warn!("stopped; --null-store stored nothing");
    } else {
        tracing::info!("stopped; every accepted upload is committed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--public-url`: http or https, with a host, and nothing after the path; kept
/// without a trailing slash.
fn parse_public_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must have no query, fragment or user".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A notification URL: http or https, with a host.
fn parse_notify_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{s:?}: must be an http:// or https:// URL with a host"
        ));
    }
    Ok(s.to_string())
}

/// `--witness URL=VKEY`: an http(s) submission prefix and a cosignature/v1 key.
fn parse_witness(text: &str) -> Result<WitnessTarget, String> {
    let (url, vkey) = text
        .split_once('=')
        .ok_or("expected URL=VKEY (the witness's submission prefix, then its verifier key)")?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
        return Err(format!(
            "{url}: a witness's prefix is an http or https URL without a query"
        ));
    }
    let verifier = CosignatureVerifier::new(vkey).map_err(|e| e.to_string())?;
    Ok(WitnessTarget {
        url: url.trim_end_matches('/').to_string(),
        verifier,
    })
}

fn witness_settings(
    targets: Vec<WitnessTarget>,
    quorum: Option<u32>,
) -> Result<Option<WitnessSettings>, CliError> {
    if targets.is_empty() {
        return match quorum {
            Some(_) => Err(fail("--witness-quorum needs at least one --witness")),
            None => Ok(None),
        };
    }
    let quorum = quorum.map_or(targets.len(), |q| q as usize);
    if quorum > targets.len() {
        return Err(fail(format!(
            "--witness-quorum {quorum} is more than the {} --witness given",
            targets.len()
        )));
    }
    Ok(Some(WitnessSettings {
        targets,
        quorum,
        timeout: WitnessSettings::DEFAULT_TIMEOUT,
    }))
}
