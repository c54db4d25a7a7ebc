//! The registry API's certificate: loaded or refused by file name, and replaced for new
//! handshakes when its files change, never by a pair that does not match.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tls::test_pki::{Leaf, Pki};

/// Writes the pair the way certificate tools do: a new file renamed over the old one.
fn install(dir: &Path, leaf: &Leaf) -> TlsFiles {
    let files = TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    for (path, text) in [(&files.cert, &leaf.cert_pem), (&files.key, &leaf.key_pem)] {
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }
    files
}

/// The certificate a client trusting only `pki` is shown by `tls`.
async fn served_certificate(tls: &ServerTls, pki: &Pki) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tls.acceptor().clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(stream).await;
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls_stream = connector.connect(name, stream).await.expect("handshake");
    let served = tls_stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    drop(tls_stream);
    server.await.unwrap();
    served
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let first = pki.leaf();
    let files = install(dir.path(), &first);
    let tls = ServerTls::load(&files).unwrap();
    assert_eq!(served_certificate(&tls, &pki).await, first.der);
    assert!(!tls.reload_if_changed(), "nothing changed");

    let second = pki.leaf();
    install(dir.path(), &second);
    assert!(tls.reload_if_changed());
    assert_eq!(served_certificate(&tls, &pki).await, second.der);

    // A key that is not the certificate's: refused, the previous pair stays.
    let third = pki.leaf();
    let temp = files.key.with_extension("new");
    std::fs::write(&temp, &third.key_pem).unwrap();
    std::fs::rename(&temp, &files.key).unwrap();
    assert!(!tls.reload_if_changed());
    assert!(!tls.reload_if_changed(), "a failed pair is not tried again until it changes");
    assert_eq!(served_certificate(&tls, &pki).await, second.der);

    // Its certificate arrives: the pair is whole again.
    let temp = files.cert.with_extension("new");
    std::fs::write(&temp, &third.cert_pem).unwrap();
    std::fs::rename(&temp, &files.cert).unwrap();
    assert!(tls.reload_if_changed());
    assert_eq!(served_certificate(&tls, &pki).await, third.der);
}

#[test]
fn unusable_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf();
    let files = install(dir.path(), &leaf);

    let missing = TlsFiles { key: dir.path().join("nope.key"), ..files.clone() };
    let e = ServerTls::load(&missing).err().unwrap();
    assert!(matches!(e, TlsError::Read { .. }) && e.to_string().contains("nope.key"), "{e}");

    let cert_as_key = TlsFiles { key: files.cert.clone(), ..files.clone() };
    let e = ServerTls::load(&cert_as_key).err().unwrap();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");

    let key_as_cert = TlsFiles { cert: files.key.clone(), ..files.clone() };
    let e = ServerTls::load(&key_as_cert).err().unwrap();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");

    let other = pki.leaf();
    std::fs::write(&files.key, &other.key_pem).unwrap();
    let e = ServerTls::load(&files).err().unwrap();
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("tls.key") && e.to_string().contains("tls.crt"), "{e}");
}
