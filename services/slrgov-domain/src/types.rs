//! Validated newtypes: a value of one of these types is well-formed, so the
//! layers below never re-check it. Each has a `parse` constructor that
//! returns a [`FieldError`] naming what is wrong (never the raw value of a
//! secret).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

fn is_ascii_alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                Self::parse(&value)
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(value: &str) -> Result<Self, FieldError> {
                Self::parse(value)
            }
        }
    };
}

string_newtype!(
    /// A 12-digit AWS account id.
    AccountId
);

impl AccountId {
    /// Parses a 12-digit account id.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(value.to_owned()))
        } else {
            Err(FieldError::new("must be a 12-digit AWS account id"))
        }
    }
}

string_newtype!(
    /// An Amazon Connect instance id: a UUID, kept lower-case and hyphenated.
    InstanceId
);

impl InstanceId {
    /// Parses a UUID in its hyphenated form (any case; stored lower-case).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        // Only the canonical 36-character form: Connect never shows another,
        // and accepting braces or URNs would give one instance two names.
        if value.len() != 36 {
            return Err(FieldError::new(
                "must be a UUID such as 4a3b2c1d-0000-4000-8000-123456789abc",
            ));
        }
        match uuid::Uuid::try_parse(value) {
            Ok(uuid) => Ok(InstanceId(uuid.hyphenated().to_string())),
            Err(_) => Err(FieldError::new(
                "must be a UUID such as 4a3b2c1d-0000-4000-8000-123456789abc",
            )),
        }
    }
}

string_newtype!(
    /// An AWS region code such as `us-east-1` or `us-gov-west-1`.
    RegionCode
);

impl RegionCode {
    /// Parses a region code: lower-case groups of letters joined by hyphens,
    /// ending in a number (`af-south-1`, `us-gov-west-1`, `cn-north-1`).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("must be an AWS region code such as us-east-1");
        if value.is_empty() || value.len() > 32 {
            return Err(bad());
        }
        let parts: Vec<&str> = value.split('-').collect();
        if parts.len() < 3 {
            return Err(bad());
        }
        let (last, words) = parts.split_last().ok_or_else(bad)?;
        let words_ok = words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
        let number_ok =
            !last.is_empty() && last.len() <= 2 && last.bytes().all(|b| b.is_ascii_digit());
        if words_ok && number_ok {
            Ok(RegionCode(value.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// The partition a region belongs to, from its name.
    pub fn partition(&self) -> Partition {
        if self.0.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else if self.0.starts_with("cn-") {
            Partition::AwsCn
        } else {
            Partition::Aws
        }
    }
}

/// An AWS partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Partition {
    /// `aws`, the commercial regions.
    #[default]
    #[serde(rename = "aws")]
    Aws,
    /// `aws-us-gov`, AWS GovCloud (US).
    #[serde(rename = "aws-us-gov")]
    AwsUsGov,
    /// `aws-cn`, the China regions.
    #[serde(rename = "aws-cn")]
    AwsCn,
}

impl Partition {
    /// Parses `aws`, `aws-us-gov` or `aws-cn`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        match value {
            "aws" => Ok(Partition::Aws),
            "aws-us-gov" => Ok(Partition::AwsUsGov),
            "aws-cn" => Ok(Partition::AwsCn),
            _ => Err(FieldError::new("must be one of aws, aws-us-gov, aws-cn")),
        }
    }

    /// The partition's name as used in ARNs.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsCn => "aws-cn",
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Partition {
    type Err = FieldError;
    fn from_str(value: &str) -> Result<Self, FieldError> {
        Self::parse(value)
    }
}

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
    if name.is_empty() || name.len() > 64 || !name.bytes().all(is_iam_name_byte) {
        return Err(FieldError::new("has a malformed role name"));
    }
    if !arn.region().is_empty() {
        return Err(FieldError::new("must not name a region (IAM is global)"));
    }
    Ok(arn)
}

fn is_iam_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)
}

string_newtype!(
    /// An S3 bucket name (the general-purpose bucket naming rules).
    BucketName
);

