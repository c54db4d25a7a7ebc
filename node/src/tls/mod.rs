//! TLS: the registry API's certificate (`--tls-cert`, `--tls-key`), reloaded when its files
//! change, and the extra certificate authorities the node's own HTTP clients trust — a private
//! CA of an upstream registry (`--upstream-ca`) or of the fleet's members (`--peer-ca`).
//!
//! rustls with the `ring` provider, the same that reqwest already brings; PEM files are read
//! with `rustls-pki-types` (see docs/decisions/0005-pem-with-pki-types.md).

mod server;

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use server::{ServerTls, TlsFiles};

/// A certificate, key or CA file that cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM certificate (a block starting -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no PEM private key (a PKCS#8, PKCS#1 or SEC1 block, e.g. -----BEGIN PRIVATE KEY-----)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "the key in {} does not belong to the certificate in {}: give the key the certificate was issued for",
        key.display(),
        cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Reads every certificate of a PEM file, refusing a file with none.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem =
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { path: path.to_owned(), detail: e.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certificates)
}

/// The certificate authorities in a PEM bundle, as roots for an HTTP client; the web's public
/// roots stay trusted beside them.
pub fn client_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    read_certificates(path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|e| TlsError::Invalid {
                path: path.to_owned(),
                detail: format!("not a usable CA certificate: {e}"),
            })
        })
        .collect()
}

/// `builder` trusting the CAs in `ca` too, when given.
pub fn trusting(
    mut builder: reqwest::ClientBuilder,
    ca: Option<&Path>,
) -> Result<reqwest::ClientBuilder, TlsError> {
    if let Some(ca) = ca {
        for root in client_roots(ca)? {
            builder = builder.add_root_certificate(root);
        }
    }
    Ok(builder)
}

#[cfg(test)]
pub(crate) mod test_pki;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_gives_one_root_per_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki::Pki::new();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, format!("{}{}", pki.ca_pem(), test_pki::Pki::new().ca_pem()))
            .unwrap();
        assert_eq!(client_roots(&bundle).unwrap().len(), 2);
    }

    #[test]
    fn files_without_certificates_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let e = client_roots(&empty).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("empty.pem"), "{e}");

        let missing = dir.path().join("missing.pem");
        let e = client_roots(&missing).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }) && e.to_string().contains("missing.pem"));

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .unwrap();
        assert!(client_roots(&garbled).is_err());
    }
}
