//! The live view: one line per finished client pull, naming the node, what it served and
//! where that node got it (`from upstream`, `from peer`, `from local`), as the pulls end.
//!
//! The line's shape is what the cluster test reads, so it stays plain text with fixed words.

use tokio::sync::{broadcast, mpsc};

use crate::pull_feed::PullEvent;
use crate::status::human_size;

/// Characters of a digest's hex shown: enough to tell the layers of one image apart.
const SHORT_HEX: usize = 12;

/// What the nodes' feeds bring to the view.
#[derive(Debug)]
pub(super) enum Seen {
    Pull {
        node: usize,
        event: PullEvent,
    },
    /// A node's events the view was too slow to take.
    Missed {
        node: usize,
        count: u64,
    },
}

/// The header above the lines.
pub(super) fn header() -> String {
    format!(
        "{:<7} {:<8} {:<50} {:>9}  {:<14} {:>7}",
        "NODE", "KIND", "WHAT", "SIZE", "SOURCE", "TIME"
    )
}

/// The line for one of `node`'s pulls.
pub(super) fn line(node: &str, event: &PullEvent) -> String {
    let sep = if event.reference.contains(':') { '@' } else { ':' };
    let what = format!("{}{sep}{}", event.repository, short(&event.reference));
    let outcome = match (&event.error, event.source) {
        (Some(error), _) => format!("FAILED {}: {error}", event.status),
        (None, Some(source)) => format!("from {source}"),
        (None, None) => "from nowhere".to_owned(),
    };
    let ms = event.duration.as_millis();
    format!(
        "{node:<7} {:<8} {what:<50} {:>9}  {outcome:<14} {ms:>4} ms",
        event.kind.as_str(),
        human_size(event.bytes),
    )
}

/// The line that says events were lost.
pub(super) fn missed(node: &str, count: u64) -> String {
    format!("{node:<7} ({count} pulls not shown: the view fell behind)")
}

/// `sha256:4f1c1d0e9a3b…` for a digest; a tag as it is.
fn short(reference: &str) -> String {
    match reference.split_once(':') {
        Some((algorithm, hex)) if hex.len() > SHORT_HEX => {
            format!("{algorithm}:{}…", &hex[..SHORT_HEX])
        }
        _ => reference.to_owned(),
    }
}

/// Forwards `node`'s pulls into the view's one channel until the node stops.
pub(super) async fn forward(
    node: usize,
    mut pulls: broadcast::Receiver<PullEvent>,
    view: mpsc::UnboundedSender<Seen>,
) {
    loop {
        let seen = match pulls.recv().await {
            Ok(event) => Seen::Pull { node, event },
            Err(broadcast::error::RecvError::Lagged(count)) => Seen::Missed { node, count },
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if view.send(seen).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fetch::Served;
    use crate::pull_feed::PullKind;

    fn event(reference: &str, source: Option<Served>, error: Option<&str>) -> PullEvent {
        PullEvent {
            kind: if reference.starts_with("sha256:") {
                PullKind::Blob
            } else {
                PullKind::Manifest
            },
            repository: "docker.io/library/alpine".to_owned(),
            reference: reference.to_owned(),
            bytes: 3_419_724,
            source,
            status: if error.is_some() { 502 } else { 200 },
            duration: Duration::from_millis(184),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_layer_names_its_node_its_short_digest_and_its_source() {
        let digest = format!("sha256:{}", "4f1c1d0e9a3b".repeat(5) + "abcd");
        let text = line("node-2", &event(&digest, Some(Served::Peer), None));
        assert!(
            text.starts_with("node-2  blob     docker.io/library/alpine@sha256:4f1c1d0e9a3b… ")
        );
        assert!(text.contains(" 3.3 MiB  from peer "), "{text}");
        assert!(text.ends_with(" 184 ms"), "{text}");
    }

    #[test]
    fn a_tag_is_shown_whole_and_a_failure_says_what_the_client_got() {
        let text = line("node-1", &event("3.20", None, Some("upstream docker.io is unavailable")));
        assert!(text.contains("docker.io/library/alpine:3.20 "), "{text}");
        assert!(text.contains("FAILED 502: upstream docker.io is unavailable"), "{text}");
    }
}
