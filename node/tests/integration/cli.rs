//! The binary's own surface: `--version` names the commit, `--log-format json` writes one JSON
//! object per line, `shoal config` prints what it would write, and `shoal status` says which
//! node it could not reach.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn version_names_the_commit() {
    let output = Command::new(SHOAL).arg("--version").output().expect("shoal --version");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let (_, commit) = text.trim().split_once(" (").expect("version (commit)");
    let commit = commit.strip_suffix(')').expect("closing parenthesis");
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(SHOAL)
        .args(["run", "--log-format", "json", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("shoal run");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    for line in stderr.lines() {
        let line = line.expect("a log line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{line}");
        seen += 1;
        if line.contains("serving the registry API") || seen >= 5 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(seen > 0, "the node logged nothing");
}

#[test]
fn config_dry_run_prints_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("hosts");
    let output = Command::new(SHOAL)
        .args(["config", "containerd", "--node", "http://10.0.0.5:5000", "--registry", "ghcr.io"])
        .args(["--dry-run", "--out"])
        .arg(&out)
        .output()
        .expect("shoal config");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.contains("[host.\"http://10.0.0.5:5000\"]"), "{text}");
    assert!(text.contains("server = \"https://ghcr.io\""), "{text}");
    assert!(!out.exists(), "a dry run writes nothing");
    let refused = Command::new(SHOAL)
        .args(["config", "podman", "--node", "10.0.0.5:5000", "--dry-run"])
        .output()
        .expect("shoal config");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--node"), "names what is wrong");
}

#[test]
fn check_config_loads_everything_and_names_what_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("cluster.key");
    let made = Command::new(SHOAL).args(["key", "generate", "--out"]).arg(&key).output().unwrap();
    assert!(made.status.success());
    let good = Command::new(SHOAL)
        .args(["run", "--check-config", "--site", "dc1", "--cluster-key"])
        .arg(&key)
        .output()
        .expect("shoal run --check-config");
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(text.contains("configuration is valid") && text.contains("site dc1"), "{text}");

    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "listen = 5000\n").unwrap();
    for args in [
        vec!["--cluster-key".to_owned(), garbage.display().to_string()],
        vec!["--config".to_owned(), toml.display().to_string()],
        vec!["--upstream".to_owned(), "ghcr.io=ftp://ghcr.io".to_owned()],
    ] {
        let bad = Command::new(SHOAL)
            .args(["run", "--check-config"])
            .args(&args)
            .output()
            .expect("shoal run --check-config");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success(), "{args:?} passed the check");
        assert!(stderr.contains(args[1].as_str()) || stderr.contains("ftp"), "{args:?}: {stderr}");
    }
}

#[test]
fn status_names_the_node_it_cannot_reach() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let node = format!("http://127.0.0.1:{port}");
    let output = Command::new(SHOAL).args(["status", "--node", &node]).output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot reach the node at {node}/_shoal/status")), "{stderr}");
}
