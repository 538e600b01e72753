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
    /// How long to wait for a connection before answering UNAVAILABLE
    /// (with RetryInfo). It bounds a call while the database is down or
    /// restarting (the pool keeps retrying a refused connection until then),
    /// so it is short: a caller should hear "retry" well within its
    /// deadline, not wait it out.
    pub acquire_timeout: Duration,
    /// Accept a Postgres role that bypasses row-level security (a superuser
    /// or BYPASSRLS role); refused by default.
    pub allow_rls_bypass: bool,
    /// How long a request id is remembered (AIP-155): a replay within this
    /// window gets the first answer; an older id counts as new, and the
    /// sweep removes it.
    pub request_id_ttl: Duration,
    /// Postgres: the URL of the schema's owner, to migrate as before
    /// serving as `url`'s role (which then only needs DML grants).
    pub migration_url: Option<String>,
    /// Whether `url`'s role applies the migrations (without a
    /// `migration_url`).
    pub migrations: Migrations,
}

/// Who applies the migrations on Postgres (SQLite always applies them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Serving: apply pending migrations when the role owns the schema (a
    /// single-role setup, with a warning that it owns the tables); a role
    /// with DML grants only requires them applied (`slr-governor migrate`).
    #[default]
    Auto,
    /// `slr-governor migrate`: apply them.
    Apply,
    /// Require them applied; never run them.
    Verify,
}

/// How long a call waits for a database connection by default.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long request ids are remembered by default (as Stripe does).
pub const DEFAULT_REQUEST_ID_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl StoreConfig {
    /// A configuration with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            allow_rls_bypass: false,
            request_id_ttl: DEFAULT_REQUEST_ID_TTL,
            migration_url: None,
            migrations: Migrations::Auto,
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
    /// The Postgres role skips row-level security, itself or through a
    /// role it is a member of.
    #[error(
        "the Postgres role {role} {how}, which skips row-level security between tenants: \
         connect as an ordinary role (see the README), or set SLRGOV_ALLOW_RLS_BYPASS=true to \
         accept it"
    )]
    RlsBypass {
        /// The role.
        role: String,
        /// How it skips it: its own attributes, or the roles it is a member of.
        how: String,
    },
    /// The schema is not at this version's migrations, and the role does
    /// not own it, so it does not migrate.
    #[error(
        "the database schema is not migrated to this version ({detail}), and the Postgres role \
         {role} does not own it: run `slr-governor migrate` as the schema's owner (or give the \
         server the owner's URL in SLRGOV_MIGRATION_DATABASE_URL)"
    )]
    SchemaNotMigrated {
        /// The role.
        role: String,
        /// What differs (pending versions, ...).
        detail: String,
    },
    /// The role may not read the migrations table.
    #[error(
        "the Postgres role cannot read the migrations table _sqlx_migrations: grant the service's \
         role SELECT, INSERT, UPDATE, DELETE on the schema's tables (deploy/postgres/roles.sql)"
    )]
    MigrationsUnreadable(#[source] sqlx::Error),
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
                | OpenError::SchemaNotMigrated { .. }
                | OpenError::MigrationsUnreadable(_)
                | OpenError::Connect(sqlx::Error::Configuration(_))
        )
    }
}

/// Connects to the database named by `config.url`, runs the migrations
/// (on Postgres under sqlx's advisory lock, so replicas starting together do
/// not race; as `config.migration_url`'s role when set, see [`Migrations`])
/// and returns the store.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(config).await?))
    } else if config.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(config).await?))
    } else {
        Err(OpenError::UnsupportedUrl)
    }
}

/// What a database URL may show in a log or an error. Postgres: the user,
/// host (or socket directory), port and database only, read the way the
/// driver reads the URL, so a password is never shown wherever the URL
/// carries it (`user:password@`, `?password=`, characters left
/// unencoded). SQLite: the file, without its query. Anything else, or a
/// URL the driver cannot read: nothing of it.
pub fn url_for_logs(url: &str) -> String {
    use std::str::FromStr;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match sqlx::postgres::PgConnectOptions::from_str(url) {
            Ok(options) => {
                let host = match options.get_socket() {
                    Some(socket) => socket.display().to_string(),
                    None => options.get_host().to_owned(),
                };
                format!(
                    "postgres://{}@{}:{}/{}",
                    options.get_username(),
                    host,
                    options.get_port(),
                    options.get_database().unwrap_or_default()
                )
            }
            Err(_) => "postgres://(a URL the driver cannot read: not shown)".to_owned(),
        };
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let file = rest.split_once('?').map_or(rest, |(file, _)| file);
        return format!("sqlite:{file}");
    }
    "(not a postgres:// or sqlite: URL: not shown)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::url_for_logs;

    /// Every URL form of the PostgreSQL documentation (libpq's connection
    /// URIs), plus passwords in the query and unencoded: the password
    /// never shows, the rest does.
    #[test]
    fn no_url_form_shows_its_password() {
        let secret = "Hunter2Secret";
        let cases = [
            ("postgresql://", "postgres://"),
            ("postgresql://localhost", "@localhost:5432/"),
            ("postgresql://localhost:5433", "@localhost:5433/"),
            ("postgresql://localhost/mydb", "@localhost:5432/mydb"),
            ("postgresql://user@localhost", "postgres://user@localhost"),
            (
                "postgresql://user:Hunter2Secret@localhost",
                "postgres://user@localhost:5432/",
            ),
            (
                "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
                "postgres://other@localhost:5432/otherdb",
            ),
            (
                "postgresql:///mydb?host=localhost&port=5433",
                "@localhost:5433/mydb",
            ),
            ("postgresql://[2001:db8::1234]/database", "/database"),
            (
                "postgresql:///dbname?host=/var/lib/postgresql",
                "/var/lib/postgresql",
            ),
            ("postgresql://%2Fvar%2Flib%2Fpostgresql/dbname", "/dbname"),
            (
                "postgres://svc@db.internal:5432/slrgov?password=Hunter2Secret",
                "postgres://svc@db.internal:5432/slrgov",
            ),
            (
                "postgres://svc:Hunter2Secret@db.internal/slrgov?sslmode=require",
                "postgres://svc@db.internal:5432/slrgov",
            ),
            (
                "postgres://svc:Hun/ter2Secret@db.internal/slrgov",
                "postgres://",
            ),
            (
                "postgres://svc:Hunter2Secret@db.internal:notaport/x",
                "not shown",
            ),
            ("sqlite:///tmp/store.db?mode=rwc", "sqlite:///tmp/store.db"),
            ("mysql://root:Hunter2Secret@db/x", "not shown"),
        ];
        for (url, shows) in cases {
            let logged = url_for_logs(url);
            assert!(!logged.contains(secret), "{url} -> {logged}");
            assert!(!logged.contains("ter2Secret"), "{url} -> {logged}");
            assert!(
                logged.contains(shows),
                "{url} -> {logged}, expected {shows}"
            );
        }
    }
}
