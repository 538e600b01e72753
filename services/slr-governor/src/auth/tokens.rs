//! The tokens file (`SLRGOV_AUTH_TOKENS_FILE`): a JSON array of callers,
//! each a static bearer token known only by its SHA-256 digest, or a SPIFFE
//! id that a client certificate must carry:
//!
//! ```json
//! [
//!   {"name": "ci", "sha256": "<64 hex digits>", "role": "operator", "accounts": ["111111111111"]},
//!   {"name": "billing", "spiffe_id": "spiffe://example.org/billing", "role": "viewer", "accounts": ["*"]}
//! ]
//! ```
//!
//! The principal of a static token is `token:<name>`; that of a client
//! certificate is its SPIFFE id. Digests are compared in constant time.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use slrgov_domain::{AccountScope, Caller, Role};
use subtle::ConstantTimeEq;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    spiffe_id: Option<String>,
    role: String,
    accounts: Vec<String>,
}

/// A caller of the file, built once and shared by each of its requests.
#[derive(Debug)]
struct Identity(Arc<Caller>);

impl Identity {
    fn new(principal: String, role: Role, scope: AccountScope) -> Self {
        Identity(Arc::new(Caller {
            principal,
            role,
            scope,
        }))
    }

    fn caller(&self) -> Arc<Caller> {
        self.0.clone()
    }
}

/// The static tokens and SPIFFE ids of the tokens file.
#[derive(Debug, Default)]
pub struct TokenTable {
    digests: Vec<([u8; 32], Identity)>,
    spiffe: Vec<(String, Identity)>,
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// True for `spiffe://<trust domain>/<path>` as the SPIFFE spec spells it.
pub fn is_spiffe_id(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, _) = rest.split_once('/').unwrap_or((rest, ""));
    !domain.is_empty()
        && value.len() <= 2048
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        && !value.contains(['?', '#'])
}

impl TokenTable {
    /// Loads and checks the whole file; every mistake names the file and
    /// the entry.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = super::read(path, "tokens file")?;
        let entries: Vec<Entry> = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "invalid tokens file {}: expected a JSON array of {{\"name\", \"sha256\" or \
                 \"spiffe_id\", \"role\", \"accounts\"}}",
                path.display()
            )
        })?;
        let mut table = TokenTable::default();
        let mut names = std::collections::BTreeSet::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let at = || format!("tokens file {}, entry {index}", path.display());
            if entry.name.is_empty()
                || entry.name.len() > 128
                || !entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            {
                bail!("{}: name must be 1-128 of letters, digits and -_.@", at());
            }
            if !names.insert(entry.name.clone()) {
                bail!("{}: the name {:?} is used twice", at(), entry.name);
            }
            let Some(role) = super::parse_role(&entry.role) else {
                bail!("{}: role must be viewer, operator or admin", at());
            };
            let scope = super::parse_accounts(&entry.accounts)
                .map_err(|why| anyhow::anyhow!("{}: accounts: {why}", at()))?;
            match (entry.sha256, entry.spiffe_id) {
                (Some(hex), None) => {
                    let Some(digest) = parse_digest(&hex.to_ascii_lowercase()) else {
                        bail!(
                            "{}: sha256 must be the 64 hex digits of the token's SHA-256 digest",
                            at()
                        );
                    };
                    table.digests.push((
                        digest,
                        Identity::new(format!("token:{}", entry.name), role, scope),
                    ));
                }
                (None, Some(id)) => {
                    if !is_spiffe_id(&id) {
                        bail!("{}: spiffe_id must be spiffe://<trust domain>/<path>", at());
                    }
                    if table.spiffe.iter().any(|(known, _)| *known == id) {
                        bail!("{}: the SPIFFE id {id} is listed twice", at());
                    }
                    table
                        .spiffe
                        .push((id.clone(), Identity::new(id, role, scope)));
                }
                _ => bail!("{}: give exactly one of sha256 and spiffe_id", at()),
            }
        }
        tracing::info!(
            static_tokens = table.digests.len(),
            spiffe_ids = table.spiffe.len(),
            file = %path.display(),
            "tokens file loaded"
        );
        Ok(table)
    }

    /// True when the file listed nothing.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && self.spiffe.is_empty()
    }

    /// How many static tokens are listed.
    pub fn static_tokens(&self) -> usize {
        self.digests.len()
    }

    /// How many SPIFFE ids are listed.
    pub fn spiffe_ids(&self) -> usize {
        self.spiffe.len()
    }

    /// The caller of a static token: its digest compared with every entry,
    /// in constant time, without stopping at a match.
    pub fn by_token(&self, token: &str) -> Option<Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (known, identity) in &self.digests {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(identity);
            }
        }
        found.map(Identity::caller)
    }

    /// The caller of a client certificate's SPIFFE id.
    pub fn by_spiffe_id(&self, id: &str) -> Option<Arc<Caller>> {
        self.spiffe
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, identity)| identity.caller())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn loads_and_matches_by_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.json");
        let digest = hex(&Sha256::digest(b"s3cret-token"));
        std::fs::write(
            &path,
            format!(
                r#"[{{"name":"ci","sha256":"{digest}","role":"operator","accounts":["111111111111"]}},
                    {{"name":"svc","spiffe_id":"spiffe://example.org/svc","role":"viewer","accounts":["*"]}}]"#
            ),
        )
        .expect("write");
        let table = TokenTable::load(&path).expect("load");
        let caller = table.by_token("s3cret-token").expect("known token");
        assert_eq!(caller.principal, "token:ci");
        assert_eq!(caller.role, Role::Operator);
        // Every request of a token shares one caller: no copy of its scope
        // per request.
        let again = table.by_token("s3cret-token").expect("known token");
        assert!(Arc::ptr_eq(&caller, &again));
        assert!(table.by_token("s3cret-token2").is_none());
        let caller = table
            .by_spiffe_id("spiffe://example.org/svc")
            .expect("known id");
        assert_eq!(caller.scope, AccountScope::All);
    }

    #[test]
    fn bad_entries_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.json");
        for bad in [
            r#"[{"name":"ci","sha256":"abc","role":"operator","accounts":["*"]}]"#,
            r#"[{"name":"ci","sha256":"00","role":"root","accounts":["*"]}]"#,
            r#"[{"name":"ci","role":"viewer","accounts":["*"]}]"#,
            r#"[{"name":"ci","spiffe_id":"https://x","role":"viewer","accounts":["*"]}]"#,
            r#"[{"name":"ci","spiffe_id":"spiffe://x/y","role":"viewer","accounts":["1"]}]"#,
            r#"{"not": "an array"}"#,
        ] {
            std::fs::write(&path, bad).expect("write");
            let error = format!("{:#}", TokenTable::load(&path).expect_err(bad));
            assert!(error.contains("tokens.json"), "{error}");
        }
    }
}
