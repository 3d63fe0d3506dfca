//! Human-readable tables for `flowpin status`, `flowpin flows` and `flowpin explain`.
//!
//! Invariant: it only lays out what the reports carry; no figure is computed or read here.

use std::fmt::Write;

use super::api::{ExplainReport, FlowsReport, StatusReport};

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

/// Renders `flowpin status` for a terminal.
pub fn status(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flowpin up {}s — flows {} / {} — new flows on tier {}",
        s.uptime_s,
        s.flows,
        s.flow_capacity,
        s.tier_in_use
            .map_or_else(|| "none (no uplink eligible)".to_owned(), |t| t.to_string())
    );
    let _ = writeln!(
        out,
        "flow table share: {} hosts holding flows; from {} flows in use a host holding {} gets no new flow",
        s.flow_hosts, s.flow_share_pressure, s.flow_fair_share
    );
    let _ = writeln!(
        out,
        "router's own default route: {}",
        match (
            s.router_default_route.as_str(),
            s.router_default_via.is_empty()
        ) {
            ("unmanaged", _) => "unmanaged (left to the admin)".to_owned(),
            (mode, true) => format!("{mode}, no uplink usable: the main table's default"),
            (mode, false) => format!("{mode} via {}", s.router_default_via.join(", ")),
        }
    );
    uplink_traffic(&mut out, s);
    uplink_health(&mut out, s);
    refusals(&mut out, s);
    workers(&mut out, s);
    control_surfaces(&mut out, s);
    out
}

/// What the control socket and the metrics endpoint refused, displaced or timed out.
fn control_surfaces(out: &mut String, s: &StatusReport) {
    let c = &s.control_surfaces;
    let _ = writeln!(
        out,
        "control socket: open {}, accepted {}, displaced {}, refused {}, line too long {}, timed out {}",
        c.api_connections_open,
        c.api_connections_accepted,
        c.api_connections_displaced,
        c.api_connections_refused,
        c.api_requests_too_long,
        c.api_timeouts
    );
    let _ = writeln!(
        out,
        "metrics endpoint: 200 {}, 400 {}, 404 {}, 405 {}, 503 (busy) {}, timed out {}",
        c.metrics_ok,
        c.metrics_bad_request,
        c.metrics_not_found,
        c.metrics_bad_method,
        c.metrics_refused,
        c.metrics_timeouts
    );
}

/// The uplinks' table: address, state, weight, tier, flows and traffic.
fn uplink_traffic(out: &mut String, s: &StatusReport) {
    let _ = writeln!(
        out,
        "\n{:<10} {:<10} {:<16} {:<9} {:>6} {:>4} {:>8} {:>12} {:>14} {:>12} {:>14}",
        "uplink",
        "interface",
        "address",
        "state",
        "weight",
        "tier",
        "flows",
        "tx packets",
        "tx bytes",
        "rx packets",
        "rx bytes"
    );
    for u in &s.uplinks {
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<16} {:<9} {:>6} {:>4} {:>8} {:>12} {:>14} {:>12} {:>14}",
            u.name,
            u.interface,
            u.address,
            u.state,
            u.weight,
            u.tier,
            u.flows,
            u.tx_packets,
            u.tx_bytes,
            u.rx_packets,
            u.rx_bytes
        );
    }
}

/// The uplinks' health table: probes, changes, failovers, handshakes.
fn uplink_health(out: &mut String, s: &StatusReport) {
    let _ = writeln!(
        out,
        "\n{:<10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "health",
        "loss %",
        "rtt ms",
        "changes",
        "failovers",
        "moved off",
        "syn sent",
        "syn-ack",
        "unanswered"
    );
    for u in &s.uplinks {
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
            u.name,
            show(u.probe_loss_percent),
            show(u.probe_rtt_ms),
            u.state_changes,
            u.failovers,
            u.flows_failed_over,
            u.tcp_handshakes_started,
            u.tcp_handshakes_answered,
            u.tcp_handshakes_unanswered_in_a_row
        );
    }
    probe_targets(out, s);
}

/// Per uplink and probe target: loss, RTT, jitter and the latest failure; then the hooks.
fn probe_targets(out: &mut String, s: &StatusReport) {
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    if s.uplinks.iter().any(|u| !u.probe_targets.is_empty()) {
        let _ = writeln!(
            out,
            "
{:<10} {:<32} {:>8} {:>8} {:>9}  last failure",
            "probes", "target", "loss %", "rtt ms", "jitter ms"
        );
    }
    for u in &s.uplinks {
        for t in &u.probe_targets {
            let _ = writeln!(
                out,
                "{:<10} {:<32} {:>8.1} {:>8} {:>9}  {}",
                u.name,
                t.target,
                t.loss_percent,
                show(t.rtt_ms),
                show(t.jitter_ms),
                t.last_failure.as_deref().unwrap_or("-")
            );
        }
    }
    let h = &s.hooks;
    if h.events > 0 {
        let _ = writeln!(
            out,
            "
hooks: {} changes, runs succeeded {} failed {} timed out {}, changes dropped {} \
             (queue full), waiting {}",
            h.events, h.succeeded, h.failed, h.timed_out, h.dropped, h.waiting
        );
    }
}

