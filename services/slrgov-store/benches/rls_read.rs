//! What row-level security costs a read, on a real Postgres.
//!
//! One instance row is read by key, over and over, by 16 concurrent tasks
//! on a 16-connection pool, in 5 rounds that run every shape for a fixed
//! time (in a rotating order):
//!
//! - `plain`: the statement alone, as a superuser (RLS does not apply):
//!   what a read cost before RLS, the baseline;
//! - `four_round_trips`: as the service's ordinary role, `BEGIN`, then
//!   `SELECT set_config('slrgov.scope', ...)`, then the statement, then
//!   `COMMIT`, each its own round trip;
//! - `lateral`: as the service's role, the one-statement shape the store
//!   uses for single-statement reads (the scope set by a LATERAL one-row
//!   subquery of the statement itself);
//! - `store_instance_get`: the store's own `instance_get` (the `lateral`
//!   shape plus the scope check and row decoding), as the service's role.
//!
//! Each result is printed as reads per second and as a ratio to `plain`
//! measured in the same run.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p slrgov-store --bench rls_read
//! ```
//!
//! `SLRGOV_BENCH_SECONDS` sets the time of each shape in each of the 5
//! rounds (default 2); the median round of each shape is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use slrgov_domain::model::{
    AccountFields, InstanceFeatures, InstanceFields, NewAccount, NewInstance,
};
use slrgov_domain::names::InstanceKey;
use slrgov_domain::types::{AccountId, InstanceId, Partition, RegionCode};
use slrgov_domain::{AccountScope, Caller, RequestContext, Role};
use slrgov_store::{AccountStore, InstanceStore, PostgresStore, StoreConfig};
use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;

const TASKS: usize = 16;
const ROUNDS: usize = 5;

/// One read of a shape.
type Read =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;
const COLUMNS: &str = "account_id, instance_id, instance_alias, region, instance_create_time, \
     features, linked_role_state, revision, create_time, update_time";

fn with_database(url: &str, database: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{database}")
}

fn as_role(url: &str, role: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}:{role}@{rest}")
}

