//! The real `slr-governor` binary as a process (zero2prod's `spawn_app`):
//! started on `127.0.0.1:0` with a fresh database, found from its
//! `listening on` log line, with clients of every service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slrgov_proto::google::longrunning::operations_client::OperationsClient;
use slrgov_proto::google::longrunning::{Operation, WaitOperationRequest};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use slrgov_proto::slrgov::v1::audit_service_client::AuditServiceClient;
use slrgov_proto::slrgov::v1::finding_service_client::FindingServiceClient;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use slrgov_proto::slrgov::v1::linked_role_service_client::LinkedRoleServiceClient;
use slrgov_proto::slrgov::v1::region_service_client::RegionServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::db::TestDb;
use crate::grpc::instance_id;
use crate::moto::Moto;

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

/// A running server process.
pub struct TestServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The task copying stderr into `log`; it ends at the pipe's end of
    /// file, after the process's last line.
    reader: Option<tokio::task::JoinHandle<()>>,
    /// The client TLS configuration of a server that serves TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Extra environment for a server.
pub type Env<'a> = &'a [(&'a str, &'a str)];

/// Owned environment pairs (such as [`Moto::env`]) as the `(&str, &str)`
/// pairs [`TestServer`] takes.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

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

    /// Starts the server pointed at `moto` (its [`Moto::env`]), with `extra`
    /// environment after it, and waits until SERVING.
    pub async fn start_with_moto(db: &TestDb, moto: &Moto, extra: Env<'_>) -> TestServer {
        let moto_env = moto.env();
        let mut env = env_refs(&moto_env);
        env.extend_from_slice(extra);
        Self::start_with(db, &env).await
    }

    /// Runs the binary on `db` with `env` until it exits by itself (it
    /// refuses to start) and returns what it printed; nothing else of the
    /// test environment is set.
    pub async fn run_to_exit(db: &TestDb, env: Env<'_>) -> std::process::Output {
        let mut command = Command::new(server_bin());
        command
            .env("SLRGOV_LISTEN", "127.0.0.1:0")
            .env("SLRGOV_DATABASE_URL", &db.url);
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().await.expect("run")
    }

    /// Starts the server and returns once it listens (maybe not serving).
    pub async fn spawn(db: &TestDb, env: Env<'_>) -> TestServer {
        let mut command = Command::new(server_bin());
        command
            .env("SLRGOV_LISTEN", "127.0.0.1:0")
            .env("SLRGOV_DATABASE_URL", &db.url)
            .env("SLRGOV_LOG", "info,slr_governor=debug")
            // JSON lines: the tests read the log's structured fields
            // (`events`), not its text.
            .env("SLRGOV_LOG_FORMAT", "json")
            .env_remove("SLRGOV_CONFIG")
            // The periodic jobs that call AWS on their own (background
            // syncs from Connect, the reconciler, the region refresh from SSM) are off
            // unless a test turns them on: a test counts the calls it
            // causes.
            .env("SLRGOV_SYNC_INTERVAL", "0")
            .env("SLRGOV_RECONCILE_INTERVAL", "0")
            .env("SLRGOV_REGIONS_REFRESH", "0")
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
        let reader = {
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
            })
        };
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
            reader: Some(reader),
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

    /// The server's log so far, as text (for a failure message).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The server's log events so far (one JSON object per line: `message`,
    /// `level`, `target`, the event's fields, `span`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// The log events whose message starts with `message`.
    pub fn events_with(&self, message: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .collect()
    }

    /// The first log event whose message starts with `message`; fails the
    /// test (with the log) when there is none.
    #[track_caller]
    pub fn event(&self, message: &str) -> serde_json::Value {
        self.events_with(message)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {message:?} event in the log:\n{}", self.log()))
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
            findings: FindingServiceClient::new(channel.clone()),
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
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the server exits in time")
            .expect("wait");
        self.drain_log().await;
        status
    }

    /// Waits until the log holds everything the exited process wrote: the
    /// copying task may still be behind the process's last lines when
    /// `wait` returns.
    async fn drain_log(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
    }

    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30s of SIGTERM")
            .expect("wait");
        self.drain_log().await;
        status
    }
}

/// Clients of every service, on one channel.
pub struct Clients {
    pub accounts: AccountServiceClient<Channel>,
    pub instances: InstanceServiceClient<Channel>,
    pub linked_roles: LinkedRoleServiceClient<Channel>,
    pub regions: RegionServiceClient<Channel>,
    pub audit: AuditServiceClient<Channel>,
    pub findings: FindingServiceClient<Channel>,
    pub operations: OperationsClient<Channel>,
}

