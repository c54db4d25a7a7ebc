//! A real `docker-registry` (CNCF distribution 2.8) on a free loopback port: the upstream of
//! the tests and, in proxy mode, the baseline of the benchmarks.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::access_log::{AccessLog, LoggedRequest};
use crate::process::{ChildProcess, http_answers};
use crate::{Credentials, HarnessError, RegistryClient, Result, free_port, registry_config};

/// How long a registry may take to answer `/v2/` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the harness waits for its marker request to reach the access log.
const LOG_SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// The query parameter of the marker requests, which [`Registry::requests`] leaves out.
const SYNC_PARAM: &str = "shoal-harness-sync";

/// How the registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    #[default]
    None,
    /// HTTP basic authentication against an htpasswd file holding this one user.
    Htpasswd(Credentials),
    /// Bearer tokens from a token service (see [`crate::TokenServer::registry_auth`]).
    Token(TokenAuth),
}

/// The `auth: token` section, and the credentials that the seeding client presents.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert_bundle: PathBuf,
    pub credentials: Option<Credentials>,
}

/// Proxy (pull-through cache) mode: the registry serves `remote_url`'s content.
#[derive(Debug, Clone)]
pub struct ProxyUpstream {
    pub remote_url: String,
    pub credentials: Option<Credentials>,
}

/// What kind of registry to start.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    pub proxy: Option<ProxyUpstream>,
    /// The address to listen on; 127.0.0.1 when unset.
    pub ip: Option<Ipv4Addr>,
    /// Run on this LAN host, in its network namespace, as a registry on that machine.
    pub host: Option<crate::lan::LanHost>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<crate::pki::TlsIdentity>,
}

impl RegistryOptions {
    /// Anonymous read and write.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Basic authentication for one user.
    pub fn htpasswd(credentials: Credentials) -> Self {
        Self { auth: RegistryAuth::Htpasswd(credentials), ..Self::default() }
    }

    /// A pull-through cache of `remote_url`.
    pub fn proxy(remote_url: impl Into<String>) -> Self {
        let proxy = ProxyUpstream { remote_url: remote_url.into(), credentials: None };
        Self { proxy: Some(proxy), ..Self::default() }
    }

    /// Listens on `ip` instead of 127.0.0.1 (e.g. [`crate::lan::Lan::gateway_ip`]).
    pub fn on(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Serves HTTPS with `tls`'s certificate.
    pub fn tls(mut self, tls: crate::pki::TlsIdentity) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Runs on a LAN host, listening on its address.
    pub fn on_host(mut self, host: &crate::lan::LanHost) -> Self {
        self.ip = Some(host.ip);
        self.host = Some(host.clone());
        self
    }
}

/// A running `docker-registry`. Dropping it kills the process and removes its storage.
#[derive(Debug)]
pub struct Registry {
    // Declared first so that the process is killed before its directory is removed.
    process: Option<ChildProcess>,
    host: Option<crate::lan::LanHost>,
    ip: Ipv4Addr,
    port: u16,
    config: PathBuf,
    access_log: AccessLog,
    error_log: PathBuf,
    credentials: Option<Credentials>,
    tls: Option<crate::pki::TlsIdentity>,
    http: reqwest::Client,
    sync_counter: AtomicU64,
    dir: TempDir,
}

impl Registry {
    /// Writes the configuration, starts the registry and waits until `/v2/` answers.
    pub async fn start(options: RegistryOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-registry-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the registry directory", source))?;
        let storage = dir.path().join("storage");
        let htpasswd = dir.path().join("htpasswd");
        let config = dir.path().join("config.yml");
        let credentials = match &options.auth {
            RegistryAuth::None => None,
            RegistryAuth::Htpasswd(credentials) => {
                let line =
                    registry_config::htpasswd_line(&credentials.username, &credentials.password)?;
                write(&htpasswd, line.as_bytes())?;
                Some(credentials.clone())
            }
            RegistryAuth::Token(token) => token.credentials.clone(),
        };
        let ip = options.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        let port = free_port()?;
        let yaml = registry_config::render(
            SocketAddrV4::new(ip, port),
            &storage,
            &options.auth,
            &htpasswd,
            options.proxy.as_ref(),
            options.tls.as_ref(),
        );
        write(&config, yaml.as_bytes())?;
        let mut registry = Self {
            process: None,
            host: options.host.clone(),
            ip,
            port,
            config,
            access_log: AccessLog::new(dir.path().join("access.log")),
            error_log: dir.path().join("registry.log"),
            credentials,
            http: crate::pki::http_client(options.tls.as_ref())?,
            tls: options.tls.clone(),
            sync_counter: AtomicU64::new(0),
            dir,
        };
        registry.launch().await?;
        Ok(registry)
    }

