//! The TLS files of the configuration: read and checked at start, so a
//! missing or non-PEM file stops the start with the file named.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::env;

/// The PEM contents of the TLS files, read at start.
#[derive(Clone)]
pub struct TlsFiles {
    /// The certificate chain, and the file it came from.
    pub cert: (Vec<u8>, PathBuf),
    /// The private key, and the file it came from.
    pub key: (Vec<u8>, PathBuf),
    /// The client CA bundle, and its file, for mTLS.
    pub client_ca: Option<(Vec<u8>, PathBuf)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's contents.
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert.1)
            .field("key", &self.key.1)
            .field("client_ca", &self.client_ca.as_ref().map(|c| &c.1))
            .finish()
    }
}

/// Reads a PEM file and checks that it holds a block labelled `label`.
fn read_pem(path: &Path, what: &str, labels: &[&str]) -> anyhow::Result<(Vec<u8>, PathBuf)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !labels
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")))
    {
        bail!(
            "the {what} {} is not PEM: expected a -----BEGIN {}----- block",
            path.display(),
            labels.join("----- or -----BEGIN ")
        );
    }
    Ok((bytes, path.to_owned()))
}

/// The TLS files of the layers, read and checked.
pub(super) fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key) {
        (None, None) => {
            if client_ca.is_some() {
                bail!(
                    "{} needs TLS: set {} and {}",
                    env::TLS_CLIENT_CA,
                    env::TLS_CERT,
                    env::TLS_KEY
                );
            }
            Ok(None)
        }
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: read_pem(&cert, "TLS certificate", &["CERTIFICATE"])?,
            key: read_pem(
                &key,
                "TLS key",
                &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"],
            )?,
            client_ca: client_ca
                .map(|ca| read_pem(&ca, "TLS client CA", &["CERTIFICATE"]))
                .transpose()?,
        })),
        _ => bail!("{} and {} go together", env::TLS_CERT, env::TLS_KEY),
    }
}