impl Clients {
    /// Registers `account` with nothing set (no access role: the service's
    /// own credentials reach it).
    pub async fn add_account(&mut self, account: &str) {
        self.accounts
            .create_account(pb::CreateAccountRequest {
                account_id: account.to_owned(),
                account: Some(pb::Account::default()),
                request_id: String::new(),
            })
            .await
            .expect("account");
    }

    /// Creates an Amazon Connect instance in `moto` (in `account`, through
    /// the access role `assume` when given; with its own service-linked
    /// role, as real Connect does, unless `alias` marks a legacy instance,
    /// see [`crate::LEGACY_ALIAS_PREFIX`]) and registers it by hand in the
    /// registered `account`, as an operator would before any sync.
    pub async fn add_connect_instance(
        &mut self,
        moto: &crate::Moto,
        account: &str,
        assume: Option<&str>,
        region: &str,
        alias: &str,
    ) -> crate::CreatedInstance {
        let created = moto.create_connect_instance(assume, region, alias).await;
        assert!(
            created.arn.contains(&format!(":{account}:")),
            "the Connect instance is made in {account}: {created:?}"
        );
        self.instances
            .create_instance(pb::CreateInstanceRequest {
                parent: format!("accounts/{account}"),
                instance_id: created.id.clone(),
                instance: Some(pb::Instance {
                    region: region.to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("instance");
        created
    }

    /// Creates a legacy Amazon Connect instance (one of before October
    /// 2018: Connect names no role, so an ensure creates the deterministic
    /// one) of the registered `account` in moto's `region`, reached with
    /// `assume`, registers it and returns its id.
    pub async fn add_legacy_instance(
        &mut self,
        moto: &crate::Moto,
        account: &str,
        assume: Option<&str>,
        region: &str,
    ) -> String {
        let alias = format!(
            "{}{}",
            crate::LEGACY_ALIAS_PREFIX,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        self.add_connect_instance(moto, account, assume, region, &alias)
            .await
            .id
    }

    /// Registers a new instance of the registered `account` in `region` and
    /// returns its id.
    pub async fn add_instance(&mut self, account: &str, region: &str) -> String {
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
            .expect("instance");
        id
    }

    /// Registers the service's own `account` (if it is not there yet) and a
    /// new legacy Connect instance of it in moto's `region`
    /// ([`Clients::add_legacy_instance`]); returns the instance id.
    pub async fn register_legacy_instance(
        &mut self,
        moto: &crate::Moto,
        account: &str,
        region: &str,
    ) -> String {
        self.register_account(account).await;
        self.add_legacy_instance(moto, account, None, region).await
    }

    /// Registers a new instance of `account` in `region` (registering the
    /// account first if it is not there yet) and returns the instance id.
    pub async fn register_instance(&mut self, account: &str, region: &str) -> String {
        self.register_account(account).await;
        self.add_instance(account, region).await
    }

    /// Registers `account`, reached with the service's own credentials, if
    /// it is not there yet.
    async fn register_account(&mut self, account: &str) {
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
    }

    /// Ensures the linked role `name` (no description, no request id) and
    /// returns it.
    pub async fn ensure_role(&mut self, name: &str) -> pb::LinkedRole {
        self.linked_roles
            .ensure_linked_role(pb::EnsureLinkedRoleRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
            .expect("ensure")
            .into_inner()
    }

    /// The linked role `name` as the service has it recorded.
    pub async fn linked_role(&mut self, name: &str) -> pb::LinkedRole {
        self.linked_roles
            .get_linked_role(pb::GetLinkedRoleRequest {
                name: name.to_owned(),
            })
            .await
            .expect("get")
            .into_inner()
    }

    /// Starts the retirement of the linked role `name` (no etag, no request
    /// id) and returns its operation.
    pub async fn retire_role(&mut self, name: &str) -> Operation {
        self.linked_roles
            .retire_linked_role(pb::RetireLinkedRoleRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
            .expect("retire")
            .into_inner()
    }

    /// Waits (WaitOperation) up to `within` for the operation `name`, and
    /// returns it as it is then, done or not.
    pub async fn wait_operation(&mut self, name: &str, within: Duration) -> Operation {
        self.operations
            .wait_operation(WaitOperationRequest {
                name: name.to_owned(),
                timeout: Some(within.try_into().expect("a timeout WaitOperation takes")),
            })
            .await
            .expect("wait")
            .into_inner()
    }

    /// Reads the linked role `name` until it is ACTIVE, and returns it; fails
    /// the test with `failure` and the role as it is once `within` is over.
    pub async fn wait_active(
        &mut self,
        name: &str,
        within: Duration,
        failure: &str,
    ) -> pb::LinkedRole {
        let deadline = Instant::now() + within;
        loop {
            let role = self.linked_role(name).await;
            if role.state == pb::linked_role::State::Active as i32 {
                return role;
            }
            assert!(Instant::now() < deadline, "{failure}: {role:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
