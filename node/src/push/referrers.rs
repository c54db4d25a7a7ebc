//! `GET /v2/<name>/referrers/<digest>`: the manifests pushed with that digest as `subject`,
//! as an OCI image index, filtered by `artifactType` when asked.

use bytes::Bytes;
use shoal_protocol::Digest;
use shoal_protocol::media_type::OCI_INDEX;

use super::{PushError, Pusher};
use crate::fetch::Target;

/// A referrers answer: the index, and whether the `artifactType` filter was applied.
#[derive(Debug)]
pub struct ReferrersList {
    pub body: Bytes,
    pub filtered: bool,
}

impl Pusher {
    pub fn referrers(
        &self,
        target: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersList, PushError> {
        let mut found = self.store.referrers(&target.registry, &target.repo, subject)?;
        if let Some(wanted) = artifact_type {
            found.retain(|r| r.artifact_type.as_deref() == Some(wanted));
        }
        let manifests: Vec<serde_json::Value> = found
            .into_iter()
            .map(|r| {
                let mut d = serde_json::json!({
                    "mediaType": r.media_type,
                    "digest": r.digest.to_string(),
                    "size": r.size,
                });
                if let Some(t) = r.artifact_type {
                    d["artifactType"] = t.into();
                }
                if let Some(a) =
                    r.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        Ok(ReferrersList {
            body: Bytes::from(index.to_string()),
            filtered: artifact_type.is_some(),
        })
    }
}
