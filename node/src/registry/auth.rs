//! Client authentication on the registry API: credentials from the `Authorization` header,
//! checked before any client endpoint is served.
//!
//! Only the client endpoints are checked. The peer data plane proves the cluster key instead,
//! and the probes and metrics stay open to whatever scrapes them. Names are authorized as the
//! routing resolved them (`docker.io/library/alpine` whether the client wrote `alpine`,
//! `docker-hub/alpine` or `?ns=docker.io`), so no spelling of a name escapes its rule. Pulls
//! from a registry that passes clients' credentials through are the upstream's to decide.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;

use super::error::ApiError;
use super::route::Endpoint;
use crate::auth::{Action, ClientAuth, Presented, Refusal};
use crate::fetch::{Access, FetchError, Fetcher, Target};
use crate::upstream::{Credentials, Probe, UpstreamError};

/// Refuses the request unless its client may use `endpoint` for `action`; returns who the
/// client is (`None`: anonymous).
pub(super) async fn check(
    auth: &ClientAuth,
    fetcher: &Fetcher,
    headers: &HeaderMap,
    endpoint: &Endpoint,
    action: Action,
) -> Result<Option<String>, ApiError> {
    let target = match endpoint {
        // The status report names the fleet's members and what they hold: any client that
        // may log in may read it, as it may read `/v2/`.
        Endpoint::Base | Endpoint::Status | Endpoint::Pins => None,
        Endpoint::Manifest { target, .. }
        | Endpoint::Blob { target, .. }
        | Endpoint::ByAlias { target, .. }
        | Endpoint::Tags { target, .. }
        | Endpoint::UploadStart { target, .. }
        | Endpoint::Upload { target, .. }
        | Endpoint::Referrers { target, .. }
        | Endpoint::Pin { target, .. }
        | Endpoint::Warm { target, .. } => Some(target),
        Endpoint::PeerBlob { .. }
        | Endpoint::PeerPieces { .. }
        | Endpoint::PeerAlias { .. }
        | Endpoint::Metrics
        | Endpoint::Health
        | Endpoint::Ready
        | Endpoint::Unsupported(_) => return Ok(None),
    };
    let presented = presented(headers).ok_or(ApiError::Auth(Refusal::BadCredentials))?;
    if let Some(t) =
        target.filter(|t| action == Action::Pull && fetcher.passes_through(&t.registry))
    {
        return pass_through(fetcher, t, endpoint, presented).await;
    }
    let sent_credentials = presented != Presented::None;
    let who = match auth.identify(&presented).await {
        // Credentials this node does not know, at `/v2/`, may well be an upstream's: they are
        // checked there when the client names a registry that passes them through.
        Err(Refusal::BadCredentials) if target.is_none() && fetcher.passes_any() => None,
        identified => identified.map_err(ApiError::Auth)?,
    };
    match target {
        None => {
            // The version check is where clients learn that they must log in; with
            // pass-through, any credentials pass it (`docker login` needs a 200 there).
            let logged_in = who.is_some() || (fetcher.passes_any() && sent_credentials);
            if !logged_in && (auth.requires_login() || fetcher.passes_any()) {
                Err(ApiError::Auth(Refusal::LoginRequired))
            } else {
                Ok(who)
            }
        }
        Some(t) => {
            auth.authorize(who.as_deref(), &t.registry, t.repo.as_str(), action)
                .map_err(ApiError::Auth)?;
            Ok(who)
        }
    }
}

/// A pull from a registry that passes clients' credentials through: the upstream decides,
/// asked with the client's own credentials (`fetch/access.rs`).
async fn pass_through(
    fetcher: &Fetcher,
    target: &Target,
    endpoint: &Endpoint,
    presented: Presented,
) -> Result<Option<String>, ApiError> {
    let probe = match endpoint {
        Endpoint::Manifest { reference, .. } => Probe::Manifest(reference.clone()),
        Endpoint::Blob { digest, .. } => Probe::Blob(*digest),
        _ => Probe::Repository,
    };
    let (credentials, who) = match presented {
        Presented::None => (None, None),
        Presented::Basic { user, password } => {
            (Some(Credentials::Basic { username: user.clone(), password }), Some(user))
        }
        // A bearer token of this node's means nothing to the upstream.
        Presented::Bearer(_) => return Err(ApiError::Auth(Refusal::BadCredentials)),
    };
    match fetcher.check_access(target, &probe, credentials).await? {
        Access::Allowed => Ok(who),
        Access::Refused if who.is_none() => Err(ApiError::Auth(Refusal::LoginRequired)),
        Access::Refused => Err(ApiError::Auth(Refusal::Denied)),
        // What is not there for the client upstream is not served from the cache either.
        Access::NotThere => Err(ApiError::Fetch(match probe {
            Probe::Blob(digest) => FetchError::BlobUnknown(digest),
            Probe::Manifest(reference) => FetchError::ManifestUnknown {
                registry: target.registry.clone(),
                repo: target.repo.to_string(),
                reference: reference.to_string(),
            },
            Probe::Repository => FetchError::Upstream(UpstreamError::NotFound {
                what: format!("repository {}", target.repo),
            }),
        })),
    }
}

/// The credentials of a request; `None` when its `Authorization` header cannot be read.
fn presented(headers: &HeaderMap) -> Option<Presented> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Some(Presented::None) };
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        match text.split_once(':')? {
            // What containers/image (skopeo, podman, CRI-O) sends when it has no credentials.
            ("", "") => Some(Presented::None),
            (user, password) => {
                Some(Presented::Basic { user: user.to_owned(), password: password.to_owned() })
            }
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Presented::Bearer(rest.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(value: &str) -> Option<Presented> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        presented(&headers)
    }

    #[test]
    fn reads_basic_and_bearer_credentials() {
        assert!(presented(&HeaderMap::new()) == Some(Presented::None));
        // `alice:pa:ss`: a password may hold colons, a user name may not.
        let basic = Presented::Basic { user: "alice".into(), password: "pa:ss".into() };
        assert!(with("Basic YWxpY2U6cGE6c3M=") == Some(basic.clone()));
        assert!(with("basic  YWxpY2U6cGE6c3M= ") == Some(basic));
        assert!(with("Bearer abc.def") == Some(Presented::Bearer("abc.def".into())));
        assert!(with("Basic Og==") == Some(Presented::None), "empty user and password");
        for bad in ["Basic !!!", "Basic YWxpY2U=", "Digest x", "Bearer", "Basic"] {
            assert!(with(bad).is_none(), "{bad}");
        }
    }
}
