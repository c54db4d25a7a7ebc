//! What the benchmark binaries share: a GET whose body is counted and thrown away, and timed;
//! the CPU time and peak memory a server spends; medians; and the machine's sha256 rate, the
//! ceiling of any path that verifies what it stores.

use std::time::Instant;

use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

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

/// The middle value (the upper one of an even count): one round on a shared machine can be far
/// off either way.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Peak resident set size of process `pid` in MiB, from the kernel's high-water mark.
pub fn peak_rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|source| HarnessError::io(format!("reading {path}"), source))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or_else(|| {
            HarnessError::io(
                format!("reading VmHWM in {path}"),
                std::io::ErrorKind::InvalidData.into(),
            )
        })?;
    Ok(kib / 1024.0)
}

/// Resets the peak RSS of `pid` to its current RSS (`clear_refs` 5), so that the next
/// [`peak_rss_mib`] covers only what follows.
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").map_err(|source| HarnessError::io(format!("writing {path}"), source))
}

/// CPU seconds (user + system) that process `pid` and its live descendants have used so far.
///
/// A rate moves with whatever else the machine is doing; the CPU a server spends per byte
/// moves much less, so the benchmarks report both.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|source| HarnessError::io(format!("reading /proc/{pid}/stat"), source))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in clock
    // ticks, which /proc always counts at 100 per second.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut seconds = (ticks(11) + ticks(12)) as f64 / 100.0;
    for child in children(pid) {
        seconds += cpu_seconds(child).unwrap_or(0.0);
    }
    Ok(seconds)
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// MiB/s at which this machine computes one sha256 over `mib` MiB in memory: the fastest any
/// node can take in bytes it must verify, since one digest cannot be split across cores.
pub fn sha256_mib_per_s(mib: usize) -> f64 {
    let block = vec![0x5au8; 1 << 20];
    let mut hasher = Sha256::new();
    let start = Instant::now();
    for _ in 0..mib {
        hasher.update(&block);
    }
    std::hint::black_box(hasher.finalize());
    mib as f64 / start.elapsed().as_secs_f64()
}
