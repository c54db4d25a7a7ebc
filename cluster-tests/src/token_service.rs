//! A token service like Docker Hub's `auth.docker.io`, with no listener of its own: the
//! [`TokenServer`](crate::TokenServer) serves it beside a real registry with `auth: token`, and
//! in-process fake registries serve it on their own router (where they count its requests).
//!
//! It checks basic credentials or an OAuth2 refresh token and issues ES256 JWTs granting the
//! requested repository actions (only what each caller may do), which distribution verifies.
//! It also remembers what each token grants and until when, so that a fake registry can check
//! the tokens it is shown without verifying JWTs, and can have them all revoked at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::jwt::TokenSigner;
use crate::{Credentials, Result};

/// The tokens' issuer, which the registry's `auth: token` section must name.
pub(crate) const ISSUER: &str = "shoal-harness-token-service";

/// Who may get which tokens, and how the service answers.
#[derive(Debug, Clone)]
pub struct TokenServerOptions {
    /// When set, clients presenting these credentials get every action they ask for, wrong
    /// credentials get 401, and anonymous clients get what `anonymous_pull` allows. When unset,
    /// everyone gets every action.
    pub credentials: Option<Credentials>,
    /// Anonymous clients get `pull`, as on Docker Hub for public images.
    pub anonymous_pull: bool,
    /// With `credentials` set, anonymous clients that may not pull get 401, as from a service
    /// that wants credentials outright, instead of Docker Hub's token that grants nothing.
    pub anonymous_refused: bool,
    /// Users who may pull only under their own prefixes (an organization's repositories),
    /// as a tenant of a hosted registry: asked for anything else, they get a token that grants
    /// nothing, and the registry refuses it.
    pub tenants: Vec<Tenant>,
    /// Accepted in an OAuth2 `POST` (`grant_type=refresh_token`, as for Docker's identity
    /// tokens), for what the `credentials` would get. Unset, `POST` is not allowed.
    pub refresh_token: Option<String>,
    /// The answers' `expires_in`, exactly as given however odd (`None`: left out), to test
    /// clients against it. Tokens live that many seconds (at most a year) when it is a positive
    /// number, else 60 s, Docker's default.
    pub expires_in: Option<serde_json::Value>,
    /// The `service` that requests must name, and the tokens' audience.
    pub service: String,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        Self {
            credentials: None,
            anonymous_pull: false,
            anonymous_refused: false,
            tenants: Vec::new(),
            refresh_token: None,
            expires_in: Some(300.into()),
            service: "shoal-harness-registry".to_owned(),
        }
    }
}

/// A user of the token service limited to some repository prefixes.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub credentials: Credentials,
    /// `acme/` covers `acme/app`; a name covers itself.
    pub prefixes: Vec<String>,
}

/// Who presented what to the token service.
enum Caller<'a> {
    Anonymous,
    Admin,
    Tenant(&'a Tenant),
}

/// What one token grants: the actions on one resource (`repository`, name).
#[derive(Debug, Clone)]
struct Access {
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Token → what it grants, and when it stops being honoured.
    live: HashMap<String, (Vec<Access>, Instant)>,
    issued: usize,
    /// Tokens issued per user name (`""`: anonymous).
    issued_to: HashMap<String, usize>,
}

/// The token service: answers token requests, and knows which tokens it issued.
#[derive(Debug)]
pub struct TokenService {
    signer: TokenSigner,
    options: TokenServerOptions,
    ledger: Mutex<Ledger>,
}

impl TokenService {
    pub fn new(options: TokenServerOptions) -> Result<Self> {
        let signer = TokenSigner::generate(ISSUER)?;
        Ok(Self { signer, options, ledger: Mutex::default() })
    }

    pub fn options(&self) -> &TokenServerOptions {
        &self.options
    }

    /// The signing certificate in PEM, for the registry's `rootcertbundle`.
    pub fn certificate_pem(&self) -> &str {
        self.signer.certificate_pem()
    }

