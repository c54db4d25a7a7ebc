//! The Prometheus text format (0.0.4) of the registry.
//!
//! `prometheus-client` writes OpenMetrics, in which a counter's family is named without the
//! `_total` its samples carry and the text ends with `# EOF`. Prometheus scrapes either, but
//! `promtool check metrics` and most other readers of `/metrics` only know the older format,
//! where the family and its samples share the name. The two differ in that naming, in `# UNIT`
//! lines and in `# EOF`, so the conversion is a rename of counters' `HELP` and `TYPE` lines.

use std::collections::HashSet;

use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) fn render(registry: &Registry) -> String {
    let mut open_metrics = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut open_metrics, registry);
    to_prometheus_text(&open_metrics)
}

fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_samples_name_and_eof_goes() {
        let open = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\na_bytes_total 3\n\
                    # HELP g Open.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(open),
            "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\na_bytes_total 3\n\
             # HELP g Open.\n# TYPE g gauge\ng 1\n"
        );
    }
}
