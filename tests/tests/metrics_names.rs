//! Every metric the Grafana dashboard, the Prometheus alert rules and the operations guide
//! name is emitted by the code: a panel or an alert on a metric nobody records stays
//! silent exactly when it is needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `tw_…` names in a text, without the histogram series suffixes Prometheus adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tw_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary && end - start > 3 {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end.max(start + 3);
    }
    names
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !["target", ".git", "tests", "node_modules"].contains(&name) {
                rust_sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

#[test]
fn every_metric_in_dashboards_alerts_and_docs_is_emitted() {
    let root = root();
    let mut code = String::new();
    rust_sources(&root, &mut code);
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in [
        "deploy/grafana/dashboards/tickwatch.json",
        "deploy/prometheus/alerts.yml",
        "docs/operations.md",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        for name in metric_names(&text) {
            checked += 1;
            if !code.contains(&format!("\"{name}\"")) {
                missing.push(format!("{name} (in {file})"));
            }
        }
    }
    assert!(checked > 20, "found only {checked} metric names");
    assert!(missing.is_empty(), "named but never emitted: {missing:#?}");
}

/// Kubernetes' PrometheusRule carries the very rules of `deploy/prometheus/alerts.yml`
/// (its groups, indented two spaces under `spec:`), so an edit of one cannot leave the
/// other behind.
#[test]
fn the_kubernetes_rules_are_the_prometheus_rules() {
    let root = root();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml");
    let wrapped = std::fs::read_to_string(root.join("deploy/k8s/prometheus-rule.yaml"))
        .expect("deploy/k8s/prometheus-rule.yaml");
    let groups = &rules[rules.find("\ngroups:").expect("a `groups:` key") + 1..];
    let indented: String = groups
        .split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                line.to_string()
            } else {
                format!("  {line}")
            }
        })
        .collect();
    let spec = &wrapped[wrapped.find("\nspec:\n").expect("a `spec:` key") + "\nspec:\n".len()..];
    assert!(
        spec == indented,
        "deploy/k8s/prometheus-rule.yaml differs from deploy/prometheus/alerts.yml: regenerate it (see its header)"
    );
}
