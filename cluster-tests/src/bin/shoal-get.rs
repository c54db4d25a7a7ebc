//! `shoal-get URL [DIGEST]`: one HTTP GET whose body is hashed and thrown away, for benchmarks
//! that run a client on a LAN host (inside its network namespace, so that its bytes do not
//! cross the host's capped link). Prints `<bytes> <seconds>`; fails when the body does not
//! match DIGEST.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use shoal_protocol::Digest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: shoal-get URL [DIGEST]")?;
    let digest = args.next().map(|d| Digest::parse(&d)).transpose().context("DIGEST")?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let start = Instant::now();
    let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    let mut verifier = digest.map(|d| d.verifier());
    let mut received = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("GET {url} after {received} bytes"))?;
        received += chunk.len() as u64;
        if let Some(verifier) = &mut verifier {
            verifier.update(&chunk);
        }
    }
    if let Some(verifier) = verifier {
        verifier.finish().with_context(|| format!("GET {url}"))?;
    }
    println!("{received} {:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
