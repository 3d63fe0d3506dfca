//! `flowpin status` for a terminal: what an admin asks first, first.
//!
//! Order: one summary line; the uplinks (state, since when, tier, weight, flows, rates); each probe
//! target's loss, RTT and jitter; drops by reason. With `--verbose` then: addresses and NAT port
//! pools, health and failover counters, the flow table's share, refusals and the XDP program's
//! decisions, each worker with its UMEM and AF_XDP sockets, the control surfaces, reloads and hooks.
//!
//! Invariants: every table's columns are as wide as their content ([`Table`]); rates carry SI
//! prefixes; nothing here computes a figure the report does not carry.

use std::fmt::Write;

use super::table::{Align, Table};
use super::units::{duration, si};
use crate::control::api::StatusReport;

/// Renders `flowpin status`; `verbose` adds the internals after what the admin reads first.
pub fn status(s: &StatusReport, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flowpin {} up {} — {} flows of {} — new flows on tier {}\n",
        s.version,
        duration(s.uptime_s),
        s.flows,
        s.flow_capacity,
        s.tier_in_use
            .map_or_else(|| "none (no uplink eligible)".to_owned(), |t| t.to_string())
    );
    uplinks(&mut out, s);
    router_default_route(&mut out, s);
    super::forwards::forwards(&mut out, s);
    probe_targets(&mut out, s);
    drops(&mut out, s);
    if verbose {
        uplink_details(&mut out, s);
        uplink_health(&mut out, s);
        refusals(&mut out, s);
        xdp(&mut out, s);
        workers(&mut out, s);
        daemon(&mut out, s);
    }
    out
}

