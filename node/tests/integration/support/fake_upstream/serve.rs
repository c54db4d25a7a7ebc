//! The fake's HTTP side: one handler for the registry API, the token service and blob storage,
//! so that every request is counted in one place.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION, RANGE, RETRY_AFTER,
};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use shoal_protocol::Digest;
use shoal_protocol::media_type::OCI_INDEX;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::token::check;
use super::{AuthMode, FakeUpstream, Fault, Shared, State, lock};

pub(crate) async fn spawn(shared: Shared) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake upstream");
    let addr = listener.local_addr().expect("the fake upstream's address");
    let router = Router::new().fallback(handle).with_state(shared);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let fault = record_and_take_fault(&shared, &method, &path, &headers);
    match fault {
        Some(Fault::ServerError { .. }) => oci_error(500, "UNKNOWN", "injected server error"),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut resp = oci_error(429, "TOOMANYREQUESTS", "injected rate limit");
            resp.headers_mut().insert(RETRY_AFTER, retry_after_secs.into());
            resp
        }
        Some(Fault::Html) => {
            let page = "<html><body><h1>Welcome to the proxy</h1></body></html>";
            ([(CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        Some(Fault::Status(code)) => oci_error(code, "UNKNOWN", "injected status"),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        fault => respond(&shared, &method, &uri, &headers, &body, fault),
    }
}

/// Counts the request; returns its path's fault, using up one of a `ServerError`'s times.
fn record_and_take_fault(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Fault> {
    let mut state = lock(shared);
    let counts = state.counts.entry((method.to_string(), path.to_owned())).or_default();
    counts.0 += 1;
    counts.1 += usize::from(headers.contains_key(AUTHORIZATION));
    let fault = state.faults.get_mut(path)?;
    if let Fault::ServerError { times } = fault {
        *times = times.saturating_sub(1);
        if *times == 0 {
            state.faults.remove(path);
        }
        return Some(Fault::ServerError { times: 0 });
    }
    Some(fault.clone())
}

fn respond(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    fault: Option<Fault>,
) -> Response {
    let state = lock(shared);
    let path = uri.path();
    if path == FakeUpstream::TOKEN_PATH {
        return match &state.auth {
            AuthMode::Token(service) => service.answer(method, uri.query(), headers, body),
            _ => StatusCode::NOT_FOUND.into_response(),
        };
    }
    if let Some(hex) = path.strip_prefix("/storage/sha256/") {
        if headers.contains_key(AUTHORIZATION) {
            return (StatusCode::BAD_REQUEST, "storage refuses requests with Authorization")
                .into_response();
        }
        let found = Digest::parse(&format!("sha256:{hex}")).ok().and_then(|d| {
            state.repos.values().find_map(|r| r.blobs.get(&d).map(|b| (d, b.clone())))
        });
        return match found {
            Some((digest, bytes)) => {
                content(bytes, "application/octet-stream", digest, headers, fault)
            }
            None => oci_error(404, "BLOB_UNKNOWN", "no such blob in storage"),
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return oci_error(404, "NOT_FOUND", "not a registry path");
    };
    if rest.is_empty() {
        return check(&state, headers, "").unwrap_or_else(|| "{}".into_response());
    }
    if let Some((repo, subject)) = rest.rsplit_once("/referrers/") {
        if let Some(denied) = check(&state, headers, repo) {
            return denied;
        }
        let found = Digest::parse(subject)
            .ok()
            .and_then(|d| state.repos.get(repo)?.referrers.get(&d).map(|b| (d, b.clone())));
        return match found {
            Some((_, body)) => {
                let digest = Digest::of(&body);
                content(body, OCI_INDEX, digest, headers, fault)
            }
            None => oci_error(404, "NOT_FOUND", "no referrers API"),
        };
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        if let Some(denied) = check(&state, headers, repo) {
            return denied;
        }
        let repo = state.repos.get(repo);
        let digest = Digest::parse(reference)
            .ok()
            .or_else(|| repo.and_then(|r| r.tags.get(reference).copied()));
        let manifest = digest.and_then(|d| repo?.manifests.get(&d).map(|m| (d, m.clone())));
        return match manifest {
            Some((digest, (bytes, media_type))) => {
                content(bytes, &media_type, digest, headers, fault)
            }
            None => oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        };
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        if let Some(denied) = check(&state, headers, repo) {
            return denied;
        }
        let found = Digest::parse(digest)
            .ok()
            .and_then(|d| state.repos.get(repo)?.blobs.get(&d).map(|b| (d, b.clone())));
        let Some((digest, bytes)) = found else {
            return oci_error(404, "BLOB_UNKNOWN", "blob unknown");
        };
        if let Some(storage) = &state.storage_url {
            let location = format!(
                "{storage}{}?X-Amz-Signature=fake-signature",
                FakeUpstream::storage_path(&digest)
            );
            return (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]).into_response();
        }
        return content(bytes, "application/octet-stream", digest, headers, fault);
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        if let Some(denied) = check(&state, headers, repo) {
            return denied;
        }
        return tags_list(&state, repo, uri);
    }
    oci_error(404, "NOT_FOUND", "unknown endpoint")
}

fn tags_list(state: &State, repo: &str, uri: &Uri) -> Response {
    let Some(found) = state.repos.get(repo) else {
        return oci_error(404, "NAME_UNKNOWN", "repository unknown");
    };
    let query: Vec<(String, String)> =
        reqwest::Url::parse(&format!("http://fake/?{}", uri.query().unwrap_or_default()))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
    let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let n: Option<usize> = param("n").and_then(|n| n.parse().ok());
    let last = param("last");
    let after: Vec<&String> =
        found.tags.keys().filter(|t| last.as_ref().is_none_or(|l| *t > l)).collect();
    let page: Vec<&String> = after.iter().copied().take(n.unwrap_or(usize::MAX)).collect();
    let body = serde_json::json!({ "name": repo, "tags": page }).to_string();
    match (n, page.last()) {
        (Some(n), Some(end)) if after.len() > page.len() => {
            let link = format!("</v2/{repo}/tags/list?last={end}&n={n}>; rel=\"next\"");
            ([(CONTENT_TYPE, "application/json"), (LINK, link.as_str())], body).into_response()
        }
        _ => ([(CONTENT_TYPE, "application/json")], body).into_response(),
    }
}

/// A manifest or blob, with `Range` support and the body faults applied.
fn content(
    bytes: Bytes,
    media_type: &str,
    digest: Digest,
    headers: &HeaderMap,
    fault: Option<Fault>,
) -> Response {
    let mut bytes = match &fault {
        Some(Fault::Replace(other)) => other.clone(),
        Some(Fault::WrongBytes) if !bytes.is_empty() => {
            let mut changed = bytes.to_vec();
            let middle = changed.len() / 2;
            changed[middle] ^= 0x01;
            Bytes::from(changed)
        }
        _ => bytes,
    };
    let mut builder = axum::http::Response::builder().header(CONTENT_TYPE, media_type);
    if fault != Some(Fault::OmitDigestHeader) {
        builder = builder.header("docker-content-digest", digest.to_string());
    }
    let range = headers.get(RANGE).and_then(|v| v.to_str().ok()).and_then(parse_range);
    if let Some((start, end)) = range
        && fault != Some(Fault::IgnoreRange)
    {
        let total = bytes.len() as u64;
        let end = end.unwrap_or(total.saturating_sub(1)).min(total.saturating_sub(1));
        if start >= total || end < start {
            return oci_error(416, "RANGE_INVALID", "range not satisfiable");
        }
        builder = builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(CONTENT_RANGE, format!("bytes {start}-{end}/{total}"));
        bytes = bytes.slice(start as usize..=end as usize);
    }
    if fault != Some(Fault::NoContentLength) {
        builder = builder.header(CONTENT_LENGTH, bytes.len());
    }
    let body = match fault {
        Some(Fault::NoContentLength) => {
            Body::from_stream(stream::iter([Ok::<_, std::io::Error>(bytes)]))
        }
        Some(Fault::Truncate { after }) => {
            let sent = bytes.slice(..after.min(bytes.len()));
            // The pause lets the sent part reach the client before the connection drops.
            let cut = stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut"))
            });
            Body::from_stream(stream::iter([Ok(sent)]).chain(cut))
        }
        Some(Fault::Stall { after }) => {
            let sent = bytes.slice(..after.min(bytes.len()));
            let never = stream::once(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, std::io::Error>(Bytes::new())
            });
            Body::from_stream(stream::iter([Ok::<_, std::io::Error>(sent)]).chain(never))
        }
        _ => Body::from(bytes),
    };
    builder.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `bytes=<start>-[<end>]`.
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() { None } else { Some(end.parse().ok()?) };
    Some((start.parse().ok()?, end))
}

fn oci_error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}