/// Drops by reason, early drops, suppressed ICMP answers and the XDP program's decisions.
fn refusals(out: &mut String, s: &StatusReport) {
    if s.drops.is_empty() {
        let _ = writeln!(out, "\ndrops: none");
    } else {
        let _ = writeln!(out, "\ndrops by reason:");
        for (reason, n) in &s.drops {
            let _ = writeln!(out, "  {reason:<32} {n:>12}");
        }
    }
    let _ = writeln!(
        out,
        "flows early-dropped (no reply; table full or host over its share): {}",
        s.flows_early_dropped
    );
    let _ = writeln!(
        out,
        "forward guard re-installed (found removed or altered): {} (failed {})",
        s.guard_reinstalls, s.guard_reinstalls_failed
    );
    let _ = writeln!(
        out,
        "flows spilled to another uplink (host over its share): {}",
        s.flows_spilled
    );
    if !s.icmp_suppressed.is_empty() {
        let kinds: Vec<String> = s
            .icmp_suppressed
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "ICMP answers suppressed (rate limit): {}",
            kinds.join(", ")
        );
    }
    if !s.admission.is_empty() {
        let budgets: Vec<String> = s
            .admission
            .iter()
            .map(|(name, per_s, burst)| match per_s {
                0 => format!("{name} off"),
                _ => format!("{name} {per_s}/s burst {burst}"),
            })
            .collect();
        let _ = writeln!(out, "XDP admission of TCP SYNs: {}", budgets.join(", "));
    }
    if !s.xdp.is_empty() {
        let _ = writeln!(out, "\nXDP decisions (packets):");
        for (decision, n) in &s.xdp {
            let _ = writeln!(out, "  {decision:<32} {n:>12}");
        }
    }
}

