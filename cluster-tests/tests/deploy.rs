//! The deployment files are what they claim: the systemd unit passes `systemd-analyze verify`
//! with the real binary, with and without the fleet drop-in, and its sandbox rates as well
//! hardened by `systemd-analyze security`.

use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_cluster_tests::require_tools;
use shoal_cluster_tests::shoal::shoal_binary;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The unit as installed, with `ExecStart` naming the binary under test.
fn install_unit(dir: &Path, with_fleet: bool) -> PathBuf {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/shoal.service")).expect("unit");
    let binary = shoal_binary().expect("shoal binary");
    assert!(unit.contains("ExecStart=/usr/local/bin/shoal "), "the unit runs the installed binary");
    let unit = unit.replace("/usr/local/bin/shoal", &binary.display().to_string());
    let path = dir.join("shoal.service");
    std::fs::write(&path, unit).expect("write unit");
    if with_fleet {
        let drop_in = dir.join("shoal.service.d");
        std::fs::create_dir_all(&drop_in).expect("drop-in dir");
        std::fs::copy(deploy_dir().join("systemd/fleet.conf"), drop_in.join("fleet.conf"))
            .expect("drop-in");
    }
    path
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    if !require_tools(&["systemd-analyze"]) {
        return;
    }
    for with_fleet in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit = install_unit(dir.path(), with_fleet);
        let output =
            Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("verify");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // verify exits 0 over settings it ignores; every complaint is on stderr.
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "fleet {with_fleet}: {stderr}"
        );
    }
}

#[test]
fn the_systemd_unit_is_sandboxed() {
    if !require_tools(&["systemd-analyze"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = install_unit(dir.path(), true);
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&output.stdout);
    let level = text
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for shoal.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // 0 is fully locked down, 10 is unprotected; systemd calls up to 2.0 "OK".
    assert!(level <= 2.0, "exposure {level}:\n{text}");
}

#[test]
fn the_systemd_unit_command_line_passes_check_config() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/shoal.service")).expect("unit");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart=/usr/local/bin/shoal "))
        .expect("ExecStart");
    let config_dir = deploy_dir().join("systemd");
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|arg| arg.replace("${CONFIGURATION_DIRECTORY}", &config_dir.display().to_string()))
        .collect();
    let output = Command::new(shoal_binary().expect("shoal binary"))
        .args(&args)
        .arg("--check-config")
        .env("SHOAL_DATA_DIR", "/var/lib/shoal")
        .output()
        .expect("shoal --check-config");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("data in /var/lib/shoal"));
}
