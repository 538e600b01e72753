//! Opening a store: the URL picks the engine; connecting runs the
//! migrations (on Postgres under sqlx's advisory lock, so replicas starting
//! together do not race).

use std::sync::Arc;
use std::time::Duration;

use crate::{PostgresStore, SqliteStore, Store};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://...` or `sqlite://...`.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a connection before answering UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Accept a Postgres role that bypasses row-level security (a superuser
    /// or BYPASSRLS role); refused by default.
    pub allow_rls_bypass: bool,
    /// How long a request id is remembered (AIP-155): a replay within this
    /// window gets the first answer; an older id counts as new, and the
    /// sweep removes it.
    pub request_id_ttl: Duration,
}

/// How long request ids are remembered by default (as Stripe does).
pub const DEFAULT_REQUEST_ID_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl StoreConfig {
    /// A configuration with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            allow_rls_bypass: false,
            request_id_ttl: DEFAULT_REQUEST_ID_TTL,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is neither postgres:// nor sqlite://.
    #[error("unsupported database url scheme (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
    /// The database could not be reached.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The Postgres role skips row-level security.
    #[error(
        "the Postgres role {role} is a superuser or has BYPASSRLS, which skips row-level security \
         between tenants: connect as an ordinary role (see the README), or set \
         SLRGOV_ALLOW_RLS_BYPASS=true to accept it"
    )]
    RlsBypass {
        /// The role.
        role: String,
    },
    /// The service keys could not be loaded.
    #[error("cannot load the service keys")]
    Keys(#[source] sqlx::Error),
}

impl OpenError {
    /// False for mistakes that waiting will not fix (a malformed or
    /// unsupported URL); true for an unreachable or starting database.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            OpenError::UnsupportedUrl
                | OpenError::RlsBypass { .. }
                | OpenError::Connect(sqlx::Error::Configuration(_))
        )
    }
}

/// Connects to the database named by `config.url`, runs the migrations
/// (on Postgres under sqlx's advisory lock, so replicas starting together do
/// not race) and returns the store.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(config).await?))
    } else if config.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(config).await?))
    } else {
        Err(OpenError::UnsupportedUrl)
    }
}
