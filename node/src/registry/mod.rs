//! The OCI distribution HTTP API.
//!
//! One fallback handler parses every request into an [`Endpoint`] and calls the matching
//! `handle_*`; errors become OCI error bodies in one place ([`ApiError`]). This layer never
//! touches files or the network itself: it asks the [`Fetcher`]. Client endpoints are checked
//! against [`ClientAuth`] first (`auth.rs`).

mod admin;
mod auth;
mod error;
mod handlers;
mod observe;
mod push;
mod range;
mod route;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;

pub(crate) use error::ApiError;
pub(crate) use range::parse as parse_range;
pub(crate) use route::PINS_PATH;
use route::push_tags;
pub use route::{Endpoint, Routing};

use shoal_protocol::peer::{PeerAuthError, SignedRequest};
use shoal_protocol::{AnyDigest, DigestError, Reference, ReferenceError, Sha512Digest};

use crate::auth::{Action, ClientAuth};
use crate::fetch::{AliasOf, FetchError, Fetcher};
use crate::metrics::Metrics;
use crate::peer_auth::{PEER_AUTH_HEADER, PeerAuthFailure, RequestVerifier};
use crate::placement::Placement;
use crate::pull_feed::PullFeed;
use crate::push::{PushedAs, Pusher};
use crate::status::{RecentErrors, StatusSource};
use observe::Seen;

/// Every response says which API it speaks; Docker refuses a mirror whose `/v2/` does not.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// The longest request target served. A legal one (a name of at most 255 bytes, a tag or
/// digest, `ns=`) is far shorter.
const MAX_URI: usize = 8 * 1024;
/// Header limits, below hyper's own (100 headers, 128 KiB: `http_server`) so that the answer
/// is ours, with an OCI body, rather than hyper's bare status.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 32 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub fetcher: Arc<Fetcher>,
    /// Uploads, manifest pushes, deletes and referrers.
    pub pusher: Arc<Pusher>,
    /// Pins, unpins and warm-ups of images on the fleet.
    pub placement: Arc<Placement>,
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

/// A reference that is neither a tag nor a digest names no manifest to read (404, the spec's
/// endpoint table), but is a malformed argument to a write (400).
fn reference_for_write(e: ApiError, method: &Method) -> ApiError {
    let ApiError::ReferenceInvalid(reference) = e else { return e };
    match (reference, method) {
        (ReferenceError::Tag(e), &Method::PUT | &Method::DELETE) => {
            ApiError::TagInvalid(e.to_string())
        }
        // Well formed with an algorithm this node holds nothing under: nothing can be stored
        // under it (400, the spec's answer), and there is nothing to delete (404).
        (ReferenceError::Digest(DigestError::UnsupportedAlgorithm(a)), &Method::DELETE) => {
            ApiError::ReferenceInvalid(DigestError::UnsupportedAlgorithm(a).into())
        }
        (ReferenceError::Digest(e), &Method::PUT | &Method::DELETE) => {
            ApiError::DigestInvalid(e.to_string())
        }
        (reference, _) => ApiError::ReferenceInvalid(reference),
    }
}

async fn serve(state: &AppState, request: Request, seen: &mut Seen) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    check_size(&parts)?;
    let endpoint = state
        .routing
        .endpoint(parts.uri.path(), parts.uri.query())
        .map_err(|e| reference_for_write(e, &parts.method))?;
    seen.note(&endpoint, &parts.method);
    let method = &parts.method;
    let writes = !matches!(*method, Method::GET | Method::HEAD)
        || matches!(endpoint, Endpoint::Upload { .. });
    let action = match endpoint {
        // Warming fetches what any client allowed to pull the name could fetch by pulling.
        Endpoint::Warm { .. } | Endpoint::Pins => Action::Pull,
        Endpoint::Pin { .. } => Action::Push,
        _ if writes => Action::Push,
        _ => Action::Pull,
    };
    let who = auth::check(&state.auth, &state.fetcher, &parts.headers, &endpoint, action).await?;
    if matches!(endpoint, Endpoint::Pins | Endpoint::Pin { .. } | Endpoint::Warm { .. }) {
        return admin::serve(&state.placement, method, endpoint).await;
    }
    // Content named by sha512 is served and deleted as the content its alias names.
    let (endpoint, alias) = match endpoint {
        Endpoint::ByAlias { target, digest, of } if *method != Method::PUT => {
            // Nothing is brought in to be deleted: a delete knows only what is held here.
            let local = *method == Method::DELETE;
            let resolved = by_alias(&state.fetcher, target, digest, of, local).await?;
            // Counted and logged as the pull of the content it names.
            seen.note(&resolved, method);
            (resolved, Some(digest))
        }
        other => (other, None),
    };
    let mut response = if writes {
        serve_push(state, &parts, endpoint, who.as_deref(), body).await?
    } else {
        serve_pull(state, &parts, endpoint, seen).await?
    };
    if let Some(alias) = alias
        && response.status().is_success()
    {
        alias_headers(&mut response, &alias);
    }
    Ok(response)
}

