//! The Grafana dashboard charts only metrics the operator and the proxy register, and every
//! operator metric a rollout needs.

use std::collections::BTreeSet;

use lockstep_e2e::repo_root;
use serde_json::Value;

use crate::read;

/// Operator metrics the dashboard must chart.
const OPERATOR_METRICS: [&str; 4] = [
    "lockstep_operator_rollout_duration_seconds",
    "lockstep_operator_routerconfig_ready",
    "lockstep_operator_routerconfig_synced_replicas",
    "lockstep_operator_routerconfig_replicas",
];

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal arguments of `call` (e.g. `register(`) in `text`.
fn literal_args<'a>(text: &'a str, call: &str) -> Vec<&'a str> {
    text.match_indices(call)
        .filter_map(|(i, _)| {
            let rest = text[i + call.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// Full metric names a crate registers with prometheus-client: each registry prefix joined
/// to each name given to `register(..)` or to a collector's `encode_descriptor(..)`.
fn registered_metrics(crate_dir: &str) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&repo_root().join(crate_dir).join("src"), &mut files);
    let (mut prefixes, mut names) = (BTreeSet::new(), BTreeSet::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        prefixes.extend(literal_args(&text, "with_prefix(").into_iter().map(str::to_owned));
        for call in ["register(", "register_with_unit(", "encode_descriptor("] {
            names.extend(literal_args(&text, call).into_iter().map(str::to_owned));
        }
    }
    prefixes
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}_{n}")))
        .collect()
}

/// Every `lockstep_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("lockstep_")
        .map(|(i, _)| {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |n| i + n);
            text[i..end].to_owned()
        })
        .collect()
}

#[test]
fn grafana_dashboard_charts_registered_metrics() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/lockstep.json")).expect("valid JSON");
    assert_eq!(dashboard["uid"], "lockstep");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut queries = String::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "{title}: duplicate id");
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_i64().unwrap(),
            grid["y"].as_i64().unwrap(),
            grid["w"].as_i64().unwrap(),
            grid["h"].as_i64().unwrap(),
        );
        assert!(x >= 0 && w > 0 && h > 0 && x + w <= 24, "{title}: {grid}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "{title} overlaps another panel at {cell:?}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a PromQL expr"));
            assert!(expr.contains("lockstep_"), "{title}: {expr}");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{title}: {expr}"
            );
            queries.push_str(expr);
            queries.push('\n');
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        queries.push_str(variable["definition"].as_str().unwrap_or_default());
        queries.push('\n');
    }

    let mut registered = registered_metrics("proxy");
    assert!(
        registered.contains("lockstep_proxy_requests"),
        "the scan finds the proxy's metrics: {registered:?}"
    );
    registered.extend(registered_metrics("operator"));
    let used = metric_names(&queries);
    for name in &used {
        // Exposition suffixes: counters end in _total, histograms in _bucket, _sum, _count.
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| registered.contains(*b)))
            .unwrap_or(name);
        assert!(
            registered.contains(base),
            "the dashboard queries {name}, which no binary registers (registered: {registered:?})"
        );
    }
    for name in OPERATOR_METRICS {
        assert!(registered.contains(name), "the operator registers {name}");
        assert!(
            used.iter().any(|u| u.starts_with(name)),
            "{name} is not on the dashboard"
        );
    }
    // Every proxy metric is on the dashboard.
    for name in registered.iter().filter(|n| n.starts_with("lockstep_proxy_")) {
        assert!(
            used.iter().any(|u| u.starts_with(name.as_str())),
            "{name} is not on the dashboard"
        );
    }
}