/// Runs `read` from `TASKS` tasks for `seconds`; returns reads per second.
async fn measure<F, Fut>(seconds: u64, read: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let read = Arc::new(read);
    // Warm up the pool and the plans.
    for _ in 0..TASKS * 4 {
        read().await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (read, stop, count) = (read.clone(), stop.clone(), count.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    read().await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a reader task");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let seconds: u64 = std::env::var("SLRGOV_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let database = format!("slrgov_bench_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to Postgres (DATABASE_URL)");
    sqlx::raw_sql(
        "DO $$ BEGIN \
           CREATE ROLE slrgov_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB PASSWORD 'slrgov_app'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&mut conn)
    .await
    .expect("role");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {database} OWNER slrgov_app"
    )))
    .execute(&mut conn)
    .await
    .expect("create database");

    let admin_db = with_database(&admin, &database);
    let app_db = as_role(&admin_db, "slrgov_app");
    let mut config = StoreConfig::new(app_db.clone());
    config.max_connections = TASKS as u32;
    let store = Arc::new(PostgresStore::open(&config).await.expect("open the store"));

    // Ten accounts of 100 instances: the read finds one row among many.
    let local = RequestContext::new(
        Caller::local_operator(),
        "bench".into(),
        tracing::Span::none(),
    );
    let mut target = None;
    for a in 0..10u32 {
        let account = AccountId::parse(&format!("2222{a:08}")).expect("account");
        store
            .account_create(
                &local,
                NewAccount {
                    account_id: account.clone(),
                    fields: AccountFields {
                        display_name: format!("bench {a}"),
                        partition: Partition::Aws,
                        access_role_arn: None,
                    },
                    external_id: None,
                },
                None,
            )
            .await
            .expect("account");
        for i in 0..100u32 {
            let id = InstanceId::parse(&format!("4a3b2c1d-0000-4000-8000-{:012x}", a * 1000 + i))
                .expect("instance id");
            let key = InstanceKey {
                account_id: account.clone(),
                instance_id: id,
            };
            store
                .instance_create(
                    &local,
                    NewInstance {
                        key: key.clone(),
                        region: RegionCode::parse("us-east-1").expect("region"),
                        fields: InstanceFields {
                            instance_alias: None,
                            instance_create_time: None,
                            features: InstanceFeatures::default(),
                        },
                    },
                    None,
                )
                .await
                .expect("instance");
            if a == 4 && i == 50 {
                target = Some(key);
            }
        }
    }
    let key = Arc::new(target.expect("a target"));

    let superuser = PgPoolOptions::new()
        .max_connections(TASKS as u32)
        .connect(&admin_db)
        .await
        .expect("superuser pool");
    let app = PgPoolOptions::new()
        .max_connections(TASKS as u32)
        .connect(&app_db)
        .await
        .expect("app pool");

    let select =
        format!("SELECT {COLUMNS} FROM instances WHERE account_id = $1 AND instance_id = $2");
    let lateral = format!(
        "SELECT q.* FROM (SELECT set_config('slrgov.scope', $3, true) AS v) AS slrgov_scope \
         CROSS JOIN LATERAL (SELECT * FROM ({select}) AS o WHERE slrgov_scope.v IS NOT NULL OFFSET 0) AS q"
    );

    let (pool, sql, k) = (superuser.clone(), select.clone(), key.clone());
    let plain: Read = Arc::new(move || {
        let (pool, sql, k) = (pool.clone(), sql.clone(), k.clone());
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(k.account_id.as_str())
                .bind(k.instance_id.as_str())
                .fetch_optional(&pool)
                .await
                .expect("read");
            assert!(row.is_some());
        })
    });

    let (pool, sql, k) = (app.clone(), select.clone(), key.clone());
    let four: Read = Arc::new(move || {
        let (pool, sql, k) = (pool.clone(), sql.clone(), k.clone());
        Box::pin(async move {
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("SELECT set_config('slrgov.scope', $1, true)")
                .bind(k.account_id.as_str())
                .execute(&mut *tx)
                .await
                .expect("set");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(k.account_id.as_str())
                .bind(k.instance_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .expect("read");
            assert!(row.is_some());
            tx.commit().await.expect("commit");
        })
    });

    let (pool, sql, k) = (app.clone(), lateral.clone(), key.clone());
    let one: Read = Arc::new(move || {
        let (pool, sql, k) = (pool.clone(), sql.clone(), k.clone());
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(k.account_id.as_str())
                .bind(k.instance_id.as_str())
                .bind(k.account_id.as_str())
                .fetch_optional(&pool)
                .await
                .expect("read");
            assert!(row.is_some(), "the scoped read found the row");
        })
    });

    let (st, k) = (store.clone(), key.clone());
    let ctx = RequestContext::new(
        Caller {
            principal: "bench".into(),
            role: Role::Viewer,
            scope: AccountScope::Only([k.account_id.clone()].into_iter().collect()),
        },
        "bench".into(),
        tracing::Span::none(),
    );
    let via_store: Read = Arc::new(move || {
        let (st, k, ctx) = (st.clone(), k.clone(), ctx.clone());
        Box::pin(async move {
            st.instance_get(&ctx, &k).await.expect("instance_get");
        })
    });

    // Rounds, each shape in turn (the order rotating), so that drift of a
    // shared two-core machine spreads over every shape; the median per
    // shape is reported.
    let shapes: Vec<(&str, Read)> = vec![
        ("plain", plain),
        ("four_round_trips", four),
        ("lateral", one),
        ("store_instance_get", via_store),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); shapes.len()];
    for round in 0..ROUNDS {
        for offset in 0..shapes.len() {
            let index = (round + offset) % shapes.len();
            let read = shapes[index].1.clone();
            rates[index].push(measure(seconds, move || read()).await);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let results: Vec<(&str, f64)> = shapes
        .iter()
        .zip(rates.iter_mut())
        .map(|((name, _), values)| (*name, median(values)))
        .collect();
    let plain = results[0].1;

    println!(
        "rls_read: {TASKS} tasks, {ROUNDS} rounds of {seconds} s per shape (median), one row among 1000"
    );
    println!("{:<20} {:>12} {:>10}", "shape", "reads/s", "vs plain");
    for (name, rate) in &results {
        println!("{name:<20} {rate:>12.0} {:>9.2}x", rate / plain);
    }

    superuser.close().await;
    app.close().await;
    drop(store);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}