impl BucketName {
    /// Parses an S3 bucket name: 3 to 63 characters of lower-case letters,
    /// digits, dots and hyphens, starting and ending with a letter or digit,
    /// no `..`, not an IP address, no reserved prefix or suffix.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| Err(FieldError::new(format!("must be an S3 bucket name: {why}")));
        if !(3..=63).contains(&value.len()) {
            return bad("3 to 63 characters");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return bad("lower-case letters, digits, dots and hyphens only");
        }
        let bytes = value.as_bytes();
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return bad("must start and end with a letter or digit");
        }
        if value.contains("..") || value.contains(".-") || value.contains("-.") {
            return bad("no adjacent dots or dot-hyphen pairs");
        }
        if value.split('.').count() == 4 && value.split('.').all(|p| p.parse::<u8>().is_ok()) {
            return bad("must not be formatted as an IP address");
        }
        if value.starts_with("xn--") || value.starts_with("sthree-") || value.ends_with("-s3alias")
        {
            return bad("uses a reserved prefix or suffix");
        }
        Ok(BucketName(value.to_owned()))
    }
}

string_newtype!(
    /// A Connect instance alias.
    InstanceAlias
);

impl InstanceAlias {
    /// Parses an alias: 1 to 62 letters, digits and hyphens, starting and
    /// ending with a letter or digit.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let bytes = value.as_bytes();
        let ok = (1..=62).contains(&value.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric();
        if ok {
            Ok(InstanceAlias(value.to_owned()))
        } else {
            Err(FieldError::new(
                "must be 1 to 62 letters, digits and hyphens, starting and ending with a letter or digit",
            ))
        }
    }
}

/// Checks free text: at most `max` characters (Unicode scalar values), no
/// control characters.
pub fn check_text(value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::new("must not contain control characters"));
    }
    Ok(())
}

/// The longest role description IAM accepts.
pub const DESCRIPTION_MAX: usize = 1000;
/// The longest account display name.
pub const DISPLAY_NAME_MAX: usize = 256;

/// Checks an IAM role description: at most 1000 characters of the
/// characters IAM accepts (`[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]`).
pub fn check_role_description(value: &str) -> Result<(), FieldError> {
    if value.chars().count() > DESCRIPTION_MAX {
        return Err(FieldError::new(format!(
            "must be at most {DESCRIPTION_MAX} characters"
        )));
    }
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7E}' | '\u{A1}'..='\u{FF}');
    if !value.chars().all(allowed) {
        return Err(FieldError::new(
            "must use only the characters IAM accepts in a description (printable Latin-1)",
        ));
    }
    Ok(())
}

/// Checks an STS external id: 2 to 1224 characters of `[\w+=,.@:/-]`. The
/// message never repeats the value (it is a secret).
pub fn check_external_id(value: &str) -> Result<(), FieldError> {
    let ok = (2..=1224).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "must be 2 to 1224 characters of letters, digits and _+=,.@:/-",
        ))
    }
}

string_newtype!(
    /// An idempotency key (AIP-155).
    RequestId
);

impl RequestId {
    /// Parses a request id: 1 to 128 characters of `[A-Za-z0-9._~-]` (a
    /// UUID is the usual choice).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let ok = (1..=128).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
        if ok {
            Ok(RequestId(value.to_owned()))
        } else {
            Err(FieldError::new(
                "must be 1 to 128 characters of letters, digits and ._~- (a UUID is best)",
            ))
        }
    }

    /// An optional request id: empty means none.
    pub fn parse_optional(value: &str) -> Result<Option<Self>, FieldError> {
        if value.is_empty() {
            Ok(None)
        } else {
            Self::parse(value).map(Some)
        }
    }
}

string_newtype!(
    /// A CloudWatch Logs log group name.
    LogGroupName
);

impl LogGroupName {
    /// Parses a log group name: 1 to 512 characters of `[.\-_/#A-Za-z0-9]`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let ok = (1..=512).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
        if ok {
            Ok(LogGroupName(value.to_owned()))
        } else {
            Err(FieldError::new(
                "must be a log group name: 1 to 512 characters of letters, digits and ._-/#",
            ))
        }
    }
}

string_newtype!(
    /// A Customer Profiles domain name.
    ProfilesDomain
);

impl ProfilesDomain {
    /// Parses a domain name: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(ProfilesDomain(value.to_owned()))
        } else {
            Err(FieldError::new(
                "must be a Customer Profiles domain name: 1 to 64 letters, digits, _ and -",
            ))
        }
    }
}

