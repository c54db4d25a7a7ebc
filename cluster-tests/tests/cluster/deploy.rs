//! The deployment files are what they claim: the systemd unit passes `systemd-analyze verify`
//! with the real binary, with and without the fleet drop-in, and its sandbox rates as well
//! hardened by `systemd-analyze security`; the Kubernetes files parse and their arguments pass
//! `--check-config`; the container image built FROM scratch runs a node that serves a pull.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::container::{Container, Image, static_shoal_binary};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::process::http_answers;
use shoal_cluster_tests::shoal::shoal_binary;
use shoal_cluster_tests::{Registry, RegistryOptions, free_port, require_tools};

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

/// Every document of a YAML file of deploy/kubernetes/.
fn kubernetes(file: &str) -> Vec<yaml_rust2::Yaml> {
    let path = deploy_dir().join("kubernetes").join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

#[test]
fn the_kubernetes_files_parse_and_name_each_other() {
    let kustomization = &kubernetes("kustomization.yaml")[0];
    let resources = kustomization["resources"].as_vec().expect("resources");
    let mut kinds = Vec::new();
    for resource in resources {
        for doc in kubernetes(resource.as_str().expect("a file name")) {
            assert!(doc["apiVersion"].as_str().is_some(), "{resource:?} has an apiVersion");
            kinds.push(doc["kind"].as_str().expect("kind").to_owned());
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["ConfigMap", "DaemonSet", "Namespace", "Service"]);
    let secret = kustomization["secretGenerator"][0]["name"].as_str().expect("the key's Secret");
    let daemonset = &kubernetes("daemonset.yaml")[0];
    let pod = &daemonset["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_vec().expect("volumes");
    assert!(volumes.iter().any(|v| v["secret"]["secretName"].as_str() == Some(secret)));
    assert!(volumes.iter().any(|v| v["configMap"]["name"].as_str() == Some("shoal")));
    let container = &pod["containers"][0];
    let image = kustomization["images"][0]["name"].as_str().expect("the image kustomize sets");
    assert_eq!(container["image"].as_str(), Some(image), "kustomize names the DaemonSet's image");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(container[probe]["httpGet"]["path"].as_str().is_some(), "{probe}");
    }
    let service = &kubernetes("service.yaml")[0];
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"), "headless");
}

#[test]
fn the_daemonset_args_pass_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = &kubernetes("configmap.yaml")[0]["data"]["shoal.toml"];
    std::fs::write(dir.path().join("shoal.toml"), config.as_str().expect("shoal.toml"))
        .expect("write config");
    let key = shoal_cluster_tests::generate_cluster_key(dir.path()).expect("key");
    let daemonset = &kubernetes("daemonset.yaml")[0];
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_vec()
        .expect("args")
        .iter()
        .map(|arg| {
            let arg = arg.as_str().expect("a string");
            // Mounted paths as the pod sees them → the files made here.
            arg.replace("/etc/shoal/key/cluster.key", &key.display().to_string())
                .replace(
                    "/etc/shoal/shoal.toml",
                    &dir.path().join("shoal.toml").display().to_string(),
                )
                .replace("$(NODE_IP)", "10.0.0.7")
        })
        .collect();
    assert_eq!(args[0], "run");
    let output = Command::new(shoal_binary().expect("shoal binary"))
        .args(&args)
        .arg("--check-config")
        .output()
        .expect("shoal --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("a fleet member"), "{stdout}");
}

#[tokio::test]
async fn the_container_image_is_the_static_binary_and_runs_a_node() {
    if !require_tools(&["podman", "docker-registry", "skopeo"]) {
        return;
    }
    let binary = static_shoal_binary().expect("the static shoal binary");
    let image = Image::build(&binary).expect("deploy/container/build");
    // The image is the binary and nothing to run it with: no shell, no loader, no libraries.
    assert_eq!(image.inspect("{{.Config.Entrypoint}}").expect("inspect"), "[/usr/local/bin/shoal]");
    let no_shell = image.run(&["--entrypoint", "/bin/sh"], &["-c", "true"]);
    assert!(no_shell.is_err() || !no_shell.expect("output").status.success());

    let version = image.run(&[], &["--version"]).expect("podman run --version");
    let expected = Command::new(&binary).arg("--version").output().expect("shoal --version");
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    assert_eq!(version.stdout, expected.stdout, "the image runs the binary it was built from");
    let check = image.run(&[], &["run", "--check-config"]).expect("podman run --check-config");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout.contains("data in /var/lib/shoal"), "the image's data directory: {stdout}");

    // A node in the image, on the host's network, whose upstream has a name only /etc/hosts
    // knows: the static binary resolves names without the libraries glibc would load.
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(1101))
        .await
        .expect("push");
    registry.reset_requests().await.expect("reset");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let port = free_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let upstream = format!("docker.io=http://registry.shoal.test:{}", registry.port());
    let volume = format!("{}:/var/lib/shoal", data.display());
    let mut node = Container::start(
        &image,
        &["--network=host", "--add-host=registry.shoal.test:127.0.0.1", "--volume", &volume],
        &["run", "--listen", &listen, "--no-mdns", "--upstream", &upstream],
        &dir.path().join("container.log"),
    )
    .expect("podman run");
    let http = reqwest::Client::new();
    let url = format!("http://{listen}/v2/");
    node.process()
        .wait_until(Duration::from_secs(60), || http_answers(&http, &url, |s| s.is_success()))
        .await
        .expect("the node in the container serves");

    let skopeo = Skopeo::new().expect("skopeo");
    let copied = skopeo
        .copy(
            &format!("{listen}/library/app:v1"),
            &dir.path().join("pulled"),
            &CopyOptions::default(),
        )
        .await
        .expect("pull through the node in the container");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    let requests = registry.requests().await.expect("access log");
    for blob in pushed.blobs() {
        let path = format!("/v2/library/app/blobs/{}", blob.digest);
        assert_eq!(registry.count("GET", &path).await.expect("count"), 1, "{requests:?}");
        let hex = blob.digest.hex();
        let stored = data.join("blobs/sha256").join(&hex[..2]).join(&hex);
        assert!(stored.is_file(), "the node stored {} in its volume", blob.digest);
    }
}
