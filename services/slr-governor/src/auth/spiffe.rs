//! The SPIFFE id of a client certificate: its one `spiffe://` URI SAN. The
//! certificate chain itself has been verified by rustls against
//! `SLRGOV_TLS_CLIENT_CA` before any request arrives.

use x509_parser::extensions::GeneralName;

/// The SPIFFE id of a DER certificate, or why it has none.
pub fn spiffe_id(der: &[u8]) -> Result<String, &'static str> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|_| "it does not parse")?;
    let san = certificate
        .subject_alternative_name()
        .map_err(|_| "its subject alternative names do not parse")?
        .ok_or("it has no SPIFFE id (URI SAN)")?;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        });
    match (ids.next(), ids.next()) {
        (Some(id), None) if super::tokens::is_spiffe_id(id) => Ok(id.to_owned()),
        (Some(_), None) => Err("its SPIFFE id is malformed"),
        (Some(_), Some(_)) => Err("it has more than one SPIFFE id"),
        (None, _) => Err("it has no SPIFFE id (URI SAN)"),
    }
}
