//! The Amazon Connect calls of the service, behind one trait
//! ([`ConnectApi`], one client per account and region), and their errors
//! classified once ([`ConnectError`]). Connect is the source of truth about
//! each instance's service-linked role: ListInstances and DescribeInstance
//! name it (`ServiceRole`).

use async_trait::async_trait;
use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};

pub use slrgov_domain::model::ConnectStatus;

/// A Connect instance as Connect describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInstance {
    /// The instance id (a UUID).
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Its alias.
    pub alias: Option<String>,
    /// Its status (`None`: a status this client does not know).
    pub status: Option<ConnectStatus>,
    /// When Connect created it.
    pub created: Option<DateTime<Utc>>,
    /// `CONNECT_MANAGED`, `SAML` or `EXISTING_DIRECTORY`.
    pub identity_management_type: Option<String>,
    /// The ARN of the instance's service-linked role, as Connect names it
    /// (none for instances from before October 2018).
    pub service_role: Option<String>,
}

/// A Connect failure, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The instance does not exist (in this account and region).
    #[error("not found: {0}")]
    NotFound(String),
    /// The credentials may not make the call.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The account has not enabled the region (an opt-in region), or the
    /// region does not know the account's credentials.
    #[error("the region is not enabled for the account: {0}")]
    RegionNotEnabled(String),
    /// Connect throttled the call.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Connect failed or could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{code}: {message}")]
    Other {
        /// The AWS error code.
        code: String,
        /// The message.
        message: String,
    },
}

impl ConnectError {
    /// True for failures the next attempt may not meet (after a backoff).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnectError::Throttled(_) | ConnectError::Unavailable(_)
        )
    }
}

/// Classifies an SDK error by its AWS error code.
pub fn classify<E, R>(error: SdkError<E, R>) -> ConnectError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if !matches!(error, SdkError::ServiceError(_)) {
        return ConnectError::Unavailable(format!("{error}"));
    }
    let code = error.code().unwrap_or_default().to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    classify_code(&code, message)
}

/// Classifies a Connect error code and message.
pub fn classify_code(code: &str, message: String) -> ConnectError {
    match code {
        "ResourceNotFoundException" => ConnectError::NotFound(message),
        "AccessDeniedException" | "AccessDenied" => ConnectError::AccessDenied(message),
        "UnrecognizedClientException" | "InvalidClientTokenId" | "OptInRequired" => {
            ConnectError::RegionNotEnabled(message)
        }
        code if crate::codes::is_throttling(code) => ConnectError::Throttled(message),
        "InternalServiceException" | "ServiceUnavailableException" | "InternalFailure" => {
            ConnectError::Unavailable(message)
        }
        other => ConnectError::Other {
            code: other.to_owned(),
            message,
        },
    }
}

/// The Connect calls of the service, in one account and region.
#[async_trait]
pub trait ConnectApi: Send + Sync + std::fmt::Debug {
    /// ListInstances, every page.
    async fn list_instances(&self) -> Result<Vec<ConnectInstance>, ConnectError>;

    /// DescribeInstance.
    async fn describe_instance(&self, instance_id: &str) -> Result<ConnectInstance, ConnectError>;
}

fn time(value: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

/// The real Connect client of one account and region (or moto behind
/// `AWS_ENDPOINT_URL_CONNECT`).
#[derive(Debug, Clone)]
pub struct SdkConnect {
    client: aws_sdk_connect::Client,
    /// The account the client acts in, for the spans of its calls.
    account: String,
}

impl SdkConnect {
    /// Wraps a configured client that acts in `account`.
    pub fn new(client: aws_sdk_connect::Client, account: impl Into<String>) -> Self {
        SdkConnect {
            client,
            account: account.into(),
        }
    }
}

#[async_trait]
impl ConnectApi for SdkConnect {
    async fn list_instances(&self) -> Result<Vec<ConnectInstance>, ConnectError> {
        let mut instances = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let output = crate::audit::noted(
                "connect",
                "ListInstances",
                &self.account,
                self.client
                    .list_instances()
                    .max_results(10)
                    .set_next_token(token.take())
                    .send(),
            )
            .await
            .map_err(classify)?;
            for summary in output.instance_summary_list() {
                instances.push(ConnectInstance {
                    id: summary.id().unwrap_or_default().to_owned(),
                    arn: summary.arn().unwrap_or_default().to_owned(),
                    alias: summary.instance_alias().map(str::to_owned),
                    status: summary
                        .instance_status()
                        .and_then(|s| ConnectStatus::parse(s.as_str())),
                    created: summary.created_time().and_then(time),
                    identity_management_type: summary
                        .identity_management_type()
                        .map(|t| t.as_str().to_owned()),
                    service_role: summary.service_role().map(str::to_owned),
                });
            }
            match output.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(instances),
            }
        }
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<ConnectInstance, ConnectError> {
        let output = crate::audit::noted(
            "connect",
            "DescribeInstance",
            &self.account,
            self.client
                .describe_instance()
                .instance_id(instance_id)
                .send(),
        )
        .await
        .map_err(classify)?;
        let instance = output.instance().ok_or_else(|| ConnectError::Other {
            code: "MissingInstance".to_owned(),
            message: "DescribeInstance returned no instance".to_owned(),
        })?;
        Ok(ConnectInstance {
            id: instance.id().unwrap_or(instance_id).to_owned(),
            arn: instance.arn().unwrap_or_default().to_owned(),
            alias: instance.instance_alias().map(str::to_owned),
            status: instance
                .instance_status()
                .and_then(|s| ConnectStatus::parse(s.as_str())),
            created: instance.created_time().and_then(time),
            identity_management_type: instance
                .identity_management_type()
                .map(|t| t.as_str().to_owned()),
            service_role: instance.service_role().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_codes_are_classified() {
        assert!(matches!(
            classify_code("ResourceNotFoundException", String::new()),
            ConnectError::NotFound(_)
        ));
        assert!(matches!(
            classify_code("AccessDeniedException", String::new()),
            ConnectError::AccessDenied(_)
        ));
        assert!(classify_code("ThrottlingException", String::new()).is_transient());
        assert!(classify_code("TooManyRequestsException", String::new()).is_transient());
        assert!(classify_code("InternalServiceException", String::new()).is_transient());
        assert!(matches!(
            classify_code("UnrecognizedClientException", String::new()),
            ConnectError::RegionNotEnabled(_)
        ));
        assert!(!classify_code("InvalidRequestException", String::new()).is_transient());
        for status in ConnectStatus::ALL {
            assert_eq!(ConnectStatus::parse(status.as_str()), Some(status));
        }
    }
}
