//! The shipped Grafana dashboard and Prometheus alert rules (`packaging/monitoring/`) checked against
//! the exposition: every metric they query is a family flowpin exports, and the dashboard has the
//! shape Grafana imports (a JSON model with unique panel ids on a 24-column grid, each target a
//! PromQL expression on the dashboard's data source variable).

use std::collections::BTreeSet;

use super::render;
use crate::control::api::StatusReport;

const DASHBOARD: &str = include_str!("../../../../packaging/monitoring/flowpin-dashboard.json");
const ALERTS: &str = include_str!("../../../../packaging/monitoring/flowpin-alerts.yml");

/// Every family the exposition announces (announced even without samples).
fn exported_families() -> BTreeSet<String> {
    render(&StatusReport::default())
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect()
}

/// The metric names in a PromQL text: identifiers starting `flowpin_` or `process_`.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &promql[i..];
        let starts = (rest.starts_with("flowpin_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_metric_name_scanner_finds_whole_identifiers() {
    let names = metric_names(
        "sum by (reason) (rate(flowpin_drops_total{a=\"x_flowpin_no\"}[5m])) / process_start_time_seconds",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["flowpin_drops_total", "process_start_time_seconds"]
    );
}

#[test]
fn every_metric_the_alert_rules_use_is_exported() {
    let exported = exported_families();
    let exprs: Vec<&str> = ALERTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert_eq!(exprs.len(), 6, "the six alerts");
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {expr}) is not exported"
            );
        }
    }
    for alert in [
        "FlowpinUplinkDown",
        "FlowpinAllUplinksDown",
        "FlowpinNatPortPoolNearlyFull",
        "FlowpinForwardGuardReinstalled",
        "FlowpinDropsRising",
    ] {
        assert!(ALERTS.contains(&format!("alert: {alert}\n")), "{alert}");
    }
}

#[test]
fn the_dashboard_is_a_grafana_model_querying_only_exported_metrics() {
    let exported = exported_families();
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(d["uid"], "flowpin");
    assert!(d["title"].is_string());
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name"))
        .collect();
    assert!(variables.contains("datasource") && variables.contains("instance"));
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut queried = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("panel title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id"
        );
        assert!(
            [
                "timeseries",
                "stat",
                "state-timeline",
                "table",
                "gauge",
                "bargauge"
            ]
            .contains(&p["type"].as_str().expect("type")),
            "{title}: type"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: targets");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(t["refId"].is_string(), "{title}: refId");
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr}");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            queried.extend(names);
        }
    }
    for name in &queried {
        assert!(
            exported.contains(name),
            "the dashboard queries {name}, not exported"
        );
    }
    for shown in [
        "flowpin_uplink_state",
        "flowpin_uplink_nat_ports_in_use",
        "flowpin_drops_total",
        "flowpin_probe_target_rtt_seconds",
        "flowpin_uplink_tx_bytes_total",
    ] {
        assert!(queried.contains(shown), "the dashboard shows {shown}");
    }
}