/// Per worker: frames, translations, UMEM frame states and its sockets' kernel counters.
fn workers(out: &mut String, s: &StatusReport) {
    for w in &s.workers {
        let _ = write!(
            out,
            "worker {}: rx {} tx {} batches {}; translated out {} in {}; flows created {}",
            w.index,
            w.rx_frames,
            w.tx_frames,
            w.batches,
            w.outbound_packets,
            w.inbound_packets,
            w.flows_created
        );
        if let Some(frames) = &w.frames {
            let _ = write!(out, "; UMEM {} frames:", frames.total);
            for (state, n) in frames.states() {
                let _ = write!(out, " {state} {n}");
            }
        }
        out.push('\n');
        for socket in &w.sockets {
            let _ = write!(out, "  AF_XDP socket {} (kernel):", socket.port);
            for (counter, n) in socket.counters() {
                let _ = write!(out, " {counter} {n}");
            }
            out.push('\n');
        }
    }
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
            e.uplink,
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
    use crate::control::api::{FlowEntry, UplinkStatus};

    #[test]
    fn status_lists_every_uplink_and_nonzero_drop() {
        let s = StatusReport {
            uplinks: vec![UplinkStatus {
                name: "isp1".into(),
                state: "up".into(),
                tx_packets: 42,
                ..Default::default()
            }],
            drops: vec![("no_flow_inbound".into(), 3)],
            ..Default::default()
        };
        let t = status(&s);
        assert!(t.contains("isp1"));
        assert!(t.contains("42"));
        assert!(t.contains("no_flow_inbound"));
    }

    #[test]
    fn status_shows_the_routers_own_default_route() {
        let mut s = StatusReport {
            router_default_route: "multipath".into(),
            router_default_via: vec!["wan1 1".into(), "wan2 3".into()],
            ..Default::default()
        };
        assert!(status(&s).contains("router's own default route: multipath via wan1 1, wan2 3"));
        s.router_default_via.clear();
        assert!(status(&s).contains("multipath, no uplink usable: the main table's default"));
        s.router_default_route = "unmanaged".into();
        assert!(status(&s).contains("router's own default route: unmanaged"));
    }

    #[test]
    fn status_shows_each_probe_target_and_the_hooks() {
        let s = StatusReport {
            uplinks: vec![UplinkStatus {
                name: "isp2".into(),
                probe_targets: vec![crate::control::api::ProbeTargetStatus {
                    target: "http://203.0.113.13:8081/health".into(),
                    loss_percent: 40.0,
                    rtt_ms: Some(3.25),
                    jitter_ms: Some(0.5),
                    last_failure: Some("HTTP status 503".into()),
                }],
                ..Default::default()
            }],
            hooks: crate::control::health::hooks::HookStatus {
                events: 2,
                succeeded: 1,
                timed_out: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = status(&s);
        let row = t
            .lines()
            .find(|l| l.contains("http://203.0.113.13:8081/health"))
            .expect(&t);
        for column in ["isp2", "40.0", "3.2", "0.5", "HTTP status 503"] {
            assert!(row.contains(column), "{column} in {row}");
        }
        assert!(
            t.contains("hooks: 2 changes, runs succeeded 1 failed 0 timed out 1"),
            "{t}"
        );
    }

    #[test]
    fn status_shows_each_workers_frames_per_state() {
        use crate::control::api::WorkerStatus;
        use crate::xsk::FrameAccounting;
        let s = StatusReport {
            workers: vec![WorkerStatus {
                index: 1,
                batches: 7,
                outbound_packets: 30,
                inbound_packets: 20,
                flows_created: 4,
                frames: Some(FrameAccounting {
                    total: 512,
                    free: 10,
                    fill: 480,
                    rx: 2,
                    in_flight: 0,
                    tx: 15,
                    completion: 5,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = status(&s);
        assert!(
            t.contains("worker 1: rx 0 tx 0 batches 7; translated out 30 in 20; flows created 4; UMEM 512 frames: free 10 fill 480 rx 2 in_flight 0 tx 15 completion 5\n"),
            "{t}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["workers"][0]["frames"]["fill"], 480);
        assert_eq!(json["workers"][0]["frames"]["total"], 512);
        assert_eq!(json["workers"][0]["inbound_packets"], 20);
    }

    #[test]
    fn status_shows_each_sockets_kernel_counters_and_early_drops() {
        use crate::control::api::{WorkerStatus, XskSocketStatus};
        let s = StatusReport {
            flows_early_dropped: 17,
            flow_hosts: 2,
            flow_share_pressure: 768,
            flow_fair_share: 341,
            guard_reinstalls: 3,
            flows_spilled: 5,
            icmp_suppressed: vec![("net_unreachable".into(), 2), ("port_exhausted".into(), 5)],
            workers: vec![WorkerStatus {
                index: 0,
                sockets: vec![
                    XskSocketStatus {
                        port: "lan".into(),
                        kernel: crate::xsk::KernelSocketStats {
                            rx_dropped: 13727,
                            rx_ring_full: 13700,
                            rx_fill_ring_empty_descs: 27,
                            ..Default::default()
                        },
                    },
                    XskSocketStatus {
                        port: "isp1".into(),
                        kernel: crate::xsk::KernelSocketStats {
                            tx_ring_empty_descs: 5,
                            ..Default::default()
                        },
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = status(&s);
        assert!(
            t.contains("  AF_XDP socket lan (kernel): rx_dropped 13727 rx_invalid_descs 0 tx_invalid_descs 0 rx_ring_full 13700 rx_fill_ring_empty_descs 27 tx_ring_empty_descs 0\n"),
            "{t}"
        );
        assert!(
            t.contains("  AF_XDP socket isp1 (kernel): rx_dropped 0"),
            "{t}"
        );
        assert!(
            t.contains("flows early-dropped (no reply; table full or host over its share): 17\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "ICMP answers suppressed (rate limit): net_unreachable 2, port_exhausted 5\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("forward guard re-installed (found removed or altered): 3 (failed 0)\n"),
            "{t}"
        );
        assert!(
            t.contains("flow table share: 2 hosts holding flows; from 768 flows in use a host holding 341 gets no new flow\n"),
            "{t}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["flows_early_dropped"], 17);
        assert_eq!(json["guard_reinstalls"], 3);
        assert_eq!(json["flows_spilled"], 5);
        assert_eq!(json["flow_fair_share"], 341);
        assert_eq!(json["icmp_suppressed"][1][0], "port_exhausted");
        assert_eq!(json["icmp_suppressed"][1][1], 5);
        let lan = &json["workers"][0]["sockets"][0];
        assert_eq!(lan["port"], "lan");
        assert_eq!(lan["rx_ring_full"], 13700);
        assert_eq!(lan["rx_fill_ring_empty_descs"], 27);
        assert_eq!(json["workers"][0]["sockets"][1]["port"], "isp1");
        assert_eq!(json["workers"][0]["sockets"][1]["tx_ring_empty_descs"], 5);
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, s, "the JSON round-trips");
    }

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
