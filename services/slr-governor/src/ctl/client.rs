//! The connection to the server: the channel (plaintext, TLS or mTLS), the
//! bearer token every request carries, the clients of each service, and
//! what the commands share (listing instances page by page, retrying a
//! call the server asks to be retried).

use std::time::Duration;

use slrgov_proto::google::longrunning::operations_client::OperationsClient;
use slrgov_proto::slrgov::v1 as pb;
use slrgov_proto::slrgov::v1::account_service_client::AccountServiceClient;
use slrgov_proto::slrgov::v1::finding_service_client::FindingServiceClient;
use slrgov_proto::slrgov::v1::instance_service_client::InstanceServiceClient;
use slrgov_proto::slrgov::v1::linked_role_service_client::LinkedRoleServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_types::StatusExt;

use super::{CtlError, Global};

/// How often a call the server asks to be retried (UNAVAILABLE,
/// RESOURCE_EXHAUSTED) is tried again.
const RETRIES: u32 = 3;

/// A connected client: one channel, and the `authorization` header.
#[derive(Clone)]
pub(crate) struct Client {
    channel: Channel,
    authorization: Option<MetadataValue<Ascii>>,
    /// `--timeout`, sent with every call as its deadline (`grpc-timeout`).
    timeout: Duration,
}

impl Client {
    /// Reads the token and TLS files `global` names and connects; any
    /// failure is a usage error.
    pub(crate) async fn connect(global: &Global) -> Result<Client, CtlError> {
        let authorization = match token(global)? {
            None => None,
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| {
                        CtlError::Usage("the token holds characters a header cannot".into())
                    })?,
            ),
        };
        let endpoint = endpoint(global)?;
        let channel = endpoint.connect().await.map_err(|error| {
            CtlError::Usage(format!(
                "cannot connect to {}: {}",
                global.server,
                chain(&error)
            ))
        })?;
        Ok(Client {
            channel,
            authorization,
            timeout: global.timeout,
        })
    }

    /// `message` as a request with the token and the deadline. The server
    /// sees the deadline: an ensure that cannot finish within it answers
    /// UNAVAILABLE with RetryInfo before it passes (and goes on in the
    /// background, for the retry to join), where a deadline only the
    /// client knew would end in a local timeout with nothing to retry.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    pub(crate) fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    pub(crate) fn instances(&self) -> InstanceServiceClient<Channel> {
        InstanceServiceClient::new(self.channel.clone())
    }

    pub(crate) fn linked_roles(&self) -> LinkedRoleServiceClient<Channel> {
        LinkedRoleServiceClient::new(self.channel.clone())
    }

    pub(crate) fn findings(&self) -> FindingServiceClient<Channel> {
        FindingServiceClient::new(self.channel.clone())
    }

    pub(crate) fn operations(&self) -> OperationsClient<Channel> {
        OperationsClient::new(self.channel.clone())
    }

    /// Every instance under `parent` that `filter` keeps, page by page. A
    /// single account is read first, so that an unknown one is NOT_FOUND
    /// rather than an empty list.
    pub(crate) async fn instances_of(
        &self,
        parent: &str,
        filter: &str,
    ) -> Result<Vec<pb::Instance>, CtlError> {
        if parent != "accounts/-" {
            self.accounts()
                .get_account(self.request(pb::GetAccountRequest {
                    name: parent.to_owned(),
                }))
                .await
                .map_err(|status| CtlError::refused(format!("get {parent}"), status))?;
        }
        let mut instances = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .instances()
                .list_instances(self.request(pb::ListInstancesRequest {
                    parent: parent.to_owned(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                    filter: filter.to_owned(),
                }))
                .await
                .map_err(|status| {
                    CtlError::refused(format!("list the instances of {parent}"), status)
                })?
                .into_inner();
            instances.extend(page.instances);
            if page.next_page_token.is_empty() {
                return Ok(instances);
            }
            page_token = page.next_page_token;
        }
    }
}

/// Runs `call` again while the server answers UNAVAILABLE or
/// RESOURCE_EXHAUSTED, after the delay its RetryInfo asks for (1 s
/// without one, at most 10 s), [`RETRIES`] times at most.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(status) if attempt < RETRIES && retryable(&status) => {
                attempt += 1;
                tokio::time::sleep(retry_delay(&status)).await;
            }
            result => return result,
        }
    }
}

fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    )
}

fn retry_delay(status: &tonic::Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(10))
}

