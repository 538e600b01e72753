//! What a Connect service-linked role is: its name (the prefix, and the
//! deterministic suffix each instance's role asks IAM for), its path and its
//! trust policy, and how a role read from IAM is recorded.

use sha2::{Digest, Sha256};
use slrgov_aws::RoleInfo;
use slrgov_aws::iam::{CONNECT_SERVICE, CONNECT_SLR_PATH};
use slrgov_domain::model::ObservedRole;
use slrgov_domain::names::InstanceKey;

/// The prefix of every Connect service-linked role (real IAM's spelling;
/// moto spells it `AWSServiceRoleForconnect_`, so names are always read
/// back from IAM, never assumed).
pub const ROLE_NAME_PREFIX: &str = "AWSServiceRoleForAmazonConnect_";

/// The custom suffix of an instance's role: 20 letters and digits derived
/// from the account and instance ids, so that every attempt (and every
/// replica) asks IAM for the same name.
pub fn role_suffix(key: &InstanceKey) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let digest = Sha256::new()
        .chain_update(b"slr-governor/role-suffix/v1\0")
        .chain_update(key.account_id.as_str())
        .chain_update(b"\0")
        .chain_update(key.instance_id.as_str())
        .finalize();
    digest
        .iter()
        .take(20)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The description a created role gets when the caller gives none.
pub fn default_description(key: &InstanceKey) -> String {
    format!(
        "Service-linked role of Amazon Connect instance {} (managed by slr-governor)",
        key.instance_id
    )
}

/// True when a trust policy trusts `connect.amazonaws.com` and nothing else.
pub fn trusts_only_connect(document: &str) -> bool {
    let Ok(policy) = serde_json::from_str::<serde_json::Value>(document) else {
        return false;
    };
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        object @ serde_json::Value::Object(_) => vec![object.clone()],
        _ => return false,
    };
    let mut principals = Vec::new();
    for statement in &statements {
        if statement["Effect"] != "Allow" {
            continue;
        }
        let principal = &statement["Principal"];
        let Some(map) = principal.as_object() else {
            return false;
        };
        for (kind, value) in map {
            let values = match value {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(list) => list
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect(),
                _ => return false,
            };
            for v in values {
                principals.push((kind.clone(), v));
            }
        }
    }
    !principals.is_empty()
        && principals
            .iter()
            .all(|(kind, v)| kind == "Service" && v == CONNECT_SERVICE)
}

/// True when `role` is an Amazon Connect service-linked role: under the
/// Connect path and trusting `connect.amazonaws.com` alone.
pub fn is_connect_slr(role: &RoleInfo) -> bool {
    role.path == CONNECT_SLR_PATH
        && role
            .trust_policy
            .as_deref()
            .is_some_and(trusts_only_connect)
}

/// True when `role_name` carries the custom suffix `suffix`.
pub fn has_suffix(role_name: &str, suffix: &str) -> bool {
    role_name
        .rsplit_once('_')
        .is_some_and(|(_, found)| found == suffix)
}

/// A role as IAM shows it, as the record keeps it.
pub fn observed(role: &RoleInfo) -> ObservedRole {
    ObservedRole {
        role_name: role.role_name.clone(),
        role_arn: role.arn.clone(),
        role_id: role.role_id.clone(),
        path: role.path.clone(),
        description: role.description.clone(),
        iam_create_time: role.create_date,
        last_used_time: role.last_used,
        last_used_region: role.last_used_region.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_deterministic_valid_and_distinct() {
        let key = |a: &str, i: &str| {
            InstanceKey::parse(&format!("accounts/{a}/instances/{i}")).expect("key")
        };
        let one = key("123456789012", "4a3b2c1d-0000-4000-8000-123456789abc");
        let suffix = role_suffix(&one);
        assert_eq!(suffix, role_suffix(&one));
        assert_eq!(suffix.len(), 20);
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(format!("{ROLE_NAME_PREFIX}{suffix}").len() <= 64);
        assert_ne!(
            suffix,
            role_suffix(&key("123456789013", "4a3b2c1d-0000-4000-8000-123456789abc"))
        );
        assert_ne!(
            suffix,
            role_suffix(&key("123456789012", "4a3b2c1d-0000-4000-8000-123456789abd"))
        );
    }

    #[test]
    fn only_a_connect_trust_policy_is_a_connect_slr() {
        let connect = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"connect.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert!(trusts_only_connect(connect));
        let object = r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["connect.amazonaws.com"]},"Action":"sts:AssumeRole"}}"#;
        assert!(trusts_only_connect(object));
        let also_ec2 = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["connect.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trusts_only_connect(also_ec2));
        let account = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trusts_only_connect(account));
        assert!(!trusts_only_connect("not json"));
        assert!(!trusts_only_connect(r#"{"Statement":[]}"#));
    }
}
