//! The IAM calls the service makes, behind one trait ([`IamApi`]) so that
//! the fault-injecting layer of the tests ([`crate::faults`]) can wrap the
//! real client, and errors classified once into what the workflows act on
//! ([`IamError`]), real AWS and moto alike.

use async_trait::async_trait;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};

/// The service principal of Amazon Connect.
pub const CONNECT_SERVICE: &str = "connect.amazonaws.com";
/// The IAM path of Connect's service-linked roles.
pub const CONNECT_SLR_PATH: &str = "/aws-service-role/connect.amazonaws.com/";

/// A role as IAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    /// The role name.
    pub role_name: String,
    /// The role id (`AROA...`).
    pub role_id: String,
    /// The ARN.
    pub arn: String,
    /// The path.
    pub path: String,
    /// When IAM created it.
    pub create_date: Option<DateTime<Utc>>,
    /// The description.
    pub description: Option<String>,
    /// The trust policy, URL-decoded JSON (absent from some list calls).
    pub trust_policy: Option<String>,
    /// When the role was last used (GetRole only; IAM tracks 400 days).
    pub last_used: Option<DateTime<Utc>>,
    /// Where it was last used.
    pub last_used_region: Option<String>,
}

/// The resources, in one region, that still use a role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleUsage {
    /// The region.
    pub region: String,
    /// The resource ARNs.
    pub resources: Vec<String>,
}

/// The state of a service-linked role deletion task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionStatus {
    /// Queued.
    NotStarted,
    /// Running.
    InProgress,
    /// The role is gone.
    Succeeded,
    /// IAM refused: the role is in use.
    Failed {
        /// IAM's reason.
        reason: String,
        /// What uses the role, by region.
        usage: Vec<RoleUsage>,
    },
}

/// A policy that applies to a role, with its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    /// `inline:<name>` or the managed policy's ARN.
    pub source: String,
    /// The policy document, URL-decoded JSON.
    pub document: String,
}

/// An IAM failure, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    /// The role name is taken: real IAM says InvalidInput "... has been
    /// taken in this account ...", moto says EntityAlreadyExists.
    #[error("the role name is taken: {0}")]
    NameTaken(String),
    /// The service does not accept a custom suffix.
    #[error("a custom suffix is not allowed: {0}")]
    SuffixNotAllowed(String),
    /// The role or task does not exist.
    #[error("no such entity: {0}")]
    NoSuchEntity(String),
    /// IAM throttled the call ("Rate exceeded").
    #[error("throttled: {0}")]
    Throttled(String),
    /// IAM failed or could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// IAM refuses to modify a service-linked role that way.
    #[error("unmodifiable entity: {0}")]
    Unmodifiable(String),
    /// The credentials may not make the call.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Another refusal of the input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Anything else.
    #[error("{code}: {message}")]
    Other {
        /// The AWS error code.
        code: String,
        /// The message.
        message: String,
    },
}

impl IamError {
    /// True for failures the next attempt may not meet (after a backoff).
    pub fn is_transient(&self) -> bool {
        matches!(self, IamError::Throttled(_) | IamError::Unavailable(_))
    }
}

/// Classifies an SDK error by its AWS error code (so that unmodelled codes
/// such as `Throttling` are recognised too).
pub fn classify<E, R>(error: SdkError<E, R>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if !matches!(error, SdkError::ServiceError(_)) {
        // No usable credentials surface as a dispatch failure whose cause
        // is a credentials error: nothing a retry fixes.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if current
                .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
                .is_some()
            {
                return IamError::AccessDenied(format!("no usable AWS credentials: {current}"));
            }
            cause = current.source();
        }
        // Dispatch failures, timeouts, unparseable responses.
        return IamError::Unavailable(format!("{error}"));
    }
    let code = error.code().unwrap_or_default().to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    classify_code(&code, message)
}

/// Classifies an AWS error code and message.
pub fn classify_code(code: &str, message: String) -> IamError {
    match code {
        "EntityAlreadyExists" => IamError::NameTaken(message),
        "InvalidInput" if message.contains("has been taken") => IamError::NameTaken(message),
        "InvalidInput" if message.contains("uffix is not allowed") => {
            IamError::SuffixNotAllowed(message)
        }
        "InvalidInput" => IamError::InvalidInput(message),
        "NoSuchEntity" => IamError::NoSuchEntity(message),
        code if crate::codes::is_throttling(code) => IamError::Throttled(message),
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" | "InternalError" => {
            IamError::Unavailable(message)
        }
        "UnmodifiableEntity" => IamError::Unmodifiable(message),
        "AccessDenied" | "AccessDeniedException" => IamError::AccessDenied(message),
        other => IamError::Other {
            code: other.to_owned(),
            message,
        },
    }
}

