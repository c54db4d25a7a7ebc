//! What the benchmark binaries share: a GET whose body is counted and thrown away, and timed.

use std::time::Instant;

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

/// Downloads `url`, discarding the bytes, and returns MiB/s. Fails unless exactly `size`
/// bytes arrive.
pub async fn download(http: &reqwest::Client, url: &str, size: u64) -> Result<f64> {
    let start = Instant::now();
    let received = get_discarding(http, url).await?;
    if received != size {
        return Err(HarnessError::WrongLength { url: url.to_owned(), received, expected: size });
    }
    Ok(size as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
}
