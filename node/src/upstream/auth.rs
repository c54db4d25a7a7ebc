//! Authentication to one registry: the bearer-token dance, basic auth, and the token cache.
//!
//! `Credentials::Token` follows Docker's rule for an `identitytoken`: it is a refresh token,
//! exchanged at the realm with an OAuth2 `refresh_token` grant (POST) for a short-lived bearer
//! token. Sending it to the registry directly as a bearer token would only work where the
//! registry and its token service are the same program, which is not the case for Docker Hub.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::HeaderValue;
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;

use super::challenge::{Challenge, parse_challenges};
use super::read::read_limited;
use super::realm::RealmPolicy;
use super::{Credentials, UpstreamError};
use crate::clock::Clock;

/// Token responses are a few KiB; anything far larger is not a token service.
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// Docker's token spec: a token without `expires_in` lives 60 s.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Bounds on the lifetime a token service claims: the number is the service's to send, and an
/// absurd one must neither overflow the clock nor pin a token in the cache for ever. A token
/// that dies before the bound is refused by the registry, forgotten, and fetched again.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(5);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Tokens cached at once, per registry. There is one per repository asked for, and clients
/// choose the names: past the bound the token closest to renewal makes room.
const MAX_CACHED_TOKENS: usize = 4096;

pub(crate) struct Auth {
    registry: String,
    credentials: Option<Credentials>,
    /// Which token services may receive `credentials`.
    realms: RealmPolicy,
    /// Bearer headers per request scope (`repository:<name>:pull`).
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Set once the registry asked for basic auth: later requests send it up front.
    basic_learned: AtomicBool,
    /// What tokens' lifetimes are counted on.
    clock: Clock,
}

struct CachedToken {
    header: HeaderValue,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON: a number out of `u64`'s range, a float or a string must not fail the token.
    expires_in: Option<serde_json::Value>,
}

/// The lifetime a token service claimed, within the bounds above.
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let seconds = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match seconds {
        // `as` saturates, and the bound is far below the saturation point.
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs(s as u64),
        _ => DEFAULT_TOKEN_LIFETIME,
    }
    .clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME)
}

impl Auth {
    pub fn new(
        registry: String,
        credentials: Option<Credentials>,
        realms: RealmPolicy,
        clock: Clock,
    ) -> Self {
        Self {
            registry,
            credentials,
            realms,
            tokens: Mutex::new(HashMap::new()),
            basic_learned: AtomicBool::new(false),
            clock,
        }
    }

    /// What this cache's tokens live on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The `Authorization` for a first attempt in `scope`, if one is known to be needed.
    pub fn cached(&self, scope: &str) -> Option<HeaderValue> {
        if self.basic_learned.load(Ordering::Relaxed) {
            return self.basic_header();
        }
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let token = tokens.get(scope)?;
        (token.renew_at > self.clock.instant()).then(|| token.header.clone())
    }

