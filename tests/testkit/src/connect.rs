//! The Connect shape layer: `tests/connect_shape/proxy.py`, an HTTP proxy in
//! front of moto that answers Amazon Connect the way real Connect does, and
//! the helpers that go with it.
//!
//! moto's Connect differs from real Connect in two ways that matter here:
//! every instance has the same unsuffixed `AWSServiceRoleForAmazonConnect`
//! as its `ServiceRole` (and moto creates no IAM role for it), and
//! `CreatedTime` comes as ISO text where real Connect (REST-JSON) sends
//! epoch seconds, so aws-sdk-connect cannot parse moto's ListInstances or
//! DescribeInstance. Through the proxy:
//!
//! - each instance's `ServiceRole` is its own role,
//!   `AWSServiceRoleForconnect_<connect_role_suffix(id)>` in the instance's
//!   account (the role [`crate::Moto::create_connect_instance`] creates);
//! - `CreatedTime` is epoch seconds;
//! - an instance whose alias starts with [`LEGACY_ALIAS_PREFIX`] stands for
//!   one created before October 2018: no `ServiceRole`, created on
//!   2017-06-01 ([`LEGACY_CREATED_EPOCH`]);
//! - a plan injects faults: `{"throttle": {"ListInstances": 2}}` (the first
//!   N calls of an operation answer 400 ThrottlingException),
//!   `{"access_denied": ["eu-west-2"]}` (403 AccessDeniedException),
//!   `{"not_enabled": ["af-south-1"]}` (403 UnrecognizedClientException, an
//!   opt-in region not enabled);
//! - every Connect call is counted ([`ConnectShape::calls`]).
//!
//! Everything else (IAM, STS, SSM, ...) passes through untouched, so a
//! server may be pointed at the proxy for Connect only
//! ([`ConnectShape::env`]) or for everything.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::moto::Moto;
use crate::server::workspace;

/// The alias prefix of instances that stand for ones created before
/// October 2018, which have no service-linked role.
pub const LEGACY_ALIAS_PREFIX: &str = "legacy-";

/// When the shape layer says a legacy instance was created:
/// 2017-06-01T00:00:00Z, in epoch seconds.
pub const LEGACY_CREATED_EPOCH: i64 = 1_496_275_200;

/// The suffix of an instance's Connect service-linked role in the tests:
/// the first 20 hex characters of
/// `sha256("slrgov-test/connect-role/" + instance_id)`.
///
/// This is the test stand-in for the random suffix real Connect gives the
/// role it creates with an instance (`AWSServiceRoleForAmazonConnect_<suffix>`).
/// moto's IAM spells a Connect role created with this custom suffix
/// `AWSServiceRoleForconnect_<suffix>`; the shape layer reports that name as
/// the instance's `ServiceRole`.
pub fn connect_role_suffix(instance_id: &str) -> String {
    let digest = Sha256::digest(format!("slrgov-test/connect-role/{instance_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..20].to_owned()
}

/// An instance [`Moto::create_connect_instance`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInstance {
    /// The instance id (a UUID).
    pub id: String,
    /// `arn:aws:connect:<region>:<account>:instance/<id>`.
    pub arn: String,
    /// Its service-linked role's name in moto's IAM
    /// (`AWSServiceRoleForconnect_<suffix>`); `None` for a legacy instance.
    pub role_name: Option<String>,
    /// That role's ARN, which the shape layer reports as the instance's
    /// `ServiceRole`; `None` for a legacy instance.
    pub role_arn: Option<String>,
}

/// The shape-layer proxy in front of a [`Moto`], on a free port; killed on
/// drop.
pub struct ConnectShape {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ConnectShape {
    /// Starts the proxy in front of `moto`, with the faults of `plan` (see
    /// the module documentation), and waits until it listens.
    pub async fn start(moto: &Moto, plan: Option<serde_json::Value>) -> ConnectShape {
        Self::start_at(&moto.url, plan).await
    }

    /// Starts the proxy in front of the moto at `moto_url`.
    pub async fn start_at(moto_url: &str, plan: Option<serde_json::Value>) -> ConnectShape {
        let python = python();
        let script = workspace().join("tests/connect_shape/proxy.py");
        let plan = plan.unwrap_or_else(|| serde_json::json!({})).to_string();
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--moto", moto_url, "--port", "0", "--plan", &plan])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}): run tests/run.sh", python.display())
            });
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let stderr = child.stderr.take().expect("stderr");
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
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await;
        // Keep draining stdout, so the proxy never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let address = match line {
            Ok(Ok(Some(ref line))) => line.strip_prefix("listening on ").map(str::to_owned),
            _ => None,
        };
        let Some(address) = address else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("the Connect shape proxy did not start ({line:?}):\n{log}");
        };
        ConnectShape {
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    /// The environment that points a server's Connect client (only) at the
    /// proxy; add it after [`Moto::env`].
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("AWS_ENDPOINT_URL_CONNECT", self.url.clone())]
    }

    /// The Connect calls the proxy has received, faulted ones included:
    /// (operation, region, count), summed over access keys, sorted.
    /// Operations are `ListInstances`, `DescribeInstance`, `CreateInstance`,
    /// `DeleteInstance`, or `<METHOD> /<first path segment>` for others.
    pub async fn calls(&self) -> Vec<(String, String, u64)> {
        let rows = self.get_json("/__slrgov/calls").await;
        let mut calls: Vec<(String, String, u64)> = Vec::new();
        for row in rows.as_array().expect("calls: a JSON array") {
            let operation = row["operation"].as_str().expect("operation").to_owned();
            let region = row["region"].as_str().expect("region").to_owned();
            let count = row["count"].as_u64().expect("count");
            match calls
                .iter_mut()
                .find(|(o, r, _)| *o == operation && *r == region)
            {
                Some(slot) => slot.2 += count,
                None => calls.push((operation, region, count)),
            }
        }
        calls.sort();
        calls
    }

    /// How many calls of `operation` the proxy has received in `region`.
    pub async fn count(&self, operation: &str, region: &str) -> u64 {
        self.calls()
            .await
            .into_iter()
            .filter(|(o, r, _)| o == operation && r == region)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// How many Connect calls of any operation the proxy has received in
    /// `region`.
    pub async fn count_in(&self, region: &str) -> u64 {
        self.calls()
            .await
            .into_iter()
            .filter(|(_, r, _)| r == region)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// What the proxy wrote to stderr (errors; every request with
    /// `--verbose`).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let address = self.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to the shape proxy");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        let response = String::from_utf8(response).expect("UTF-8 response");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "GET {path} from the shape proxy: {head}"
        );
        serde_json::from_str(body).expect("JSON body")
    }
}

impl Drop for ConnectShape {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The Python that runs the proxy: `SLRGOV_TEST_PYTHON`, the test venv's,
/// or `python3`.
fn python() -> PathBuf {
    std::env::var("SLRGOV_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let venv = workspace().join("tests/.venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_suffix_is_the_proxy_s() {
        // hashlib.sha256(b"slrgov-test/connect-role/<id>").hexdigest()[:20]
        assert_eq!(
            connect_role_suffix("e3ad3e06-0c13-45be-8c8e-3afb1ee7a283"),
            "7b1d9fbef999c31b2727"
        );
    }
}
