//! Docker: `registry-mirrors` (and `insecure-registries` for a plain-HTTP node) merged into
//! `daemon.json`, keeping every other setting. Docker mirrors Docker Hub only.

use std::path::Path;

use serde_json::{Map, Value};

use super::{ClientConfigError, File, Node, Plan};

pub(super) fn plan(
    node: &Node,
    registries: &[String],
    path: &Path,
    existing: Option<&str>,
) -> Result<Plan, ClientConfigError> {
    let mut daemon = match existing.map(str::trim).filter(|t| !t.is_empty()) {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ClientConfigError::DaemonJson { path: path.to_owned() }),
        },
    };
    add_to_list(&mut daemon, "registry-mirrors", &node.url, path)?;
    if node.plain_http {
        add_to_list(&mut daemon, "insecure-registries", &node.authority, path)?;
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(daemon))
        .expect("a map of JSON values serializes");
    text.push('\n');
    let mut notes = vec!["restart Docker (systemctl restart docker) to use the mirror".to_owned()];
    let others: Vec<&str> =
        registries.iter().map(String::as_str).filter(|r| *r != "docker.io").collect();
    if !others.is_empty() {
        notes.push(format!(
            "Docker mirrors Docker Hub only; pull other registries through the node by name, \
             e.g. docker pull {}/{}/IMAGE",
            node.authority, others[0]
        ));
    }
    Ok(Plan { files: vec![File { path: path.to_owned(), text }], notes })
}

/// Appends `value` to the list under `key` unless it is there already.
fn add_to_list(
    daemon: &mut Map<String, Value>,
    key: &str,
    value: &str,
    path: &Path,
) -> Result<(), ClientConfigError> {
    let list = daemon.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = list else {
        return Err(ClientConfigError::DaemonJson { path: path.to_owned() });
    };
    if !items.iter().any(|item| item.as_str() == Some(value)) {
        items.push(Value::String(value.to_owned()));
    }
    Ok(())
}
