//! Helpers of the contract suite: a fresh database per test (Postgres or
//! SQLite), request contexts, fixtures, and assertions on errors and lists.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::model::{
    Account, AccountFields, ExternalId, Instance, InstanceFeatures, InstanceFields, NewAccount,
    NewInstance,
};
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::{
    AccountId, Arn, BucketName, InstanceAlias, InstanceId, LogGroupName, Partition, ProfilesDomain,
    RegionCode, RequestId, VoiceIdDomain,
};
use slrgov_domain::{AccountScope, Caller, Error, Kind, Reason, RequestContext, Result, Role};
use slrgov_store::{Engine, Idempotency, PageRequest, Store, StoreConfig};
use sqlx::Connection;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Fresh databases

/// The Postgres server's admin URL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The role the service connects as in the tests: an ordinary role (no
/// superuser, no BYPASSRLS), so row-level security applies to it as it does
/// in production. The password only matters where Postgres asks for one.
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
fn with_database(url: &str, database: &str) -> String {
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

/// A database made for one test: a fresh Postgres database (dropped when
/// this is dropped, even when the test panics) or a fresh SQLite file in a
/// temporary directory.
pub struct TestDb {
    /// The URL to open the store with (on Postgres: as [`APP_ROLE`], the
    /// owner of the database, under row-level security).
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
    /// A new, empty Postgres database.
    pub async fn postgres() -> Self {
        let admin = admin_url();
        let database = format!("slrgov_test_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Postgres at {admin}: {e}"));
        ensure_app_role(&mut conn).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {database} OWNER {APP_ROLE}"
        )))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
        let _ = conn.close().await;
        TestDb {
            url: as_app_role(&with_database(&admin, &database)),
            admin_url: with_database(&admin, &database),
            engine: Engine::Postgres,
            pg_database: Some(database),
            _dir: None,
        }
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
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

    /// Opens a store on this database (migrating it).
    pub async fn open(&self) -> Arc<dyn Store> {
        let store = slrgov_store::open(&StoreConfig::new(self.url.clone()))
            .await
            .unwrap_or_else(|e| panic!("cannot open the store at {}: {e:?}", self.url));
        assert_eq!(store.engine(), self.engine, "open chose the wrong engine");
        store
    }
}

