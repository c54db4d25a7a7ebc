//! What a node tells its peers about itself: where its HTTP data plane is, and its site.
//!
//! It travels as identify's agent version, which every connection exchanges anyway:
//! `shoal/<version> http=<url> site=<label>`. Space-separated `key=value` pairs after the
//! product token, unknown keys ignored, so a later version can add a pair without breaking
//! older peers.

use std::fmt;

use super::message::check_url;

const PRODUCT: &str = "shoal/";
const MAX_SITE_LEN: usize = 64;

/// A node's advert: its data-plane URL and its locality label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAdvert {
    pub http_url: String,
    pub site: Option<String>,
}

/// Why an advert (or a value meant for one) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    #[error("agent version does not start with \"{PRODUCT}\": not a Shoal node")]
    NotShoal,
    #[error("advert has no http=<url> pair")]
    MissingUrl,
    #[error("advertised URL is not an http(s) URL without spaces")]
    BadUrl,
    #[error("site label must be 1-{MAX_SITE_LEN} characters of a-z, A-Z, 0-9, '.', '_', '-'")]
    BadSite,
}

impl PeerAdvert {
    /// Checks both values, so that what this node sends parses on the other side.
    pub fn new(http_url: String, site: Option<String>) -> Result<Self, AdvertError> {
        let http_url = check_url(http_url).map_err(|_| AdvertError::BadUrl)?;
        let site = site.map(check_site).transpose()?;
        Ok(Self { http_url, site })
    }

    /// The agent version string, with this crate's version as the product version.
    pub fn to_agent_version(&self) -> String {
        self.to_string()
    }

    /// The version in an agent version string (`0.1.0` of `shoal/0.1.0 http=...`); empty when
    /// it names none.
    pub fn product_version(s: &str) -> &str {
        s.split(' ').next().and_then(|w| w.strip_prefix(PRODUCT)).unwrap_or("")
    }

    pub fn parse_agent_version(s: &str) -> Result<Self, AdvertError> {
        let mut words = s.split(' ');
        if !words.next().is_some_and(|w| w.starts_with(PRODUCT)) {
            return Err(AdvertError::NotShoal);
        }
        let (mut http_url, mut site) = (None, None);
        for (key, value) in words.filter_map(|w| w.split_once('=')) {
            match key {
                "http" => http_url = Some(value.to_owned()),
                "site" => site = Some(value.to_owned()),
                _ => {}
            }
        }
        Self::new(http_url.ok_or(AdvertError::MissingUrl)?, site)
    }
}

impl fmt::Display for PeerAdvert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PRODUCT}{} http={}", env!("CARGO_PKG_VERSION"), self.http_url)?;
        if let Some(site) = &self.site {
            write!(f, " site={site}")?;
        }
        Ok(())
    }
}

fn check_site(s: String) -> Result<String, AdvertError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SITE_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(s) } else { Err(AdvertError::BadSite) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_version_round_trip() {
        let advert =
            PeerAdvert::new("http://10.0.0.5:5000".into(), Some("eu-west.1".into())).unwrap();
        let text = advert.to_agent_version();
        assert_eq!(
            text,
            format!("shoal/{} http=http://10.0.0.5:5000 site=eu-west.1", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(PeerAdvert::parse_agent_version(&text).unwrap(), advert);
        assert_eq!(PeerAdvert::product_version(&text), env!("CARGO_PKG_VERSION"));

        let no_site = PeerAdvert::new("https://n1:5000".into(), None).unwrap();
        assert_eq!(PeerAdvert::parse_agent_version(&no_site.to_agent_version()).unwrap(), no_site);
    }

    #[test]
    fn later_versions_with_more_pairs_still_parse() {
        let advert =
            PeerAdvert::parse_agent_version("shoal/9.0.0 load=3 http=http://a:1 zone=x").unwrap();
        assert_eq!(advert, PeerAdvert { http_url: "http://a:1".into(), site: None });
    }

    #[test]
    fn foreign_or_broken_adverts_are_refused() {
        let parse = PeerAdvert::parse_agent_version;
        assert_eq!(parse("rust-libp2p/0.57 http=http://a:1"), Err(AdvertError::NotShoal));
        assert_eq!(parse("shoal/0.1.0 site=x"), Err(AdvertError::MissingUrl));
        assert_eq!(parse("shoal/0.1.0 http=ftp://a"), Err(AdvertError::BadUrl));
        assert_eq!(parse("shoal/0.1.0 http=http://a:1 site="), Err(AdvertError::BadSite));
        assert_eq!(
            PeerAdvert::new("http://a:1".into(), Some("two words".into())),
            Err(AdvertError::BadSite)
        );
    }
}
