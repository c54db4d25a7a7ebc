//! Skips a test when a system tool it needs is not installed, except under CI.

use std::path::{Path, PathBuf};

/// Directories searched after `PATH`: root's tools (`nginx`, `ip`) live in `sbin`, which a
/// non-login environment may leave out of `PATH`.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// True when `tool` is installed. When it is not: panics if `CI=true` (CI must run every
/// test), otherwise prints why the test is skipped and returns false so the test can return.
pub fn require_tool(tool: &str) -> bool {
    if find_tool(tool).is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`{tool}` is required under CI=true but is not installed (.ci/run installs it)");
    }
    eprintln!("skipped: `{tool}` is not installed; run .ci/run or install it to run this test");
    false
}

/// [`require_tool`] for each of `tools`; true only when all are there.
pub fn require_tools(tools: &[&str]) -> bool {
    // Check every tool, so one run names all that are missing.
    let missing = tools.iter().filter(|tool| !require_tool(tool)).count();
    missing == 0
}

/// The path of an executable named `tool` on `PATH` or in the sbin directories.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_tool_that_is_always_there() {
        assert!(find_tool("sh").is_some());
        assert!(require_tool("sh"));
    }

    #[test]
    fn does_not_find_a_tool_that_does_not_exist() {
        assert!(find_tool("shoal-no-such-tool-here").is_none());
    }
}
