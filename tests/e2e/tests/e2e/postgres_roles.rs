//! The service's Postgres roles (deploy/postgres/roles.sql): the schema's
//! owner migrates, the service serves as a role with DML grants only, which
//! cannot turn row-level security off; a role that can reach a superuser
//! through membership is refused; a service that owns its tables is warned.

use slrgov_proto::slrgov::v1 as pb;
use slrgov_testkit::db::with_database;
use sqlx::Connection;

use super::support::{
    Engine, TestDb, TestServer, account_id, admin_url, instance_id, server_bin, workspace,
};

/// Roles and a database made for one test, dropped at its end (even if it
/// panics).
struct Scratch {
    database: String,
    roles: Vec<String>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch {
            database: format!("slrgov_{tag}_{}", uuid::Uuid::new_v4().simple()),
            roles: Vec::new(),
        }
    }

    /// A unique role name (dropped at the end).
    fn role(&mut self, name: &str) -> String {
        let role = format!(
            "{name}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        self.roles.push(role.clone());
        role
    }

    /// `database`'s URL as `role` (the shared server trusts local users).
    fn url(&self, role: &str) -> String {
        let url = with_database(&admin_url(), &self.database);
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{role}@{rest}")
    }

    fn admin(&self) -> String {
        with_database(&admin_url(), &self.database)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let database = self.database.clone();
        let roles = std::mem::take(&mut self.roles);
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                    return;
                };
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                // Members before the roles they are members of.
                for role in roles.iter().rev() {
                    let _ =
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                            .execute(&mut conn)
                            .await;
                }
                let _ = conn.close().await;
            });
        })
        .join();
    }
}

async fn admin_execute(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Runs `slr-governor <args>` with `env` until it exits.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = tokio::process::Command::new(server_bin());
    command
        .args(args)
        .env("SLRGOV_LISTEN", "127.0.0.1:0")
        .env_remove("SLRGOV_ALLOW_RLS_BYPASS")
        .env_remove("SLRGOV_MIGRATION_DATABASE_URL")
        .env_remove("SLRGOV_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("slr-governor exits within 60 s")
        .expect("run slr-governor");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const OWNER_WARNING: &str = "the service's Postgres role owns the tables";

#[tokio::test]
async fn postgres_dml_role_cannot_disable_rls_and_serves_after_migrate_as_owner() {
    let mut scratch = Scratch::new("roles");
    let owner = scratch.role("slrgov_owner");
    let migrator = scratch.role("slrgov_migrate");
    let app = scratch.role("slrgov_app");
    admin_execute(
        &admin_url(),
        &format!("CREATE DATABASE {}", scratch.database),
    )
    .await;
    // deploy/postgres/roles.sql itself, with this test's role names.
    let script = std::fs::read_to_string(workspace().join("deploy/postgres/roles.sql"))
        .expect("deploy/postgres/roles.sql")
        .replace("slrgov_owner", &owner)
        .replace("slrgov_migrate", &migrator)
        .replace("slrgov_app", &app);
    admin_execute(&scratch.admin(), &script).await;
    let app_url = scratch.url(&app);
    let migrator_url = scratch.url(&migrator);

    // Not migrated yet: the DML role does not try to migrate; it refuses,
    // naming the command that does.
    let (ok, stderr) = run(&["serve"], &[("SLRGOV_DATABASE_URL", &app_url)]).await;
    assert!(!ok, "served an unmigrated schema: {stderr}");
    assert!(
        stderr.contains("slr-governor migrate") && stderr.contains("pending"),
        "the refusal names `slr-governor migrate` and what is pending: {stderr}"
    );

    // `migrate` as the owner (the migration Job's settings).
    let (ok, stderr) = run(
        &["migrate"],
        &[
            ("SLRGOV_DATABASE_URL", &app_url),
            ("SLRGOV_MIGRATION_DATABASE_URL", &migrator_url),
        ],
    )
    .await;
    assert!(ok, "migrate as the owner: {stderr}");
    assert!(
        !stderr.contains(OWNER_WARNING),
        "the DML role does not own the tables: {stderr}"
    );

    // The owner owns every table; the DML role cannot turn row-level
    // security off, nor drop the audit trail's triggers, nor create.
    let mut conn = sqlx::PgConnection::connect(&app_url)
        .await
        .expect("connect as the DML role");
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class \
         WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("owners");
    assert_eq!(owners, std::slice::from_ref(&owner));
    for statement in [
        "ALTER TABLE instances NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_scope ON instances",
        "DROP TRIGGER audit_events_no_update ON audit_events",
        "CREATE TABLE sneaky (x int)",
    ] {
        let error = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .expect_err(statement);
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{statement}: expected a permission error, got {error}"
        );
    }
    let _ = conn.close().await;

    // The service serves as the DML role, without the owner warning.
    let unused = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&unused, &[("SLRGOV_DATABASE_URL", &app_url)]).await;
    let mut c = server.clients().await;
    let account = account_id(42);
    c.add_account(&account).await;
    let id = instance_id();
    c.instances
        .create_instance(pb::CreateInstanceRequest {
            parent: format!("accounts/{account}"),
            instance_id: id.clone(),
            instance: Some(pb::Instance {
                region: "us-east-1".to_owned(),
                ..Default::default()
            }),
            request_id: "first-write".to_owned(),
        })
        .await
        .expect("create an instance as the DML role");
    c.instances
        .get_instance(pb::GetInstanceRequest {
            name: format!("accounts/{account}/instances/{id}"),
        })
        .await
        .expect("read it back");
    assert!(
        server.events_with(OWNER_WARNING).is_empty(),
        "the DML role does not own the tables:\n{}",
        server.log()
    );
    let _ = server.stop().await;

    // `serve` may migrate as the owner itself, too (one process, two URLs):
    // nothing is pending now, and it serves.
    let (ok, stderr) = run(
        &["migrate"],
        &[
            ("SLRGOV_DATABASE_URL", &app_url),
            ("SLRGOV_MIGRATION_DATABASE_URL", &migrator_url),
        ],
    )
    .await;
    assert!(ok, "a second migrate changes nothing: {stderr}");
}