/// Decodes an IAM policy document: IAM returns them URL-encoded.
pub fn decode_document(document: &str) -> String {
    if !document.contains('%') {
        return document.to_owned();
    }
    let bytes = document.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The IAM calls of the service.
#[async_trait]
pub trait IamApi: Send + Sync + std::fmt::Debug {
    /// CreateServiceLinkedRole for `service`, with an optional custom suffix.
    async fn create_service_linked_role(
        &self,
        service: &str,
        suffix: Option<&str>,
        description: Option<&str>,
    ) -> Result<RoleInfo, IamError>;

    /// GetRole.
    async fn get_role(&self, name: &str) -> Result<RoleInfo, IamError>;

    /// ListRoles under a path prefix, every page.
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<RoleInfo>, IamError>;

    /// UpdateRoleDescription (never UpdateRole: on moto it clears a
    /// description it is not given).
    async fn update_role_description(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RoleInfo, IamError>;

    /// DeleteServiceLinkedRole: returns the deletion task id.
    async fn delete_service_linked_role(&self, name: &str) -> Result<String, IamError>;

    /// GetServiceLinkedRoleDeletionStatus.
    async fn deletion_status(&self, task_id: &str) -> Result<DeletionStatus, IamError>;

    /// Every policy that applies to the role: inline policies, and the
    /// default version of each attached managed policy.
    async fn role_policies(&self, name: &str) -> Result<Vec<RolePolicy>, IamError>;
}

fn time(value: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

fn role_info(role: &aws_sdk_iam::types::Role) -> RoleInfo {
    RoleInfo {
        role_name: role.role_name().to_owned(),
        role_id: role.role_id().to_owned(),
        arn: role.arn().to_owned(),
        path: role.path().to_owned(),
        create_date: time(role.create_date()),
        description: role.description().map(str::to_owned),
        trust_policy: role.assume_role_policy_document().map(decode_document),
        last_used: role
            .role_last_used()
            .and_then(|u| u.last_used_date())
            .and_then(time),
        last_used_region: role
            .role_last_used()
            .and_then(|u| u.region())
            .map(str::to_owned),
    }
}

/// The real IAM client (or moto behind `AWS_ENDPOINT_URL_IAM`).
#[derive(Debug, Clone)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
    /// The account the client acts in, for the spans of its calls.
    account: String,
}

impl SdkIam {
    /// Wraps a configured client that acts in `account`.
    pub fn new(client: aws_sdk_iam::Client, account: impl Into<String>) -> Self {
        SdkIam {
            client,
            account: account.into(),
        }
    }
}

#[async_trait]
impl IamApi for SdkIam {
    async fn create_service_linked_role(
        &self,
        service: &str,
        suffix: Option<&str>,
        description: Option<&str>,
    ) -> Result<RoleInfo, IamError> {
        let output = crate::audit::noted(
            "iam",
            "CreateServiceLinkedRole",
            &self.account,
            self.client
                .create_service_linked_role()
                .aws_service_name(service)
                .set_custom_suffix(suffix.map(str::to_owned))
                .set_description(description.map(str::to_owned))
                .send(),
        )
        .await
        .map_err(classify)?;
        output.role().map(role_info).ok_or_else(|| IamError::Other {
            code: "MissingRole".to_owned(),
            message: "CreateServiceLinkedRole returned no role".to_owned(),
        })
    }

    async fn get_role(&self, name: &str) -> Result<RoleInfo, IamError> {
        let output = crate::audit::noted(
            "iam",
            "GetRole",
            &self.account,
            self.client.get_role().role_name(name).send(),
        )
        .await
        .map_err(classify)?;
        output.role().map(role_info).ok_or_else(|| IamError::Other {
            code: "MissingRole".to_owned(),
            message: "GetRole returned no role".to_owned(),
        })
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<RoleInfo>, IamError> {
        let mut roles = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let output = crate::audit::noted(
                "iam",
                "ListRoles",
                &self.account,
                self.client
                    .list_roles()
                    .path_prefix(path_prefix)
                    .set_marker(marker.take())
                    .send(),
            )
            .await
            .map_err(classify)?;
            roles.extend(output.roles().iter().map(role_info));
            match output.marker() {
                Some(next) if output.is_truncated() => marker = Some(next.to_owned()),
                _ => return Ok(roles),
            }
        }
    }

    async fn update_role_description(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RoleInfo, IamError> {
        let output = crate::audit::noted(
            "iam",
            "UpdateRoleDescription",
            &self.account,
            self.client
                .update_role_description()
                .role_name(name)
                .description(description)
                .send(),
        )
        .await
        .map_err(classify)?;
        output.role().map(role_info).ok_or_else(|| IamError::Other {
            code: "MissingRole".to_owned(),
            message: "UpdateRoleDescription returned no role".to_owned(),
        })
    }

    async fn delete_service_linked_role(&self, name: &str) -> Result<String, IamError> {
        let output = crate::audit::noted(
            "iam",
            "DeleteServiceLinkedRole",
            &self.account,
            self.client
                .delete_service_linked_role()
                .role_name(name)
                .send(),
        )
        .await
        .map_err(classify)?;
        Ok(output.deletion_task_id().to_owned())
    }

    async fn deletion_status(&self, task_id: &str) -> Result<DeletionStatus, IamError> {
        use aws_sdk_iam::types::DeletionTaskStatusType as S;
        let output = crate::audit::noted(
            "iam",
            "GetServiceLinkedRoleDeletionStatus",
            &self.account,
            self.client
                .get_service_linked_role_deletion_status()
                .deletion_task_id(task_id)
                .send(),
        )
        .await
        .map_err(classify)?;
        Ok(match output.status() {
            S::NotStarted => DeletionStatus::NotStarted,
            S::InProgress => DeletionStatus::InProgress,
            S::Succeeded => DeletionStatus::Succeeded,
            S::Failed => {
                let failure = output.reason();
                DeletionStatus::Failed {
                    reason: failure
                        .and_then(|f| f.reason())
                        .unwrap_or("the role is in use")
                        .to_owned(),
                    usage: failure
                        .map(|f| {
                            f.role_usage_list()
                                .iter()
                                .map(|u| RoleUsage {
                                    region: u.region().unwrap_or_default().to_owned(),
                                    resources: u.resources().to_vec(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            }
            other => {
                return Err(IamError::Other {
                    code: "UnknownDeletionStatus".to_owned(),
                    message: format!("{other:?}"),
                });
            }
        })
    }

    async fn role_policies(&self, name: &str) -> Result<Vec<RolePolicy>, IamError> {
        let mut policies = Vec::new();
        let inline = crate::audit::noted(
            "iam",
            "ListRolePolicies",
            &self.account,
            self.client.list_role_policies().role_name(name).send(),
        )
        .await
        .map_err(classify)?;
        for policy_name in inline.policy_names() {
            let document = crate::audit::noted(
                "iam",
                "GetRolePolicy",
                &self.account,
                self.client
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy_name)
                    .send(),
            )
            .await
            .map_err(classify)?;
            policies.push(RolePolicy {
                source: format!("inline:{policy_name}"),
                document: decode_document(document.policy_document()),
            });
        }
        let attached = crate::audit::noted(
            "iam",
            "ListAttachedRolePolicies",
            &self.account,
            self.client
                .list_attached_role_policies()
                .role_name(name)
                .send(),
        )
        .await
        .map_err(classify)?;
        for policy in attached.attached_policies() {
            let Some(arn) = policy.policy_arn() else {
                continue;
            };
            let described = match crate::audit::noted(
                "iam",
                "GetPolicy",
                &self.account,
                self.client.get_policy().policy_arn(arn).send(),
            )
            .await
            {
                Ok(described) => described,
                // An attached policy that IAM cannot show (moto lacks some
                // AWS-managed ones) grants nothing the service can see.
                Err(error) => match classify(error) {
                    IamError::NoSuchEntity(message) => {
                        tracing::warn!(policy = arn, %message, "attached policy not found");
                        continue;
                    }
                    other => return Err(other),
                },
            };
            let Some(version) = described.policy().and_then(|p| p.default_version_id()) else {
                continue;
            };
            let version = crate::audit::noted(
                "iam",
                "GetPolicyVersion",
                &self.account,
                self.client
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(version)
                    .send(),
            )
            .await
            .map_err(classify)?;
            if let Some(document) = version.policy_version().and_then(|v| v.document()) {
                policies.push(RolePolicy {
                    source: arn.to_owned(),
                    document: decode_document(document),
                });
            }
        }
        Ok(policies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_iam_and_moto_name_conflicts_are_one_error() {
        let real = classify_code(
            "InvalidInput",
            "Service role name AWSServiceRoleForAmazonConnect_X has been taken in this account, please try a different suffix.".into(),
        );
        let moto = classify_code(
            "EntityAlreadyExists",
            "Role with name X already exists.".into(),
        );
        assert!(matches!(real, IamError::NameTaken(_)));
        assert!(matches!(moto, IamError::NameTaken(_)));
        assert!(matches!(
            classify_code("InvalidInput", "Custom suffix is not allowed for x".into()),
            IamError::SuffixNotAllowed(_)
        ));
        assert!(classify_code("Throttling", "Rate exceeded".into()).is_transient());
        assert!(classify_code("ServiceFailure", String::new()).is_transient());
        assert!(!classify_code("NoSuchEntity", String::new()).is_transient());
    }

    #[test]
    fn documents_are_url_decoded() {
        assert_eq!(
            decode_document("%7B%22Version%22%3A%222012-10-17%22%7D"),
            r#"{"Version":"2012-10-17"}"#
        );
        assert_eq!(decode_document(r#"{"a":1}"#), r#"{"a":1}"#);
        // A stray percent sign is kept, never a panic.
        assert_eq!(decode_document("100%"), "100%");
        assert_eq!(decode_document("%4"), "%4");
    }
}
