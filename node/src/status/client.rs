//! `shoal status`: asks a node for its report over its HTTP API.

use std::time::Duration;

use super::STATUS_PATH;
use super::report::StatusReport;

/// Long enough for a node to probe its members (one second each, at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach the node at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the node at {url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("the node at {url} sent a report this version cannot read: {detail}")]
    Unreadable { url: String, detail: String },
}

/// The report of the node whose registry API is at `node` (e.g. `http://127.0.0.1:5000`), as
/// the client `login` (`user:password`, or `name:token`) when the node wants one.
/// `ca`: CAs the node's HTTPS certificate is checked against besides the public roots.
pub async fn fetch(
    node: &str,
    login: Option<&str>,
    ca: Option<&std::path::Path>,
) -> Result<StatusReport, StatusError> {
    let url = format!("{}{STATUS_PATH}", node.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| StatusError::Unreachable {
        url: url.clone(),
        detail: e.without_url().to_string(),
    };
    let builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
    let builder = crate::tls::trusting(builder, ca)
        .map_err(|e| StatusError::Unreachable { url: url.clone(), detail: e.to_string() })?;
    let client = builder.build().map_err(unreachable)?;
    let mut request = client.get(&url);
    if let Some(login) = login {
        let (user, password) = login.split_once(':').unwrap_or((login, ""));
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        let body = body.chars().take(500).collect();
        return Err(StatusError::Refused { url, status: status.as_u16(), body });
    }
    serde_json::from_str(&body)
        .map_err(|e| StatusError::Unreadable { url: url.clone(), detail: e.to_string() })
}
