//! Configuration, layered: built-in defaults, then the optional TOML file
//! (`--config`), then environment variables, then command-line flags; each
//! layer overrides the one before. No global static: the resolved
//! [`Config`] is passed to whatever needs it, so tests start servers with
//! their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

pub use crate::cors::CorsOrigins;
use crate::env;
use crate::lifecycle::reconcile::{ReconcileMode, ReconcileSettings};
use crate::units::parse_duration;

mod limits;
mod tls;
mod watch;

pub use limits::{
    DEFAULT_CONNECT_RATE_PER_ACCOUNT, DEFAULT_IAM_RATE_PER_ACCOUNT, RateFlags, RateSettings,
    RateSharing,
};
pub use tls::TlsFiles;
use tls::tls_files;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Flags and environment variables of `serve` and `migrate`. clap gives a
/// flag precedence over its environment variable; the file fills what both
/// leave unset.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// A TOML configuration file.
    #[arg(long = "config", env = env::CONFIG, global = true)]
    pub config: Option<PathBuf>,

    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = env::LISTEN, global = true)]
    pub listen: Option<String>,

    /// `postgres://...` or `sqlite://...` (default: an SQLite file in the
    /// data directory).
    #[arg(long, env = env::DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Postgres: the schema owner's URL, to migrate as (the service then
    /// needs only DML grants).
    #[arg(long, env = env::MIGRATION_DATABASE_URL, global = true, hide_env_values = true)]
    pub migration_database_url: Option<String>,

    /// The most database connections per process.
    #[arg(long, env = env::DATABASE_MAX_CONNECTIONS, global = true)]
    pub database_max_connections: Option<u32>,

    /// Where the embedded SQLite database is kept.
    #[arg(long, env = env::DATA_DIR, global = true)]
    pub data_dir: Option<PathBuf>,

    /// Log format: `text` or `json`.
    #[arg(long, env = env::LOG_FORMAT, global = true)]
    pub log_format: Option<String>,

    /// How long in-flight RPCs may take to finish after SIGTERM, e.g. `20s`.
    #[arg(long, env = env::SHUTDOWN_GRACE, global = true)]
    pub shutdown_grace: Option<String>,

    /// A TOML file of regions that adds to or overrides the built-in table.
    #[arg(long, env = env::REGIONS_FILE, global = true)]
    pub regions_file: Option<PathBuf>,

    /// How long a workflow holds its claim before another process may
    /// resume it, e.g. `60s`.
    #[arg(long, env = env::WORKFLOW_LEASE, global = true)]
    pub workflow_lease: Option<String>,

    /// How long a request id is remembered, e.g. `24h`.
    #[arg(long, env = env::REQUEST_ID_TTL, global = true)]
    pub request_id_ttl: Option<String>,

    /// How long IAM's confirmation of an ACTIVE role answers the next
    /// EnsureLinkedRole of it without a GetRole, e.g. `30s` (`0s`: never).
    #[arg(long, env = env::ROLE_CONFIRMATION_MAX_AGE, global = true)]
    pub role_confirmation_max_age: Option<String>,

    /// A JWKS file of the public keys that sign callers' JWTs.
    #[arg(long, env = env::AUTH_JWKS_FILE, global = true)]
    pub auth_jwks_file: Option<PathBuf>,

    /// The issuer (`iss`) every JWT must carry.
    #[arg(long, env = env::AUTH_ISSUER, global = true)]
    pub auth_issuer: Option<String>,

    /// The audience (`aud`) every JWT must carry.
    #[arg(long, env = env::AUTH_AUDIENCE, global = true)]
    pub auth_audience: Option<String>,

    /// A JSON file of static tokens (SHA-256 digests) and SPIFFE ids.
    #[arg(long, env = env::AUTH_TOKENS_FILE, global = true)]
    pub auth_tokens_file: Option<PathBuf>,

    /// The server certificate chain (PEM); turns TLS on with --tls-key.
    #[arg(long, env = env::TLS_CERT, global = true)]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key (PEM).
    #[arg(long, env = env::TLS_KEY, global = true)]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) of client certificates; requires them (mTLS).
    #[arg(long, env = env::TLS_CLIENT_CA, global = true)]
    pub tls_client_ca: Option<PathBuf>,

    /// Requests per second per caller; unset means no limit.
    #[arg(long, env = env::RATE_LIMIT_PER_SECOND, global = true)]
    pub rate_limit_per_second: Option<f64>,

    /// Requests a caller may send at once (default: the rate, at least 1).
    #[arg(long, env = env::RATE_LIMIT_BURST, global = true)]
    pub rate_limit_burst: Option<u32>,

    /// Accept a Postgres role that bypasses row-level security (superuser
    /// or BYPASSRLS); refused by default.
    #[arg(long, env = env::ALLOW_RLS_BYPASS, global = true)]
    pub allow_rls_bypass: Option<bool>,

    /// Browser origins allowed to call through gRPC-Web (comma-separated, or
    /// `*`); unset: no cross-origin browser calls.
    #[arg(long, env = env::CORS_ORIGINS, global = true)]
    pub cors_origins: Option<String>,

    /// The longest an RPC may run, e.g. `90s` (a shorter `grpc-timeout` from
    /// the client wins).
    #[arg(long, env = env::REQUEST_TIMEOUT, global = true)]
    pub request_timeout: Option<String>,

    /// RPCs served at once; more are refused (UNAVAILABLE with RetryInfo).
    #[arg(long, env = env::MAX_CONCURRENT_REQUESTS, global = true)]
    pub max_concurrent_requests: Option<u32>,

    /// RPCs one caller may have in flight (default: an eighth of the pool).
    #[arg(long, env = env::MAX_CONCURRENT_REQUESTS_PER_CALLER, global = true)]
    pub max_concurrent_requests_per_caller: Option<u32>,

    /// The longest a request body may take to arrive, e.g. `10s`.
    #[arg(long, env = env::REQUEST_BODY_TIMEOUT, global = true)]
    pub request_body_timeout: Option<String>,

    /// HTTP/2 streams open at once on one connection.
    #[arg(long, env = env::MAX_STREAMS_PER_CONNECTION, global = true)]
    pub max_streams_per_connection: Option<u32>,

    /// Connections open at once from one IP address (`0`: no limit).
    #[arg(long, env = env::MAX_CONNECTIONS_PER_PEER, global = true)]
    pub max_connections_per_peer: Option<u32>,

    /// The per-account rates of AWS calls (config/limits.rs).
    #[command(flatten)]
    pub rates: RateFlags,

    /// The watch streams' settings (config/watch.rs).
    #[command(flatten)]
    pub watch: watch::WatchFlags,

    /// How often each account is synced from Connect, e.g. `1h` (`0`: off).
    #[arg(long, env = env::SYNC_INTERVAL, global = true)]
    pub sync_interval: Option<String>,

    /// How often the reconciler passes over each account, e.g. `15m` (`0`: off).
    #[arg(long, env = env::RECONCILE_INTERVAL, global = true)]
    pub reconcile_interval: Option<String>,

    /// What a reconcile pass may do: `observe` or `repair`.
    #[arg(long, env = env::RECONCILE_MODE, global = true)]
    pub reconcile_mode: Option<String>,

    /// The IAM reads one reconcile pass of one account may make.
    #[arg(long, env = env::RECONCILE_IAM_READS, global = true)]
    pub reconcile_iam_reads: Option<u32>,

    /// How often the regions are refreshed from SSM, e.g. `12h` (`0`: off).
    #[arg(long, env = env::REGIONS_REFRESH, global = true)]
    pub regions_refresh: Option<String>,
}

