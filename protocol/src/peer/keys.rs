//! DHT keys for blobs and tags, and the distance that names a key's owner.
//!
//! The distance is Kademlia's: both sides are hashed with sha256 and XORed, exactly as libp2p's
//! `kbucket::Key` does, so the owner of a key is also the node the DHT routes that key towards.

use sha2::{Digest as _, Sha256};

use crate::{Digest, RepositoryName, Tag};

/// The DHT key of a blob (or a manifest by digest): the digest's raw bytes.
pub fn blob_key(digest: &Digest) -> Vec<u8> {
    digest.as_bytes().to_vec()
}

/// The DHT key of a tag: sha256 of `"tag\0" + registry + "\0" + repo + "\0" + tag`.
///
/// NUL cannot occur in any of the three parts, so no two tags share a preimage.
pub fn tag_key(registry: &str, repo: &RepositoryName, tag: &Tag) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"tag\0");
    hasher.update(registry.as_bytes());
    hasher.update(b"\0");
    hasher.update(repo.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(tag.as_str().as_bytes());
    hasher.finalize().into()
}

/// Kademlia's XOR distance between a key and a peer id (its multihash bytes), as a big-endian
/// 256-bit number: smaller is closer.
pub fn owner_distance(key: &[u8], peer_id: &[u8]) -> [u8; 32] {
    let a: [u8; 32] = Sha256::digest(key).into();
    let b: [u8; 32] = Sha256::digest(peer_id).into();
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_key_is_the_raw_digest() {
        let digest = Digest::of(b"");
        assert_eq!(
            hex::encode(blob_key(&digest)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn tag_key_golden() {
        let repo = RepositoryName::parse("library/alpine").unwrap();
        let tag = Tag::parse("3.20").unwrap();
        // sha256("tag\0docker.io\0library/alpine\03.20"), computed outside this crate.
        assert_eq!(
            hex::encode(tag_key("docker.io", &repo, &tag)),
            "4ffaf79250b5866f3796af5c24954447b61efbcadafc282c88e4424e0afce2c1"
        );
    }

    #[test]
    fn tag_key_separates_its_parts() {
        let a = tag_key("r", &RepositoryName::parse("ab/c").unwrap(), &Tag::parse("d").unwrap());
        let b = tag_key("r", &RepositoryName::parse("ab").unwrap(), &Tag::parse("cd").unwrap());
        assert_ne!(a, b);
    }

    #[test]
    fn distance_is_symmetric_xor_of_hashes() {
        let d = owner_distance(b"key", b"peer");
        assert_eq!(d, owner_distance(b"peer", b"key"));
        assert_eq!(owner_distance(b"same", b"same"), [0u8; 32]);
        // sha256("key") XOR sha256("peer"), computed outside this crate.
        assert_eq!(
            hex::encode(d),
            "038cfc2d4278be42584dc50cabdfb11a21888d7d943cd804fe4b9d0659abd923"
        );
    }
}