    /// Answers a 401's challenge with the `Authorization` to retry with.
    pub async fn answer(
        &self,
        client: &Client,
        www_authenticate: Option<&HeaderValue>,
        scope: &str,
        timeout: Duration,
    ) -> Result<HeaderValue, UpstreamError> {
        let challenges = www_authenticate
            .and_then(|h| h.to_str().ok())
            .map(parse_challenges)
            .unwrap_or_default();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.fetch_token(client, bearer, scope, timeout).await;
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let header = self.basic_header().ok_or_else(|| {
                self.unauthorized("the registry asks for a username and password; none configured")
            })?;
            self.basic_learned.store(true, Ordering::Relaxed);
            return Ok(header);
        }
        Err(self.unauthorized("401 without a bearer or basic challenge"))
    }

    async fn fetch_token(
        &self,
        client: &Client,
        challenge: &Challenge,
        scope: &str,
        timeout: Duration,
    ) -> Result<HeaderValue, UpstreamError> {
        let realm = challenge
            .param("realm")
            .and_then(|r| Url::parse(r).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| self.bad("bearer challenge without an http(s) realm"))?;
        let service = challenge.param("service");
        let mut scopes: Vec<&str> = challenge.params_named("scope").collect();
        if scopes.is_empty() {
            scopes.push(scope);
        }
        let credentials = match self.realms.check(&realm) {
            Ok(()) => self.credentials.as_ref(),
            Err(why) => {
                if self.credentials.is_some() {
                    tracing::warn!(registry = %self.registry, "not sending credentials: {why}; asking for an anonymous token");
                }
                None
            }
        };
        let request = match credentials {
            Some(Credentials::Token(refresh_token)) => {
                let joined = scopes.join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", "shoal"),
                    ("refresh_token", refresh_token.as_str()),
                    ("scope", joined.as_str()),
                ];
                form.extend(service.map(|s| ("service", s)));
                client.post(realm).form(&form)
            }
            basic => {
                let mut url = realm;
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in &scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let request = client.get(url);
                match basic {
                    Some(Credentials::Basic { username, password }) => {
                        request.basic_auth(username, Some(password))
                    }
                    _ => request,
                }
            }
        };
        let resp = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => {
                let what = "token service".to_owned();
                return Err(UpstreamError::Timeout { registry: self.registry.clone(), what });
            }
            Ok(Err(e)) => {
                let detail = format!("token service: {}", e.without_url());
                return Err(UpstreamError::Unavailable { registry: self.registry.clone(), detail });
            }
            Ok(Ok(resp)) => resp,
        };
        match resp.status() {
            StatusCode::OK => {}
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(self.unauthorized(&format!("token service refused with HTTP {s}")));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let registry = self.registry.clone();
                return Err(UpstreamError::TooManyRequests { registry, retry_after: None });
            }
            s if s.is_server_error() => {
                let detail = format!("token service answered HTTP {s}");
                return Err(UpstreamError::Unavailable { registry: self.registry.clone(), detail });
            }
            s => return Err(self.bad(&format!("token service answered HTTP {s}"))),
        }
        let body = read_limited(resp, MAX_TOKEN_RESPONSE, timeout, &self.registry, |_| {
            self.bad("token response too large")
        })
        .await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| self.bad("token response is not JSON"))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.bad("token response without a token"))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| self.bad("token is not a valid header value"))?;
        header.set_sensitive(true);
        self.remember(scope, header.clone(), token_lifetime(parsed.expires_in.as_ref()));
        Ok(header)
    }

    /// Caches a token until shortly before it expires, so that no request carries a token that
    /// dies in flight.
    fn remember(&self, scope: &str, header: HeaderValue, lifetime: Duration) {
        let margin = (lifetime / 10).clamp(Duration::from_secs(1), MAX_EXPIRY_MARGIN);
        let Some(usable) = lifetime.checked_sub(margin).filter(|d| !d.is_zero()) else {
            return;
        };
        let now = self.clock.instant();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, t| t.renew_at > now);
        if tokens.len() >= MAX_CACHED_TOKENS && !tokens.contains_key(scope) {
            let soonest = tokens.iter().min_by_key(|(_, t)| t.renew_at).map(|(k, _)| k.clone());
            if let Some(soonest) = soonest {
                tokens.remove(&soonest);
            }
        }
        tokens.insert(scope.to_owned(), CachedToken { header, renew_at: now + usable });
    }

    /// Drops a token the registry refused, so the next request fetches a new one.
    pub fn forget(&self, scope: &str) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(scope);
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let Some(Credentials::Basic { username, password }) = &self.credentials else {
            return None;
        };
        let encoded = BASE64.encode(format!("{username}:{password}"));
        let mut header = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        header.set_sensitive(true);
        Some(header)
    }

    fn unauthorized(&self, detail: &str) -> UpstreamError {
        UpstreamError::Unauthorized { registry: self.registry.clone(), detail: detail.to_owned() }
    }

    fn bad(&self, detail: &str) -> UpstreamError {
        UpstreamError::BadResponse { registry: self.registry.clone(), detail: detail.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes_are_bounded_whatever_the_service_sends() {
        let life = |v: serde_json::Value| token_lifetime(Some(&v));
        assert_eq!(token_lifetime(None), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(json!(300)), Duration::from_secs(300));
        assert_eq!(life(json!("300")), Duration::from_secs(300));
        assert_eq!(life(json!(299.9)), Duration::from_secs(299));
        assert_eq!(life(json!(1)), MIN_TOKEN_LIFETIME);
        for huge in [json!(u64::MAX), json!(1e300), json!("1e308")] {
            assert_eq!(life(huge), MAX_TOKEN_LIFETIME);
        }
        for garbage in [json!(0), json!(-5), json!(null), json!("soon"), json!([1]), json!({})] {
            assert_eq!(life(garbage), DEFAULT_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn the_token_cache_holds_a_bounded_number_whatever_names_clients_ask_for() {
        let url = Url::parse("https://registry.example").unwrap();
        let auth = Auth::new(
            "registry.example".to_owned(),
            None,
            RealmPolicy::new(&url, &[]),
            Clock::system(),
        );
        let header = HeaderValue::from_static("Bearer t");
        let hour = Duration::from_secs(3600);
        auth.remember("repository:kept:pull", header.clone(), hour * 2);
        for i in 0..MAX_CACHED_TOKENS + 100 {
            auth.remember(&format!("repository:name-{i}:pull"), header.clone(), hour);
        }
        assert_eq!(auth.tokens.lock().unwrap().len(), MAX_CACHED_TOKENS);
        assert!(auth.cached("repository:kept:pull").is_some(), "the longest-lived token stays");
        let newest = format!("repository:name-{}:pull", MAX_CACHED_TOKENS + 99);
        assert!(auth.cached(&newest).is_some(), "the newest token is cached");
    }
}
