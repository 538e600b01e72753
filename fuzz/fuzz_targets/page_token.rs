//! Page tokens (slrgov-store `page_token.rs`): opening any string a caller
//! sends never panics, and whatever opens re-seals and re-opens to the same
//! key.
//!
//! Input: a token; or, when it starts with `{`, a payload that is sealed
//! with the real key first, as if the key had leaked, so that the checks
//! behind the MAC (the JSON, the version, the digest, the key length) are
//! fuzzed too.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use slrgov_fuzz::page_token::{PageTokenKey, query_digest};

/// The key of the unit test in page_token.rs (the seeds are sealed with it).
const KEY: [u8; 32] = [7; 32];

fn check(key: &PageTokenKey, token: &str, digest: &str) {
    for key_len in 0..4 {
        if let Ok(last) = key.open(token, digest, key_len) {
            assert_eq!(last.len(), key_len);
            let again = key.seal(digest, last.clone());
            assert_eq!(key.open(&again, digest, key_len).ok(), Some(last.clone()));
            // Bound to its query and its key.
            let other = query_digest(&["ListInstances", "accounts/123456789012", ""]);
            assert!(key.open(&again, &other, key_len).is_err());
            assert!(
                PageTokenKey::new(vec![8; 32])
                    .open(token, digest, key_len)
                    .is_err()
            );
        }
    }
}

/// A seed token (gen_seeds.py), sealed with `KEY` for the digest below.
const SEED: &str = include_str!("../seeds/page_token/token-0");

fuzz_target!(|data: &[u8]| {
    let key = PageTokenKey::new(KEY.to_vec());
    let digest = query_digest(&["ListInstances", "accounts/-", ""]);
    static SEEDS_OPEN: std::sync::Once = std::sync::Once::new();
    SEEDS_OPEN.call_once(|| {
        key.open(SEED, &digest, 2).expect("the seed token opens");
    });
    if data.first() == Some(&b'{') {
        let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(data),
            URL_SAFE_NO_PAD.encode(&tag[..16])
        );
        check(&key, &token, &digest);
    } else if let Ok(token) = std::str::from_utf8(data) {
        check(&key, token, &digest);
    }
});
