//! `tags/list`: the upstream's answer when it can give one, the tags this node has seen when not,
//! and the tags pushed here with them.

use bytes::Bytes;

use super::{FetchError, Fetcher, Target};

/// A page of tags, as JSON, with the `Link` to the next page when there is one.
#[derive(Debug)]
pub struct TagList {
    pub body: Bytes,
    /// The query string (`n=..&last=..`) of the next page.
    pub next: Option<String>,
}

impl Fetcher {
    pub async fn tags(
        &self,
        target: &Target,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<TagList, FetchError> {
        // Tags pushed here are listed from here: with the tags the node has seen, for a name
        // that is an upstream's; alone, for a hosted name (no upstream to ask).
        let pushed = self.store.list_pushed_tags(&target.registry, &target.repo)?;
        let upstream = match self.upstreams.get(&target.registry) {
            Ok(upstream) if pushed.is_empty() => upstream,
            Err(e) if pushed.is_empty() => return Err(e),
            _ => {
                let mut known = self.store.list_tags(&target.registry, &target.repo)?;
                known.extend(pushed);
                known.sort();
                known.dedup();
                return Ok(local_page(target, known, n, last));
            }
        };
        let result = upstream.list_tags(&target.repo, n, last).await;
        match self.upstreams.counted(&target.registry, "tags", result) {
            Ok(page) => {
                Ok(TagList { body: page.body, next: page.link.as_deref().and_then(next_query) })
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(registry = %target.registry, repo = %target.repo, error = %e, "upstream unavailable; listing cached tags");
                let known = self.store.list_tags(&target.registry, &target.repo)?;
                Ok(local_page(target, known, n, last))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The query of a `Link: </v2/...?n=2&last=b>; rel="next"` header, to re-root it on this node.
fn next_query(link: &str) -> Option<String> {
    let inner = link.trim().strip_prefix('<')?.split_once('>')?.0;
    Some(inner.split_once('?')?.1.to_owned())
}

fn local_page(
    target: &Target,
    mut tags: Vec<String>,
    n: Option<u32>,
    last: Option<&str>,
) -> TagList {
    tags.sort();
    if let Some(last) = last {
        tags.retain(|t| t.as_str() > last);
    }
    let mut next = None;
    if let Some(n) = n.map(|n| n as usize)
        && tags.len() > n
    {
        tags.truncate(n);
        next = tags.last().map(|l| format!("n={n}&last={l}"));
    }
    let body = serde_json::json!({ "name": target.repo.as_str(), "tags": tags });
    TagList { body: Bytes::from(body.to_string()), next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::RepositoryName;

    #[test]
    fn next_link_query() {
        assert_eq!(
            next_query("</v2/library/app/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("n=2&last=b")
        );
        assert_eq!(next_query("garbage"), None);
    }

    #[test]
    fn local_pagination() {
        let target =
            Target { registry: "docker.io".into(), repo: RepositoryName::parse("a/b").unwrap() };
        let tags = vec!["c".to_owned(), "a".to_owned(), "b".to_owned()];
        let page = local_page(&target, tags.clone(), Some(2), None);
        assert_eq!(page.next.as_deref(), Some("n=2&last=b"));
        let json: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        assert_eq!(json["tags"], serde_json::json!(["a", "b"]));
        let page = local_page(&target, tags, Some(2), Some("b"));
        assert_eq!(page.next, None);
        let json: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        assert_eq!(json["tags"], serde_json::json!(["c"]));
    }
}
