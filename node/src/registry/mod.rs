//! The OCI distribution HTTP API.
//!
//! One fallback handler parses every request into an [`Endpoint`] and calls the matching
//! `handle_*`; errors become OCI error bodies in one place ([`ApiError`]). This layer never
//! touches files or the network itself: it asks the [`Fetcher`]. Client endpoints are checked
//! against [`ClientAuth`] first (`auth.rs`).

mod auth;
mod error;
mod handlers;
mod observe;
mod range;
mod route;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::Response;

pub use error::ApiError;
pub use route::{Endpoint, Routing, TagsQuery};

use shoal_protocol::peer::{PeerAuthError, SignedRequest};

use crate::auth::ClientAuth;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::peer_auth::{PEER_AUTH_HEADER, PeerAuthFailure, RequestVerifier};
use crate::pull_feed::PullFeed;
use crate::status::{RecentErrors, StatusSource};
use observe::Seen;

/// Every response says which API it speaks; Docker refuses a mirror whose `/v2/` does not.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// The longest request target served. A legal one (a name of at most 255 bytes, a tag or
/// digest, `ns=`) is far shorter.
const MAX_URI: usize = 8 * 1024;
/// Header limits, below hyper's own (100 headers, about 400 KiB) so that the answer is ours, with
/// an OCI body, rather than hyper's bare status.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 32 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub fetcher: Arc<Fetcher>,
    pub routing: Arc<Routing>,
    pub metrics: Arc<Metrics>,
    /// Checks peers' signed requests; `None` on a node without a cluster key, which refuses
    /// every peer request.
    pub peer_auth: Option<Arc<RequestVerifier>>,
    /// Who the clients are and what they may pull.
    pub auth: Arc<ClientAuth>,
    /// Answers `/_shoal/status`.
    pub status: Arc<StatusSource>,
    /// Failed client requests, for the status report.
    pub errors: Arc<RecentErrors>,
    /// Finished client pulls, for whoever watches the node in-process.
    pub pulls: PullFeed,
}

pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let mut seen = Seen::new(&state.pulls);
    let mut response = match serve(&state, request, &mut seen).await {
        Ok(response) => {
            seen.finish(&state.metrics, &state.errors, response.status(), None);
            response
        }
        Err(e) => {
            let response = e.to_response();
            let message = e.public_message();
            seen.finish(&state.metrics, &state.errors, response.status(), Some(&message));
            response
        }
    };
    response.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    response
}

async fn serve(state: &AppState, request: Request, seen: &mut Seen) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    check_size(&parts)?;
    let endpoint = state.routing.endpoint(parts.uri.path(), parts.uri.query())?;
    seen.note(&endpoint, &parts.method);
    auth::check(&state.auth, &parts.headers, &endpoint).await?;
    let tally = seen.tally(&state.metrics, &state.errors);
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ if matches!(endpoint, Endpoint::Unsupported(_)) => {
            return Err(ApiError::Unsupported("push is not supported by a pull-through cache"));
        }
        _ => {
            return Err(ApiError::Unsupported(
                "only GET and HEAD are served by a pull-through cache",
            ));
        }
    };
    let fetcher = &state.fetcher;
    match endpoint {
        Endpoint::Base => Ok(handlers::base()),
        Endpoint::Manifest { target, reference } => {
            handlers::manifest(fetcher, &target, &reference, head, tally).await
        }
        Endpoint::Blob { target, digest } => {
            let range = range::parse(&parts.headers)?;
            handlers::blob(fetcher, &target, &digest, range, head, tally).await
        }
        Endpoint::Tags { target, client_name, page } => {
            let ns = parts.uri.query().and_then(ns_param);
            handlers::tags(fetcher, &target, &client_name, ns.as_deref(), page, head).await
        }
        Endpoint::PeerBlob { digest } => {
            check_peer(state, &parts)?;
            let range = range::parse(&parts.headers)?;
            handlers::peer_blob(fetcher, &state.metrics, &digest, range, head).await
        }
        Endpoint::PeerPieces { digest } => {
            check_peer(state, &parts)?;
            handlers::peer_pieces(fetcher, &digest, head).await
        }
        Endpoint::Metrics => Ok(handlers::metrics(&state.metrics)),
        Endpoint::Status => Ok(handlers::status(&state.status, head).await),
        Endpoint::Health => Ok(handlers::health(head)),
        Endpoint::Ready => handlers::ready(fetcher, head).await,
        Endpoint::Unsupported(why) => Err(ApiError::Unsupported(why)),
    }
}

fn check_size(parts: &axum::http::request::Parts) -> Result<(), ApiError> {
    if parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI {
        return Err(ApiError::UriTooLong(MAX_URI));
    }
    let count = parts.headers.len();
    let bytes: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(format!(
            "{count} request headers of {bytes} bytes; at most {MAX_HEADERS} and {MAX_HEADER_BYTES} are read"
        )));
    }
    Ok(())
}

/// Peer requests must be signed, by a member, for this method, target and range, recently,
/// and only once (see `crate::peer_auth`).
fn check_peer(state: &AppState, parts: &axum::http::request::Parts) -> Result<(), ApiError> {
    let Some(verifier) = &state.peer_auth else {
        return Err(ApiError::PeerAuth(PeerAuthFailure::NoFleet));
    };
    let range = match parts.headers.get(axum::http::header::RANGE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::PeerAuth(PeerAuthFailure::Invalid(PeerAuthError::Malformed("range")))
        })?),
    };
    let request = SignedRequest {
        method: parts.method.as_str(),
        path_and_query: parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str()),
        range,
    };
    let header = parts.headers.get(PEER_AUTH_HEADER).map(|v| v.as_bytes());
    verifier.check(request, header).map(drop).map_err(ApiError::PeerAuth)
}

/// The raw `ns=...` pair of a query, to carry it into the next page's link unchanged.
fn ns_param(query: &str) -> Option<String> {
    query.split('&').find(|kv| kv.starts_with("ns=")).map(str::to_owned)
}
