//! `slr-governor token`: mints a signed JWT from a local private key, for
//! development and tests, and writes the JWKS the server needs to accept
//! it. The key file (PKCS#8 PEM) is created when missing: Ed25519 by
//! default, or P-256 (`--alg es256`) or RSA 2048 (`--alg rs256`).
//!
//! The token goes to stdout alone, so that `TOKEN=$(slr-governor token ...)`
//! works; the JWKS goes to `--jwks-out`, or to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

use crate::env;

/// The arguments of `slr-governor token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The private key, PKCS#8 PEM; created (mode 0600) when missing.
    #[arg(long)]
    pub key: PathBuf,
    /// The algorithm of a new key: eddsa (Ed25519), es256 (P-256) or rs256
    /// (RSA 2048). An existing key keeps its own.
    #[arg(long)]
    pub alg: Option<String>,
    /// The principal (`sub`).
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// viewer, operator or admin.
    #[arg(long)]
    pub role: String,
    /// Comma-separated 12-digit account ids, or `*` for every account.
    #[arg(long, value_delimiter = ',', required = true)]
    pub accounts: Vec<String>,
    /// The issuer (`iss`); the server's SLRGOV_AUTH_ISSUER by default.
    #[arg(long, env = env::AUTH_ISSUER, default_value = "slr-governor-dev")]
    pub issuer: String,
    /// The audience (`aud`); the server's SLRGOV_AUTH_AUDIENCE by default.
    #[arg(long, env = env::AUTH_AUDIENCE, default_value = "slr-governor")]
    pub audience: String,
    /// How long the token is valid, e.g. 90s, 15m, 1h.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Where to write the JWKS with the key's public half (else stderr).
    #[arg(long)]
    pub jwks_out: Option<PathBuf>,
}

/// A private key and what it signs with.
struct SigningKey {
    algorithm: Algorithm,
    pem: String,
    jwk: serde_json::Value,
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn unpem(text: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        bail!(
            "{} is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----); convert one with \
             `openssl pkcs8 -topk8 -nocrypt`",
            path.display()
        );
    }
    STANDARD
        .decode(body.trim())
        .with_context(|| format!("{}: the PEM body is not base64", path.display()))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key's JWK (RFC 7517) with its RFC 7638 thumbprint as `kid`.
fn signing_key(der: &[u8]) -> anyhow::Result<SigningKey> {
    let (algorithm, members) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
        (
            Algorithm::EdDSA,
            vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", b64(pair.public_key().as_ref())),
            ],
        )
    } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            bail!("unexpected P-256 public key encoding");
        }
        (
            Algorithm::ES256,
            vec![
                ("crv", "P-256".to_owned()),
                ("kty", "EC".to_owned()),
                ("x", b64(&point[1..33])),
                ("y", b64(&point[33..65])),
            ],
        )
    } else if let Ok(pair) = aws_lc_rs::rsa::KeyPair::from_pkcs8(der) {
        let public = pair.public_key();
        (
            Algorithm::RS256,
            vec![
                (
                    "e",
                    b64(public.exponent().big_endian_without_leading_zero()),
                ),
                ("kty", "RSA".to_owned()),
                ("n", b64(public.modulus().big_endian_without_leading_zero())),
            ],
        )
    } else {
        bail!("the key is not an Ed25519, P-256 or RSA PKCS#8 private key");
    };
    // RFC 7638: the required members, in lexicographic order, no spaces.
    let canonical = format!(
        "{{{}}}",
        members
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let kid = b64(&Sha256::digest(canonical.as_bytes()));
    let mut jwk = serde_json::Map::new();
    for (k, v) in members {
        jwk.insert(k.to_owned(), v.into());
    }
    let alg = match algorithm {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        _ => "RS256",
    };
    jwk.insert("kid".into(), kid.into());
    jwk.insert("alg".into(), alg.into());
    jwk.insert("use".into(), "sig".into());
    Ok(SigningKey {
        algorithm,
        pem: pem(der),
        jwk: serde_json::Value::Object(jwk),
    })
}