/// The TOML file: the same settings, snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    migration_database_url: Option<String>,
    database_max_connections: Option<u32>,
    data_dir: Option<PathBuf>,
    log_format: Option<String>,
    shutdown_grace: Option<String>,
    regions_file: Option<PathBuf>,
    workflow_lease: Option<String>,
    request_id_ttl: Option<String>,
    role_confirmation_max_age: Option<String>,
    auth_jwks_file: Option<PathBuf>,
    auth_issuer: Option<String>,
    auth_audience: Option<String>,
    auth_tokens_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    rate_limit_per_second: Option<f64>,
    rate_limit_burst: Option<u32>,
    allow_rls_bypass: Option<bool>,
    cors_origins: Option<String>,
    request_timeout: Option<String>,
    max_concurrent_requests: Option<u32>,
    max_concurrent_requests_per_caller: Option<u32>,
    request_body_timeout: Option<String>,
    max_streams_per_connection: Option<u32>,
    max_connections_per_peer: Option<u32>,
    iam_rate_per_account: Option<f64>,
    iam_burst_per_account: Option<u32>,
    connect_rate_per_account: Option<f64>,
    rate_sharing: Option<String>,
    batch_concurrency: Option<u32>,
    watch_max_streams: Option<u32>,
    watch_buffer: Option<u32>,
    watch_stall_timeout: Option<String>,
    watch_heartbeat: Option<String>,
    watch_retention: Option<String>,
    sync_interval: Option<String>,
    reconcile_interval: Option<String>,
    reconcile_mode: Option<String>,
    reconcile_iam_reads: Option<u32>,
    regions_refresh: Option<String>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The database URL.
    pub database_url: String,
    /// The schema owner's database URL (Postgres), to migrate as.
    pub migration_database_url: Option<String>,
    /// The most database connections per process.
    pub database_max_connections: u32,
    /// The log format.
    pub log_format: LogFormat,
    /// The grace period for in-flight RPCs at shutdown.
    pub shutdown_grace: Duration,
    /// How long a workflow holds its claim.
    pub workflow_lease: Duration,
    /// How long request ids are remembered.
    pub request_id_ttl: Duration,
    /// How long IAM's confirmation of an ACTIVE role stands.
    pub role_confirmation_max_age: Duration,
    /// The regions table: built in, with the operator's file applied.
    pub regions: crate::regions::RegionTable,
    /// Who may call: the loaded JWKS and tokens file, or off.
    pub auth: crate::auth::Authenticator,
    /// TLS (and mTLS), when configured.
    pub tls: Option<TlsFiles>,
    /// The per-caller rate limit, when configured.
    pub rate_limit: Option<crate::auth::rate::RateLimit>,
    /// Whether a Postgres role that bypasses row-level security is accepted.
    pub allow_rls_bypass: bool,
    /// Browser origins allowed through gRPC-Web.
    pub cors: CorsOrigins,
    /// RPCs at once (in all and per caller), and how long each may take.
    pub admission: crate::admission::Limits,
    /// HTTP/2 streams open at once on one connection.
    pub max_streams_per_connection: u32,
    /// Connections open at once from one IP address (`0`: no limit).
    pub max_connections_per_peer: u32,
    /// The per-account rates of IAM and Connect calls, and whether the
    /// replicas share their buckets.
    pub rates: RateSettings,
    /// How often each account is synced from Connect (`None`: never).
    pub sync_interval: Option<Duration>,
    /// The reconciler (`None`: off).
    pub reconcile: Option<ReconcileSettings>,
    /// How often the regions are refreshed from SSM (`None`: never).
    pub regions_refresh: Option<Duration>,
    /// The limits and rhythm of watch streams.
    pub watch: crate::api::watch::WatchSettings,
}

