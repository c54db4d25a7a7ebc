//! A [`TokenService`] on a listener of its own, as `auth.docker.io` is beside Docker Hub: what
//! a real registry with `auth: token` sends its clients to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::registry::TokenAuth;
use crate::token_service::{ISSUER, TokenServerOptions, TokenService};
use crate::{HarnessError, Result};

/// A running token service. Dropping it stops the server.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    service: Arc<TokenService>,
    root_cert_bundle: PathBuf,
    _dir: TempDir,
}

impl TokenServer {
    pub async fn start(options: TokenServerOptions) -> Result<Self> {
        let service = Arc::new(TokenService::new(options)?);
        let dir = tempfile::Builder::new()
            .prefix("shoal-token-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the token server directory", source))?;
        let root_cert_bundle = dir.path().join("root.pem");
        std::fs::write(&root_cert_bundle, service.certificate_pem())
            .map_err(|source| HarnessError::io("writing the root certificate bundle", source))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| HarnessError::io("binding the token server", source))?;
        let addr = listener
            .local_addr()
            .map_err(|source| HarnessError::io("reading the token server address", source))?;
        let app = axum::Router::new()
            .route("/token", axum::routing::any(answer))
            .with_state(service.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(%err, "token server stopped");
            }
        });
        Ok(Self { addr, task, service, root_cert_bundle, _dir: dir })
    }

    /// The URL clients get tokens from (the challenge's `realm`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.service.issued()
    }

    /// How many tokens were issued to `user`.
    pub fn issued_to(&self, user: &str) -> usize {
        self.service.issued_to(user)
    }

    /// The registry's `auth: token` section for this service; the seeding client presents
    /// the configured credentials.
    pub fn registry_auth(&self) -> TokenAuth {
        let options = self.service.options();
        TokenAuth {
            realm: self.realm(),
            service: options.service.clone(),
            issuer: ISSUER.to_owned(),
            root_cert_bundle: self.root_cert_bundle.clone(),
            credentials: options.credentials.clone(),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(service): State<Arc<TokenService>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    service.answer(&method, query.as_deref(), &headers, &body)
}

/// Parses `key="value",key2="value2"` from a `WWW-Authenticate` challenge.
pub(crate) fn parse_challenge_params(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key, value.to_owned());
        rest = remaining.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_bearer_challenge() {
        let params = parse_challenge_params(
            r#"realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(params["realm"], "http://127.0.0.1:1/token");
        assert_eq!(params["service"], "reg");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
    }
}