    /// Answers `GET ?service=&scope=` (with basic auth or anonymous) or the OAuth2 `POST` with
    /// a refresh token, as `auth.docker.io/token` does.
    pub fn answer(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let (caller, params) = if *method == Method::GET {
            match self.caller(headers) {
                Ok(caller) => (caller, form_pairs(query.unwrap_or_default())),
                Err(why) => return (StatusCode::UNAUTHORIZED, why).into_response(),
            }
        } else if *method == Method::POST && self.options.refresh_token.is_some() {
            let form = form_pairs(std::str::from_utf8(body).unwrap_or_default());
            let presented = param(&form, "refresh_token");
            if param(&form, "grant_type") != Some("refresh_token")
                || presented.is_none()
                || presented != self.options.refresh_token.as_deref()
            {
                return (StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
            }
            (Caller::Admin, form)
        } else {
            // Without a refresh token to accept, a service with only the `GET` of Docker's
            // token spec: clients fall back to it.
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        };
        if param(&params, "service") != Some(self.options.service.as_str()) {
            return (StatusCode::BAD_REQUEST, "unknown service").into_response();
        }
        // Docker's clients repeat `scope`; OAuth2 forms join them with spaces.
        let access = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, scopes)| scopes.split_whitespace())
            .filter_map(|scope| self.grant(scope, &caller))
            .collect();
        match self.issue(&caller, access) {
            Ok(token) => {
                let mut body = serde_json::json!({ "token": token, "access_token": token });
                if let Some(expires_in) = &self.options.expires_in {
                    body["expires_in"] = expires_in.clone();
                }
                axum::Json(body).into_response()
            }
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        }
    }

    /// Whether `token` was issued here, is still honoured, and grants `action` on `repository`.
    pub fn allows(&self, token: &str, repository: &str, action: &str) -> bool {
        self.honoured(token).is_some_and(|access| {
            access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repository
                    && a.actions.iter().any(|granted| granted == action)
            })
        })
    }

    /// Whether `token` was issued here and is still honoured, whatever it grants: enough for
    /// a registry's `/v2/` check.
    pub fn is_live(&self, token: &str) -> bool {
        self.honoured(token).is_some()
    }

    /// Stops honouring every token issued so far, as if they had expired.
    pub fn revoke_all(&self) {
        self.ledger().live.clear();
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.ledger().issued
    }

    /// How many tokens were issued to `user`.
    pub fn issued_to(&self, user: &str) -> usize {
        self.ledger().issued_to.get(user).copied().unwrap_or(0)
    }

    fn honoured(&self, token: &str) -> Option<Vec<Access>> {
        let ledger = self.ledger();
        let (access, end) = ledger.live.get(token)?;
        (*end > Instant::now()).then(|| access.clone())
    }

    /// Who presented the request's credentials, or why they get 401.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller<'_>, &'static str> {
        let options = &self.options;
        let Some(presented) = headers.get(header::AUTHORIZATION) else {
            let refused = options.credentials.is_some()
                && !options.anonymous_pull
                && options.anonymous_refused;
            if refused {
                return Err("credentials required");
            }
            return Ok(Caller::Anonymous);
        };
        let given = presented.to_str().ok().and_then(parse_basic);
        let tenant = options.tenants.iter().find(|t| given.as_ref() == Some(&t.credentials));
        match (tenant, &options.credentials) {
            (Some(tenant), _) => Ok(Caller::Tenant(tenant)),
            (None, Some(admin)) if given.as_ref() == Some(admin) => Ok(Caller::Admin),
            _ => Err("incorrect username or password"),
        }
    }

    /// The access for a `TYPE:NAME:ACTIONS` scope, limited to what the caller may do.
    fn grant(&self, scope: &str, caller: &Caller<'_>) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let options = &self.options;
        let allowed = |action: &str| match caller {
            Caller::Admin => true,
            Caller::Anonymous => {
                options.credentials.is_none() || (options.anonymous_pull && action == "pull")
            }
            Caller::Tenant(tenant) => {
                action == "pull"
                    && tenant.prefixes.iter().any(|p| {
                        name == p.trim_end_matches('/') || (p.ends_with('/') && name.starts_with(p))
                    })
            }
        };
        let actions = actions.split(',').filter(|a| allowed(a)).map(str::to_owned).collect();
        Some(Access { kind: kind.to_owned(), name: name.to_owned(), actions })
    }

    fn issue(&self, caller: &Caller<'_>, access: Vec<Access>) -> Result<String> {
        let subject = match (caller, &self.options.credentials) {
            (Caller::Admin, Some(credentials)) => credentials.username.clone(),
            (Caller::Tenant(tenant), _) => tenant.credentials.username.clone(),
            _ => String::new(),
        };
        let lifetime = lifetime(self.options.expires_in.as_ref());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // Held while signing, so that every token gets its own `jti`.
        let mut ledger = self.ledger();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": self.options.service,
            "exp": now + lifetime.as_secs_f64().ceil() as u64,
            "nbf": now,
            "iat": now,
            "jti": format!("{now}-{}", ledger.issued),
            "access": access.iter().map(|a| serde_json::json!({
                "type": a.kind, "name": a.name, "actions": a.actions,
            })).collect::<Vec<_>>(),
        });
        let token = self.signer.sign(&claims)?;
        ledger.issued += 1;
        *ledger.issued_to.entry(subject).or_default() += 1;
        ledger.live.insert(token.clone(), (access, Instant::now() + lifetime));
        Ok(token)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Every update is a single insert or increment, so a poisoned ledger is still whole.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long a token answered with `expires_in` is honoured (see
/// [`TokenServerOptions::expires_in`]).
fn lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    const YEAR: f64 = 365.0 * 86_400.0;
    match expires_in.and_then(serde_json::Value::as_f64) {
        Some(s) if s >= 1.0 => Duration::from_secs_f64(s.min(YEAR)),
        _ => Duration::from_secs(60),
    }
}

