//! Amazon Resource Names, and the ARN of the role the service assumes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{AccountId, Partition, RegionCode, is_charset};
use crate::error::FieldError;

/// A parsed Amazon Resource Name:
/// `arn:partition:service:region:account-id:resource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Arn {
    text: String,
    partition: Partition,
    service: String,
    region: String,
    account: String,
    resource: String,
}

impl Arn {
    /// Parses an ARN. The partition must be known; the account, when
    /// present, must be 12 digits (or `aws` for AWS-managed policies).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value.len() > 2048 {
            return Err(FieldError::new("must be an ARN of at most 2048 characters"));
        }
        let mut parts = value.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(FieldError::new(
                "must be an ARN: arn:partition:service:region:account-id:resource",
            ));
        };
        let partition = Partition::parse(partition)
            .map_err(|_| FieldError::new("has an unknown partition (aws, aws-us-gov, aws-cn)"))?;
        if service.is_empty()
            || !service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(FieldError::new("has a malformed service"));
        }
        if !region.is_empty() && RegionCode::parse(region).is_err() {
            return Err(FieldError::new("has a malformed region"));
        }
        if !account.is_empty() && account != "aws" && AccountId::parse(account).is_err() {
            return Err(FieldError::new("has a malformed account id"));
        }
        if resource.is_empty()
            || resource
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(FieldError::new("has an empty or malformed resource"));
        }
        Ok(Arn {
            text: value.to_owned(),
            partition,
            service: service.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            resource: resource.to_owned(),
        })
    }

    /// Parses an ARN of `service` whose resource starts with one of
    /// `prefixes`, in `partition`.
    pub fn parse_of(
        value: &str,
        partition: Partition,
        service: &str,
        prefixes: &[&str],
        what: &str,
    ) -> Result<Self, FieldError> {
        let arn = Self::parse(value)?;
        if arn.service != service || !prefixes.iter().any(|p| arn.resource.starts_with(p)) {
            return Err(FieldError::new(format!("must be the ARN of {what}")));
        }
        if arn.partition != partition {
            return Err(FieldError::new(format!(
                "is in partition {} but the account is in {partition}",
                arn.partition
            )));
        }
        Ok(arn)
    }

    /// The ARN text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The partition.
    pub fn partition(&self) -> Partition {
        self.partition
    }
    /// The service, e.g. `iam`.
    pub fn service(&self) -> &str {
        &self.service
    }
    /// The region (empty for global services).
    pub fn region(&self) -> &str {
        &self.region
    }
    /// The account id (empty for S3 buckets; `aws` for AWS-managed policies).
    pub fn account(&self) -> &str {
        &self.account
    }
    /// The resource part, e.g. `role/path/name`.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Arn> for String {
    fn from(value: Arn) -> String {
        value.text
    }
}

impl TryFrom<String> for Arn {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, FieldError> {
        Self::parse(&value)
    }
}

/// The ARN of an IAM role the service may assume in an account.
pub fn parse_access_role_arn(
    value: &str,
    partition: Partition,
    account: &AccountId,
) -> Result<Arn, FieldError> {
    let arn = Arn::parse_of(value, partition, "iam", &["role/"], "an IAM role")?;
    if arn.account() != account.as_str() {
        return Err(FieldError::new(
            "must be a role in the account itself, so that the service can only act there",
        ));
    }
    let name = arn.resource().rsplit('/').next().unwrap_or_default();
    if !is_charset(name, 1..=64, b"+=,.@_-") {
        return Err(FieldError::new("has a malformed role name"));
    }
    if !arn.region().is_empty() {
        return Err(FieldError::new("must not name a region (IAM is global)"));
    }
    Ok(arn)
}
