//! CRI-O and podman: a `registries.conf` drop-in with one prefix mirror per registry.

use std::path::Path;

use super::{File, Node, Plan, Runtime, alias};

pub(super) fn plan(runtime: Runtime, node: &Node, registries: &[String], path: &Path) -> Plan {
    let name = if runtime == Runtime::Crio { "crio" } else { "podman" };
    let mut text = format!(
        "# Written by `shoal config {name}`: pull these registries through a Shoal node.\n"
    );
    let mut aliases = Vec::new();
    for registry in registries {
        // A mirror is a reference: `node:5000/host:5443` would read as a tag.
        let prefix = match alias(registry) {
            Some(alias) => {
                aliases.push(format!("\"{alias}\" = \"{registry}\""));
                alias
            }
            None => registry.clone(),
        };
        text.push_str(&format!(
            "\n[[registry]]\nprefix = \"{registry}\"\nlocation = \"{registry}\"\n\n\
             [[registry.mirror]]\nlocation = \"{}/{prefix}\"\n",
            node.authority
        ));
        if node.plain_http {
            text.push_str("insecure = true\n");
        }
    }
    let mut notes = Vec::new();
    if !aliases.is_empty() {
        notes.push(format!(
            "the node must know these aliases: add to its configuration file\n[aliases]\n{}",
            aliases.join("\n")
        ));
    }
    if runtime == Runtime::Crio {
        notes.push("reload CRI-O (systemctl reload crio) to use the mirror".to_owned());
    }
    Plan { files: vec![File { path: path.to_owned(), text }], notes }
}