/// Shows an optional figure with one decimal, `-` when absent.
fn one_decimal(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

/// The uplinks: state, since when, tier, weight, flows and rates.
fn uplinks(out: &mut String, s: &StatusReport) {
    let mut t = Table::new(&[
        ("uplink", Align::Left),
        ("state", Align::Left),
        ("since", Align::Right),
        ("tier", Align::Right),
        ("weight", Align::Right),
        ("flows", Align::Right),
        ("out", Align::Right),
        ("out rate", Align::Right),
        ("in", Align::Right),
        ("in rate", Align::Right),
    ]);
    for u in &s.uplinks {
        t.row(vec![
            u.name.clone(),
            u.state.clone(),
            duration(u.state_for_s),
            u.tier.to_string(),
            u.weight.to_string(),
            u.flows.to_string(),
            si(u.rates.tx_pps, "pps"),
            si(u.rates.tx_bps, "bit/s"),
            si(u.rates.rx_pps, "pps"),
            si(u.rates.rx_bps, "bit/s"),
        ]);
    }
    out.push_str(&t.render());
}

/// Which uplinks the router's own traffic leaves by (`[router] default_route`).
fn router_default_route(out: &mut String, s: &StatusReport) {
    let via = match (
        s.router_default_route.as_str(),
        s.router_default_via.is_empty(),
    ) {
        ("unmanaged", _) => "unmanaged (left to the admin)".to_owned(),
        (mode, true) => format!("{mode}, no uplink usable: the main table's default"),
        (mode, false) => format!("{mode} via {}", s.router_default_via.join(", ")),
    };
    let _ = writeln!(out, "router's own default route: {via}\n");
}

/// Per uplink and probe target: loss, RTT, jitter and the latest failure.
fn probe_targets(out: &mut String, s: &StatusReport) {
    if s.uplinks.iter().all(|u| u.probe_targets.is_empty()) {
        return;
    }
    let mut t = Table::new(&[
        ("probes", Align::Left),
        ("target", Align::Left),
        ("loss %", Align::Right),
        ("rtt ms", Align::Right),
        ("jitter ms", Align::Right),
        ("last failure", Align::Left),
    ]);
    for u in &s.uplinks {
        for p in &u.probe_targets {
            t.row(vec![
                u.name.clone(),
                p.target.clone(),
                format!("{:.1}", p.loss_percent),
                one_decimal(p.rtt_ms),
                one_decimal(p.jitter_ms),
                p.last_failure.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&t.render());
}

/// Drops by reason.
fn drops(out: &mut String, s: &StatusReport) {
    if s.drops.is_empty() {
        let _ = writeln!(out, "\ndrops: none");
        return;
    }
    let mut t = Table::new(&[("drops by reason", Align::Left), ("packets", Align::Right)]);
    for (reason, n) in &s.drops {
        t.row(vec![reason.clone(), n.to_string()]);
    }
    out.push('\n');
    out.push_str(&t.render());
}

/// Interfaces, addresses, cumulative traffic and NAT port pools.
fn uplink_details(out: &mut String, s: &StatusReport) {
    let mut t = Table::new(&[
        ("uplink", Align::Left),
        ("interface", Align::Left),
        ("address", Align::Left),
        ("tx packets", Align::Right),
        ("tx bytes", Align::Right),
        ("rx packets", Align::Right),
        ("rx bytes", Align::Right),
        ("nat ports tcp", Align::Right),
        ("udp", Align::Right),
        ("icmp", Align::Right),
    ]);
    for u in &s.uplinks {
        let pool = |proto: &str| {
            u.nat_ports
                .get(proto)
                .map_or("-".to_owned(), |p| format!("{}/{}", p.in_use, p.size))
        };
        t.row(vec![
            u.name.clone(),
            u.interface.clone(),
            u.address.clone(),
            u.tx_packets.to_string(),
            u.tx_bytes.to_string(),
            u.rx_packets.to_string(),
            u.rx_bytes.to_string(),
            pool("tcp"),
            pool("udp"),
            pool("icmp"),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
}

/// The uplinks' health counters: probes, changes, failovers, handshakes.
fn uplink_health(out: &mut String, s: &StatusReport) {
    let mut t = Table::new(&[
        ("health", Align::Left),
        ("loss %", Align::Right),
        ("rtt ms", Align::Right),
        ("changes", Align::Right),
        ("failovers", Align::Right),
        ("moved off", Align::Right),
        ("moved back", Align::Right),
        ("syn sent", Align::Right),
        ("syn-ack", Align::Right),
        ("unanswered", Align::Right),
    ]);
    for u in &s.uplinks {
        t.row(vec![
            u.name.clone(),
            one_decimal(u.probe_loss_percent),
            one_decimal(u.probe_rtt_ms),
            u.state_changes.to_string(),
            u.failovers.to_string(),
            u.flows_failed_over.to_string(),
            u.flows_failed_back.to_string(),
            u.tcp_handshakes_started.to_string(),
            u.tcp_handshakes_answered.to_string(),
            u.tcp_handshakes_unanswered_in_a_row.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
}

/// The flow table's share, early drops, spills, kills, the guard, suppressed ICMP answers and the
/// admission budgets.
fn refusals(out: &mut String, s: &StatusReport) {
    let _ = writeln!(
        out,
        "\nflow table share: {} hosts holding flows; from {} flows in use a host holding {} gets no new flow",
        s.flow_hosts, s.flow_share_pressure, s.flow_fair_share
    );
    let _ = writeln!(
        out,
        "flows early-dropped (no reply; table full or host over its share): {}",
        s.flows_early_dropped
    );
    let _ = writeln!(
        out,
        "flows spilled to another uplink (host over its share): {}",
        s.flows_spilled
    );
    let _ = writeln!(
        out,
        "IPv4 fragments following their first: {}; held before their first: {}",
        s.fragments_followed, s.fragments_held
    );
    let _ = writeln!(
        out,
        "flows killed by the operator: {} (TCP resets sent {})",
        s.flows_killed, s.kill_resets_sent
    );
    let _ = writeln!(
        out,
        "forward guard re-installed (found removed or altered): {} (failed {})",
        s.guard_reinstalls, s.guard_reinstalls_failed
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
            .map(|(name, b)| match b.per_s {
                0 => format!("{name} off"),
                per_s => format!("{name} {per_s}/s burst {}", b.burst),
            })
            .collect();
        let _ = writeln!(out, "XDP admission of TCP SYNs: {}", budgets.join(", "));
    }
}

/// The XDP program's decisions.
fn xdp(out: &mut String, s: &StatusReport) {
    if s.xdp.is_empty() {
        return;
    }
    let mut t = Table::new(&[("XDP decisions", Align::Left), ("packets", Align::Right)]);
    for (decision, n) in &s.xdp {
        t.row(vec![decision.clone(), n.to_string()]);
    }
    out.push('\n');
    out.push_str(&t.render());
}

/// Per worker: frames, translations, UMEM frame states and its sockets' kernel counters.
fn workers(out: &mut String, s: &StatusReport) {
    if s.workers.is_empty() {
        return;
    }
    out.push('\n');
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

/// Reloads, the control socket and the metrics endpoint, the hooks.
fn daemon(out: &mut String, s: &StatusReport) {
    let _ = writeln!(
        out,
        "\nreloads: applied {}, refused {}; the last {}",
        s.reloads,
        s.reloads_failed,
        if s.last_reload.success {
            "succeeded"
        } else {
            "was refused"
        }
    );
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
    let h = &s.hooks;
    if h.events > 0 {
        let _ = writeln!(
            out,
            "hooks: {} changes, runs succeeded {} failed {} timed out {}, changes dropped {} \
             (queue full), waiting {}",
            h.events, h.succeeded, h.failed, h.timed_out, h.dropped, h.waiting
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{
        AdmissionBudget, PortPoolStatus, ProbeTargetStatus, TrafficRates, UplinkStatus,
        WorkerStatus, XskSocketStatus,
    };

    fn two_uplinks() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            uptime_s: 3_725,
            flows: 12,
            flow_capacity: 262_144,
            tier_in_use: Some(1),
            uplinks: vec![
                UplinkStatus {
                    name: "isp1".into(),
                    state: "up".into(),
                    state_for_s: 3_720,
                    tier: 1,
                    weight: 3,
                    flows: 10,
                    tx_packets: 42,
                    rates: TrafficRates {
                        tx_pps: 1_234.0,
                        tx_bps: 12_300_000.0,
                        rx_pps: 2_000.0,
                        rx_bps: 98_700_000.0,
                    },
                    nat_ports: [(
                        "tcp".to_owned(),
                        PortPoolStatus {
                            in_use: 9,
                            size: 30_000,
                        },
                    )]
                    .into(),
                    probe_targets: vec![ProbeTargetStatus {
                        target: "http://203.0.113.13:8081/health".into(),
                        loss_percent: 40.0,
                        rtt_ms: Some(3.25),
                        jitter_ms: Some(0.5),
                        last_failure: Some("HTTP status 503".into()),
                    }],
                    ..Default::default()
                },
                UplinkStatus {
                    name: "lte-backup".into(),
                    state: "down".into(),
                    state_for_s: 12,
                    tier: 2,
                    weight: 1,
                    flows: 2,
                    ..Default::default()
                },
            ],
            drops: [("no_flow_inbound".to_owned(), 3)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_the_routers_own_default_route() {
        let mut s = StatusReport {
            router_default_route: "multipath".into(),
            router_default_via: vec!["wan1 1".into(), "wan2 3".into()],
            ..Default::default()
        };
        let shown = |s: &StatusReport| status(s, false);
        assert!(shown(&s).contains("router's own default route: multipath via wan1 1, wan2 3"));
        s.router_default_via.clear();
        assert!(shown(&s).contains("multipath, no uplink usable: the main table's default"));
        s.router_default_route = "unmanaged".into();
        assert!(shown(&s).contains("router's own default route: unmanaged"));
    }

    #[test]
    fn the_uplinks_come_first_with_state_since_when_and_rates_in_human_units() {
        let t = status(&two_uplinks(), false);
        let mut lines = t.lines();
        assert_eq!(
            lines.next(),
            Some("flowpin 0.1.0 up 1h02m — 12 flows of 262144 — new flows on tier 1")
        );
        assert_eq!(lines.next(), Some(""));
        let header = lines.next().unwrap();
        assert!(header.starts_with("uplink      state  since"), "{t}");
        let isp1 = lines.next().unwrap();
        let words: Vec<&str> = isp1.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "isp1", "up", "1h02m", "1", "3", "10", "1.23", "kpps", "12.3", "Mbit/s", "2.00",
                "kpps", "98.7", "Mbit/s"
            ],
            "{t}"
        );
        let lte: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            lte[..6],
            ["lte-backup", "down", "12s", "2", "1", "2"],
            "{t}"
        );
        // Columns fit the widest name: the state column starts right after it.
        assert_eq!(header.find("state"), isp1.find("up"), "{t}");
        assert!(t.contains("\nno_flow_inbound        3\n"), "{t}");
        assert!(!t.contains("worker"), "internals only with --verbose: {t}");
        assert!(!t.contains("control socket"), "{t}");
    }

    #[test]
    fn each_probe_target_has_its_loss_rtt_and_jitter() {
        let t = status(&two_uplinks(), false);
        let row = t
            .lines()
            .find(|l| l.contains("http://203.0.113.13:8081/health"))
            .expect(&t);
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "isp1",
                "http://203.0.113.13:8081/health",
                "40.0",
                "3.2",
                "0.5",
                "HTTP",
                "status",
                "503"
            ]
        );
    }

    #[test]
    fn verbose_adds_pools_workers_sockets_and_surfaces() {
        use crate::xsk::FrameAccounting;
        let mut s = two_uplinks();
        s.flows_early_dropped = 17;
        s.guard_reinstalls = 3;
        s.flows_killed = 4;
        s.kill_resets_sent = 8;
        s.icmp_suppressed = [
            ("net_unreachable".to_owned(), 2),
            ("port_exhausted".to_owned(), 5),
        ]
        .into();
        s.admission = [(
            "per_host".to_owned(),
            AdmissionBudget {
                per_s: 100,
                burst: 200,
            },
        )]
        .into();
        s.workers = vec![WorkerStatus {
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
            sockets: vec![XskSocketStatus {
                port: "lan".into(),
                kernel: crate::xsk::KernelSocketStats {
                    rx_dropped: 13727,
                    rx_ring_full: 13700,
                    rx_fill_ring_empty_descs: 27,
                    ..Default::default()
                },
            }],
            ..Default::default()
        }];
        let t = status(&s, true);
        for line in [
            "worker 1: rx 0 tx 0 batches 7; translated out 30 in 20; flows created 4; UMEM 512 frames: free 10 fill 480 rx 2 in_flight 0 tx 15 completion 5\n",
            "  AF_XDP socket lan (kernel): rx_dropped 13727 rx_invalid_descs 0 tx_invalid_descs 0 rx_ring_full 13700 rx_fill_ring_empty_descs 27 tx_ring_empty_descs 0\n",
            "flows early-dropped (no reply; table full or host over its share): 17\n",
            "ICMP answers suppressed (rate limit): net_unreachable 2, port_exhausted 5\n",
            "forward guard re-installed (found removed or altered): 3 (failed 0)\n",
            "flows killed by the operator: 4 (TCP resets sent 8)\n",
            "XDP admission of TCP SYNs: per_host 100/s burst 200\n",
            "control socket: open 0",
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
        let pools = t
            .lines()
            .find(|l| l.starts_with("isp1 ") && l.contains("9/30000"));
        assert!(pools.is_some(), "{t}");
    }

    #[test]
    fn json_keys_named_collections_by_name_and_round_trips() {
        let mut s = two_uplinks();
        s.xdp = [("to_af_xdp".to_owned(), 99)].into();
        s.admission = [(
            "lan".to_owned(),
            AdmissionBudget {
                per_s: 5,
                burst: 10,
            },
        )]
        .into();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["drops"]["no_flow_inbound"], 3);
        assert_eq!(json["xdp"]["to_af_xdp"], 99);
        assert_eq!(json["admission"]["lan"]["per_s"], 5);
        assert_eq!(json["uplinks"][0]["nat_ports"]["tcp"]["in_use"], 9);
        assert_eq!(json["uplinks"][0]["rates"]["tx_pps"], 1234.0);
        assert_eq!(json["uplinks"][1]["name"], "lte-backup");
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, s, "the JSON round-trips");
    }
}
