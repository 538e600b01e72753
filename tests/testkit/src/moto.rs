//! moto, the AWS emulator (IAM, STS, SSM, Connect), as a process on a free
//! port per test, with its request log kept.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_connect::error::DisplayErrorContext;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::connect::{ConnectShape, CreatedInstance, LEGACY_ALIAS_PREFIX, connect_role_suffix};
use crate::server::workspace;

/// A moto_server (IAM/STS/SSM/Connect emulator) on a free port, its
/// request log kept, with the Connect shape layer in front of it: a server
/// pointed at this moto ([`Moto::env`]) reads Connect through the shape
/// layer, as real Connect answers.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
    shape: Option<ConnectShape>,
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
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            shape: None,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                moto.shape = Some(ConnectShape::start_at(&moto.url, None).await);
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not start on {}", moto.url);
    }

    /// The Connect shape layer in front of this moto (no faults): its call
    /// counts are the Connect calls servers pointed at this moto made.
    pub fn shape(&self) -> &ConnectShape {
        self.shape.as_ref().expect("moto starts its shape layer")
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

    /// The environment that points a server at this moto, and its Connect
    /// client at the shape layer.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = aws_env(&self.url);
        env.extend(self.shape().env());
        env
    }

    /// An IAM client of moto's home account (123456789012) or, with a role,
    /// of the account the role is in.
    pub async fn iam(&self, assume: Option<&str>) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&sdk_config(&self.url, assume, "us-east-1").await)
    }

    /// A Connect client of moto itself in `region` (moto's home account or,
    /// with a role, the role's account). moto's ListInstances and
    /// DescribeInstance answers do not parse (ISO `CreatedTime`); read
    /// Connect through a [`crate::ConnectShape`] instead.
    pub async fn connect(&self, assume: Option<&str>, region: &str) -> aws_sdk_connect::Client {
        aws_sdk_connect::Client::new(&sdk_config(&self.url, assume, region).await)
    }

    /// Creates an Amazon Connect instance in moto, and, as real Connect does
    /// when it creates an instance, the instance's own service-linked role
    /// in IAM (custom suffix [`connect_role_suffix`]), in the same account.
    /// An alias starting with [`LEGACY_ALIAS_PREFIX`] makes an instance of
    /// before October 2018: no role is created (and the shape layer shows
    /// it without `ServiceRole`).
    pub async fn create_connect_instance(
        &self,
        assume: Option<&str>,
        region: &str,
        alias: &str,
    ) -> CreatedInstance {
        let output = self
            .connect(assume, region)
            .await
            .create_instance()
            .identity_management_type(aws_sdk_connect::types::DirectoryType::ConnectManaged)
            .instance_alias(alias)
            .inbound_calls_enabled(true)
            .outbound_calls_enabled(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateInstance {alias}: {}", DisplayErrorContext(&e)));
        let id = output.id().expect("CreateInstance: Id").to_owned();
        let arn = output.arn().expect("CreateInstance: Arn").to_owned();
        let (role_name, role_arn) = if alias.starts_with(LEGACY_ALIAS_PREFIX) {
            (None, None)
        } else {
            let output = self
                .iam(assume)
                .await
                .create_service_linked_role()
                .aws_service_name("connect.amazonaws.com")
                .custom_suffix(connect_role_suffix(&id))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "moto CreateServiceLinkedRole for {id}: {}",
                        DisplayErrorContext(&e)
                    )
                });
            let role = output.role().expect("CreateServiceLinkedRole: Role");
            (
                Some(role.role_name().to_owned()),
                Some(role.arn().to_owned()),
            )
        };
        CreatedInstance {
            id,
            arn,
            role_name,
            role_arn,
        }
    }

    /// Deletes an Amazon Connect instance in moto. Its service-linked role
    /// is left in IAM: real Connect usually deletes it, the test decides.
    pub async fn delete_connect_instance(&self, assume: Option<&str>, region: &str, id: &str) {
        self.connect(assume, region)
            .await
            .delete_instance()
            .instance_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto DeleteInstance {id}: {}", DisplayErrorContext(&e)));
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

/// The SDK configuration of a client of `endpoint` (moto, or something in
/// front of it) in `region`: moto's home account (123456789012, key
/// `testing`) or, with a role, credentials from moto's STS AssumeRole, which
/// moto maps to the role's account.
pub async fn sdk_config(
    endpoint: &str,
    assume: Option<&str>,
    region: &str,
) -> aws_config::SdkConfig {
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    match assume {
        None => base,
        Some(role) => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("test")
                .configure(&base)
                .build()
                .await;
            base.to_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build()
        }
    }
}

/// The description IAM has for the role `role_name` (`None` when it has
/// none).
pub async fn role_description(iam: &aws_sdk_iam::Client, role_name: &str) -> Option<String> {
    let output = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .expect("get role");
    output
        .role()
        .and_then(|r| r.description())
        .map(str::to_owned)
}

/// The environment that points a server at the AWS endpoint `url` (moto,
/// or a fake that counts or swallows connections) with test credentials.
pub fn aws_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", url.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
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