fn generate(alg: &str) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let failed = |_| anyhow::anyhow!("key generation failed");
    Ok(match alg {
        "eddsa" | "ed25519" => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        "es256" => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        "rs256" => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
        other => bail!("--alg: expected eddsa, es256 or rs256, got {other:?}"),
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write the key file {}", path.display()))
}

/// Runs `slr-governor token`.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let role = super::parse_role(&args.role)
        .with_context(|| {
            format!(
                "--role: expected viewer, operator or admin, got {:?}",
                args.role
            )
        })?
        .as_str();
    super::parse_accounts(&args.accounts).map_err(|why| anyhow::anyhow!("--accounts: {why}"))?;
    let ttl = crate::units::parse_duration(&args.ttl).context("--ttl")?;
    let key = if args.key.exists() {
        let text = std::fs::read_to_string(&args.key)
            .with_context(|| format!("cannot read the key file {}", args.key.display()))?;
        let key = signing_key(&unpem(&text, &args.key)?)
            .with_context(|| format!("unusable key file {}", args.key.display()))?;
        if let Some(alg) = &args.alg {
            let wanted = match alg.as_str() {
                "eddsa" | "ed25519" => Algorithm::EdDSA,
                "es256" => Algorithm::ES256,
                "rs256" => Algorithm::RS256,
                other => bail!("--alg: expected eddsa, es256 or rs256, got {other:?}"),
            };
            if wanted != key.algorithm {
                bail!(
                    "--alg {alg}: the existing key {} is a {:?} key",
                    args.key.display(),
                    key.algorithm
                );
            }
        }
        key
    } else {
        let der = generate(args.alg.as_deref().unwrap_or("eddsa"))?;
        let key = signing_key(&der)?;
        write_private(&args.key, &key.pem)?;
        eprintln!("created the private key {}", args.key.display());
        key
    };
    let encoding = match key.algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key.pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(key.pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(key.pem.as_bytes()),
    }
    .context("loading the key for signing")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = serde_json::json!({
        "iss": args.issuer,
        "aud": args.audience,
        "sub": args.sub,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs().max(1),
        "slrgov_role": role,
        "slrgov_accounts": args.accounts,
    });
    let mut header = Header::new(key.algorithm);
    header.kid = key
        .jwk
        .get("kid")
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    let token = jsonwebtoken::encode(&header, &claims, &encoding).context("signing the token")?;
    let jwks = serde_json::to_string_pretty(&serde_json::json!({ "keys": [key.jwk] }))?;
    match &args.jwks_out {
        Some(path) => std::fs::write(path, format!("{jwks}\n"))
            .with_context(|| format!("cannot write the JWKS file {}", path.display()))?,
        None => eprintln!("{jwks}"),
    }
    eprintln!(
        "serve with {}={} {}={} {}={}",
        env::AUTH_JWKS_FILE,
        args.jwks_out.as_deref().map_or_else(
            || "<the JWKS above, in a file>".to_owned(),
            |p| p.display().to_string()
        ),
        env::AUTH_ISSUER,
        args.issuer,
        env::AUTH_AUDIENCE,
        args.audience
    );
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_for_every_algorithm() {
        let dir = tempfile::tempdir().expect("tempdir");
        for alg in ["eddsa", "es256", "rs256"] {
            let key = signing_key(&generate(alg).expect("generate")).expect("key");
            let jwks = dir.path().join(format!("{alg}.json"));
            std::fs::write(&jwks, serde_json::json!({ "keys": [key.jwk] }).to_string())
                .expect("write");
            let verifier =
                super::super::jwt::JwtVerifier::load(&jwks, "iss", "aud").expect("load jwks");
            let encoding = match key.algorithm {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(key.pem.as_bytes()),
                Algorithm::ES256 => EncodingKey::from_ec_pem(key.pem.as_bytes()),
                _ => EncodingKey::from_rsa_pem(key.pem.as_bytes()),
            }
            .expect("encoding key");
            let mut header = Header::new(key.algorithm);
            header.kid = key.jwk["kid"].as_str().map(str::to_owned);
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 60;
            let token = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"iss": "iss", "aud": "aud", "sub": "alice", "exp": exp,
                    "slrgov_role": "viewer", "slrgov_accounts": ["111111111111"]}),
                &encoding,
            )
            .expect("sign");
            let caller = verifier.verify(&token).expect(alg);
            assert_eq!(caller.principal, "alice");
            let wrong = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"iss": "other", "aud": "aud", "sub": "alice", "exp": exp,
                    "slrgov_role": "viewer", "slrgov_accounts": ["111111111111"]}),
                &encoding,
            )
            .expect("sign");
            assert_eq!(verifier.verify(&wrong).expect_err(alg), "wrong issuer");
            // The PEM round-trips.
            let again = signing_key(&unpem(&key.pem, Path::new("k")).expect("unpem")).expect("key");
            assert_eq!(again.jwk, key.jwk);
        }
    }
}
