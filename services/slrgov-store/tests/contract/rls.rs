//! Row-level security on Postgres, seen from the service's own database
//! role (an ordinary role that owns the tables, as in production): without
//! a scope no tenant row is visible; with one account, only its rows; a row
//! of another account cannot be written. Also: every table with an
//! `account_id` column is under FORCE ROW LEVEL SECURITY, so a new tenant
//! table cannot be forgotten.

use slrgov_domain::types::AccountId;
use sqlx::Connection;

use crate::support::*;

const TENANT_TABLES: &[&str] = &[
    "accounts",
    "audit_events",
    "changes",
    "findings",
    "instances",
    "linked_roles",
    "request_ids",
    "workflows",
];

/// Fills every tenant table with rows of `account`.
async fn populate(store: &std::sync::Arc<dyn slrgov_store::Store>, n: u32) -> AccountId {
    let account = create_account(store, n).await.account_id;
    let k = key(&account, &instance_id(n));
    store
        .instance_create(
            &admin(),
            new_instance(&account, &k.instance_id, "us-east-1"),
            Some(&idem(&format!("request-{n}"), "fingerprint")),
        )
        .await
        .expect("create instance");
    // An ensure (finished) and a retirement (running): workflows rows.
    make_active(store, &k, "sfx").await;
    retire(store, &k, WorkflowKind::Retire).await;
    // A finding of a reconcile pass.
    let finding = slrgov_domain::finding::NewFinding {
        code: slrgov_domain::finding::FindingCode::RoleUnused,
        severity: slrgov_domain::finding::Severity::Info,
        target: k.name(),
        subject: String::new(),
        message: "never used".to_owned(),
    };
    store
        .finding_record(
            &admin(),
            &account,
            &slrgov_domain::finding::FindingScope::Target(k.name()),
            &[finding],
            chrono::Utc::now(),
        )
        .await
        .expect("record a finding");
    account
}

