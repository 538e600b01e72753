//! slr-governor's `auth` module, as much of it as `jwt.rs` needs.

use std::path::Path;

use slrgov_domain::types::AccountId;
use slrgov_domain::{AccountScope, Role};

/// `services/slr-governor/src/auth/jwt.rs`.
#[path = "../../services/slr-governor/src/auth/jwt.rs"]
pub mod jwt;

// Copies of slr-governor's `auth::{parse_role, parse_accounts, read}`
// (auth/mod.rs), which jwt.rs calls: that module cannot be compiled
// here without the server. Keep them in step.

/// `auth::parse_role`.
pub fn parse_role(value: &str) -> Option<Role> {
    match value {
        "viewer" => Some(Role::Viewer),
        "operator" => Some(Role::Operator),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// `auth::parse_accounts`.
pub fn parse_accounts(values: &[String]) -> Result<AccountScope, String> {
    if values.iter().any(|v| v == "*") {
        return if values.len() == 1 {
            Ok(AccountScope::All)
        } else {
            Err("\"*\" must be the only entry".to_owned())
        };
    }
    let mut accounts = std::collections::BTreeSet::new();
    for (index, value) in values.iter().enumerate() {
        let account = AccountId::parse(value)
            .map_err(|_| format!("entry {index} is not a 12-digit account id"))?;
        accounts.insert(account);
    }
    Ok(AccountScope::Only(accounts))
}

/// `auth::read`.
pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}
