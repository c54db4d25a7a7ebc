//! The demo's logs: every node's lines in one file in the demo's directory, so that they do not
//! drown the live view on the terminal.
//!
//! The nodes share the process and so the one subscriber; each runs on threads named after it
//! (`node-2`), and each line carries its thread's name, which says whose line it is.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use super::DemoError;
use crate::cli::DEFAULT_LOG_FILTER;

/// Sends the process's log lines to a new file at `path`, filtered by `SHOAL_LOG` as a node's.
pub(super) fn to_file(path: &Path) -> Result<(), DemoError> {
    let file = File::create(path)
        .map_err(|source| DemoError::Io { what: format!("creating {}", path.display()), source })?;
    let filter =
        EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_thread_names(true)
        .try_init()
        .map_err(|e| DemoError::Logging(e.to_string()))
}
