//! containerd: one `hosts.toml` per registry, in the directory the CRI plugin's
//! `config_path` names.

use std::path::Path;

use super::{File, Node, Plan, upstream_url};

pub(super) fn plan(node: &Node, registries: &[String], dir: &Path) -> Plan {
    let files = registries
        .iter()
        .map(|registry| File {
            path: dir.join(registry).join("hosts.toml"),
            text: hosts_toml(node, registry),
        })
        .collect();
    let notes = vec![
        format!(
            "containerd reads these only if its CRI registry config says \
             config_path = \"{}\" (containerd 1.x: [plugins.\"io.containerd.grpc.v1.cri\".registry]; \
             2.x: [plugins.\"io.containerd.cri.v1.images\".registry]); restart containerd after \
             setting it",
            dir.display()
        ),
        format!("ctr ignores config_path: pass `ctr image pull --hosts-dir {}`", dir.display()),
    ];
    Plan { files, notes }
}

/// The mirror first; `server` is where containerd goes when the node does not answer.
/// containerd adds `?ns=<registry>` to what it asks a mirror, which names the upstream.
fn hosts_toml(node: &Node, registry: &str) -> String {
    format!(
        "# Written by `shoal config containerd`: pull {registry} through a Shoal node.\n\
         server = \"{}\"\n\
         \n\
         [host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        upstream_url(registry),
        node.url,
    )
}
