//! Image references as people write them: `alpine`, `alpine:3.20`, `ghcr.io/org/app:v1`,
//! `docker.io/library/alpine@sha256:...`, resolved with Docker's rules (no host means
//! `docker.io`, a one-part Docker Hub name is in `library/`).

use std::fmt;

use shoal_protocol::{Reference, RepositoryName};

use super::ArchiveError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repo: RepositoryName,
    pub reference: Reference,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, ArchiveError> {
        let bad = |why: String| ArchiveError::BadReference(text.to_owned(), why);
        let (name, reference) = match text.split_once('@') {
            Some((name, digest)) => (name, digest.to_owned()),
            None => match text.rsplit_once(':') {
                // A colon after the last slash is a tag; one before it is a port.
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_owned()),
                _ => (text, "latest".to_owned()),
            },
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest)
            }
            _ => ("docker.io".to_owned(), name),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
            _ => registry,
        };
        let repo = RepositoryName::parse(path).map_err(|e| bad(e.to_string()))?;
        let repo = if registry == "docker.io" {
            repo.with_library_prefix().map_err(|e| bad(e.to_string()))?
        } else {
            repo
        };
        let reference = Reference::parse(&reference).map_err(|e| bad(e.to_string()))?;
        Ok(ImageRef { registry, repo, reference })
    }

    /// The repository as the node's path-style API names it: `docker.io/library/alpine`.
    pub fn node_name(&self) -> String {
        format!("{}/{}", self.registry, self.repo)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{}", self.registry, self.repo, tag.as_str()),
            Reference::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules_apply() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        let r = ImageRef::parse("registry.local:5443/team/app:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repo.as_str()), ("registry.local:5443", "team/app"));
        assert_eq!(r.to_string(), "registry.local:5443/team/app:v1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageRef::parse(&format!("ghcr.io/org/app@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("ghcr.io/org/app@{d}"));
        assert_eq!(ImageRef::parse("localhost:5000/x").unwrap().node_name(), "localhost:5000/x");
        // The last one is valid but over the name length cap once in `library/`.
        for bad in ["UPPER/app", "app:bad$tag", "app@md5:1", "", &"a".repeat(250)] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