/// The token: `--token-file`'s content, else `--token`.
fn token(global: &Global) -> Result<Option<String>, CtlError> {
    if let Some(path) = &global.token_file {
        let text = std::fs::read_to_string(path).map_err(|error| {
            CtlError::Usage(format!(
                "cannot read the token file {}: {error}",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CtlError::Usage(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(global
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned))
}

/// The endpoint `--server` names, with TLS for `https://`.
fn endpoint(global: &Global) -> Result<Endpoint, CtlError> {
    let server = global.server.trim();
    let https = server.starts_with("https://");
    if !https && !server.starts_with("http://") {
        return Err(CtlError::Usage(format!(
            "--server {server:?}: expected http://host:port or https://host:port"
        )));
    }
    let tls_given = global.ca.is_some()
        || global.cert.is_some()
        || global.key.is_some()
        || global.tls_server_name.is_some();
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|error| CtlError::Usage(format!("--server {server:?}: {error}")))?
        .user_agent(concat!("slr-governor-ctl/", env!("CARGO_PKG_VERSION")))
        .map_err(|error| CtlError::Usage(error.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(global.timeout);
    if !https {
        if tls_given {
            return Err(CtlError::Usage(
                "--ca, --cert, --key and --tls-server-name need an https:// --server".into(),
            ));
        }
        return Ok(endpoint);
    }
    let Some(ca) = &global.ca else {
        return Err(CtlError::Usage(
            "an https:// --server needs --ca: the CA certificate (PEM) that signed the server's"
                .into(),
        ));
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    match (&global.cert, &global.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(CtlError::Usage(
                "--cert and --key go together (mTLS)".into(),
            ));
        }
    }
    if let Some(name) = &global.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    endpoint
        .tls_config(tls)
        .map_err(|error| CtlError::Usage(format!("TLS: {}", chain(&error))))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path)
        .map_err(|error| CtlError::Usage(format!("cannot read {}: {error}", path.display())))
}

/// An error and its sources, `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(server: &str) -> Global {
        Global {
            server: server.into(),
            token: None,
            token_file: None,
            ca: None,
            cert: None,
            key: None,
            tls_server_name: None,
            output: super::super::OutputFormat::Text,
            progress: super::super::ProgressMode::Never,
            timeout: Duration::from_secs(5),
        }
    }

    fn usage(result: Result<Endpoint, CtlError>) -> String {
        match result {
            Err(CtlError::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn endpoints() {
        assert!(endpoint(&global("http://127.0.0.1:50051")).is_ok());
        assert!(usage(endpoint(&global("127.0.0.1:50051"))).contains("expected http://"));
        assert!(usage(endpoint(&global("https://127.0.0.1:50051"))).contains("needs --ca"));
        let mut tls_on_plain = global("http://127.0.0.1:50051");
        tls_on_plain.ca = Some("ca.pem".into());
        assert!(usage(endpoint(&tls_on_plain)).contains("need an https://"));
        let mut half = global("https://127.0.0.1:50051");
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").expect("write");
        half.ca = Some(ca);
        half.cert = Some("cert.pem".into());
        assert!(usage(endpoint(&half)).contains("go together"));
        let mut missing = global("https://127.0.0.1:50051");
        missing.ca = Some(dir.path().join("absent.pem"));
        assert!(usage(endpoint(&missing)).contains("cannot read"));
    }

    #[test]
    fn tokens() {
        let dir = tempfile::tempdir().expect("dir");
        let mut g = global("http://127.0.0.1:1");
        assert_eq!(token(&g).expect("none"), None);
        g.token = Some(" abc ".into());
        assert_eq!(token(&g).expect("token").as_deref(), Some("abc"));
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").expect("write");
        g.token_file = Some(file.clone());
        assert_eq!(token(&g).expect("file").as_deref(), Some("from-file"));
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(token(&g), Err(CtlError::Usage(m)) if m.contains("empty")));
        g.token_file = Some(dir.path().join("absent"));
        assert!(matches!(token(&g), Err(CtlError::Usage(m)) if m.contains("cannot read")));
    }

    #[test]
    fn retry_delays() {
        let plain = tonic::Status::unavailable("down");
        assert!(retryable(&plain));
        assert_eq!(retry_delay(&plain), Duration::from_secs(1));
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_millis(200)));
        let asked =
            tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "slow down", details);
        assert!(retryable(&asked));
        assert_eq!(retry_delay(&asked), Duration::from_millis(200));
        assert!(!retryable(&tonic::Status::not_found("gone")));
    }
}