    /// `IP:PORT` (127.0.0.1 unless [`RegistryOptions::on`]), as a registry host in image
    /// references.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::id)
    }

    /// `http://IP:PORT`, or `https://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the registry's storage, config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The access log (stdout) and the application log (stderr).
    pub fn log_paths(&self) -> (&Path, &Path) {
        (self.access_log.path(), &self.error_log)
    }

    /// A client for seeding and reading this registry, with its credentials.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(self.url(), self.credentials.clone()).with_http(self.http.clone())
    }

    /// Kills the registry; its port then refuses connections. Storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the registry again on the same port with the same storage.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Every request the registry has answered since start or the last reset, in the order it
    /// logged them. While it runs, a marker request is sent first and awaited in the log, so
    /// that every request answered before this call is included.
    pub async fn requests(&self) -> Result<Vec<LoggedRequest>> {
        if self.process.is_some() {
            self.sync_log().await?;
        }
        let requests = self.access_log.read()?;
        Ok(requests.into_iter().filter(|r| !is_marker(r)).collect())
    }

    /// How many requests with this method and path (query ignored) were logged.
    pub async fn count(&self, method: &str, path: &str) -> Result<usize> {
        let requests = self.requests().await?;
        Ok(requests.iter().filter(|r| r.method == method && r.path == path).count())
    }

    /// Leaves every request logged so far out of later [`Registry::requests`].
    pub async fn reset_requests(&mut self) -> Result<()> {
        if self.process.is_some() {
            self.sync_log().await?;
        }
        self.access_log.reset()
    }

    async fn launch(&mut self) -> Result<()> {
        let mut command = match &self.host {
            Some(host) => host.command("docker-registry"),
            None => Command::new("docker-registry"),
        };
        command.arg("serve").arg(&self.config).current_dir(self.dir.path());
        let mut process = ChildProcess::spawn(
            "docker-registry",
            command,
            self.access_log.path(),
            &self.error_log,
        )?;
        let url = format!("{}/v2/", self.url());
        let http = self.http.clone();
        process
            .wait_until(START_TIMEOUT, || {
                http_answers(&http, &url, |s| s.is_success() || s.as_u16() == 401)
            })
            .await?;
        tracing::debug!(port = self.port, pid = process.id(), "docker-registry ready");
        self.process = Some(process);
        Ok(())
    }

    async fn sync_log(&self) -> Result<()> {
        let n = self.sync_counter.fetch_add(1, Ordering::Relaxed);
        let query = format!("{SYNC_PARAM}={n}");
        let url = format!("{}/v2/?{query}", self.url());
        self.http.get(&url).send().await.map_err(|e| HarnessError::http(&url, e))?;
        let deadline = tokio::time::Instant::now() + LOG_SYNC_TIMEOUT;
        loop {
            let seen = self.access_log.read()?.iter().any(|r| r.query.as_deref() == Some(&query));
            if seen {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    what: format!("access log line for {url}"),
                    waited: LOG_SYNC_TIMEOUT,
                    log: self.access_log.path().to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn is_marker(request: &LoggedRequest) -> bool {
    request.query.as_deref().is_some_and(|q| q.starts_with(SYNC_PARAM))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|source| HarnessError::io(format!("writing {}", path.display()), source))
}
