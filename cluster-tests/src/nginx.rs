//! `nginx` serving the files of a directory on a free loopback port: the ceiling for
//! cache-hit throughput in the benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{ChildProcess, http_answers};
use crate::{HarnessError, Result, free_port};

/// How long nginx may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running nginx. Dropping it stops nginx with SIGTERM, so that its workers exit too, and
/// removes its directory.
#[derive(Debug)]
pub struct Nginx {
    // Declared first so that the process is killed before its directory is removed.
    process: ChildProcess,
    port: u16,
    root: PathBuf,
    _dir: TempDir,
}

impl Nginx {
    /// Serves the files under `root` at `http://127.0.0.1:PORT/NAME`.
    pub async fn start(root: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-nginx-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the nginx directory", source))?;
        let port = free_port()?;
        let d = dir.path().display();
        // Workers run as root so they can read test files wherever they are; `sendfile` is
        // on because that is what makes nginx the ceiling to compare with.
        let config = format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\nuser root;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            root = root.display(),
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config)
            .map_err(|source| HarnessError::io("writing the nginx config", source))?;
        let mut command = Command::new("nginx");
        command.arg("-c").arg(&config_path).arg("-p").arg(dir.path());
        let log = dir.path().join("nginx.log");
        let mut process = ChildProcess::spawn("nginx", command, &log, &log)?.terminate_on_drop();
        let url = format!("http://127.0.0.1:{port}/");
        let http = reqwest::Client::new();
        // Any status means it listens: the root may have no index file.
        process.wait_until(START_TIMEOUT, || http_answers(&http, &url, |_| true)).await?;
        Ok(Self { process, port, root: root.to_owned(), _dir: dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The master's process id; the workers are its children.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// nginx's log of its own errors.
    pub fn log_path(&self) -> &Path {
        self.process.log()
    }
}
