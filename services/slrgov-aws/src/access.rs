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
use tokio::sync::Mutex;

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

/// Wraps each IAM client handed out (the tests' fault injection).
pub type IamWrapper = Arc<dyn Fn(Arc<dyn IamApi>, &AccountTarget) -> Arc<dyn IamApi> + Send + Sync>;

/// Hands out verified IAM clients per account, cached.
pub struct AwsAccess {
    base: SdkConfig,
    clients: Mutex<HashMap<AccountTarget, Arc<dyn IamApi>>>,
    wrap: Option<IamWrapper>,
    limiter: Option<Arc<crate::limit::IamLimiter>>,
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
    /// `AWS_ENDPOINT_URL_IAM` / `AWS_ENDPOINT_URL_STS` endpoint overrides).
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
            clients: Mutex::new(HashMap::new()),
            wrap: None,
            limiter: None,
        }
    }

    /// Limits the IAM calls of each account to `rate` (one bucket per
    /// account, shared by every caller in this process).
    pub fn with_iam_rate(mut self, rate: crate::limit::IamRate) -> Self {
        self.limiter = Some(Arc::new(crate::limit::IamLimiter::new(rate)));
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

    /// A verified IAM client for `target`: the same one until the target
    /// changes (a new role or external id makes a new one).
    pub async fn iam(&self, target: &AccountTarget) -> Result<Arc<dyn IamApi>, AccessError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(target) {
            return Ok(client.clone());
        }
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
        let mut client: Arc<dyn IamApi> = Arc::new(SdkIam::new(
            aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .interceptor(crate::telemetry::SdkRetries)
                    .build(),
            ),
            target.account_id.as_str(),
        ));
        if let Some(wrap) = &self.wrap {
            client = wrap(client, target);
        }
        // Outside the fault layer (which stands for AWS itself): the limit
        // is what the service does before it calls AWS.
        if let Some(limiter) = &self.limiter {
            client = Arc::new(crate::limit::RateLimitedIam::new(
                client,
                target.account_id.clone(),
                limiter.clone(),
            ));
        }
        clients.insert(target.clone(), client.clone());
        Ok(client)
    }
}
