//! The fake's authentication: Docker Hub's token service and the registry's checks of
//! `Authorization` (bearer tokens scoped per repository, or basic).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{AuthMode, State};

/// The `service` the fake's challenges name and its token service insists on.
pub const SERVICE: &str = "fake-registry";

#[derive(Debug, Clone)]
pub(crate) struct TokenService {
    pub basic: Option<(String, String)>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<serde_json::Value>,
}

impl Default for TokenService {
    fn default() -> Self {
        Self { basic: None, refresh_token: None, expires_in: Some(300.into()) }
    }
}

/// How long the fake honours a token it answered with `expires_in`: that many seconds, at
/// most a year; 60 s (Docker's default) when it is not a positive number.
fn lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    const YEAR: f64 = 365.0 * 86_400.0;
    match expires_in.and_then(serde_json::Value::as_f64) {
        Some(s) if s >= 1.0 => Duration::from_secs_f64(s.min(YEAR)),
        _ => Duration::from_secs(60),
    }
}

/// Tokens handed out: value → (scopes, end of life).
#[derive(Default)]
pub(crate) struct Issued {
    tokens: HashMap<String, (Vec<String>, Instant)>,
    next: u64,
}

impl Issued {
    fn issue(&mut self, scopes: Vec<String>, lifetime: Duration) -> String {
        self.next += 1;
        let token = format!("fake-token-{}", self.next);
        self.tokens.insert(token.clone(), (scopes, Instant::now() + lifetime));
        token
    }

    /// Whether `token` is alive and grants pull on `repo` (any live token for `repo == ""`).
    fn allows(&self, token: &str, repo: &str) -> bool {
        let Some((scopes, end)) = self.tokens.get(token) else { return false };
        *end > Instant::now()
            && (repo.is_empty()
                || scopes.iter().any(|s| {
                    s.strip_prefix("repository:")
                        .and_then(|rest| rest.rsplit_once(':'))
                        .is_some_and(|(name, actions)| {
                            name == repo && actions.split(',').any(|a| a == "pull")
                        })
                }))
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }
}

fn basic_value(username: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{username}:{password}")))
}

/// The 401 to answer a registry request for `repo` with, or `None` when it may proceed.
pub(crate) fn check(state: &State, headers: &HeaderMap, repo: &str) -> Option<Response> {
    let presented = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match &state.auth {
        AuthMode::Anonymous => None,
        AuthMode::Basic { username, password } => {
            if presented == Some(basic_value(username, password).as_str()) {
                return None;
            }
            Some(unauthorized(r#"Basic realm="fake registry""#.to_owned()))
        }
        AuthMode::Token(_) => {
            let token = presented.and_then(|p| p.strip_prefix("Bearer "));
            if token.is_some_and(|t| state.tokens.allows(t, repo)) {
                return None;
            }
            let mut challenge = format!(
                r#"Bearer realm="{}/token",service="{SERVICE}",scope="repository:{repo}:pull""#,
                state.realm_url.as_ref().unwrap_or(&state.registry_url)
            );
            if token.is_some() {
                challenge.push_str(r#",error="invalid_token""#);
            }
            Some(unauthorized(challenge))
        }
    }
}

fn unauthorized(challenge: String) -> Response {
    let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, challenge)], body).into_response()
}

/// `GET /token?service=&scope=` (basic auth when configured) or the OAuth2 `POST` with a
/// refresh token, as Docker Hub's `auth.docker.io/token` answers them.
pub(crate) fn token_endpoint(
    state: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let AuthMode::Token(service) = state.auth.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lifetime = lifetime(service.expires_in.as_ref());
    let expires = |value: serde_json::Value| {
        let mut value = value;
        if let Some(expires_in) = &service.expires_in {
            value["expires_in"] = expires_in.clone();
        }
        value.to_string()
    };
    let pairs = |text: &str| -> Vec<(String, String)> {
        reqwest::Url::parse(&format!("http://fake/?{text}"))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    };
    let get = |pairs: &[(String, String)], key: &str| {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    if *method == Method::POST {
        let form = pairs(std::str::from_utf8(body).unwrap_or_default());
        let presented = get(&form, "refresh_token");
        if get(&form, "grant_type").as_deref() != Some("refresh_token")
            || presented.is_none()
            || presented != service.refresh_token
        {
            return (StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
        }
        if get(&form, "service").as_deref() != Some(SERVICE) {
            return (StatusCode::BAD_REQUEST, "unknown service").into_response();
        }
        let scopes = get(&form, "scope").unwrap_or_default();
        let scopes = scopes.split_whitespace().map(str::to_owned).collect();
        let token = state.tokens.issue(scopes, lifetime);
        return expires(serde_json::json!({ "access_token": token })).into_response();
    }
    let query = pairs(uri.query().unwrap_or_default());
    if let Some((username, password)) = &service.basic {
        let presented = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        if presented != Some(basic_value(username, password).as_str()) {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
    }
    if get(&query, "service").as_deref() != Some(SERVICE) {
        return (StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    let scopes = query.into_iter().filter(|(k, _)| k == "scope").map(|(_, v)| v).collect();
    let token = state.tokens.issue(scopes, lifetime);
    expires(serde_json::json!({ "token": token })).into_response()
}