/// The default longest RPC: above WaitOperation's longest wait (60 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// The default interval of background syncs.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(3600);
/// The default interval of reconcile passes.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The default IAM reads of one pass of one account: 200 inspections.
pub const DEFAULT_RECONCILE_IAM_READS: u32 = 600;
/// The default interval of region refreshes.
pub const DEFAULT_REGIONS_REFRESH: Duration = Duration::from_secs(12 * 3600);
/// The default number of RPCs served at once.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 512;
/// The default longest wait for a request's body.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The default HTTP/2 streams per connection.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// The default connections per peer address.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 64;

impl Config {
    /// Resolves the layers.
    pub fn resolve(overrides: &Overrides) -> anyhow::Result<Config> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = overrides
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen
            .parse()
            .with_context(|| format!("{}: invalid address {listen:?}", env::LISTEN))?;
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(".slr-governor"));
        let database_url = match overrides.database_url.clone().or(file.database_url) {
            Some(url) => url,
            None => default_sqlite_url(&data_dir)?,
        };
        if !["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            bail!(
                "{}: expected a postgres://, postgresql:// or sqlite: URL, got {}",
                env::DATABASE_URL,
                mask_password(&database_url)
            );
        }
        let migration_database_url = overrides
            .migration_database_url
            .clone()
            .or(file.migration_database_url);
        if let Some(url) = &migration_database_url {
            let postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
            if !postgres(url) || !postgres(&database_url) {
                bail!(
                    "{}: only for Postgres: expected postgres:// URLs in it and in {}, got {}",
                    env::MIGRATION_DATABASE_URL,
                    env::DATABASE_URL,
                    mask_password(url)
                );
            }
        }
        let log_format = match overrides.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("{}: expected text or json, got {other:?}", env::LOG_FORMAT),
        };
        let shutdown_grace = match overrides.shutdown_grace.clone().or(file.shutdown_grace) {
            Some(value) => parse_duration(&value).context(env::SHUTDOWN_GRACE)?,
            None => Duration::from_secs(20),
        };
        let mut regions = crate::regions::RegionTable::builtin();
        if let Some(path) = overrides.regions_file.clone().or(file.regions_file) {
            regions = regions.with_file(&path)?;
        }
        let workflow_lease = match overrides.workflow_lease.clone().or(file.workflow_lease) {
            Some(value) => parse_duration(&value).context(env::WORKFLOW_LEASE)?,
            None => crate::lifecycle::DEFAULT_LEASE,
        };
        let request_id_ttl = match overrides.request_id_ttl.clone().or(file.request_id_ttl) {
            Some(value) => parse_duration(&value).context(env::REQUEST_ID_TTL)?,
            None => slrgov_store::DEFAULT_REQUEST_ID_TTL,
        };
        let role_confirmation_max_age = match overrides
            .role_confirmation_max_age
            .clone()
            .or(file.role_confirmation_max_age)
        {
            Some(value) => parse_duration(&value).context(env::ROLE_CONFIRMATION_MAX_AGE)?,
            None => crate::lifecycle::confirmations::DEFAULT_MAX_AGE,
        };
        let tls = tls_files(
            overrides.tls_cert.clone().or(file.tls_cert),
            overrides.tls_key.clone().or(file.tls_key),
            overrides.tls_client_ca.clone().or(file.tls_client_ca),
        )?;
        let auth = crate::auth::Authenticator::load(&crate::auth::AuthSettings {
            jwks_file: overrides.auth_jwks_file.clone().or(file.auth_jwks_file),
            issuer: overrides.auth_issuer.clone().or(file.auth_issuer),
            audience: overrides.auth_audience.clone().or(file.auth_audience),
            tokens_file: overrides.auth_tokens_file.clone().or(file.auth_tokens_file),
            client_certificates: tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        })?;
        let rate_limit = match overrides
            .rate_limit_per_second
            .or(file.rate_limit_per_second)
        {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => {
                let burst = overrides
                    .rate_limit_burst
                    .or(file.rate_limit_burst)
                    .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
                if burst == 0 {
                    bail!("{}: must be at least 1", env::RATE_LIMIT_BURST);
                }
                Some(crate::auth::rate::RateLimit {
                    per_second: rate,
                    burst,
                })
            }
            Some(rate) => bail!(
                "{}: expected a positive number, got {rate}",
                env::RATE_LIMIT_PER_SECOND
            ),
        };
        let cors = CorsOrigins::parse(
            overrides
                .cors_origins
                .as_deref()
                .or(file.cors_origins.as_deref())
                .unwrap_or(""),
        )?;
        let request_timeout = match overrides.request_timeout.clone().or(file.request_timeout) {
            Some(value) => parse_duration(&value).context(env::REQUEST_TIMEOUT)?,
            None => DEFAULT_REQUEST_TIMEOUT,
        };
        if request_timeout.is_zero() {
            bail!("{}: must be more than zero", env::REQUEST_TIMEOUT);
        }
        let max_concurrent_requests = overrides
            .max_concurrent_requests
            .or(file.max_concurrent_requests)
            .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
        if max_concurrent_requests == 0 {
            bail!("{}: must be at least 1", env::MAX_CONCURRENT_REQUESTS);
        }
        let max_per_caller = overrides
            .max_concurrent_requests_per_caller
            .or(file.max_concurrent_requests_per_caller)
            // Without auth there is one caller, the local operator.
            .unwrap_or(if auth.is_enabled() {
                (max_concurrent_requests / 8).max(1)
            } else {
                max_concurrent_requests
            });
        if max_per_caller == 0 || max_per_caller > max_concurrent_requests {
            bail!(
                "{}: expected 1 to {} ({}), got {max_per_caller}",
                env::MAX_CONCURRENT_REQUESTS_PER_CALLER,
                max_concurrent_requests,
                env::MAX_CONCURRENT_REQUESTS
            );
        }
        let body_timeout = match overrides
            .request_body_timeout
            .clone()
            .or(file.request_body_timeout)
        {
            Some(value) => parse_duration(&value).context(env::REQUEST_BODY_TIMEOUT)?,
            None => DEFAULT_REQUEST_BODY_TIMEOUT.min(request_timeout),
        };
        if body_timeout.is_zero() {
            bail!("{}: must be more than zero", env::REQUEST_BODY_TIMEOUT);
        }
        let max_streams_per_connection = overrides
            .max_streams_per_connection
            .or(file.max_streams_per_connection)
            .unwrap_or(DEFAULT_MAX_STREAMS_PER_CONNECTION);
        if max_streams_per_connection == 0 {
            bail!("{}: must be at least 1", env::MAX_STREAMS_PER_CONNECTION);
        }
        // Without authentication any web page could call through a browser
        // that allows every origin.
        if cors == CorsOrigins::Any && !auth.is_enabled() {
            bail!(
                "{}: '*' lets any web page call the server, and without authentication every \
                 caller is the local operator: list the origins, or configure an auth mode",
                env::CORS_ORIGINS
            );
        }
        let watch = watch::resolve(
            &overrides.watch,
            watch::WatchFlags {
                watch_max_streams: file.watch_max_streams,
                watch_buffer: file.watch_buffer,
                watch_stall_timeout: file.watch_stall_timeout.clone(),
                watch_heartbeat: file.watch_heartbeat.clone(),
                watch_retention: file.watch_retention.clone(),
            },
        )?;
        let rates = limits::resolve(
            &overrides.rates,
            RateFlags {
                iam_rate_per_account: file.iam_rate_per_account,
                iam_burst_per_account: file.iam_burst_per_account,
                connect_rate_per_account: file.connect_rate_per_account,
                rate_sharing: file.rate_sharing,
                batch_concurrency: file.batch_concurrency,
            },
        )?;
        // `0` turns a periodic job off.
        let every = |value: Option<String>, default: Duration, name: &str| {
            let interval = match value {
                Some(value) => parse_duration(&value).with_context(|| name.to_owned())?,
                None => default,
            };
            anyhow::Ok((!interval.is_zero()).then_some(interval))
        };
        let sync_interval = every(
            overrides.sync_interval.clone().or(file.sync_interval),
            DEFAULT_SYNC_INTERVAL,
            env::SYNC_INTERVAL,
        )?;
        let reconcile = match every(
            overrides
                .reconcile_interval
                .clone()
                .or(file.reconcile_interval),
            DEFAULT_RECONCILE_INTERVAL,
            env::RECONCILE_INTERVAL,
        )? {
            None => None,
            Some(interval) => Some(ReconcileSettings {
                interval,
                mode: match overrides.reconcile_mode.clone().or(file.reconcile_mode) {
                    None => ReconcileMode::Observe,
                    Some(mode) => ReconcileMode::parse(&mode).with_context(|| {
                        format!(
                            "{}: expected observe or repair, got {mode:?}",
                            env::RECONCILE_MODE
                        )
                    })?,
                },
                iam_reads: overrides
                    .reconcile_iam_reads
                    .or(file.reconcile_iam_reads)
                    .unwrap_or(DEFAULT_RECONCILE_IAM_READS),
            }),
        };
        let regions_refresh = every(
            overrides.regions_refresh.clone().or(file.regions_refresh),
            DEFAULT_REGIONS_REFRESH,
            env::REGIONS_REFRESH,
        )?;
        Ok(Config {
            rates,
            sync_interval,
            reconcile,
            watch,
            regions_refresh,
            admission: crate::admission::Limits {
                max_concurrent: max_concurrent_requests,
                max_per_caller,
                request_timeout,
                body_timeout,
            },
            max_streams_per_connection,
            max_connections_per_peer: overrides
                .max_connections_per_peer
                .or(file.max_connections_per_peer)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_PEER),
            cors,
            allow_rls_bypass: overrides
                .allow_rls_bypass
                .or(file.allow_rls_bypass)
                .unwrap_or(false),
            auth,
            tls,
            rate_limit,
            workflow_lease,
            request_id_ttl,
            role_confirmation_max_age,
            regions,
            listen,
            database_url,
            migration_database_url,
            database_max_connections: overrides
                .database_max_connections
                .or(file.database_max_connections)
                .unwrap_or(16),
            log_format,
            shutdown_grace,
        })
    }

    /// The database URL with any password masked, for logs.
    pub fn database_url_for_logs(&self) -> String {
        mask_password(&self.database_url)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

/// Creates the data directory and names the SQLite file in it.
fn default_sqlite_url(data_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let file = data_dir.join("slr-governor.db");
    Ok(format!("sqlite://{}", file.display()))
}

/// The database URL as logs and errors may show it: user, host, port and
/// database, never a password ([`slrgov_store::url_for_logs`]).
pub fn mask_password(url: &str) -> String {
    slrgov_store::url_for_logs(url)
}

#[cfg(test)]
mod tests;
