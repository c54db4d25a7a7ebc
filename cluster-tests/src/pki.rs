//! A certificate authority for the TLS tests: one CA, and for each server (a registry, a node)
//! a certificate for 127.0.0.1 and `localhost` that it signs, written to files as the real
//! programs read them; and HTTP clients that trust that CA and nothing else.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::{HarnessError, Result};

/// A test CA whose certificate is at [`TestCa::ca_file`].
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A server's certificate, key and the CA that signed it, as files.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestCa {
    /// Makes a CA and writes its certificate to `dir/ca.crt`.
    pub fn new(dir: &Path) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "shoal test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca = Self { issuer, dir: dir.to_owned() };
        write(&ca.ca_file(), &ca.issuer.pem())?;
        Ok(ca)
    }

    /// `dir/ca.crt`, the CA certificate in PEM.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A new certificate for 127.0.0.1 and `localhost`, as `dir/NAME.crt` and `dir/NAME.key`.
    pub fn issue(&self, name: &str) -> Result<TlsIdentity> {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let identity = TlsIdentity {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            ca: self.ca_file(),
        };
        write(&identity.cert, &cert.pem())?;
        write(&identity.key, &key.serialize_pem())?;
        Ok(identity)
    }
}

/// An HTTP client that trusts `tls`'s CA (besides the public roots) when given one.
pub fn http_client(tls: Option<&TlsIdentity>) -> Result<reqwest::Client> {
    client_builder(tls)?.build().map_err(|e| HarnessError::http("building an HTTP client", e))
}

/// [`http_client`], to be set up further.
pub fn client_builder(tls: Option<&TlsIdentity>) -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        let pem = std::fs::read(&tls.ca)
            .map_err(|source| HarnessError::io(format!("reading {}", tls.ca.display()), source))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| HarnessError::http(tls.ca.display().to_string(), e))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|source| HarnessError::io(format!("writing {}", path.display()), source))
}
