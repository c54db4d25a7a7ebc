//! `--max-size`: the store stays under its cap by evicting the least recently used blobs, and an
//! evicted blob is simply fetched again.

use crate::{api_support, support};

use api_support::{Node, NodeOptions, fake_with_health, pattern, read_body};
use support::fake_upstream::FakeUpstream;

const MIB: usize = 1024 * 1024;

fn stored_bytes(node: &Node) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| {
                let meta = e.metadata().expect("metadata");
                if meta.is_dir() { walk(&e.path()) } else { meta.len() }
            })
            .sum()
    }
    walk(&node.data_dir.join("blobs"))
}

#[tokio::test]
async fn least_recently_used_blobs_are_evicted_to_stay_under_the_cap() {
    let (fake, _health) = fake_with_health().await;
    let options = NodeOptions { max_size: Some("3MiB".to_owned()), ..NodeOptions::default() };
    let node = Node::start(&fake.url(), options).await;
    let blobs: Vec<_> = (0..4u8).map(|i| pattern(MIB, i)).collect();
    let digests: Vec<_> = blobs.iter().map(|b| fake.put_blob("library/big", b)).collect();
    let path = |i: usize| FakeUpstream::blob_path("library/big", &digests[i]);

    for (i, bytes) in blobs.iter().enumerate().take(3) {
        let (got, err) = read_body(node.get_ok(&path(i)).await).await;
        assert!(err.is_none());
        assert_eq!(&got, bytes);
        node.assert_stored(&digests[i]).await;
    }
    // Blob 0 is used again, so blob 1 is now the least recently used.
    let (got, _) = read_body(node.get_ok(&path(0)).await).await;
    assert_eq!(got, blobs[0]);
    let (got, _) = read_body(node.get_ok(&path(3)).await).await;
    assert_eq!(got, blobs[3]);
    node.assert_stored(&digests[3]).await;

    let mut evicted = false;
    for _ in 0..100 {
        if !node.blob_file(&digests[1]).exists() {
            evicted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(evicted, "the least recently used blob is evicted");
    assert!(node.blob_file(&digests[0]).exists(), "a recently used blob stays");
    assert!(stored_bytes(&node) <= 3 * MIB as u64, "the store is under its cap");

    // The evicted blob comes back from upstream on the next pull.
    let (got, err) = read_body(node.get_ok(&path(1)).await).await;
    assert!(err.is_none());
    assert_eq!(got, blobs[1]);
    assert_eq!(fake.count("GET", &path(1)), 2);
    assert_eq!(fake.count("GET", &path(0)), 1);
}

#[tokio::test]
async fn lifecycle_rules_remove_what_their_prefix_left_unused_and_nothing_else() {
    let (fake, _health) = fake_with_health().await;
    let rules = "[lifecycle]\ninterval = \"1s\"\n\n[[lifecycle.rule]]\n\
                 prefix = \"docker.io/library/stale\"\nexpire_unused = \"1h\"\n";
    let options = NodeOptions { extra_toml: Some(rules.to_owned()), ..NodeOptions::default() };
    let node = Node::start(&fake.url(), options).await;
    // Pulled as clients pull: the manifest first, which says which repository its blobs are in.
    let stale = pattern(MIB, 7);
    let fresh = pattern(MIB, 8);
    let stale_image = fake.put_image("library/stale", "v1", &[&stale]);
    let fresh_image = fake.put_image("library/fresh", "v1", &[&fresh]);
    let (stale_digest, fresh_digest) = (stale_image.layers[0], fresh_image.layers[0]);
    for (repo, digest, bytes) in
        [("library/stale", &stale_digest, &stale), ("library/fresh", &fresh_digest, &fresh)]
    {
        let manifest = node.get_ok(&FakeUpstream::manifest_path(repo, "v1")).await;
        assert!(manifest.status().is_success());
        let (got, err) = read_body(node.get_ok(&FakeUpstream::blob_path(repo, digest)).await).await;
        assert!(err.is_none());
        assert_eq!(&got, bytes);
        node.assert_stored(digest).await;
    }

    // Unread for longer than its rule allows, the stale blob goes; the other has no rule.
    node.clock.advance(std::time::Duration::from_secs(2 * 3600));
    let mut removed = false;
    for _ in 0..100 {
        if !node.blob_file(&stale_digest).exists() {
            removed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(removed, "the lifecycle rule did not remove the unused blob");
    assert!(node.blob_file(&fresh_digest).exists(), "a blob no rule covers stays");
    // Asked for again, it is simply fetched again.
    let (got, err) =
        read_body(node.get_ok(&FakeUpstream::blob_path("library/stale", &stale_digest)).await)
            .await;
    assert!(err.is_none());
    assert_eq!(got, stale);
}
