//! A small token service like Docker Hub's `auth.docker.io`, for a registry with `auth: token`:
//! it checks basic credentials if configured and issues signed JWTs granting the requested
//! repository actions (only `pull` to anonymous clients when anonymous pulls are allowed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::jwt::TokenSigner;
use crate::registry::TokenAuth;
use crate::{Credentials, HarnessError, Result};

/// Lifetime of issued tokens.
const TOKEN_LIFETIME_SECS: u64 = 300;
const SERVICE: &str = "shoal-harness-registry";
const ISSUER: &str = "shoal-harness-token-service";

/// Who may get tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenServerOptions {
    /// When set, clients presenting these credentials get every action they ask for, wrong
    /// credentials get 401, and anonymous clients get what `anonymous_pull` allows. When unset,
    /// everyone gets every action.
    pub credentials: Option<Credentials>,
    /// Anonymous clients get `pull`, as on Docker Hub for public images.
    pub anonymous_pull: bool,
    /// Users who may pull only under their own prefixes (an organization's repositories),
    /// as a tenant of a hosted registry: asked for anything else, they get a token that grants
    /// nothing, and the registry refuses it.
    pub tenants: Vec<Tenant>,
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

/// A running token service. Dropping it stops the server.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    state: Arc<ServerState>,
    root_cert_bundle: std::path::PathBuf,
    _dir: TempDir,
}

#[derive(Debug)]
struct ServerState {
    signer: TokenSigner,
    options: TokenServerOptions,
    issued: AtomicUsize,
    /// Tokens issued per user name (`""`: anonymous).
    issued_to: std::sync::Mutex<HashMap<String, usize>>,
}

impl TokenServer {
    pub async fn start(options: TokenServerOptions) -> Result<Self> {
        let signer = TokenSigner::generate(ISSUER)?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-token-")
            .tempdir()
            .map_err(|source| HarnessError::io("creating the token server directory", source))?;
        let root_cert_bundle = dir.path().join("root.pem");
        std::fs::write(&root_cert_bundle, signer.certificate_pem())
            .map_err(|source| HarnessError::io("writing the root certificate bundle", source))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| HarnessError::io("binding the token server", source))?;
        let addr = listener
            .local_addr()
            .map_err(|source| HarnessError::io("reading the token server address", source))?;
        let state = Arc::new(ServerState {
            signer,
            options,
            issued: AtomicUsize::new(0),
            issued_to: Default::default(),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue_token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(%err, "token server stopped");
            }
        });
        Ok(Self { addr, task, state, root_cert_bundle, _dir: dir })
    }

    /// The URL clients get tokens from (the challenge's `realm`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// How many tokens were issued to `user`.
    pub fn issued_to(&self, user: &str) -> usize {
        let issued = self.state.issued_to.lock().unwrap_or_else(|e| e.into_inner());
        issued.get(user).copied().unwrap_or(0)
    }

    /// The registry's `auth: token` section for this service; the seeding client presents
    /// the configured credentials.
    pub fn registry_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: self.realm(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            root_cert_bundle: self.root_cert_bundle.clone(),
            credentials: self.state.options.credentials.clone(),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn issue_token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        url_query_pairs(query.as_deref().unwrap_or_default()).collect();
    let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.as_str());
    if service != Some(SERVICE) {
        return (StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let options = &state.options;
    let caller = match presented.map(parse_basic) {
        None => Caller::Anonymous,
        Some(given) => {
            let tenant = options.tenants.iter().find(|t| given.as_ref() == Some(&t.credentials));
            match (tenant, &options.credentials) {
                (Some(tenant), _) => Caller::Tenant(tenant),
                (None, Some(admin)) if given.as_ref() == Some(admin) => Caller::Admin,
                _ => {
                    return (StatusCode::UNAUTHORIZED, "incorrect username or password")
                        .into_response();
                }
            }
        }
    };
    let access: Vec<serde_json::Value> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .filter_map(|(_, scope)| grant(scope, &caller, options))
        .collect();
    let now = unix_now();
    let subject = match (&caller, &state.options.credentials) {
        (Caller::Admin, Some(credentials)) => credentials.username.clone(),
        (Caller::Tenant(tenant), _) => tenant.credentials.username.clone(),
        _ => String::new(),
    };
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + TOKEN_LIFETIME_SECS,
        "nbf": now,
        "iat": now,
        "jti": format!("{now}-{}", state.issued.load(Ordering::SeqCst)),
        "access": access,
    });
    match state.signer.sign(&claims) {
        Ok(token) => {
            state.issued.fetch_add(1, Ordering::SeqCst);
            let mut issued_to = state.issued_to.lock().unwrap_or_else(|e| e.into_inner());
            *issued_to.entry(subject).or_default() += 1;
            let body = serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECS,
            });
            axum::Json(body).into_response()
        }
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The access entry for a `repository:NAME:ACTIONS` scope, limited to what the caller may do.
fn grant(
    scope: &str,
    caller: &Caller<'_>,
    options: &TokenServerOptions,
) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
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
    let actions: Vec<&str> = actions.split(',').filter(|a| allowed(a)).collect();
    Some(serde_json::json!({ "type": kind, "name": name, "actions": actions }))
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

fn url_query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let with_spaces = s.replace('+', " ");
    let bytes = with_spaces.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
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

    #[test]
    fn grants_what_each_caller_may_do() {
        let scope = "repository:library/app:pull,push";
        let admin = Credentials::new("admin", "pw");
        let options = |anonymous_pull| TokenServerOptions {
            credentials: Some(admin.clone()),
            anonymous_pull,
            tenants: vec![Tenant {
                credentials: Credentials::new("t", "pw"),
                prefixes: vec!["library/".to_owned()],
            }],
        };
        let granted = grant(scope, &Caller::Anonymous, &options(true)).expect("scope");
        assert_eq!(granted["name"], "library/app");
        assert_eq!(granted["actions"], serde_json::json!(["pull"]));
        let none = grant(scope, &Caller::Anonymous, &options(false)).expect("scope");
        assert_eq!(none["actions"], serde_json::json!([]));
        let all = grant(scope, &Caller::Admin, &options(false)).expect("scope");
        assert_eq!(all["actions"], serde_json::json!(["pull", "push"]));
        let opts = options(false);
        let tenant = Caller::Tenant(&opts.tenants[0]);
        let own = grant(scope, &tenant, &opts).expect("scope");
        assert_eq!(own["actions"], serde_json::json!(["pull"]));
        let other = grant("repository:libraryx/app:pull", &tenant, &opts).expect("scope");
        assert_eq!(other["actions"], serde_json::json!([]));
    }

    #[test]
    fn decodes_query_and_basic_credentials() {
        let pairs: Vec<_> =
            url_query_pairs("scope=repository%3Aa%2Fb%3Apull&service=x+y").collect();
        assert_eq!(pairs[0], ("scope".to_owned(), "repository:a/b:pull".to_owned()));
        assert_eq!(pairs[1], ("service".to_owned(), "x y".to_owned()));
        let header = Credentials::new("alice", "pw:1").basic_header();
        assert_eq!(parse_basic(&header), Some(Credentials::new("alice", "pw:1")));
    }
}
