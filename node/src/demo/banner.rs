//! What the demo prints once its nodes see each other: where they are, how to pull through
//! them with each client, how to read what follows, and where the logs are.
//!
//! The `node-N  URL  peer ID` lines are what the cluster test reads to find the nodes.

use std::fmt::Write;
use std::path::Path;

/// The image the hints pull: small, and on Docker Hub, which every demo without `--upstream`
/// can reach.
const EXAMPLE: &str = "docker.io/library/alpine:3.20";

/// One node as the banner names it.
#[derive(Debug, Clone)]
pub(super) struct NodeLine {
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub peer_id: String,
}

/// An upstream as the nodes resolved it.
#[derive(Debug, Clone)]
pub(super) struct UpstreamLine {
    pub name: String,
    pub url: String,
    pub default: bool,
}

pub(super) fn render(
    nodes: &[NodeLine],
    upstreams: &[UpstreamLine],
    dir: &Path,
    log: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Shoal demo: {} nodes on this machine, one fleet with a cluster key of its own.\n\
         Their data, key and log are in {}\n",
        nodes.len(),
        dir.display()
    );
    for node in nodes {
        let _ = writeln!(out, "  {}  {}  peer {}", node.name, node.url, node.peer_id);
    }
    out.push_str("\nUpstreams\n");
    for upstream in upstreams {
        let default = if upstream.default { "  (names without a registry)" } else { "" };
        let _ = writeln!(out, "  {:<18} {}{default}", upstream.name, upstream.url);
    }
    if let (Some(first), Some(second)) = (nodes.first(), nodes.get(1)) {
        let host = |node: &NodeLine| node.url.trim_start_matches("http://").to_owned();
        let (a, b) = (host(first), host(second));
        let _ = write!(
            out,
            "\nPull an image through one node, then through another: the second takes its layers \
             from a peer.\nAny image your upstreams hold will do; the registry's name comes first \
             in the path:\n\n  \
             skopeo copy --src-tls-verify=false docker://{a}/{EXAMPLE} dir:alpine-1\n  \
             skopeo copy --src-tls-verify=false docker://{b}/{EXAMPLE} dir:alpine-2\n  \
             podman pull --tls-verify=false {a}/{EXAMPLE}\n  \
             ctr image pull --plain-http {a}/{EXAMPLE}\n  \
             docker pull {a}/{EXAMPLE}    (Docker pulls from 127.0.0.1 over plain HTTP)\n\n\
             Or make a node a runtime's mirror: \
             shoal config containerd|docker|crio|podman --node {}\n",
            first.url
        );
    }
    out.push_str(
        "\nBelow, a line per manifest or layer a node served, and where that node got it:\n  \
         from upstream  it fetched it itself (it owns the digest: the fleet fetches each layer once)\n  \
         from peer      it streamed it from another node\n  \
         from local     it held it already\n",
    );
    let _ = writeln!(
        out,
        "\nThe nodes' log: {}. Ctrl-C stops the nodes and removes {}.\n",
        log.display(),
        dir.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_node_and_pulls_through_the_first_two() {
        let nodes: Vec<NodeLine> = (1..=3)
            .map(|i| NodeLine {
                name: format!("node-{i}"),
                url: format!("http://127.0.0.1:4000{i}"),
                peer_id: format!("12D3KooWpeer{i}"),
            })
            .collect();
        let upstreams = [UpstreamLine {
            name: "docker.io".to_owned(),
            url: "http://127.0.0.1:9".to_owned(),
            default: true,
        }];
        let text = render(&nodes, &upstreams, Path::new("/tmp/d"), Path::new("/tmp/d/nodes.log"));
        for i in 1..=3 {
            let line = format!("\n  node-{i}  http://127.0.0.1:4000{i}  peer 12D3KooWpeer{i}\n");
            assert!(text.contains(&line), "{text}");
        }
        assert!(
            text.contains("docker://127.0.0.1:40001/docker.io/library/alpine:3.20 dir:alpine-1")
        );
        assert!(
            text.contains("docker://127.0.0.1:40002/docker.io/library/alpine:3.20 dir:alpine-2")
        );
        assert!(text.contains("docker.io          http://127.0.0.1:9  (names without"), "{text}");
        assert!(text.contains("\nTheir data, key and log are in /tmp/d\n"), "{text}");
        assert!(text.contains("The nodes' log: /tmp/d/nodes.log."), "{text}");
    }
}
