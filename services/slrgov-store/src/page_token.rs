//! Opaque, tamper-evident page tokens (AIP-158). A token carries the last
//! key of the page it follows and a digest of the query it belongs to
//! (method, parent, filter, caller), sealed with an HMAC under a key shared
//! by every replica through the database. A changed token, or a token
//! replayed with other parameters, is INVALID_ARGUMENT, never a 500 and
//! never another query's page.
//!
//! The same key seals watch streams' resume tokens
//! ([`PageTokenKey::seal_position`]), which are also encrypted: a position
//! in the change log counts every account's changes, and a caller scoped
//! to one account must not learn how many changes the others made.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slrgov_domain::FieldError;

type HmacSha256 = Hmac<Sha256>;

/// The length of the MAC kept in a token.
const TAG_LEN: usize = 16;
/// The longest token accepted (the longest issued is far shorter).
const TOKEN_MAX: usize = 1024;

/// The key that seals page tokens.
#[derive(Clone)]
pub struct PageTokenKey(Vec<u8>);

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenKey(<redacted>)")
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Format version.
    v: u8,
    /// Digest of the query (hex, 16 bytes).
    q: String,
    /// The last key of the previous page.
    k: Vec<String>,
}

fn invalid() -> FieldError {
    FieldError::new("is not a page token issued for this request; start from the first page")
}

/// What a token is bound to: the method and every parameter but the page.
pub fn query_digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl PageTokenKey {
    /// A key from stored bytes.
    pub fn new(key: Vec<u8>) -> Self {
        PageTokenKey(key)
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    /// Issues a token after `last_key` for the query `digest`.
    pub fn seal(&self, digest: &str, last_key: Vec<String>) -> String {
        let payload = Payload {
            v: 1,
            q: digest.to_owned(),
            k: last_key,
        };
        #[allow(clippy::expect_used)]
        let json = serde_json::to_vec(&payload).expect("a payload of strings serializes");
        let tag = self.tag(&json);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Opens a token for the query `digest`, returning the last key it
    /// carries, or an error that says nothing about why (a tampered token
    /// learns nothing).
    pub fn open(
        &self,
        token: &str,
        digest: &str,
        key_len: usize,
    ) -> Result<Vec<String>, FieldError> {
        if token.len() > TOKEN_MAX {
            return Err(invalid());
        }
        let (payload, tag) = token.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = HmacSha256::new_from_slice(&self.0).map_err(|_| invalid())?;
        mac.update(&payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag).map_err(|_| invalid())?;
        if tag.len() != TAG_LEN {
            return Err(invalid());
        }
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if payload.v != 1 || payload.q != digest || payload.k.len() != key_len {
            return Err(invalid());
        }
        Ok(payload.k)
    }
}

/// The prefix of a sealed resume token (its format's version).
const POSITION_PREFIX: &str = "w2.";

impl PageTokenKey {
    fn prf(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Seals a change-log position `(tx, seq)` as a resume token,
    /// authenticated and encrypted (a synthetic IV: the nonce is a MAC of
    /// the position, and the position is XORed with a keystream derived
    /// from the nonce), so that it reveals nothing about the log and cannot
    /// be forged or edited. The same position always gives the same token.
    pub fn seal_position(&self, tx: i64, seq: i64) -> String {
        let mut plain = [0u8; 16];
        plain[..8].copy_from_slice(&tx.to_be_bytes());
        plain[8..].copy_from_slice(&seq.to_be_bytes());
        let nonce = &self.prf(b"slrgov.resume.iv", &plain)[..16];
        let stream = self.prf(b"slrgov.resume.ks", nonce);
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(nonce);
        out.extend(plain.iter().zip(stream).map(|(p, k)| p ^ k));
        format!("{POSITION_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a resume token sealed by [`Self::seal_position`]: `None` for
    /// anything else (edited, forged, another deployment's key).
    pub fn open_position(&self, token: &str) -> Option<(i64, i64)> {
        let body = token.strip_prefix(POSITION_PREFIX)?;
        if body.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(16);
        let stream = self.prf(b"slrgov.resume.ks", nonce);
        let mut plain = [0u8; 16];
        for (i, (c, k)) in sealed.iter().zip(stream).enumerate() {
            plain[i] = c ^ k;
        }
        // Constant-time check that the nonce is the position's MAC.
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"slrgov.resume.iv");
        mac.update(&plain);
        mac.verify_truncated_left(nonce).ok()?;
        let tx = i64::from_be_bytes(plain[..8].try_into().ok()?);
        let seq = i64::from_be_bytes(plain[8..].try_into().ok()?);
        (tx >= 0 && seq >= 0).then_some((tx, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_sealed_opaque_and_resist_tampering() {
        let key = PageTokenKey::new(vec![7; 32]);
        for (tx, seq) in [(0, 0), (0, 17), (1 << 40, i64::MAX), (5, 6)] {
            let token = key.seal_position(tx, seq);
            assert_eq!(key.open_position(&token), Some((tx, seq)), "{token}");
            assert_eq!(token, key.seal_position(tx, seq), "deterministic");
            // Nothing of the numbers shows.
            assert!(!token.contains(&format!("{seq:x}.")), "{token}");
        }
        // Neighbouring positions share nothing visible.
        let (a, b) = (key.seal_position(0, 1000), key.seal_position(0, 1001));
        assert_ne!(a[3..10], b[3..10]);
        // Another key, any edit, junk: refused.
        let token = key.seal_position(3, 4);
        assert_eq!(PageTokenKey::new(vec![8; 32]).open_position(&token), None);
        for i in 3..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).expect("ascii");
            if changed != token {
                assert_eq!(key.open_position(&changed), None, "position {i}");
            }
        }
        for junk in [
            "",
            "w2.",
            "w1.1.2",
            "w2.AAAA",
            &format!("w2.{}", "A".repeat(200)),
        ] {
            assert_eq!(key.open_position(junk), None, "{junk}");
        }
        // A negative position is never issued, so never accepted.
        assert_eq!(key.open_position(&key.seal_position(-1, 2)), None);
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let key = PageTokenKey::new(vec![7; 32]);
        let digest = query_digest(&["ListInstances", "accounts/-", ""]);
        let token = key.seal(&digest, vec!["123456789012".into(), "x".into()]);
        assert_eq!(
            key.open(&token, &digest, 2).expect("opens"),
            vec!["123456789012".to_owned(), "x".to_owned()]
        );
        // another query, another key length, another key
        let other = query_digest(&["ListInstances", "accounts/123456789012", ""]);
        assert!(key.open(&token, &other, 2).is_err());
        assert!(key.open(&token, &digest, 1).is_err());
        assert!(
            PageTokenKey::new(vec![8; 32])
                .open(&token, &digest, 2)
                .is_err()
        );
        // every single-character change is caught
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).expect("ascii");
            if changed != token {
                assert!(key.open(&changed, &digest, 2).is_err(), "position {i}");
            }
        }
        for garbage in ["", ".", "a.b", "%%%", &"A".repeat(5000)] {
            assert!(key.open(garbage, &digest, 2).is_err());
        }
    }
}
