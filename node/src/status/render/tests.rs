//! The table `shoal status` prints, pinned.

use super::*;
use crate::fetch::Served;
use crate::status::report::{Download, Member, NodeInfo, RecentError, ServedReport, StoreReport};

fn report() -> StatusReport {
    StatusReport {
        generated_at: 1_000,
        node: NodeInfo {
            version: "0.1.0 (abc)".into(),
            peer_id: Some("12D3KooA".into()),
            site: Some("eu".into()),
        },
        members: vec![
            Member {
                peer_id: "12D3KooA".into(),
                site: Some("eu".into()),
                address: "http://10.0.0.1:5000".into(),
                reachable: true,
                version: "0.1.0".into(),
                local: true,
            },
            Member {
                peer_id: "12D3KooB".into(),
                site: None,
                address: "http://10.0.0.2:5000".into(),
                reachable: false,
                version: "0.1.0".into(),
                local: false,
            },
        ],
        store: StoreReport { bytes: 3 << 30, max_bytes: Some(10 << 30), blobs: 42, evictions: 7 },
        served: ServedReport::new(3 << 20, 1 << 20, 0),
        downloads: vec![Download {
            digest: "sha256:ab".into(),
            bytes: 1 << 20,
            size: Some(4 << 20),
            source: Served::Peer,
        }],
        errors: vec![RecentError {
            at: 988,
            what: "GET blob docker.io/library/alpine@sha256:ab".into(),
            status: 502,
            message: "upstream docker.io is unavailable".into(),
        }],
    }
}

#[test]
fn renders_a_table() {
    let text = render(&report());
    let expected = "\
Node       shoal 0.1.0 (abc), peer 12D3KooA, site eu
Store      3.0 GiB of 10.0 GiB, 42 blobs, 7 evicted
Served     local 3.0 MiB, peer 1.0 MiB, upstream 0 B; hit ratio 75.0 %
Saved      4.0 MiB served without this node going upstream

Members    2 (1 reachable)
  PEER ID               SITE  ADDRESS               REACHABLE  VERSION
  12D3KooA (this node)  eu    http://10.0.0.1:5000  yes        0.1.0
  12D3KooB              -     http://10.0.0.2:5000  NO         0.1.0

Downloads  1 in flight
  DIGEST     PROGRESS                  FROM
  sha256:ab  1.0 MiB / 4.0 MiB (25 %)  peer

Errors     the last 1, newest last
  WHEN     STATUS  REQUEST                                      MESSAGE
  12s ago  502     GET blob docker.io/library/alpine@sha256:ab  upstream docker.io is unavailable
";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn a_node_alone_with_nothing_served() {
    let mut report = report();
    report.members.clear();
    report.downloads.clear();
    report.errors.clear();
    report.served = ServedReport::new(0, 0, 0);
    report.store.max_bytes = None;
    let text = render(&report);
    assert!(text.contains("Store      3.0 GiB, no cap, 42 blobs"), "{text}");
    assert!(text.contains("hit ratio -\n"), "{text}");
    assert!(text.contains("Members    none: this node runs alone"), "{text}");
    assert!(text.contains("Downloads  none in flight"), "{text}");
    assert!(text.contains("Errors     none recently"), "{text}");
}

#[test]
fn the_json_round_trips() {
    let report = report();
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""source":"peer""#), "{json}");
    assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), report);
}