/// The pairs of a query string or an `application/x-www-form-urlencoded` body.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://token.invalid/?{text}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn parse_basic(value: &str) -> Option<Credentials> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials::new(username, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(options: TokenServerOptions) -> TokenService {
        TokenService::new(options).expect("token service")
    }

    /// The JSON of an answer, or its status when it has none.
    async fn json_of(response: Response) -> Result<serde_json::Value, StatusCode> {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        serde_json::from_slice(&body).map_err(|_| status)
    }

    async fn token_of(response: Response) -> Result<String, StatusCode> {
        let json = json_of(response).await?;
        Ok(json["token"].as_str().expect("token").to_owned())
    }

    fn get(service: &TokenService, query: &str, authorization: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
        }
        service.answer(&Method::GET, Some(query), &headers, b"")
    }

    #[test]
    fn grants_what_each_caller_may_do() {
        let scope = "repository:library/app:pull,push";
        let tokens = |anonymous_pull| {
            service(TokenServerOptions {
                credentials: Some(Credentials::new("admin", "pw")),
                anonymous_pull,
                tenants: vec![Tenant {
                    credentials: Credentials::new("t", "pw"),
                    prefixes: vec!["library/".to_owned()],
                }],
                ..Default::default()
            })
        };
        let actions = |service: &TokenService, scope: &str, caller: &Caller<'_>| {
            service.grant(scope, caller).expect("scope").actions
        };
        let (open, closed) = (tokens(true), tokens(false));
        assert_eq!(open.grant(scope, &Caller::Anonymous).expect("scope").name, "library/app");
        assert_eq!(actions(&open, scope, &Caller::Anonymous), ["pull"]);
        assert!(actions(&closed, scope, &Caller::Anonymous).is_empty());
        assert_eq!(actions(&closed, scope, &Caller::Admin), ["pull", "push"]);
        let tenant = Caller::Tenant(&closed.options.tenants[0]);
        assert_eq!(actions(&closed, scope, &tenant), ["pull"]);
        assert!(actions(&closed, "repository:libraryx/app:pull", &tenant).is_empty());
    }

    #[tokio::test]
    async fn tokens_are_honoured_for_their_scope_and_lifetime_until_revoked() {
        let tokens = service(TokenServerOptions {
            credentials: Some(Credentials::new("alice", "pw")),
            anonymous_refused: true,
            expires_in: Some(serde_json::json!("soon")),
            service: "reg".to_owned(),
            ..Default::default()
        });
        let alice = Credentials::new("alice", "pw").basic_header();
        let query = "service=reg&scope=repository%3Aorg%2Fapp%3Apull";
        let response = get(&tokens, query, Some(&alice));
        assert_eq!(response.status(), StatusCode::OK);
        let token = token_of(response).await.expect("token");
        assert!(tokens.allows(&token, "org/app", "pull"));
        assert!(!tokens.allows(&token, "org/app", "push"));
        assert!(!tokens.allows(&token, "org/other", "pull"));
        assert!(tokens.is_live(&token) && !tokens.is_live("forged"));
        assert_eq!((tokens.issued(), tokens.issued_to("alice")), (1, 1));
        tokens.revoke_all();
        assert!(!tokens.allows(&token, "org/app", "pull"));

        assert_eq!(token_of(get(&tokens, query, None)).await, Err(StatusCode::UNAUTHORIZED));
        let wrong = Credentials::new("alice", "nope").basic_header();
        assert_eq!(
            token_of(get(&tokens, query, Some(&wrong))).await,
            Err(StatusCode::UNAUTHORIZED)
        );
        let other_service = "service=other&scope=repository%3Aorg%2Fapp%3Apull";
        let refused = get(&tokens, other_service, Some(&alice));
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(lifetime(Some(&serde_json::json!("soon"))), Duration::from_secs(60));
        assert_eq!(lifetime(Some(&serde_json::json!(1e300))), Duration::from_secs(365 * 86_400));
    }

    #[tokio::test]
    async fn a_refresh_token_is_exchanged_and_expires_in_is_echoed_as_configured() {
        let tokens = service(TokenServerOptions {
            refresh_token: Some("refresh-1".to_owned()),
            expires_in: Some(serde_json::json!(-1)),
            ..Default::default()
        });
        let form = |refresh: &str| {
            format!(
                "grant_type=refresh_token&refresh_token={refresh}&service=shoal-harness-registry\
                 &scope=repository%3Aa%2Fb%3Apull+repository%3Ac%3Apull"
            )
        };
        let answer =
            |body: String| tokens.answer(&Method::POST, None, &HeaderMap::new(), body.as_bytes());
        let json = json_of(answer(form("refresh-1"))).await.expect("json");
        assert_eq!(json["expires_in"], -1);
        let token = json["access_token"].as_str().expect("access token");
        assert!(tokens.allows(token, "a/b", "pull") && tokens.allows(token, "c", "pull"));
        assert_eq!(answer(form("refresh-2")).status(), StatusCode::UNAUTHORIZED);
        let without = service(TokenServerOptions::default());
        let post = without.answer(&Method::POST, None, &HeaderMap::new(), b"");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn decodes_basic_credentials() {
        let header = Credentials::new("alice", "pw:1").basic_header();
        assert_eq!(parse_basic(&header), Some(Credentials::new("alice", "pw:1")));
        assert_eq!(parse_basic("Bearer abc"), None);
    }
}