impl TestDb {
    /// Runs one statement directly on the database (text binds), for state
    /// that no store method writes yet (e.g. a linked role's state); returns
    /// the rows affected.
    pub async fn execute(&self, sql: &'static str, binds: &[&str]) -> u64 {
        match self.engine {
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.admin_url)
                    .await
                    .expect("connect");
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let done = query.execute(&mut conn).await.expect("execute");
                let _ = conn.close().await;
                done.rows_affected()
            }
            Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let done = query.execute(&mut conn).await.expect("execute");
                let _ = conn.close().await;
                done.rows_affected()
            }
        }
    }

    /// Runs one statement directly on the database as the admin user;
    /// returns the database's error message if it refuses.
    pub async fn try_execute(&self, sql: &'static str) -> std::result::Result<u64, String> {
        let done = match self.engine {
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.admin_url)
                    .await
                    .expect("connect");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|d| d.rows_affected())
            }
            Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|d| d.rows_affected())
            }
        };
        done.map_err(|e| e.to_string())
    }

    /// Reads one nullable text column of one row directly from the database.
    pub async fn fetch_text(&self, sql: &'static str, binds: &[&str]) -> Option<String> {
        match self.engine {
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.admin_url)
                    .await
                    .expect("connect");
                let mut query = sqlx::query_scalar::<_, Option<String>>(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let value = query.fetch_one(&mut conn).await.expect("fetch");
                let _ = conn.close().await;
                value
            }
            Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let mut query = sqlx::query_scalar::<_, Option<String>>(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                let value = query.fetch_one(&mut conn).await.expect("fetch");
                let _ = conn.close().await;
                value
            }
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
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
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

// ---------------------------------------------------------------------------
// Request contexts

/// A context for `caller`.
pub fn ctx_of(caller: Caller) -> RequestContext {
    RequestContext::new(caller, "test".into(), tracing::Span::none())
}

/// The local operator: every account, the admin role.
pub fn admin() -> RequestContext {
    ctx_of(Caller::local_operator())
}

/// A caller named `principal` with `role` on `scope`.
pub fn caller(principal: &str, role: Role, scope: AccountScope) -> RequestContext {
    ctx_of(Caller {
        principal: principal.to_owned(),
        role,
        scope,
    })
}

/// A scope of exactly these accounts.
pub fn only(accounts: &[&AccountId]) -> AccountScope {
    AccountScope::Only(
        accounts
            .iter()
            .map(|a| (*a).clone())
            .collect::<BTreeSet<_>>(),
    )
}

// ---------------------------------------------------------------------------
// Fixtures

/// The account id number `n` (`1111` followed by `n` on 8 digits).
pub fn account_id(n: u32) -> AccountId {
    AccountId::parse(&format!("1111{n:08}")).expect("account id")
}

/// An ARN.
pub fn arn(value: &str) -> Arn {
    Arn::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// A region code.
pub fn region(value: &str) -> RegionCode {
    RegionCode::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// The access role of `account` in `partition`.
pub fn access_role(account: &AccountId, partition: Partition) -> Arn {
    arn(&format!("arn:{partition}:iam::{account}:role/SlrGovernor"))
}

/// A new account `id` in `partition`, with an access role and an external id.
pub fn new_account_in(id: &AccountId, partition: Partition) -> NewAccount {
    NewAccount {
        account_id: id.clone(),
        fields: AccountFields {
            display_name: format!("Account {id}"),
            partition,
            access_role_arn: Some(access_role(id, partition)),
        },
        external_id: Some(ExternalId::new(format!("ext-secret-{id}"))),
    }
}

/// The new account number `n`, in the `aws` partition.
pub fn new_account(n: u32) -> NewAccount {
    new_account_in(&account_id(n), Partition::Aws)
}

/// Creates the account number `n` as the local operator.
pub async fn create_account(store: &Arc<dyn Store>, n: u32) -> Account {
    store
        .account_create(&admin(), new_account(n), None)
        .await
        .unwrap_or_else(|e| panic!("create account {n}: {e:?}"))
}

/// The instance id number `n`: ordered like `n`.
pub fn instance_id(n: u32) -> InstanceId {
    InstanceId::parse(&format!("4a3b2c1d-0000-4000-8000-{n:012x}")).expect("instance id")
}

/// A random instance id.
pub fn random_instance_id() -> InstanceId {
    InstanceId::parse(&uuid::Uuid::new_v4().hyphenated().to_string()).expect("instance id")
}

/// The key of `instance` in `account`.
pub fn key(account: &AccountId, instance: &InstanceId) -> InstanceKey {
    InstanceKey {
        account_id: account.clone(),
        instance_id: instance.clone(),
    }
}

/// A new instance without features.
pub fn new_instance(account: &AccountId, instance: &InstanceId, region_code: &str) -> NewInstance {
    NewInstance {
        key: key(account, instance),
        region: region(region_code),
        fields: InstanceFields {
            instance_alias: Some(InstanceAlias::parse("contact-center").expect("alias")),
            instance_create_time: None,
            features: InstanceFeatures::default(),
        },
    }
}

/// Creates an instance without features as the local operator.
pub async fn create_instance(
    store: &Arc<dyn Store>,
    account: &AccountId,
    instance: &InstanceId,
    region_code: &str,
) -> Instance {
    store
        .instance_create(&admin(), new_instance(account, instance, region_code), None)
        .await
        .unwrap_or_else(|e| panic!("create instance {instance} in {account}: {e:?}"))
}

/// Every feature set, with ARNs in `partition` and `region_code`.
pub fn full_features(
    account: &AccountId,
    partition: Partition,
    region_code: &str,
) -> InstanceFeatures {
    InstanceFeatures {
        call_recordings_bucket: Some(
            BucketName::parse("amazon-connect-recordings").expect("bucket"),
        ),
        exported_reports_bucket: Some(BucketName::parse("my.exported.reports").expect("bucket")),
        customer_profiles_domain: Some(
            ProfilesDomain::parse("amazon-connect-profiles_1").expect("domain"),
        ),
        firehose_delivery_streams: vec![
            arn(&format!(
                "arn:{partition}:firehose:{region_code}:{account}:deliverystream/ctr-stream"
            )),
            arn(&format!(
                "arn:{partition}:firehose:{region_code}:{account}:deliverystream/agent-events"
            )),
        ],
        kinesis_streams: vec![arn(&format!(
            "arn:{partition}:kinesis:{region_code}:{account}:stream/contact-trace"
        ))],
        lex_bots: vec![
            arn(&format!(
                "arn:{partition}:lex:{region_code}:{account}:bot-alias/ABCDEFGHIJ/TSTALIASID"
            )),
            arn(&format!(
                "arn:{partition}:lex:{region_code}:{account}:bot:OrderFlowers"
            )),
        ],
        flow_logs_log_group: Some(
            LogGroupName::parse("/aws/connect/contact-center").expect("log group"),
        ),
        voice_id_domain: Some(VoiceIdDomain::parse("AbCdEfGhIjKlMnOpQrStUv").expect("voice id")),
        outbound_campaigns: true,
    }
}

/// An AIP-155 request id with a fingerprint.
pub fn idem(request_id: &str, fingerprint: &str) -> Idempotency {
    Idempotency {
        request_id: RequestId::parse(request_id).expect("request id"),
        fingerprint: fingerprint.as_bytes().to_vec(),
    }
}

/// A page request as the edge would make it.
pub fn page(size: i32, token: &str) -> PageRequest {
    PageRequest::parse(size, token).expect("page request")
}

/// A filter as the edge would parse it.
pub fn filter(text: &str) -> InstanceFilter {
    InstanceFilter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A moment with microsecond precision (what both engines keep).
pub fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// Waits long enough for the store's clock (microseconds) to move on.
pub async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

// ---------------------------------------------------------------------------
// Assertions

/// Unwraps the error of `result`, checking its kind and reason.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T>, kind: Kind, reason: Reason) -> Error {
    match result {
        Ok(value) => panic!("expected {kind:?}/{reason:?}, got Ok({value:?})"),
        Err(error) => {
            assert_eq!(
                (error.kind, error.reason),
                (kind, reason),
                "unexpected error: {error:?}"
            );
            error
        }
    }
}

/// Checks that `error` has a field violation on exactly `field`.
#[track_caller]
pub fn assert_violation(error: &Error, field: &str) {
    assert!(
        error.violations.iter().any(|v| v.field == field),
        "expected a violation on {field}, got {:?}",
        error.violations
    );
}

/// Checks that `result` is INVALID_ARGUMENT on `page_token`.
#[track_caller]
pub fn assert_bad_page_token<T: Debug>(result: Result<T>) {
    let error = expect_err(result, Kind::InvalidArgument, Reason::InvalidField);
    assert_violation(&error, "page_token");
}

/// Lists every visible account, `size` at a time, following the tokens;
/// checks every page's size.
pub async fn list_accounts_all(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    size: i32,
) -> Vec<Account> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = store
            .account_list(ctx, &page(size, &token))
            .await
            .expect("account_list");
        assert!(page.items.len() <= size as usize, "page larger than asked");
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.items.len(),
                size as usize,
                "a short page with a next token"
            );
        }
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        token = page.next_page_token;
    }
    panic!("account_list never ended");
}

/// Lists every visible instance under `parent` matching `filter`, `size`
/// at a time, following the tokens; checks every page's size.
pub async fn list_instances_all(
    store: &Arc<dyn Store>,
    ctx: &RequestContext,
    parent: &AccountSelector,
    filter: &InstanceFilter,
    size: i32,
) -> Vec<Instance> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = store
            .instance_list(ctx, parent, filter, &page(size, &token))
            .await
            .expect("instance_list");
        assert!(page.items.len() <= size as usize, "page larger than asked");
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.items.len(),
                size as usize,
                "a short page with a next token"
            );
        }
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return items;
        }
        token = page.next_page_token;
    }
    panic!("instance_list never ended");
}

/// The keys of `instances`, in order.
pub fn keys(instances: &[Instance]) -> Vec<InstanceKey> {
    instances.iter().map(Instance::key).collect()
}

/// Checks that `keys` has no duplicates.
#[track_caller]
pub fn assert_unique<T: Ord + Debug + Clone>(keys: &[T]) {
    let set: BTreeSet<T> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "duplicates in {keys:?}");
}
