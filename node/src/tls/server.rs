//! The registry API's TLS: one certificate chain and key, read at start (a bad file stops the
//! node with the file's name) and read again whenever either file changes or the node gets
//! SIGHUP, so a renewed certificate (cert-manager, certbot, a rotated Kubernetes secret) is
//! served without a restart. A change that does not load — a key written before its
//! certificate, say — is logged and the previous pair is kept until the files change again.
//!
//! Connections already open keep the certificate they were made with; every new handshake
//! gets the current one.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{TlsError, read_certificates};

/// How often the files are looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// `--tls-cert` and `--tls-key`: a PEM certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Accepts TLS connections with the current certificate of [`TlsFiles`].
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<Reloading>,
}

impl ServerTls {
    /// Reads the files; fails, naming the file, when they do not make a usable pair.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, stamp) = load_pair(files, &provider)?;
        let resolver = Arc::new(Reloading {
            files: files.clone(),
            provider: provider.clone(),
            state: RwLock::new(State { key, loaded: stamp, seen: stamp }),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid { path: files.cert.clone(), detail: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), resolver })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again if they changed since they were last looked at; `true` when a
    /// new pair is now served. The node's own reloads run in [`Self::spawn_reloads`].
    #[cfg(test)]
    pub fn reload_if_changed(&self) -> bool {
        self.resolver.reload(false)
    }

    /// Looks at the files every few seconds, and reloads at once on SIGHUP, until `stop`.
    pub fn spawn_reloads(&self, stop: CancellationToken) {
        let resolver = self.resolver.clone();
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are still checked for changes"))
                    .ok();
            let sighup = async |hangup: &mut Option<tokio::signal::unix::Signal>| match hangup {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            };
            loop {
                let forced = tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RELOAD_CHECK) => false,
                    _ = sighup(&mut hangup) => true,
                };
                let resolver = resolver.clone();
                // Small files, but still file system calls: off the runtime's threads.
                let _ = tokio::task::spawn_blocking(move || resolver.reload(forced)).await;
            }
        });
    }
}

/// The files' modification time, length and inode: a rewrite, a rename over the file and a
/// Kubernetes secret's symlink swap each change one of them.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    [&files.cert, &files.key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len(), meta.ino()))
    })
}

fn load_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Stamp), TlsError> {
    // Stamped first: a change made while reading is seen at the next check.
    let stamp = stamp(files);
    let chain = read_certificates(&files.cert)?;
    let key_pem = std::fs::read(&files.key)
        .map_err(|source| TlsError::Read { path: files.key.clone(), source })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: files.key.clone() },
        e => TlsError::Invalid { path: files.key.clone(), detail: e.to_string() },
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::Mismatch { cert: files.cert.clone(), key: files.key.clone() }
        }
        e => TlsError::Invalid { path: files.key.clone(), detail: e.to_string() },
    })?;
    Ok((Arc::new(certified), stamp))
}

/// The certificate every new handshake gets.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    /// The files as they were when `key` was read.
    loaded: Stamp,
    /// The files as they were last looked at, loaded or not: a pair that failed is not tried
    /// (nor logged) again until one of its files changes.
    seen: Stamp,
}

impl Reloading {
    fn reload(&self, forced: bool) -> bool {
        let now = stamp(&self.files);
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if !forced && (now == state.seen || now == state.loaded) {
                return false;
            }
        }
        let result = load_pair(&self.files, &self.provider);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((key, loaded)) => {
                state.key = key;
                state.seen = loaded;
                state.loaded = loaded;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                state.seen = now;
                tracing::warn!(error = %e, "the changed TLS files cannot be used; still serving the previous certificate");
                false
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.state.read().unwrap_or_else(|e| e.into_inner()).key.clone())
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
