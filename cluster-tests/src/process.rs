//! A child process whose output goes to log files and which is killed when dropped.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{HarnessError, Result};

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a graceful stop may take before SIGKILL.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A running child process. Dropping it kills the process and reaps it.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// Dropping sends SIGTERM first, for processes whose children outlive a SIGKILL.
    graceful: bool,
}

impl ChildProcess {
    /// Starts `command` with stdout appended to `stdout_log` and stderr to `stderr_log`.
    /// Appending keeps the output of earlier runs when a process is restarted.
    pub fn spawn(
        name: &str,
        mut command: Command,
        stdout_log: &Path,
        stderr_log: &Path,
    ) -> Result<Self> {
        let stdout = open_append(stdout_log)?;
        let stderr = open_append(stderr_log)?;
        let child = command.stdin(Stdio::null()).stdout(stdout).stderr(stderr).spawn().map_err(
            |source| HarnessError::Spawn {
                program: command.get_program().to_string_lossy().into_owned(),
                source,
            },
        )?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Self { name: name.to_owned(), child, log: stderr_log.to_owned(), graceful: false })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The log file that explains failures (stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(HarnessError::ExitedEarly {
                what: self.name.clone(),
                status,
                log: self.log.clone(),
                // The log goes with the process's temporary directory: quote its end.
                tail: log_tail(&self.log, 20),
            }),
            Err(source) => Err(HarnessError::io(format!("polling {}", self.name), source)),
        }
    }

    /// Polls `probe` until it returns true, failing if the process exits or `timeout` passes.
    pub async fn wait_until<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if probe().await {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    what: self.name.clone(),
                    waited: timeout,
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Makes dropping send SIGTERM and wait a moment before SIGKILL: nginx's workers, for
    /// one, keep serving after their master is killed.
    pub fn terminate_on_drop(mut self) -> Self {
        self.graceful = true;
        self
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; true if it did.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal("TERM", timeout).is_some()
    }

    /// Sends `signal` (`INT` is a terminal's Ctrl-C) and waits up to `timeout` for the process
    /// to exit; how it exited, if it did.
    pub fn signal(&mut self, signal: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let start = Instant::now();
        while sent && start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process (SIGKILL, as a crash or a pulled cable would) and reaps it.
    pub fn kill(&mut self) {
        if let Err(err) = self.child.kill() {
            tracing::debug!(name = self.name, %err, "kill");
        }
        if let Err(err) = self.child.wait() {
            tracing::warn!(name = self.name, %err, "reaping a killed child");
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.graceful && self.terminate(GRACE_PERIOD) {
            return;
        }
        self.kill();
    }
}

/// True when an HTTP GET of `url` gets any response whose status `accept` takes.
pub async fn http_answers(
    client: &reqwest::Client,
    url: &str,
    accept: impl Fn(reqwest::StatusCode) -> bool,
) -> bool {
    match client.get(url).timeout(Duration::from_secs(2)).send().await {
        Ok(response) => accept(response.status()),
        Err(_) => false,
    }
}

/// The last `lines` lines of a log file, or why there are none.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| HarnessError::io(format!("opening log {}", path.display()), source))
}