/// The endpoint for the content `alias` names; unknown when no one checked that alias (with
/// `local`, when this node does not hold content it checked).
async fn by_alias(
    fetcher: &Fetcher,
    target: crate::fetch::Target,
    alias: Sha512Digest,
    of: AliasOf,
    local: bool,
) -> Result<Endpoint, ApiError> {
    let found = if local {
        fetcher.local_alias(&alias).await?
    } else {
        fetcher.resolve_alias(&target, &alias, of).await?
    };
    let Some(digest) = found else {
        return Err(ApiError::Fetch(match of {
            AliasOf::Blob => FetchError::AliasUnknown(alias),
            AliasOf::Manifest => FetchError::ManifestUnknown {
                registry: target.registry,
                repo: target.repo.to_string(),
                reference: alias.to_string(),
            },
        }));
    };
    Ok(match of {
        AliasOf::Blob => Endpoint::Blob { target, digest },
        AliasOf::Manifest => Endpoint::Manifest { target, reference: Reference::Digest(digest) },
    })
}

/// An answer about content the client named by sha512 names it that way back.
fn alias_headers(response: &mut Response, alias: &Sha512Digest) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&alias.to_string()) {
        headers.insert(handlers::DIGEST_HEADER, v);
    }
    if headers.contains_key(header::ETAG)
        && let Ok(v) = HeaderValue::from_str(&format!("\"{alias}\""))
    {
        headers.insert(header::ETAG, v);
    }
}

/// Reads: manifests, blobs, tags, referrers, the peer data plane and the node's own pages.
async fn serve_pull(
    state: &AppState,
    parts: &axum::http::request::Parts,
    endpoint: Endpoint,
    seen: &mut Seen,
) -> Result<Response, ApiError> {
    let head = parts.method == Method::HEAD;
    let tally = seen.tally(&state.metrics, &state.errors);
    let fetcher = &state.fetcher;
    let hosted = |target: &crate::fetch::Target| state.routing.is_hosted(&target.registry);
    match endpoint {
        Endpoint::Base => Ok(handlers::base()),
        Endpoint::Manifest { target, reference } => {
            handlers::manifest(fetcher, &target, &reference, head, tally).await.map_err(|e| {
                let unknown = FetchError::ManifestUnknown {
                    registry: target.registry.clone(),
                    repo: target.repo.to_string(),
                    reference: reference.to_string(),
                };
                hosted_unknown(e, hosted(&target).then_some(unknown))
            })
        }
        Endpoint::Blob { target, digest } => {
            let range = range::parse(&parts.headers)?;
            handlers::blob(fetcher, &target, &digest, range, head, tally).await.map_err(|e| {
                let unknown = FetchError::BlobUnknown(digest);
                hosted_unknown(e, hosted(&target).then_some(unknown))
            })
        }
        Endpoint::Tags { target, client_name, page } => {
            let ns = parts.uri.query().and_then(ns_param);
            handlers::tags(fetcher, &target, &client_name, ns.as_deref(), page, head).await
        }
        Endpoint::Referrers { target, digest, artifact_type } => {
            let upstream = !hosted(&target);
            let wanted = artifact_type.as_deref();
            push::referrers(&state.pusher, &target, &digest, wanted, upstream, head).await
        }
        Endpoint::PeerBlob { digest } => {
            let asker = check_peer(state, parts)?;
            let range = range::parse(&parts.headers)?;
            handlers::peer_blob(fetcher, &state.metrics, &digest, range, head, &asker).await
        }
        Endpoint::PeerPieces { digest } => {
            check_peer(state, parts)?;
            handlers::peer_pieces(fetcher, &digest, head).await
        }
        Endpoint::PeerAlias { digest } => {
            check_peer(state, parts)?;
            handlers::peer_alias(fetcher, &digest).await
        }
        Endpoint::Metrics => Ok(handlers::metrics(&state.metrics)),
        Endpoint::Status => Ok(handlers::status(&state.status, head).await),
        Endpoint::Health => Ok(handlers::health(head)),
        Endpoint::Ready => handlers::ready(fetcher, head).await,
        Endpoint::Unsupported(why) => Err(ApiError::Unsupported(why)),
        Endpoint::UploadStart { .. }
        | Endpoint::Upload { .. }
        | Endpoint::ByAlias { .. }
        | Endpoint::Pins
        | Endpoint::Pin { .. }
        | Endpoint::Warm { .. } => Err(ApiError::MethodNotAllowed),
    }
}

