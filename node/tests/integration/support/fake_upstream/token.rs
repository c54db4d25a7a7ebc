//! The fake registry's checks of `Authorization`: bearer tokens from its token service, scoped
//! per repository, or basic credentials.

use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shoal_cluster_tests::Credentials;

use super::{AuthMode, State};

/// The 401 to answer a registry request for `repo` with, or `None` when it may proceed; any
/// live token will do for `repo == ""` (`/v2/`).
pub(crate) fn check(state: &State, headers: &HeaderMap, repo: &str) -> Option<Response> {
    let presented = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match &state.auth {
        AuthMode::Anonymous => None,
        AuthMode::Basic { username, password } => {
            let expected = Credentials::new(username, password).basic_header();
            if presented == Some(expected.as_str()) {
                return None;
            }
            Some(unauthorized(r#"Basic realm="fake registry""#.to_owned()))
        }
        AuthMode::Token(service) => {
            let token = presented.and_then(|p| p.strip_prefix("Bearer "));
            let allowed = |t: &str| match repo {
                "" => service.is_live(t),
                repo => service.allows(t, repo, "pull"),
            };
            if token.is_some_and(allowed) {
                return None;
            }
            let mut challenge = format!(
                r#"Bearer realm="{}/token",service="{}",scope="repository:{repo}:pull""#,
                state.realm_url.as_ref().unwrap_or(&state.registry_url),
                service.options().service,
            );
            // A client shown this knows its token, not its lack of one, was the problem.
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