/// `(rows of account, rows of any other account)` of `table`.
async fn counts(conn: &mut sqlx::PgConnection, table: &str, account: &AccountId) -> (i64, i64) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE account_id = $1), count(*) FILTER (WHERE account_id <> $1) \
         FROM {table}"
    )))
    .bind(account.as_str())
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_postgres() {
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let a = populate(&store, 1).await;
    let b = populate(&store, 2).await;

    // Every table with an account_id column is a forced tenant table.
    let mut admin = sqlx::PgConnection::connect(&db.admin_url)
        .await
        .expect("connect as admin");
    let with_account: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'account_id' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .expect("tables");
    // The one exception, by design (0011): `rate_buckets` holds a time per
    // account and service, the shared IAM rate that every caller's calls
    // must see whoever makes them; nothing of it reaches a caller.
    let with_account: Vec<String> = with_account
        .into_iter()
        .filter(|table| table != "rate_buckets")
        .collect();
    assert_eq!(with_account, TENANT_TABLES);
    let forced: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relrowsecurity AND c.relforcerowsecurity ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .expect("forced tables");
    assert_eq!(forced, TENANT_TABLES);
    // The admin (a superuser) sees both tenants everywhere: the rows the
    // checks below must not see are there.
    for table in TENANT_TABLES {
        let (mine, others) = counts(&mut admin, table, &a).await;
        assert!(mine > 0 && others > 0, "{table}: {mine}/{others}");
    }

    // The service's role, with no scope set: nothing.
    let mut app = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connect as the service role");
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut app)
            .await
            .expect("role");
    assert!(
        !superuser && !bypass,
        "the test must run as an ordinary role"
    );
    for table in TENANT_TABLES {
        assert_eq!(
            counts(&mut app, table, &a).await,
            (0, 0),
            "{table} without a scope"
        );
    }
    // An empty scope: nothing either.
    sqlx::query("SELECT set_config('slrgov.scope', '', false)")
        .execute(&mut app)
        .await
        .expect("set scope");
    for table in TENANT_TABLES {
        assert_eq!(
            counts(&mut app, table, &a).await,
            (0, 0),
            "{table} with an empty scope"
        );
    }

    // One account: only its rows.
    sqlx::query("SELECT set_config('slrgov.scope', $1, false)")
        .bind(a.as_str())
        .execute(&mut app)
        .await
        .expect("set scope");
    for table in TENANT_TABLES {
        let (mine, others) = counts(&mut app, table, &a).await;
        assert!(mine > 0, "{table}: A's rows are hidden from A");
        assert_eq!(others, 0, "{table}: another account's rows are visible");
    }
    // ... and no row of another account can be written or changed.
    let insert = sqlx::query(
        "INSERT INTO request_ids (account_id, request_id, method, fingerprint, create_time) \
         VALUES ($1, 'sneaky', 'CreateInstance', '\\x00', now())",
    )
    .bind(b.as_str())
    .execute(&mut app)
    .await;
    let error = insert.expect_err("a row of another account was written");
    assert!(error.to_string().contains("row-level security"), "{error}");
    let taken = sqlx::query("UPDATE workflows SET lease_owner = 'thief' WHERE account_id = $1")
        .bind(b.as_str())
        .execute(&mut app)
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(taken, 0, "another account's workflow was taken");
    let changed = sqlx::query("UPDATE accounts SET display_name = 'taken' WHERE account_id = $1")
        .bind(b.as_str())
        .execute(&mut app)
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(changed, 0, "another account's row was changed");

    // Both: both.
    sqlx::query("SELECT set_config('slrgov.scope', $1, false)")
        .bind(format!("{a},{b}"))
        .execute(&mut app)
        .await
        .expect("set scope");
    for table in TENANT_TABLES {
        let (mine, others) = counts(&mut app, table, &a).await;
        assert!(mine > 0 && others > 0, "{table} with both accounts");
    }

    // One prepared statement that sets the scope and reads in the same
    // statement, as the store's reads do, run on one connection with A's
    // scope, B's, both and none, in turns, past the five runs after which
    // Postgres may switch to a generic plan: each run sees its own scope's
    // rows. The policies' sub-selects (0012) run once per statement, after
    // its `set_config`, never once per connection or plan.
    let scoped_count = "SELECT count(*) FILTER (WHERE i.account_id = $2), count(*) \
         FROM (SELECT set_config('slrgov.scope', $1, true) AS v) AS s \
         CROSS JOIN LATERAL (SELECT account_id FROM instances WHERE s.v IS NOT NULL OFFSET 0) AS i";
    let all_a = counts(&mut admin, "instances", &a).await;
    let both = format!("{a},{b}");
    for round in 0..4 {
        for (scope, want_a, want_b) in [
            (a.as_str(), all_a.0, 0),
            (b.as_str(), 0, all_a.1),
            (both.as_str(), all_a.0, all_a.1),
            ("", 0, 0),
        ] {
            let (mine, total): (i64, i64) = sqlx::query_as(scoped_count)
                .bind(scope)
                .bind(a.as_str())
                .fetch_one(&mut app)
                .await
                .expect("scoped count");
            assert_eq!(
                (mine, total - mine),
                (want_a, want_b),
                "round {round}, scope {scope:?}"
            );
        }
    }

    // The scope the store sets for one request does not outlive it: on a
    // one-connection pool, after a scoped single-statement read and a
    // scoped transaction, the connection has no scope, and an unscoped
    // read of that connection sees nothing.
    let mut config = slrgov_store::StoreConfig::new(db.url.clone());
    config.max_connections = 1;
    let single = slrgov_store::PostgresStore::open(&config)
        .await
        .expect("open a one-connection store");
    let alice = caller("alice", slrgov_domain::Role::Admin, only(&[&a]));
    let got = slrgov_store::AccountStore::account_get(&single, &alice, &a)
        .await
        .expect("A is visible to alice");
    assert_eq!(got.account_id, a);
    slrgov_store::AccountStore::account_update(
        &single,
        &alice,
        &a,
        None,
        slrgov_domain::model::AccountPatch {
            display_name: Some("renamed".into()),
            access_role_arn: None,
            external_id: slrgov_domain::model::ExternalIdChange::Keep,
        },
    )
    .await
    .expect("update in a scoped transaction");
    let left: Option<String> =
        sqlx::query_scalar("SELECT NULLIF(current_setting('slrgov.scope', true), '')")
            .fetch_one(single.pool())
            .await
            .expect("scope");
    assert_eq!(left, None, "the request's scope stayed on the connection");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(single.pool())
        .await
        .expect("count");
    assert_eq!(seen, 0);
    let _ = app.close().await;
    let _ = admin.close().await;
}
