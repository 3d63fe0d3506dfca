//! Human-readable tables for `flowpin status`, `flowpin flows` and `flowpin explain`.
//!
//! Invariant: it only lays out what the reports carry; no figure is computed or read here (units
//! are only scaled for reading).

use std::fmt::Write;

use super::api::{ExplainReport, FlowsReport};
use super::new_flow_explanation::NewFlowExplanation;
use table::{Align, Table};

mod forwards;
mod status;
pub mod table;
pub mod units;

pub use status::status;

/// Renders `flowpin explain` for a terminal: per flow, the rule, the stickiness key, the decision and
/// the uplinks as they were at that moment.
pub fn explain(report: &ExplainReport) -> String {
    let mut out = String::new();
    if report.flows.is_empty() {
        let _ = writeln!(out, "no flow matches");
    }
    for e in &report.flows {
        let f = &e.flow;
        let _ = writeln!(
            out,
            "{} {} → {} as {} on {} ({}, {})",
            f.proto, f.internal, f.remote, f.external, f.uplink, e.kind, f.state
        );
        let _ = writeln!(out, "  rule:        {}", e.rule);
        let _ = writeln!(
            out,
            "  stickiness:  {} — key of {}{}",
            e.stickiness,
            e.stickiness_fields,
            if e.stickiness_key.is_empty() {
                String::new()
            } else {
                format!(" = {}", e.stickiness_key)
            }
        );
        match e.decided_s_ago {
            Some(ago) => {
                let _ = writeln!(
                    out,
                    "  decided:     snapshot {} ({ago:.1} s ago); the group chose {}",
                    e.generation,
                    e.chooser_pick.as_deref().unwrap_or("-")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  decided:     snapshot {} (forgotten: the daemon remembers {} snapshots, from {})",
                    e.generation, report.history, report.oldest_generation
                );
            }
        }
        for u in &e.uplinks {
            let _ = writeln!(
                out,
                "    {:<10} {:<9} weight {:<5} {}",
                u.name,
                u.state,
                u.weight,
                if u.eligible {
                    "took new flows"
                } else {
                    "took no new flows"
                }
            );
        }
        let _ = writeln!(out, "  why:         {}\n", e.summary);
    }
    out
}

/// Renders `flowpin explain --new` for a terminal: the verdict, the rule, the key, the uplinks now.
pub fn explain_new(e: &NewFlowExplanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "new {} {} → {}: {}",
        e.proto,
        e.internal,
        e.remote,
        match (e.verdict.as_str(), &e.uplink, &e.external_address) {
            ("outbound", Some(u), Some(a)) => format!("out of {u} as {a}"),
            ("hairpin", Some(u), _) => format!("hairpin through {u}'s address"),
            _ => "refused".to_owned(),
        }
    );
    if !e.rule.is_empty() {
        let _ = writeln!(out, "  rule:        {}", e.rule);
        let _ = writeln!(
            out,
            "  stickiness:  {} — key of {} = {}",
            e.stickiness, e.stickiness_fields, e.stickiness_key
        );
        let _ = writeln!(
            out,
            "  now:         snapshot {}; the group chooses {}",
            e.generation,
            e.chooser_pick.as_deref().unwrap_or("-")
        );
    }
    let mut t = Table::new(&[
        ("    uplink", Align::Left),
        ("state", Align::Left),
        ("weight", Align::Right),
        ("new flows", Align::Left),
    ]);
    for u in &e.uplinks {
        t.row(vec![
            format!("    {}", u.name),
            u.state.clone(),
            u.weight.to_string(),
            if u.eligible { "takes" } else { "takes none" }.to_owned(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "  why:         {}", e.summary);
    out
}

/// Renders `flowpin flows` for a terminal.
pub fn flows(f: &FlowsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<22} {:<22} {:<22} {:<8} {:<12} {:>9} {:>9} {:>9}",
        "proto", "internal", "external", "remote", "uplink", "state", "idle ms", "out", "in"
    );
    for e in &f.flows {
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<22} {:<22} {:<8} {:<12} {:>9} {:>9} {:>9}",
            e.proto,
            e.internal,
            e.external,
            e.remote,
            e.forward.as_ref().map_or_else(
                || e.uplink.clone(),
                |forward| format!("{} ←{forward}", e.uplink)
            ),
            e.state,
            e.idle_ms,
            e.packets_out,
            e.packets_in
        );
    }
    let _ = writeln!(out, "{} shown, {} matched", f.flows.len(), f.matched);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::FlowEntry;

    #[test]
    fn flows_table_counts_rows() {
        let f = FlowsReport {
            flows: vec![FlowEntry {
                proto: "udp".into(),
                internal: "10.77.0.11:5000".into(),
                ..Default::default()
            }],
            matched: 9,
        };
        let t = flows(&f);
        assert!(t.contains("10.77.0.11:5000"));
        assert!(t.contains("1 shown, 9 matched"));
    }
}
