//! Acting in an account: credentials from the standard AWS chain; for an
//! account with an `access_role_arn`, STS AssumeRole with its external id
//! (cached by the SDK until shortly before expiry). Before a client is
//! handed out, STS GetCallerIdentity must confirm that the credentials
//! really belong to the account: the service never changes a role in the
//! wrong account.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;
use slrgov_domain::model::ExternalId;
use slrgov_domain::types::{AccountId, Partition};
use std::sync::Mutex;

use crate::connect::{ConnectApi, SdkConnect};
use crate::iam::{IamApi, SdkIam, classify};

/// How to reach one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountTarget {
    /// The account.
    pub account_id: AccountId,
    /// Its partition (decides the IAM and STS endpoints' region).
    pub partition: Partition,
    /// The role to assume, if any.
    pub access_role_arn: Option<String>,
    /// The external id to assume it with (a secret).
    pub external_id: Option<String>,
}

impl AccountTarget {
    /// A target; the external id is exposed only here, towards STS.
    pub fn new(
        account_id: AccountId,
        partition: Partition,
        access_role_arn: Option<String>,
        external_id: Option<&ExternalId>,
    ) -> Self {
        AccountTarget {
            account_id,
            partition,
            access_role_arn,
            external_id: external_id.map(|e| e.expose().to_owned()),
        }
    }
}

/// Why the service cannot act in an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The credentials belong to another account (or none could be had).
    #[error("the credentials for account {expected} belong to {actual}")]
    WrongAccount {
        /// The account the service meant to act in.
        expected: String,
        /// The account STS says the credentials belong to.
        actual: String,
    },
    /// STS refused or failed (AssumeRole or GetCallerIdentity).
    #[error("cannot obtain credentials for account {account}: {reason}")]
    Credentials {
        /// The account.
        account: String,
        /// Why, without secrets.
        reason: String,
    },
    /// STS was throttled or unreachable.
    #[error("sts is unavailable: {0}")]
    Unavailable(String),
}

/// The region IAM and STS are signed for in a partition (IAM is global).
pub fn partition_region(partition: Partition) -> &'static str {
    match partition {
        Partition::Aws => "us-east-1",
        Partition::AwsUsGov => "us-gov-west-1",
        Partition::AwsCn => "cn-north-1",
    }
}

/// Hands out verified clients per account: [`AwsAccess`] in the service;
/// in-memory IAM and Connect in the workflow tests.
#[async_trait::async_trait]
pub trait AwsProvider: Send + Sync {
    /// A verified IAM client for `target`.
    async fn iam(&self, target: &AccountTarget) -> Result<Arc<dyn IamApi>, AccessError>;

    /// A verified Connect client for `target` in `region`.
    async fn connect(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> Result<Arc<dyn ConnectApi>, AccessError>;
}

#[async_trait::async_trait]
impl AwsProvider for AwsAccess {
    async fn iam(&self, target: &AccountTarget) -> Result<Arc<dyn IamApi>, AccessError> {
        AwsAccess::iam(self, target).await
    }

    async fn connect(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> Result<Arc<dyn ConnectApi>, AccessError> {
        AwsAccess::connect(self, target, region).await
    }
}

/// Wraps each IAM client handed out (the tests' fault injection).
pub type IamWrapper = Arc<dyn Fn(Arc<dyn IamApi>, &AccountTarget) -> Arc<dyn IamApi> + Send + Sync>;

/// One account's verified configuration, made once (concurrent first calls
/// wait for the same verification; a failed one leaves the cell empty for
/// the next).
type AccountCell = Arc<tokio::sync::OnceCell<Arc<Verified>>>;

/// An account's configuration whose credentials STS confirmed belong to
/// it, with the clients made from it.
struct Verified {
    config: SdkConfig,
    iam: Arc<dyn IamApi>,
    /// Connect clients by region, made on first use.
    connect: Mutex<HashMap<String, Arc<dyn ConnectApi>>>,
}

/// Hands out verified IAM and Connect clients per account, cached.
pub struct AwsAccess {
    base: SdkConfig,
    /// The map is locked only to find an account's cell: a slow STS call
    /// for one account never holds up another account's requests.
    accounts: Mutex<HashMap<AccountTarget, AccountCell>>,
    wrap: Option<IamWrapper>,
    limiter: Option<Arc<crate::limit::AccountLimiter>>,
    connect_limiter: Option<Arc<crate::limit::AccountLimiter>>,
    /// The buckets every replica shares, for both limiters.
    shared: Option<Arc<dyn crate::limit::SharedBuckets>>,
}

impl std::fmt::Debug for AwsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAccess")
            .field("wrapped", &self.wrap.is_some())
            .finish_non_exhaustive()
    }
}

