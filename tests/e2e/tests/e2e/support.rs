//! The harness: a fresh database per test (an SQLite file in a temporary
//! directory, or a new Postgres database), the real `slr-governor` binary
//! started on `127.0.0.1:0`, and clients for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slrgov_proto::google::longrunning::operations_client::OperationsClient;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use slrgov_proto::slrgov::v1::audit_service_client::AuditServiceClient;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use slrgov_proto::slrgov::v1::linked_role_service_client::LinkedRoleServiceClient;
use slrgov_proto::slrgov::v1::region_service_client::RegionServiceClient;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server binary: `SLRGOV_BIN`, or the one cargo built next to this test.
pub fn server_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SLRGOV_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/slr-governor
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let bin = profile_dir.join("slr-governor");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p slr-governor) or set SLRGOV_BIN",
        bin.display()
    );
    bin
}

/// The grpcurl binary: `SLRGOV_TEST_GRPCURL`, the test venv's, or PATH's.
pub fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("SLRGOV_TEST_GRPCURL") {
        return PathBuf::from(path);
    }
    let venv = workspace().join("tests/.venv/bin/grpcurl");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("grpcurl")
}

/// The Postgres admin URL tests create their databases from.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The engines a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// An SQLite file.
    Sqlite,
    /// A Postgres database.
    Postgres,
}

/// A fresh, empty database that lives as long as the value.
pub struct TestDb {
    /// The URL the server is given.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A fresh database on `engine`.
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("slrgov.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Engine::Postgres => {
                let name = format!("slrgov_e2e_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to Postgres (DATABASE_URL)");
                ensure_app_role(&mut conn).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name} OWNER {APP_ROLE}"
                )))
                .execute(&mut conn)
                .await
                .expect("create database");
                TestDb {
                    url: postgres_url_for(&name),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A Postgres URL whose database does not exist yet; `create_later`
    /// creates it.
    pub fn postgres_missing() -> TestDb {
        let name = format!("slrgov_e2e_{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: postgres_url_for(&name),
            _dir: None,
            pg_name: Some(name),
        }
    }

    /// The Postgres database's URL as the admin user (a superuser, which
    /// row-level security does not stop).
    pub fn postgres_admin_url(&self) -> Option<String> {
        self.pg_name.as_deref().map(postgres_admin_url_for)
    }

    /// Creates the database of [`TestDb::postgres_missing`].
    pub async fn create_later(&self) {
        let name = self.pg_name.as_ref().expect("a Postgres database");
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("connect");
        ensure_app_role(&mut conn).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} OWNER {APP_ROLE}"
        )))
        .execute(&mut conn)
        .await
        .expect("create database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Best effort, off the test's runtime.
        let admin = postgres_admin_url();
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
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// The role the server connects as in the tests: an ordinary role (no
/// superuser, no BYPASSRLS), so row-level security applies as in
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

/// The URL of `database` as the admin user (a superuser).
pub fn postgres_admin_url_for(database: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base)
        .to_owned();
    format!("{base}/{database}")
}

/// The URL of `database` as [`APP_ROLE`]: what the server is given.
fn postgres_url_for(database: &str) -> String {
    let url = postgres_admin_url_for(database);
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{APP_ROLE}:{APP_ROLE}@{rest}")
}

/// A running server process.
pub struct TestServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The client TLS configuration of a server that serves TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Extra environment for a server.
pub type Env<'a> = &'a [(&'a str, &'a str)];

impl TestServer {
    /// Starts the server on `db` and waits until health says SERVING.
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, &[]).await
    }

    /// Starts the server with extra environment and waits until SERVING.
    pub async fn start_with(db: &TestDb, env: Env<'_>) -> TestServer {
        let server = Self::spawn(db, env).await;
        server.wait_serving(Duration::from_secs(60)).await;
        server
    }

    /// Starts the server and returns once it listens (maybe not serving).
    pub async fn spawn(db: &TestDb, env: Env<'_>) -> TestServer {
        let mut command = Command::new(server_bin());
        command
            .env("SLRGOV_LISTEN", "127.0.0.1:0")
            .env("SLRGOV_DATABASE_URL", &db.url)
            .env("SLRGOV_LOG", "info,slr_governor=debug")
            .env_remove("SLRGOV_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start slr-governor");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut addr_tx = Some(addr_tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        // Text or JSON logs: the address ends at the first
                        // character an address cannot hold.
                        let addr: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                            .collect();
                        if let (Some(tx), Ok(addr)) = (addr_tx.take(), addr.parse::<SocketAddr>()) {
                            let _ = tx.send(addr);
                        }
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "the server did not log `listening on <addr>`:\n{}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            ),
        };
        TestServer {
            child,
            addr,
            log,
            tls: None,
        }
    }

    /// Starts a server that serves TLS, reached with `tls`, and waits until
    /// SERVING.
    pub async fn start_tls(
        db: &TestDb,
        env: Env<'_>,
        tls: tonic::transport::ClientTlsConfig,
    ) -> TestServer {
        let mut server = Self::spawn(db, env).await;
        server.tls = Some(tls);
        server.wait_serving(Duration::from_secs(60)).await;
        server
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The `http://addr` endpoint.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        let mut endpoint = Channel::from_shared(self.endpoint()).expect("endpoint");
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).expect("client TLS");
        }
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .expect("connect to the server")
    }

    /// Clients of every service.
    pub async fn clients(&self) -> Clients {
        let channel = self.channel().await;
        Clients {
            accounts: AccountServiceClient::new(channel.clone()),
            instances: InstanceServiceClient::new(channel.clone()),
            linked_roles: LinkedRoleServiceClient::new(channel.clone()),
            regions: RegionServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel.clone()),
            operations: OperationsClient::new(channel),
        }
    }

    /// The overall health status.
    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        let channel = self.channel().await;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    }

    /// Waits until health says SERVING.
    pub async fn wait_serving(&self, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.health("").await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become SERVING:\n{}", self.log());
    }

    /// Kills the server with SIGKILL (no shutdown at all) and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// The process id (the background worker names its leases after it).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Waits for the process to exit (after [`TestServer::terminate`]).
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the server exits in time")
            .expect("wait")
    }

    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30s of SIGTERM")
            .expect("wait")
    }
}

