//! Reads the Grafana dashboard (`deploy/grafana/shoal.json`) the way a test checks it against a
//! node's `/metrics`: its PromQL expressions, the metric names and label names they use, and
//! the exposition's own names and labels to compare them with.

use std::collections::{BTreeMap, BTreeSet};

/// Grafana's variables, replaced by values PromQL parses, so that the expressions can be
/// checked by `promtool`.
const VARIABLES: [(&str, &str); 3] =
    [("$__rate_interval", "5m"), ("$__range", "1h"), ("$instance", ".*")];

/// Labels a query may use that the node does not expose: Prometheus adds `instance` when it
/// scrapes, and `le` is a histogram bucket's bound.
const ADDED_LABELS: [&str; 2] = ["instance", "le"];

/// Every panel query of the dashboard, rows' panels included, as written.
pub fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_queries(&dashboard["panels"], &mut out);
    out
}

fn collect_queries(panels: &serde_json::Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
        collect_queries(&panel["panels"], out);
    }
}

/// The metric names the template variables' queries (`label_values(METRIC, LABEL)`) read.
pub fn variable_metrics(dashboard: &serde_json::Value) -> Vec<String> {
    let variables = dashboard["templating"]["list"].as_array().into_iter().flatten();
    variables
        .filter_map(|v| v["definition"].as_str())
        .filter_map(|d| d.strip_prefix("label_values(")?.split(',').next())
        .map(|metric| metric.trim().to_owned())
        .collect()
}

/// `expr` with Grafana's variables replaced: plain PromQL.
pub fn as_promql(expr: &str) -> String {
    VARIABLES.iter().fold(expr.to_owned(), |e, (variable, value)| e.replace(variable, value))
}

/// What an expression asks of the exposition: each metric name with the label names its
/// selector matches on, and the label names of its `by (...)` clauses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uses {
    pub metrics: BTreeMap<String, BTreeSet<String>>,
    pub grouped_by: BTreeSet<String>,
}

/// The metric names (`shoal_...`) of `expr` and the labels it uses.
pub fn uses(expr: &str) -> Uses {
    let mut uses = Uses::default();
    let mut rest = expr;
    while let Some(start) = rest.find("shoal_") {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let labels = uses.metrics.entry(tail[..end].to_owned()).or_default();
        rest = &tail[end..];
        if let Some(selector) = rest.strip_prefix('{').and_then(|s| s.split_once('}')) {
            for matcher in selector.0.split(',') {
                let name = matcher.split(['=', '!']).next().unwrap_or("").trim();
                if !name.is_empty() && !ADDED_LABELS.contains(&name) {
                    labels.insert(name.to_owned());
                }
            }
        }
    }
    let mut rest = expr;
    while let Some(start) = rest.find("by (") {
        let (clause, tail) = rest[start + 4..].split_once(')').unwrap_or(("", ""));
        for label in clause.split(',').map(str::trim) {
            if !label.is_empty() && !ADDED_LABELS.contains(&label) {
                uses.grouped_by.insert(label.to_owned());
            }
        }
        rest = tail;
    }
    uses
}

/// The sample names of a Prometheus text exposition, each with the label names its samples
/// carry.
pub fn exposed(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if let Some((set, _)) = line[name_end..].strip_prefix('{').and_then(|s| s.split_once('}')) {
            for pair in set.split(',') {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_labels_from_a_query() {
        let expr = "sum by (endpoint, le) (rate(shoal_http_request_duration_seconds_bucket\
                    {instance=~\"$instance\",status!=\"5xx\"}[$__rate_interval])) / \
                    sum(shoal_store_bytes)";
        let uses = uses(expr);
        let names: Vec<&String> = uses.metrics.keys().collect();
        assert_eq!(names, ["shoal_http_request_duration_seconds_bucket", "shoal_store_bytes"]);
        let labels: Vec<&String> =
            uses.metrics["shoal_http_request_duration_seconds_bucket"].iter().collect();
        assert_eq!(labels, ["status"]);
        assert_eq!(uses.grouped_by.iter().collect::<Vec<_>>(), ["endpoint"]);
        assert!(as_promql(expr).contains("{instance=~\".*\",status!=\"5xx\"}[5m]"));
    }

    #[test]
    fn reads_an_exposition() {
        let text = "# TYPE a_total counter\na_total{source=\"peer\",kind=\"blob\"} 3\ng 1\n";
        let exposed = exposed(text);
        assert_eq!(exposed["a_total"].iter().collect::<Vec<_>>(), ["kind", "source"]);
        assert!(exposed["g"].is_empty());
    }

    #[test]
    fn finds_queries_in_rows_and_variables() {
        let dashboard = serde_json::json!({
            "panels": [
                {"type": "row", "panels": [{"targets": [{"expr": "shoal_a"}]}]},
                {"targets": [{"expr": "shoal_b"}, {"refId": "B"}]}
            ],
            "templating": {"list": [{"definition": "label_values(shoal_c, instance)"}]}
        });
        assert_eq!(queries(&dashboard), ["shoal_a", "shoal_b"]);
        assert_eq!(variable_metrics(&dashboard), ["shoal_c"]);
    }
}