impl AwsAccess {
    /// Loads the standard AWS configuration (credentials chain, and the
    /// `AWS_ENDPOINT_URL_IAM` / `_STS` / `_CONNECT` endpoint overrides).
    pub async fn from_env() -> Self {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self::new(base)
    }

    /// Uses `base` for every account.
    pub fn new(base: SdkConfig) -> Self {
        AwsAccess {
            base,
            accounts: Mutex::new(HashMap::new()),
            wrap: None,
            limiter: None,
            connect_limiter: None,
            shared: None,
        }
    }

    /// The service's own configuration (its credentials chain), for calls
    /// that act in no tenant account (the SSM public parameters).
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// Limits the IAM calls of each account to `rate` (one bucket per
    /// account, shared by every caller in this process).
    pub fn with_iam_rate(mut self, rate: crate::limit::CallRate) -> Self {
        self.limiter = Some(Arc::new(
            crate::limit::AccountLimiter::new(rate).with_shared(self.shared.clone()),
        ));
        self
    }

    /// Limits the Connect calls of each account to `rate` (a bucket of its
    /// own, apart from IAM's).
    pub fn with_connect_rate(mut self, rate: crate::limit::CallRate) -> Self {
        self.connect_limiter = Some(Arc::new(
            crate::limit::AccountLimiter::for_service("connect", rate)
                .with_shared(self.shared.clone()),
        ));
        self
    }

    /// Takes the IAM and Connect limits' slots from `shared`, the buckets
    /// every replica shares (each limiter falls back to its own bucket when
    /// they fail), so that N replicas together keep each account's rate.
    /// Applies to the limits set before and after.
    pub fn with_shared_buckets(mut self, shared: Arc<dyn crate::limit::SharedBuckets>) -> Self {
        self.shared = Some(shared);
        let rebuild = |limiter: &Arc<crate::limit::AccountLimiter>| {
            Arc::new(
                crate::limit::AccountLimiter::for_service(limiter.service(), limiter.rate())
                    .with_shared(self.shared.clone()),
            )
        };
        self.limiter = self.limiter.as_ref().map(rebuild);
        self.connect_limiter = self.connect_limiter.as_ref().map(rebuild);
        self
    }

    /// Wraps every IAM client handed out (the tests' fault injection).
    pub fn with_wrapper(
        mut self,
        wrap: impl Fn(Arc<dyn IamApi>, &AccountTarget) -> Arc<dyn IamApi> + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// The verified configuration of `target`: the same until the target
    /// changes (a new role or external id makes a new one).
    async fn verified(&self, target: &AccountTarget) -> Result<Arc<Verified>, AccessError> {
        let cell = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(target.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.verify(target))
            .await
            .map(Arc::clone)
    }

    /// A verified IAM client for `target`.
    pub async fn iam(&self, target: &AccountTarget) -> Result<Arc<dyn IamApi>, AccessError> {
        Ok(self.verified(target).await?.iam.clone())
    }

    /// A verified Connect client for `target` in `region` (Connect is
    /// regional: one client per region, with the account's credentials).
    pub async fn connect(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> Result<Arc<dyn ConnectApi>, AccessError> {
        let verified = self.verified(target).await?;
        let mut clients = verified
            .connect
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(region) {
            return Ok(client.clone());
        }
        let config = verified
            .config
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        let mut client: Arc<dyn ConnectApi> = Arc::new(SdkConnect::new(
            aws_sdk_connect::Client::from_conf(
                aws_sdk_connect::config::Builder::from(&config)
                    .interceptor(crate::telemetry::SdkRetries)
                    // Standard, not adaptive: the per-account limiter
                    // already paces Connect calls, and adaptive mode's
                    // client-side limiter waits up to 20 s after one
                    // throttle, which would stall a sync's look for longer
                    // than the workflow's own backoff would.
                    .retry_config(
                        aws_sdk_connect::config::retry::RetryConfig::standard()
                            .with_max_attempts(3),
                    )
                    .build(),
            ),
            target.account_id.as_str(),
        ));
        if let Some(limiter) = &self.connect_limiter {
            client = Arc::new(crate::limit::RateLimitedConnect::new(
                client,
                target.account_id.clone(),
                limiter.clone(),
            ));
        }
        clients.insert(region.to_owned(), client.clone());
        Ok(client)
    }

    /// Makes and verifies the configuration of `target`.
    async fn verify(&self, target: &AccountTarget) -> Result<Arc<Verified>, AccessError> {
        let region = aws_config::Region::new(partition_region(target.partition));
        let config = match &target.access_role_arn {
            None => self.base.to_builder().region(region).build(),
            Some(role_arn) => {
                let mut provider = AssumeRoleProvider::builder(role_arn)
                    .session_name("slr-governor")
                    .region(region.clone())
                    .configure(&self.base);
                if let Some(external_id) = &target.external_id {
                    provider = provider.external_id(external_id);
                }
                let provider = provider.build().await;
                self.base
                    .to_builder()
                    .region(region)
                    .credentials_provider(SharedCredentialsProvider::new(provider))
                    .build()
            }
        };
        // Check whom the credentials belong to before any change.
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&config)
                .interceptor(crate::telemetry::SdkRetries)
                .build(),
        );
        let identity = crate::audit::noted(
            "sts",
            "GetCallerIdentity",
            target.account_id.as_str(),
            sts.get_caller_identity().send(),
        )
        .await
        .map_err(|error| {
            let classified = classify(error);
            if classified.is_transient() {
                AccessError::Unavailable(classified.to_string())
            } else {
                AccessError::Credentials {
                    account: target.account_id.to_string(),
                    reason: classified.to_string(),
                }
            }
        })?;
        let actual = identity.account().unwrap_or_default();
        if actual != target.account_id.as_str() {
            tracing::error!(
                expected = %target.account_id,
                actual,
                "credentials belong to another account: refusing to act"
            );
            return Err(AccessError::WrongAccount {
                expected: target.account_id.to_string(),
                actual: actual.to_owned(),
            });
        }
        let mut iam: Arc<dyn IamApi> = Arc::new(SdkIam::new(
            aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .interceptor(crate::telemetry::SdkRetries)
                    .build(),
            ),
            target.account_id.as_str(),
        ));
        if let Some(wrap) = &self.wrap {
            iam = wrap(iam, target);
        }
        // Outside the fault layer (which stands for AWS itself): the limit
        // is what the service does before it calls AWS.
        if let Some(limiter) = &self.limiter {
            iam = Arc::new(crate::limit::RateLimitedIam::new(
                iam,
                target.account_id.clone(),
                limiter.clone(),
            ));
        }
        Ok(Arc::new(Verified {
            config,
            iam,
            connect: Mutex::new(HashMap::new()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use slrgov_domain::types::{AccountId, Partition};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{AccountTarget, AwsAccess};

    const FAST_ACCOUNT: &str = "222222222222";

    /// Reads one HTTP request (head and body) from `socket`.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = socket.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&data).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return text;
                }
            }
        }
        String::from_utf8_lossy(&data).to_string()
    }