/// Clients of every service, on one channel.
pub struct Clients {
    pub accounts: AccountServiceClient<Channel>,
    pub instances: InstanceServiceClient<Channel>,
    pub linked_roles: LinkedRoleServiceClient<Channel>,
    pub regions: RegionServiceClient<Channel>,
    pub audit: AuditServiceClient<Channel>,
    pub operations: OperationsClient<Channel>,
}

impl Clients {
    /// Registers a new instance of `account` in `region` (registering the
    /// account first if it is not there yet) and returns the instance id.
    pub async fn register_instance(&mut self, account: &str, region: &str) -> String {
        use slrgov_proto::slrgov::v1 as pb;
        let created = self
            .accounts
            .create_account(pb::CreateAccountRequest {
                account_id: account.to_owned(),
                account: Some(pb::Account {
                    display_name: format!("Account {account}"),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await;
        if let Err(status) = created {
            assert_eq!(
                status.code(),
                tonic::Code::AlreadyExists,
                "create account: {status:?}"
            );
        }
        let id = instance_id();
        self.instances
            .create_instance(pb::CreateInstanceRequest {
                parent: format!("accounts/{account}"),
                instance_id: id.clone(),
                instance: Some(pb::Instance {
                    region: region.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create instance");
        id
    }
}

/// What a refused call carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: tonic::Code,
    pub reason: String,
    pub domain: String,
    pub fields: Vec<String>,
    pub message: String,
}

/// Reads the code, ErrorInfo and BadRequest of a status.
pub fn refusal(status: &tonic::Status) -> Refusal {
    let info = status.get_details_error_info();
    Refusal {
        code: status.code(),
        reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
        domain: info.map(|i| i.domain).unwrap_or_default(),
        fields: status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default(),
        message: status.message().to_owned(),
    }
}

/// Expects a call to fail, and returns what it carried.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Refusal {
    match result {
        Ok(response) => panic!("expected a refusal, got {:?}", response.into_inner()),
        Err(status) => refusal(&status),
    }
}

/// A 12-digit account id made from `n`.
pub fn account_id(n: u32) -> String {
    format!("{:012}", 100_000_000_000u64 + u64::from(n))
}

/// A random instance id.
pub fn instance_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A moto_server (IAM/STS emulator) on a free port, its request log kept.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Moto {
    /// Starts moto_server from the test venv (or `SLRGOV_TEST_MOTO`).
    pub async fn start() -> Moto {
        let bin = std::env::var("SLRGOV_TEST_MOTO")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                let venv = workspace().join("tests/.venv/bin/moto_server");
                if venv.exists() {
                    venv
                } else {
                    PathBuf::from("moto_server")
                }
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): run tests/run.sh", bin.display()));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut log) = log.lock() {
                        log.push(line);
                    }
                }
            });
        }
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not start on {}", moto.url);
    }

    /// How many HTTP requests moto has logged so far.
    pub fn requests(&self) -> usize {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|line| line.contains("\"POST ") || line.contains("\"GET "))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The environment that points a server at this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// An IAM client of moto's home account (123456789012) or, with a role,
    /// of the account the role is in.
    pub async fn iam(&self, assume: Option<&str>) -> aws_sdk_iam::Client {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        match assume {
            None => aws_sdk_iam::Client::new(&base),
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name("test")
                    .configure(&base)
                    .build()
                    .await;
                let config = base
                    .to_builder()
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .build();
                aws_sdk_iam::Client::new(&config)
            }
        }
    }

    /// The Connect service-linked roles of an account, by name.
    pub async fn connect_roles(&self, iam: &aws_sdk_iam::Client) -> Vec<(String, String)> {
        let output = iam
            .list_roles()
            .path_prefix("/aws-service-role/connect.amazonaws.com/")
            .send()
            .await
            .expect("list roles");
        output
            .roles()
            .iter()
            .map(|r| (r.role_name().to_owned(), r.arn().to_owned()))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A TCP endpoint that accepts every connection and never answers.
pub async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}
