//! What the benchmark binaries share: a GET whose body is counted and thrown away.

use futures_util::StreamExt;

use crate::{HarnessError, Result};

/// GETs `url`, discards the body, and returns how many bytes arrived; a status other than
/// success is an error.
pub async fn get_discarding(http: &reqwest::Client, url: &str) -> Result<u64> {
    let response = http.get(url).send().await.map_err(|source| HarnessError::http(url, source))?;
    let status = response.status();
    if !status.is_success() {
        return Err(HarnessError::Status {
            method: "GET".to_owned(),
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::new(),
        });
    }
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        received += chunk.map_err(|source| HarnessError::http(url, source))?.len() as u64;
    }
    Ok(received)
}