    /// An STS stand-in: AssumeRole hands out the key `FASTKEY`, whose
    /// GetCallerIdentity answers at once (account 222222222222); a
    /// GetCallerIdentity signed with the base key `SLOWKEY` never answers.
    async fn sts_stub() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let request = read_request(&mut socket).await;
                    let body = if request.contains("Action=AssumeRole") {
                        format!(
                            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                             <AssumeRoleResult><Credentials><AccessKeyId>FASTKEY</AccessKeyId>\
                             <SecretAccessKey>secret</SecretAccessKey><SessionToken>token</SessionToken>\
                             <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                             <AssumedRoleUser><AssumedRoleId>AROA:slr</AssumedRoleId>\
                             <Arn>arn:aws:sts::{FAST_ACCOUNT}:assumed-role/access/slr-governor</Arn>\
                             </AssumedRoleUser></AssumeRoleResult>\
                             <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>\
                             </AssumeRoleResponse>"
                        )
                    } else if request.contains("Credential=FASTKEY") {
                        format!(
                            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                             <GetCallerIdentityResult>\
                             <Arn>arn:aws:sts::{FAST_ACCOUNT}:assumed-role/access/slr-governor</Arn>\
                             <UserId>AROA:slr</UserId><Account>{FAST_ACCOUNT}</Account>\
                             </GetCallerIdentityResult>\
                             <ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata>\
                             </GetCallerIdentityResponse>"
                        )
                    } else {
                        // The slow account: hold the connection, answer nothing.
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// One account whose STS verification hangs does not hold up another
    /// account's client.
    #[tokio::test]
    async fn a_slow_account_does_not_hold_up_the_others() {
        let addr = sts_stub().await;
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://{addr}"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "SLOWKEY", "secret", None, None, "test",
            ))
            .load()
            .await;
        let access = std::sync::Arc::new(AwsAccess::new(base));
        let account = |id: &str| AccountId::parse(id).expect("account id");
        let slow = AccountTarget::new(account("111111111111"), Partition::Aws, None, None);
        let fast = AccountTarget::new(
            account(FAST_ACCOUNT),
            Partition::Aws,
            Some(format!("arn:aws:iam::{FAST_ACCOUNT}:role/access")),
            None,
        );
        let stuck = {
            let access = access.clone();
            tokio::spawn(async move { access.iam(&slow).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let client = tokio::time::timeout(Duration::from_secs(10), access.iam(&fast))
            .await
            .expect("the other account is not held up by the slow one");
        assert!(client.is_ok(), "{:?}", client.err());
        assert!(
            !stuck.is_finished(),
            "the slow account is still waiting on STS"
        );
        stuck.abort();
    }
}
