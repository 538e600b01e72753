//! Resource names (AIP-122): parsing the strings callers send into typed
//! keys, and formatting keys back into names.

use std::fmt;

use crate::error::FieldError;
use crate::types::{AccountId, InstanceId, RegionCode};

/// `accounts/{account_id}`.
pub fn account_name(account: &AccountId) -> String {
    format!("accounts/{account}")
}

/// Parses `accounts/{account_id}`.
pub fn parse_account_name(value: &str) -> Result<AccountId, FieldError> {
    match value.strip_prefix("accounts/") {
        Some(id) if !id.contains('/') => AccountId::parse(id)
            .map_err(|_| FieldError::new("must be accounts/{account_id} with a 12-digit id")),
        _ => Err(FieldError::new(
            "must be accounts/{account_id} with a 12-digit id",
        )),
    }
}

/// The accounts a list request covers: one, or every account the caller
/// may see (`accounts/-`, AIP-159).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSelector {
    /// `accounts/-`.
    All,
    /// `accounts/{account_id}`.
    One(AccountId),
}

impl AccountSelector {
    /// Parses a list parent: `accounts/{account_id}` or `accounts/-`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value == "accounts/-" {
            return Ok(AccountSelector::All);
        }
        parse_account_name(value)
            .map(AccountSelector::One)
            .map_err(|_| FieldError::new("must be accounts/{account_id} or accounts/-"))
    }
}

impl fmt::Display for AccountSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountSelector::All => f.write_str("accounts/-"),
            AccountSelector::One(account) => write!(f, "accounts/{account}"),
        }
    }
}

/// The key of an instance: its account and its Connect instance id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceKey {
    /// The owning account.
    pub account_id: AccountId,
    /// The Connect instance id.
    pub instance_id: InstanceId,
}

impl InstanceKey {
    /// Parses `accounts/{account_id}/instances/{instance_id}`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let bad =
            || FieldError::new("must be accounts/{account_id}/instances/{instance_id} (a UUID)");
        let mut parts = value.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("accounts"), Some(account), Some("instances"), Some(instance), None) => {
                Ok(InstanceKey {
                    account_id: AccountId::parse(account).map_err(|_| bad())?,
                    instance_id: InstanceId::parse(instance).map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Parses `accounts/{account_id}/instances/{instance_id}/linkedRole`.
    pub fn parse_linked_role_name(value: &str) -> Result<Self, FieldError> {
        let bad =
            || FieldError::new("must be accounts/{account_id}/instances/{instance_id}/linkedRole");
        let instance = value.strip_suffix("/linkedRole").ok_or_else(bad)?;
        Self::parse(instance).map_err(|_| bad())
    }

    /// `accounts/{account_id}/instances/{instance_id}`.
    pub fn name(&self) -> String {
        format!(
            "accounts/{}/instances/{}",
            self.account_id, self.instance_id
        )
    }

    /// `accounts/{account_id}/instances/{instance_id}/linkedRole`.
    pub fn linked_role_name(&self) -> String {
        format!("{}/linkedRole", self.name())
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parses `regions/{region_code}`.
pub fn parse_region_name(value: &str) -> Result<RegionCode, FieldError> {
    match value.strip_prefix("regions/") {
        Some(code) => RegionCode::parse(code)
            .map_err(|_| FieldError::new("must be regions/{region_code}, e.g. regions/us-east-1")),
        None => Err(FieldError::new(
            "must be regions/{region_code}, e.g. regions/us-east-1",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let key = InstanceKey::parse(
            "accounts/123456789012/instances/4a3b2c1d-0000-4000-8000-123456789abc",
        )
        .expect("instance name");
        assert_eq!(
            InstanceKey::parse_linked_role_name(&key.linked_role_name()).expect("role name"),
            key
        );
        assert_eq!(
            AccountSelector::parse("accounts/-").expect("all"),
            AccountSelector::All
        );
        for bad in [
            "accounts/123456789012/instances/",
            "accounts/123456789012/instances/x/extra",
            "accounts//instances/4a3b2c1d-0000-4000-8000-123456789abc",
            "Accounts/123456789012/instances/4a3b2c1d-0000-4000-8000-123456789abc",
        ] {
            assert!(InstanceKey::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_account_name("accounts/123456789012/").is_err());
        assert!(parse_region_name("regions/us-east-1").is_ok());
        assert!(parse_region_name("us-east-1").is_err());
    }
}
