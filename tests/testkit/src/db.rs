//! Fresh databases, one per test: a new Postgres database owned by the
//! ordinary role [`APP_ROLE`] (so row-level security applies as in
//! production), dropped when the test ends even if it panics; or a new
//! SQLite file in a temporary directory.

use std::sync::Arc;

use slrgov_store::{Engine, Store, StoreConfig};
use sqlx::Connection;
use tempfile::TempDir;

/// The Postgres server's admin URL tests create their databases from
/// (`DATABASE_URL`, by default the local trust-auth superuser).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The role the service connects as in the tests: an ordinary role (no
/// superuser, no BYPASSRLS), so row-level security applies as it does in
/// production. The password only matters where Postgres asks for one.
pub const APP_ROLE: &str = "slrgov_app";

/// Creates [`APP_ROLE`] if it does not exist (concurrent tests race here:
/// the loser's duplicate is ignored).
pub async fn ensure_app_role(conn: &mut sqlx::PgConnection) {
    sqlx::raw_sql(
        "DO $$ BEGIN \
           CREATE ROLE slrgov_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB PASSWORD 'slrgov_app'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(conn)
    .await
    .expect("create the service's database role");
}

/// `url` with its user replaced by [`APP_ROLE`].
pub fn as_app_role(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{APP_ROLE}:{APP_ROLE}@{rest}")
}

/// `url` with its database replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database made for one test.
pub struct TestDb {
    /// The URL the service (or store) is given: on Postgres as
    /// [`APP_ROLE`], the owner of the database, under row-level security.
    pub url: String,
    /// The same database as the admin user (a superuser, which row-level
    /// security does not apply to), for direct statements of the tests.
    pub admin_url: String,
    /// The engine behind `url`.
    pub engine: Engine,
    /// The Postgres database to drop at the end.
    pg_database: Option<String>,
    /// The SQLite file's directory, removed at the end.
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A fresh, empty database on `engine`.
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Postgres => Self::postgres().await,
            Engine::Sqlite => Self::sqlite(),
        }
    }

    /// A new, empty Postgres database.
    pub async fn postgres() -> TestDb {
        let db = Self::postgres_missing();
        db.create_later().await;
        db
    }

    /// A Postgres URL whose database does not exist yet;
    /// [`TestDb::create_later`] creates it.
    pub fn postgres_missing() -> TestDb {
        let database = format!("slrgov_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        TestDb {
            url: as_app_role(&with_database(&admin, &database)),
            admin_url: with_database(&admin, &database),
            engine: Engine::Postgres,
            pg_database: Some(database),
            _dir: None,
        }
    }

    /// Creates the database of [`TestDb::postgres_missing`].
    pub async fn create_later(&self) {
        let database = self.pg_database.as_ref().expect("a Postgres database");
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Postgres at {admin}: {e}"));
        ensure_app_role(&mut conn).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {database} OWNER {APP_ROLE}"
        )))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
        let _ = conn.close().await;
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/store.db", dir.path().display());
        TestDb {
            admin_url: url.clone(),
            url,
            engine: Engine::Sqlite,
            pg_database: None,
            _dir: Some(dir),
        }
    }

    /// The Postgres database's URL as the admin user, if it is Postgres.
    pub fn postgres_admin_url(&self) -> Option<String> {
        self.pg_database.as_ref().map(|_| self.admin_url.clone())
    }

    /// The store configuration for this database.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig::new(self.url.clone())
    }

    /// Opens a store on this database (migrating it).
    pub async fn open(&self) -> Arc<dyn Store> {
        self.open_with(self.store_config()).await
    }

    /// Opens a store on this database with `config` (its URL is this
    /// database's).
    pub async fn open_with(&self, mut config: StoreConfig) -> Arc<dyn Store> {
        config.url = self.url.clone();
        let store = slrgov_store::open(&config)
            .await
            .unwrap_or_else(|e| panic!("cannot open the store at {}: {e:?}", self.url));
        assert_eq!(store.engine(), self.engine, "open chose the wrong engine");
        store
    }

    /// Runs one statement directly on the database as the admin user (text
    /// binds); returns the rows affected.
    pub async fn execute(&self, sql: &'static str, binds: &[&str]) -> u64 {
        self.try_execute_with(sql, binds)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs one statement directly on the database as the admin user;
    /// returns the database's error message if it refuses.
    pub async fn try_execute(&self, sql: &'static str) -> Result<u64, String> {
        self.try_execute_with(sql, &[]).await
    }

    async fn try_execute_with(&self, sql: &'static str, binds: &[&str]) -> Result<u64, String> {
        macro_rules! run {
            ($conn:ty) => {{
                let mut conn = <$conn>::connect(&self.admin_url).await.expect("connect");
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let done = query.execute(&mut conn).await;
                let _ = conn.close().await;
                done.map(|d| d.rows_affected()).map_err(|e| e.to_string())
            }};
        }
        match self.engine {
            Engine::Postgres => run!(sqlx::PgConnection),
            Engine::Sqlite => run!(sqlx::SqliteConnection),
        }
    }

    /// Reads one nullable text column of one row directly from the
    /// database, as the admin user.
    pub async fn fetch_text(&self, sql: &'static str, binds: &[&str]) -> Option<String> {
        macro_rules! run {
            ($conn:ty) => {{
                let mut conn = <$conn>::connect(&self.admin_url).await.expect("connect");
                let mut query = sqlx::query_scalar::<_, Option<String>>(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let value = query.fetch_one(&mut conn).await.expect("fetch");
                let _ = conn.close().await;
                value
            }};
        }
        match self.engine {
            Engine::Postgres => run!(sqlx::PgConnection),
            Engine::Sqlite => run!(sqlx::SqliteConnection),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(database) = self.pg_database.take() else {
            return;
        };
        // Drop may run inside the test's runtime: do the async cleanup on a
        // thread of its own. Best effort: a leftover database is harmless.
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