#[tokio::test]
async fn postgres_role_that_is_a_member_of_a_superuser_role_is_refused() {
    let mut scratch = Scratch::new("member");
    let superuser = scratch.role("slrgov_su");
    let member = scratch.role("slrgov_member");
    admin_execute(
        &admin_url(),
        &format!(
            "CREATE ROLE {superuser} NOLOGIN SUPERUSER; \
             CREATE ROLE {member} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE {superuser}"
        ),
    )
    .await;
    admin_execute(
        &admin_url(),
        &format!("CREATE DATABASE {} OWNER {member}", scratch.database),
    )
    .await;
    let url = scratch.url(&member);
    for command in ["migrate", "serve"] {
        let (ok, stderr) = run(&[command], &[("SLRGOV_DATABASE_URL", &url)]).await;
        assert!(
            !ok,
            "{command}: a member of a superuser role was accepted: {stderr}"
        );
        assert!(
            stderr.contains(&member)
                && stderr.contains(&superuser)
                && stderr.contains("member")
                && stderr.contains("SLRGOV_ALLOW_RLS_BYPASS"),
            "{command}: the refusal names the role, the superuser role it reaches, and the \
             override: {stderr}"
        );
    }
    // Told to, it accepts the role (and warns).
    let (ok, stderr) = run(
        &["migrate"],
        &[
            ("SLRGOV_DATABASE_URL", &url),
            ("SLRGOV_ALLOW_RLS_BYPASS", "true"),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("bypasses row-level security"), "{stderr}");
}

#[tokio::test]
async fn postgres_owner_role_is_warned_but_serves() {
    // The tests' usual setup: one role owns the database and serves.
    let db = TestDb::new(Engine::Postgres).await;
    let server = TestServer::start(&db).await;
    let warning = server.event(OWNER_WARNING);
    assert_eq!(warning["level"], "WARN", "{warning}");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("NO FORCE ROW LEVEL SECURITY") && message.contains("slr-governor migrate"),
        "the warning names the risk and the way out: {message}"
    );
    let mut c = server.clients().await;
    c.accounts
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("it serves");
}