string_newtype!(
    /// A Voice ID domain id.
    VoiceIdDomain
);

impl VoiceIdDomain {
    /// Parses a Voice ID domain id: 22 letters and digits.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value.len() == 22 && is_ascii_alnum(value) {
            Ok(VoiceIdDomain(value.to_owned()))
        } else {
            Err(FieldError::new(
                "must be a Voice ID domain id: 22 letters and digits",
            ))
        }
    }
}

/// A resource revision: increases by one on every change. Its decimal form
/// is the resource's etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision(pub i64);

impl Revision {
    /// The etag of this revision.
    pub fn etag(self) -> String {
        self.0.to_string()
    }

    /// Parses an etag sent by a caller: empty means unconditional.
    pub fn parse_etag(value: &str) -> Result<Option<Self>, FieldError> {
        if value.is_empty() {
            return Ok(None);
        }
        // Accept the quoted form too (HTTP habits); anything else is not an
        // etag this service issued.
        let inner = value.trim_matches('"');
        match inner.parse::<i64>() {
            Ok(n) if n > 0 && inner.len() <= 19 => Ok(Some(Revision(n))),
            _ => Err(FieldError::new("is not an etag issued by this service")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("123456789012").is_ok());
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            "１２３４５６７８９０１２",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_ids_are_canonical() {
        let id = InstanceId::parse("4A3B2C1D-0000-4000-8000-123456789ABC").expect("uuid");
        assert_eq!(id.as_str(), "4a3b2c1d-0000-4000-8000-123456789abc");
        for bad in [
            "",
            "4a3b2c1d00004000800012345678abcd",
            "{4a3b2c1d-0000-4000-8000-123456789abc}",
            "4a3b2c1d-0000-4000-8000-123456789abg",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_partitions() {
        let gov = RegionCode::parse("us-gov-west-1").expect("gov");
        assert_eq!(gov.partition(), Partition::AwsUsGov);
        assert_eq!(
            RegionCode::parse("eu-west-2").expect("eu").partition(),
            Partition::Aws
        );
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "us--1",
            "us-east-123",
        ] {
            assert!(RegionCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arns_are_partition_aware() {
        let account = AccountId::parse("123456789012").expect("account");
        let arn = parse_access_role_arn(
            "arn:aws-us-gov:iam::123456789012:role/ops/Governor",
            Partition::AwsUsGov,
            &account,
        )
        .expect("gov role");
        assert_eq!(arn.partition(), Partition::AwsUsGov);
        assert_eq!(arn.resource(), "role/ops/Governor");
        // wrong partition, other account, not a role, garbage
        for bad in [
            "arn:aws:iam::123456789012:role/Governor",
            "arn:aws-us-gov:iam::210987654321:role/Governor",
            "arn:aws-us-gov:iam::123456789012:user/Governor",
            "arn:aws-us-gov:iam::123456789012",
            "not-an-arn",
            "arn:aws-moon:iam::123456789012:role/x",
        ] {
            assert!(
                parse_access_role_arn(bad, Partition::AwsUsGov, &account).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["amazon-connect-abc", "my.bucket.name", "a1b"] {
            assert!(BucketName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end-",
            "a..b",
            "192.168.5.4",
            "xn--bucket",
            "bucket-s3alias",
            "under_score",
        ] {
            assert!(BucketName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases_descriptions_and_etags() {
        assert!(InstanceAlias::parse("my-contact-center").is_ok());
        assert!(InstanceAlias::parse(&"a".repeat(62)).is_ok());
        assert!(InstanceAlias::parse(&"a".repeat(63)).is_err());
        assert!(InstanceAlias::parse("-x").is_err());
        assert!(check_role_description(&"d".repeat(1000)).is_ok());
        assert!(check_role_description(&"d".repeat(1001)).is_err());
        assert!(check_role_description("emoji \u{1F600}").is_err());
        assert_eq!(Revision::parse_etag("").expect("empty"), None);
        assert_eq!(Revision::parse_etag("7").expect("7"), Some(Revision(7)));
        assert_eq!(Revision::parse_etag("\"7\"").expect("7"), Some(Revision(7)));
        assert!(Revision::parse_etag("abc").is_err());
        assert!(Revision::parse_etag("-1").is_err());
    }
}
