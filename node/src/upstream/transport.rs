//! One logical request to the registry: authentication, redirects, timeouts and retries.
//!
//! reqwest's own redirect handling is off: we follow redirects here so that the registry's
//! `Authorization` goes only to the registry's own origin, never to the blob storage a
//! registry redirects to (its URLs are presigned, and a stray header makes S3 refuse them),
//! and so that a redirect from `https://` to plain `http://` is refused.

use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::Auth;
use super::{Inner, UpstreamError, public_only};

const MAX_REDIRECTS: usize = 5;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest `Retry-After` passed on: the number is the upstream's, and clients that obey
/// an absurd one would stop pulling for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A request to send; `scope` names the token scope, `what` the thing asked for in errors.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub scope: String,
    pub what: String,
}

/// How one pass through the redirect chain failed.
enum Hop {
    /// Connection-level failures, worth another attempt.
    Retryable(String),
    Fatal(UpstreamError),
}

impl Inner {
    /// Sends `req` until it gets a 2xx, mapping every other outcome to an [`UpstreamError`].
    pub(crate) async fn execute(&self, req: &Request) -> Result<Response, UpstreamError> {
        self.execute_as(req, &self.auth).await
    }

    /// [`Inner::execute`] with someone else's credentials (`access.rs`): `auth` answers the
    /// challenges and caches the tokens.
    pub(crate) async fn execute_as(
        &self,
        req: &Request,
        auth: &Auth,
    ) -> Result<Response, UpstreamError> {
        let registry = &self.name;
        let mut attempt = 0;
        let mut fresh_auth: Option<HeaderValue> = None;
        loop {
            let cached = fresh_auth.clone().or_else(|| auth.cached(&req.scope));
            let failure = match self.follow(req, cached.as_ref()).await {
                Err(Hop::Fatal(e)) => return Err(e),
                Err(Hop::Retryable(detail)) => detail,
                Ok((resp, from_registry)) => match resp.status() {
                    s if s.is_success() => return Ok(resp),
                    // A 401 with a cached or no credential starts the dance; after a fresh
                    // one it is final.
                    StatusCode::UNAUTHORIZED if from_registry && fresh_auth.is_none() => {
                        auth.forget(&req.scope);
                        let challenge = resp.headers().get(WWW_AUTHENTICATE);
                        let timeout = self.settings.read_timeout;
                        let header =
                            auth.answer(&self.client, challenge, &req.scope, timeout).await?;
                        fresh_auth = Some(header);
                        continue;
                    }
                    s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                        let detail = format!("HTTP {s} for {}", req.what);
                        return Err(UpstreamError::Unauthorized {
                            registry: registry.clone(),
                            detail,
                        });
                    }
                    StatusCode::NOT_FOUND => {
                        return Err(UpstreamError::NotFound { what: req.what.clone() });
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        let retry_after = retry_after(resp.headers());
                        return Err(UpstreamError::TooManyRequests {
                            registry: registry.clone(),
                            retry_after,
                        });
                    }
                    s if s.is_server_error() => format!("HTTP {s} for {}", req.what),
                    s => {
                        let detail = format!("unexpected HTTP {s} for {}", req.what);
                        return Err(UpstreamError::BadResponse {
                            registry: registry.clone(),
                            detail,
                        });
                    }
                },
            };
            if attempt >= self.settings.retries {
                return Err(UpstreamError::Unavailable {
                    registry: registry.clone(),
                    detail: failure,
                });
            }
            let delay = backoff(attempt);
            tracing::warn!(%registry, attempt, ?delay, "upstream request failed ({failure}); retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One pass: the request and the redirects it leads to. Returns the final response and
    /// whether it came from the registry's own origin.
    async fn follow(
        &self,
        req: &Request,
        auth: Option<&HeaderValue>,
    ) -> Result<(Response, bool), Hop> {
        let registry = &self.name;
        let mut url = req.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            if self.public_only
                && let Err(detail) = public_only::check_url(&url)
            {
                return Err(Hop::Fatal(UpstreamError::BadResponse {
                    registry: registry.clone(),
                    detail,
                }));
            }
            let to_registry = url.origin().ascii_serialization() == self.origin;
            let mut builder =
                self.client.request(req.method.clone(), url.clone()).headers(req.headers.clone());
            if to_registry && let Some(auth) = auth {
                builder = builder.header(AUTHORIZATION, auth.clone());
            }
            let limit = self.settings.connect_timeout + self.settings.read_timeout;
            let resp = match tokio::time::timeout(limit, builder.send()).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) if e.is_connect() || !e.is_timeout() => {
                    return Err(Hop::Retryable(error_chain(&e.without_url())));
                }
                Err(_) | Ok(Err(_)) => {
                    let what = format!("waiting for the response to {} {}", req.method, req.what);
                    return Err(Hop::Fatal(UpstreamError::Timeout {
                        registry: registry.clone(),
                        what,
                    }));
                }
            };
            let status = resp.status();
            // Paths of redirect targets are not logged: presigned URLs are credentials.
            let path = if to_registry { url.path() } else { "(redirect target)" };
            tracing::debug!(%registry, method = %req.method, host = url.host_str(), path, %status, "upstream response");
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok((resp, to_registry));
            }
            let bad = |detail: &str| {
                Hop::Fatal(UpstreamError::BadResponse {
                    registry: registry.clone(),
                    detail: detail.to_owned(),
                })
            };
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad("redirect without a Location"))?;
            let next = url
                .join(location)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| bad("redirect to an invalid URL"))?;
            if is_downgrade(&url, &next) {
                // A presigned URL in clear text is as good as a credential to whoever sees it.
                return Err(bad("refused a redirect from https to plain http"));
            }
            url = next;
        }
        let detail = format!("more than {MAX_REDIRECTS} redirects for {}", req.what);
        Err(Hop::Fatal(UpstreamError::BadResponse { registry: registry.clone(), detail }))
    }
}

/// Exponential, with jitter so that many nodes retrying a recovering upstream spread out.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE * 2u32.pow(attempt.min(6));
    base + base.mul_f64(rand::random_range(0.0..0.5))
}

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`]; the HTTP-date form is rare for
/// registries and is ignored, and so is a number too large to parse.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

fn is_downgrade(from: &Url, to: &Url) -> bool {
    from.scheme() == "https" && to.scheme() != "https"
}

/// reqwest's top-level message ("error sending request") hides the cause; show the chain.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_short() {
        assert!(backoff(0) >= BACKOFF_BASE && backoff(0) < BACKOFF_BASE * 2);
        assert!(backoff(3) >= BACKOFF_BASE * 8);
        assert!(backoff(40) < Duration::from_secs(10));
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 42"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(42)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from(u64::MAX));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999999999999999999"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_https_to_http_is_a_downgrade() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(is_downgrade(&url("https://r.io/v2/"), &url("http://s3.example/blob")));
        assert!(!is_downgrade(&url("https://r.io/v2/"), &url("https://s3.example/blob")));
        assert!(!is_downgrade(&url("http://127.0.0.1:5000/v2/"), &url("http://127.0.0.1:9/b")));
        assert!(!is_downgrade(&url("http://127.0.0.1:5000/v2/"), &url("https://s3.example/b")));
    }
}
