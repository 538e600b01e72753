//! Validated newtypes: a value of one of these types is well-formed, so the
//! layers below never re-check it. Each has a `parse` constructor that
//! returns a [`FieldError`] naming what is wrong (never the raw value of a
//! secret).

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

mod arn;
#[cfg(test)]
mod tests;

pub use arn::{Arn, parse_access_role_arn};

/// True when `value` is `len` bytes long and every byte is an ASCII letter,
/// an ASCII digit or one of `extra`.
fn is_charset(value: &str, len: RangeInclusive<usize>, extra: &[u8]) -> bool {
    len.contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Checks [`is_charset`]; `message` says what is expected when it fails.
fn check_charset(
    value: &str,
    len: RangeInclusive<usize>,
    extra: &[u8],
    message: &str,
) -> Result<(), FieldError> {
    if is_charset(value, len, extra) {
        Ok(())
    } else {
        Err(FieldError::new(message))
    }
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
        let ok = is_charset(value, 1..=62, b"-")
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
    check_charset(
        value,
        2..=1224,
        b"_+=,.@:/-",
        "must be 2 to 1224 characters of letters, digits and _+=,.@:/-",
    )
}

string_newtype!(
    /// An idempotency key (AIP-155).
    RequestId
);

impl RequestId {
    /// Parses a request id: 1 to 128 characters of `[A-Za-z0-9._~-]` (a
    /// UUID is the usual choice).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        check_charset(
            value,
            1..=128,
            b"._~-",
            "must be 1 to 128 characters of letters, digits and ._~- (a UUID is best)",
        )?;
        Ok(RequestId(value.to_owned()))
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
        check_charset(
            value,
            1..=512,
            b"._-/#",
            "must be a log group name: 1 to 512 characters of letters, digits and ._-/#",
        )?;
        Ok(LogGroupName(value.to_owned()))
    }
}

string_newtype!(
    /// A Customer Profiles domain name.
    ProfilesDomain
);

impl ProfilesDomain {
    /// Parses a domain name: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        check_charset(
            value,
            1..=64,
            b"_-",
            "must be a Customer Profiles domain name: 1 to 64 letters, digits, _ and -",
        )?;
        Ok(ProfilesDomain(value.to_owned()))
    }
}

string_newtype!(
    /// A Voice ID domain id.
    VoiceIdDomain
);

impl VoiceIdDomain {
    /// Parses a Voice ID domain id: 22 letters and digits.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        check_charset(
            value,
            22..=22,
            b"",
            "must be a Voice ID domain id: 22 letters and digits",
        )?;
        Ok(VoiceIdDomain(value.to_owned()))
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
