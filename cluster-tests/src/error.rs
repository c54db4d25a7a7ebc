//! The one error type of the harness: each variant names the part of a test setup that failed.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness step failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited with {status} before it was ready; its log ({log}) ends:\n{tail}")]
    ExitedEarly { what: String, status: ExitStatus, log: PathBuf, tail: String },
    #[error("{what} was not ready after {waited:?}; its log is {log}")]
    NotReady { what: String, waited: Duration, log: PathBuf },
    #[error("request for {what} failed: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status { method: String, url: String, status: u16, body: String },
    #[error("{url} asked for authentication but gave no usable challenge: {header:?}")]
    Challenge { url: String, header: Option<String> },
    #[error("upload location {location:?} is not a URL")]
    UploadLocation { location: String },
    #[error("`{tool}` failed ({status}): {stderr}")]
    ToolFailed { tool: String, status: ExitStatus, stderr: String },
    #[error("`cargo build` of the shoal binary failed ({status})")]
    BuildShoal { status: ExitStatus },
    #[error("hashing the htpasswd password: {0}")]
    Htpasswd(#[from] bcrypt::BcryptError),
    #[error("generating the token signing certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("loading the token signing key into ring")]
    SigningKey,
    #[error("signing a token")]
    Signing,
    #[error("encoding or decoding JSON for {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("timed out waiting for {what}")]
    Timeout { what: String },
    #[error("GET {url}: {received} bytes, expected {expected}")]
    WrongLength { url: String, received: u64, expected: u64 },
    #[error("{url} has no metric {name}")]
    NoMetric { url: String, name: String },
    #[error("{path}: holds sha256:{actual}, not the digest its name says")]
    CorruptFile { path: PathBuf, actual: String },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    pub(crate) fn http(what: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Http { what: what.into(), source }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json { what: what.into(), source }
    }
}
