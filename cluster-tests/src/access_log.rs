//! Reads the access log of a `docker-registry`: one combined-format line per request.

use std::path::{Path, PathBuf};

use crate::{HarnessError, Result};

/// One request as the registry logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string, without `?`, if any.
    pub query: Option<String>,
    pub status: u16,
}

/// The access log file and how much of it has been set aside by a reset.
#[derive(Debug)]
pub(crate) struct AccessLog {
    path: PathBuf,
    /// Lines before this many are ignored.
    skip_lines: usize,
}

impl AccessLog {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, skip_lines: 0 }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Every logged request since the last reset.
    pub(crate) fn read(&self) -> Result<Vec<LoggedRequest>> {
        Ok(self.read_lines()?.iter().skip(self.skip_lines).filter_map(|l| parse_line(l)).collect())
    }

    /// Requests logged so far are left out of later reads.
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.skip_lines = self.read_lines()?.len();
        Ok(())
    }

    fn read_lines(&self) -> Result<Vec<String>> {
        match std::fs::read_to_string(&self.path) {
            // A line is only complete once its newline is written.
            Ok(text) => Ok(text
                .split_inclusive('\n')
                .filter_map(|l| l.strip_suffix('\n'))
                .map(str::to_owned)
                .collect()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => {
                Err(HarnessError::io(format!("reading access log {}", self.path.display()), source))
            }
        }
    }
}

/// Parses `HOST - USER [DATE] "METHOD URI PROTO" STATUS SIZE "REFERER" "AGENT"`.
pub(crate) fn parse_line(line: &str) -> Option<LoggedRequest> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let uri = parts.next()?;
    let status = rest.trim_start().split(' ').next()?.parse().ok()?;
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (uri.to_owned(), None),
    };
    Some(LoggedRequest { method, path, query, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_combined_log_line() {
        let line = r#"127.0.0.1 - - [23/Nov/2026:07:26:07 +0000] "GET /v2/foo/manifests/x?ns=docker.io HTTP/1.1" 404 91 "" "curl/7.88.1""#;
        let request = parse_line(line).expect("parsed");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/v2/foo/manifests/x");
        assert_eq!(request.query.as_deref(), Some("ns=docker.io"));
        assert_eq!(request.status, 404);
    }

    #[test]
    fn ignores_other_lines_and_skips_after_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let head =
            r#"127.0.0.1 - - [23/Nov/2026:07:26:07 +0000] "HEAD /v2/ HTTP/1.1" 200 0 "" "x""#;
        std::fs::write(&path, format!("{head}\nnot a log line\n")).expect("write");
        let mut log = AccessLog::new(path.clone());
        assert_eq!(log.read().expect("read").len(), 1);
        log.reset().expect("reset");
        assert!(log.read().expect("read").is_empty());
        let get = head.replace("HEAD", "GET");
        // A line without its newline yet is not counted.
        std::fs::write(&path, format!("{head}\nnot a log line\n{get}\n{get}")).expect("write");
        let requests = log.read().expect("read");
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "GET");
    }
}
