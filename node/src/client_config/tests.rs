//! The renderers' output, word for word, and the refusals.

use std::path::Path;

use super::*;

fn node(url: &str) -> Node {
    Node::parse(url).expect("node url")
}

fn names(list: &[&str]) -> Vec<String> {
    registries(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("registries")
}

#[test]
fn node_urls_are_checked_and_normalized() {
    let n = node("http://10.0.0.5:5000/");
    assert_eq!(
        (n.url.as_str(), n.authority.as_str(), n.plain_http),
        ("http://10.0.0.5:5000", "10.0.0.5:5000", true)
    );
    assert!(!node("https://cache.example").plain_http);
    for bad in ["10.0.0.5:5000", "ftp://x", "http://x/v2/", "http://u:p@x", "http://x/?a=1", ""] {
        assert!(Node::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn registries_default_to_the_builtin_upstreams_and_are_checked() {
    let all = registries(&[]).unwrap();
    assert!(all.contains(&"docker.io".to_owned()) && all.contains(&"ghcr.io".to_owned()));
    assert_eq!(names(&["GHCR.io", "reg.local:5443"]), ["ghcr.io", "reg.local:5443"]);
    for bad in ["", "a/b", "-x", "x y", "a\"b"] {
        assert!(registries(&[bad.to_owned()]).is_err(), "{bad}");
    }
}

#[test]
fn containerd_gets_one_hosts_toml_per_registry() {
    let plan = plan(
        Runtime::Containerd,
        &node("http://10.0.0.5:5000"),
        &names(&["docker.io", "reg.local:5443"]),
        Path::new("/etc/containerd/certs.d"),
        None,
    )
    .unwrap();
    assert_eq!(plan.files.len(), 2);
    assert_eq!(plan.files[0].path, Path::new("/etc/containerd/certs.d/docker.io/hosts.toml"));
    assert_eq!(
        plan.files[0].text,
        "# Written by `shoal config containerd`: pull docker.io through a Shoal node.\n\
         server = \"https://registry-1.docker.io\"\n\n\
         [host.\"http://10.0.0.5:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    assert_eq!(plan.files[1].path, Path::new("/etc/containerd/certs.d/reg.local:5443/hosts.toml"));
    assert!(plan.files[1].text.contains("server = \"https://reg.local:5443\""));
    assert!(plan.notes.iter().any(|n| n.contains("--hosts-dir /etc/containerd/certs.d")));
    for file in &plan.files {
        toml::from_str::<toml::Table>(&file.text).expect("valid TOML");
    }
}

#[test]
fn podman_gets_prefix_mirrors_and_an_alias_for_a_port() {
    let plan = plan(
        Runtime::Podman,
        &node("http://10.0.0.5:5000"),
        &names(&["ghcr.io", "reg.local:5443"]),
        Path::new("/etc/containers/registries.conf.d/50-shoal.conf"),
        None,
    )
    .unwrap();
    assert_eq!(
        plan.files[0].text,
        "# Written by `shoal config podman`: pull these registries through a Shoal node.\n\
         \n[[registry]]\nprefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n\n\
         [[registry.mirror]]\nlocation = \"10.0.0.5:5000/ghcr.io\"\ninsecure = true\n\
         \n[[registry]]\nprefix = \"reg.local:5443\"\nlocation = \"reg.local:5443\"\n\n\
         [[registry.mirror]]\nlocation = \"10.0.0.5:5000/reg.local-5443\"\ninsecure = true\n"
    );
    toml::from_str::<toml::Table>(&plan.files[0].text).expect("valid TOML");
    assert!(plan.notes[0].contains("[aliases]\n\"reg.local-5443\" = \"reg.local:5443\""));
    let https = plan_for(Runtime::Crio, "https://cache.example", &["quay.io"]);
    assert!(!https.files[0].text.contains("insecure"));
    assert!(https.notes.iter().any(|n| n.contains("reload CRI-O")));
}

fn plan_for(runtime: Runtime, url: &str, list: &[&str]) -> Plan {
    plan(runtime, &node(url), &names(list), Path::new("/x"), None).unwrap()
}

#[test]
fn docker_merges_into_daemon_json_and_keeps_everything_else() {
    let existing = r#"{"log-driver": "journald", "registry-mirrors": ["https://other.example"]}"#;
    let path = Path::new("/etc/docker/daemon.json");
    let once = plan(
        Runtime::Docker,
        &node("http://10.0.0.5:5000"),
        &names(&["docker.io"]),
        path,
        Some(existing),
    )
    .unwrap();
    let merged: serde_json::Value = serde_json::from_str(&once.files[0].text).unwrap();
    assert_eq!(merged["log-driver"], "journald");
    assert_eq!(
        merged["registry-mirrors"],
        serde_json::json!(["https://other.example", "http://10.0.0.5:5000"])
    );
    assert_eq!(merged["insecure-registries"], serde_json::json!(["10.0.0.5:5000"]));
    let twice = plan(
        Runtime::Docker,
        &node("http://10.0.0.5:5000"),
        &names(&["docker.io"]),
        path,
        Some(&once.files[0].text),
    )
    .unwrap();
    assert_eq!(twice.files[0].text, once.files[0].text, "running it again changes nothing");
    assert!(once.notes.iter().all(|n| !n.contains("Docker Hub only")));
    let others = plan_for(Runtime::Docker, "http://n:5000", &["ghcr.io"]);
    assert!(others.notes.iter().any(|n| n.contains("n:5000/ghcr.io/IMAGE")));
}

#[test]
fn docker_refuses_a_daemon_json_it_cannot_merge() {
    let path = Path::new("/etc/docker/daemon.json");
    for bad in ["[1]", "{not json", r#"{"registry-mirrors": "http://x"}"#] {
        let result =
            plan(Runtime::Docker, &node("http://n:5000"), &names(&["docker.io"]), path, Some(bad));
        assert!(matches!(result, Err(ClientConfigError::DaemonJson { .. })), "{bad}");
    }
    let empty =
        plan(Runtime::Docker, &node("http://n:5000"), &names(&["docker.io"]), path, Some(""));
    assert!(empty.is_ok(), "an empty file is a new one");
}

#[test]
fn write_puts_every_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(
        Runtime::Containerd,
        &node("http://n:5000"),
        &names(&["a.io", "b.io"]),
        dir.path(),
        None,
    )
    .unwrap();
    write(&plan).unwrap();
    let text = std::fs::read_to_string(dir.path().join("b.io/hosts.toml")).unwrap();
    assert_eq!(text, plan.files[1].text);
}
