//! The status report as a person reads it on a terminal: a few summary lines, then tables of
//! members, downloads and errors, columns aligned. Pure, so that tests pin it down.

use std::fmt::Write;

use super::report::StatusReport;

pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let node = &report.node;
    let _ = writeln!(
        out,
        "Node       shoal {}{}{}",
        node.version,
        node.peer_id.as_deref().map(|id| format!(", peer {id}")).unwrap_or_default(),
        node.site.as_deref().map(|s| format!(", site {s}")).unwrap_or_default(),
    );

    let store = &report.store;
    let cap = store.max_bytes.map_or(", no cap".to_owned(), |max| format!(" of {}", size(max)));
    let _ = writeln!(
        out,
        "Store      {}{cap}, {} blobs, {} evicted",
        size(store.bytes),
        store.blobs,
        store.evictions
    );

    let served = &report.served;
    let ratio = served.hit_ratio.map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let _ = writeln!(
        out,
        "Served     local {}, peer {}, upstream {}; hit ratio {ratio}",
        size(served.local_bytes),
        size(served.peer_bytes),
        size(served.upstream_bytes),
    );
    let _ = writeln!(
        out,
        "Saved      {} served without this node going upstream",
        size(served.upstream_bytes_saved)
    );

    out.push('\n');
    if report.members.is_empty() {
        out.push_str("Members    none: this node runs alone (no cluster key)\n");
    } else {
        let up = report.members.iter().filter(|m| m.reachable).count();
        let _ = writeln!(out, "Members    {} ({up} reachable)", report.members.len());
        let rows = report.members.iter().map(|m| {
            let id = if m.local { format!("{} (this node)", m.peer_id) } else { m.peer_id.clone() };
            let reachable = if m.reachable { "yes" } else { "NO" };
            let site = m.site.clone().unwrap_or_else(|| "-".to_owned());
            vec![id, site, m.address.clone(), reachable.to_owned(), m.version.clone()]
        });
        table(&mut out, &["PEER ID", "SITE", "ADDRESS", "REACHABLE", "VERSION"], rows);
    }

    out.push('\n');
    if report.downloads.is_empty() {
        out.push_str("Downloads  none in flight\n");
    } else {
        let _ = writeln!(out, "Downloads  {} in flight", report.downloads.len());
        let rows = report.downloads.iter().map(|d| {
            let progress = match d.size {
                Some(total) if total > 0 => format!(
                    "{} / {} ({:.0} %)",
                    size(d.bytes),
                    size(total),
                    d.bytes as f64 * 100.0 / total as f64
                ),
                Some(_) => "0 / 0".to_owned(),
                None => format!("{} / ?", size(d.bytes)),
            };
            vec![d.digest.clone(), progress, d.source.to_string()]
        });
        table(&mut out, &["DIGEST", "PROGRESS", "FROM"], rows);
    }

    out.push('\n');
    if report.errors.is_empty() {
        out.push_str("Errors     none recently\n");
    } else {
        let _ = writeln!(out, "Errors     the last {}, newest last", report.errors.len());
        let rows = report.errors.iter().map(|e| {
            let ago = report.generated_at.saturating_sub(e.at);
            vec![format!("{ago}s ago"), e.status.to_string(), e.what.clone(), e.message.clone()]
        });
        table(&mut out, &["WHEN", "STATUS", "REQUEST", "MESSAGE"], rows);
    }
    out
}

/// Bytes in the largest binary unit that keeps a whole number in front.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match UNITS.iter().find(|(_, unit)| bytes >= *unit) {
        Some((name, unit)) => format!("{:.1} {name}", bytes as f64 / *unit as f64),
        None => format!("{bytes} B"),
    }
}

/// Rows under a header, indented, each column as wide as its widest cell.
fn table(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::from("  ");
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests;