/// Uploads, manifest pushes and deletes; the client may push to the name (checked by now).
async fn serve_push(
    state: &AppState,
    parts: &axum::http::request::Parts,
    endpoint: Endpoint,
    who: Option<&str>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let pusher = &state.pusher;
    let ns = parts.uri.query().and_then(ns_param);
    let names = |client_name| push::Names { client_name, ns: ns.as_deref() };
    if let Some(target) = endpoint_target(&endpoint) {
        // Content pushed under a name the node neither fetches nor hosts could never be
        // pulled back through the fleet.
        if !state.routing.is_hosted(&target.registry) {
            state.fetcher.check_registry(&target.registry)?;
        }
    }
    let method = &parts.method;
    match endpoint {
        Endpoint::UploadStart { target, client_name, query } if method == Method::POST => {
            if let Some(from) = &query.from {
                // A mount reads the blob out of `from`: only for a client that may pull it.
                state
                    .auth
                    .authorize(who, &target.registry, from.as_str(), Action::Pull)
                    .map_err(ApiError::Auth)?;
            }
            push::start(pusher, &target, names(&client_name), query, body).await
        }
        Endpoint::Upload { target, client_name, id, digest } => match *method {
            Method::PATCH => {
                push::patch(pusher, &target, names(&client_name), &id, &parts.headers, body).await
            }
            Method::PUT => {
                push::finish(
                    pusher,
                    &target,
                    names(&client_name),
                    &id,
                    digest,
                    &parts.headers,
                    body,
                )
                .await
            }
            Method::GET | Method::HEAD => {
                push::status(pusher, &target, names(&client_name), &id).await
            }
            Method::DELETE => push::cancel(pusher, &target, &id).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        Endpoint::Manifest { target, reference } if method == Method::PUT => {
            let client_name = client_name(parts.uri.path(), "/manifests/");
            let (reference, tags) = (PushedAs::from(reference), push_tags(parts.uri.query())?);
            let (names, headers) = (names(client_name), &parts.headers);
            push::put_manifest(pusher, &target, names, &reference, &tags, headers, body).await
        }
        Endpoint::ByAlias { target, digest, of: AliasOf::Manifest } if method == Method::PUT => {
            let client_name = client_name(parts.uri.path(), "/manifests/");
            let reference = PushedAs::Digest(AnyDigest::Sha512(digest));
            let tags = push_tags(parts.uri.query())?;
            let (names, headers) = (names(client_name), &parts.headers);
            push::put_manifest(pusher, &target, names, &reference, &tags, headers, body).await
        }
        Endpoint::Manifest { target, reference } if method == Method::DELETE => {
            push::delete_manifest(pusher, &target, &reference).await
        }
        Endpoint::Blob { target, digest } if method == Method::DELETE => {
            push::delete_blob(pusher, &target, &digest).await
        }
        Endpoint::Unsupported(why) => Err(ApiError::Unsupported(why)),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn endpoint_target(endpoint: &Endpoint) -> Option<&crate::fetch::Target> {
    match endpoint {
        Endpoint::Manifest { target, .. }
        | Endpoint::Blob { target, .. }
        | Endpoint::ByAlias { target, .. }
        | Endpoint::UploadStart { target, .. }
        | Endpoint::Upload { target, .. } => Some(target),
        _ => None,
    }
}

/// The repository name as the client wrote it in `/v2/<name>/manifests/...`.
fn client_name<'a>(path: &'a str, marker: &str) -> &'a str {
    let rest = path.strip_prefix("/v2/").unwrap_or(path);
    rest.rsplit_once(marker).map_or(rest, |(name, _)| name)
}

/// Under a hosted name there is no upstream to ask: what neither this node nor a peer holds
/// is `unknown` (given for hosted names only), not an unknown registry.
fn hosted_unknown(e: ApiError, unknown: Option<FetchError>) -> ApiError {
    match (e, unknown) {
        // Also when the miss was joined to another request's download, which wraps it.
        (ApiError::Fetch(e), Some(unknown))
            if matches!(e.root(), FetchError::UnknownRegistry(_)) =>
        {
            ApiError::Fetch(unknown)
        }
        (other, _) => other,
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
/// and only once (see `crate::peer_auth`); returns the peer id it is signed with.
fn check_peer(state: &AppState, parts: &axum::http::request::Parts) -> Result<String, ApiError> {
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
    verifier.check(request, header).map_err(ApiError::PeerAuth)
}

/// The raw `ns=...` pair of a query, to carry it into the next page's link unchanged.
fn ns_param(query: &str) -> Option<String> {
    query.split('&').find(|kv| kv.starts_with("ns=")).map(str::to_owned)
}
