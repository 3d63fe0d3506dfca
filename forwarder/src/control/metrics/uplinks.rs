//! The per-uplink families: state, eligibility, weight, tier, probes, flows, traffic, failover and the
//! passive handshake signal, one sample per live uplink labelled by its name.

use super::text::family;
use crate::control::api::{StatusReport, UplinkStatus};

/// The states `flowpin_uplink_state` has a sample for, per uplink.
const STATES: [&str; 4] = ["up", "down", "probing", "draining"];

/// A per-uplink family: name, kind, help, and the value of an uplink (`None`: no sample).
type UplinkFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&UplinkStatus) -> Option<f64>,
);

/// Every per-uplink family after `flowpin_uplink_state`, in exposition order.
const FAMILIES: [UplinkFamily; 21] = [
    (
        "flowpin_uplink_state_change_timestamp_seconds",
        "gauge",
        "When the uplink's state last changed (or it was set up), in seconds since the Unix epoch.",
        |u| Some(u.state_since_unix_s),
    ),
    (
        "flowpin_uplink_eligible",
        "gauge",
        "1 when the uplink takes new flows.",
        |u| Some(f64::from(u8::from(u.eligible))),
    ),
    ("flowpin_uplink_weight", "gauge", "Weight in force.", |u| {
        Some(f64::from(u.weight))
    }),
    (
        "flowpin_uplink_tier",
        "gauge",
        "Tier (1 = best): new flows use the best tier with an eligible uplink.",
        |u| Some(f64::from(u.tier)),
    ),
    (
        "flowpin_uplink_probe_loss_ratio",
        "gauge",
        "Probe loss over the health window (0-1).",
        |u| u.probe_loss_percent.map(|p| p / 100.0),
    ),
    (
        "flowpin_uplink_probe_rtt_seconds",
        "gauge",
        "Mean probe RTT over the health window.",
        |u| u.probe_rtt_ms.map(|ms| ms / 1000.0),
    ),
    (
        "flowpin_uplink_flows",
        "gauge",
        "Live flows pinned to the uplink.",
        |u| Some(u.flows as f64),
    ),
    (
        "flowpin_uplink_flows_created_total",
        "counter",
        "Flows created on the uplink (its rate is the uplink's new flows per second).",
        |u| Some(u.flows_created as f64),
    ),
    (
        "flowpin_uplink_tx_packets_total",
        "counter",
        "Packets sent out of the uplink (LAN to internet).",
        |u| Some(u.tx_packets as f64),
    ),
    (
        "flowpin_uplink_tx_bytes_total",
        "counter",
        "Bytes sent out of the uplink.",
        |u| Some(u.tx_bytes as f64),
    ),
    (
        "flowpin_uplink_rx_packets_total",
        "counter",
        "Packets received on the uplink and delivered to the LAN.",
        |u| Some(u.rx_packets as f64),
    ),
    (
        "flowpin_uplink_rx_bytes_total",
        "counter",
        "Bytes received on the uplink and delivered to the LAN.",
        |u| Some(u.rx_bytes as f64),
    ),
    (
        "flowpin_uplink_state_changes_total",
        "counter",
        "Health state changes.",
        |u| Some(u.state_changes as f64),
    ),
    (
        "flowpin_uplink_failovers_total",
        "counter",
        "Times the uplink's flows were failed over.",
        |u| Some(u.failovers as f64),
    ),
    (
        "flowpin_uplink_flows_failed_over_total",
        "counter",
        "Flows moved or reset away by failover.",
        |u| Some(u.flows_failed_over as f64),
    ),
    (
        "flowpin_uplink_flows_failed_back_total",
        "counter",
        "Flows moved back by failback.",
        |u| Some(u.flows_failed_back as f64),
    ),
    (
        "flowpin_uplink_tcp_handshakes_started_total",
        "counter",
        "New TCP flows opened on the uplink by a SYN (passive health signal).",
        |u| Some(u.tcp_handshakes_started as f64),
    ),
    (
        "flowpin_uplink_tcp_handshakes_answered_total",
        "counter",
        "New TCP flows on the uplink whose SYN-ACK came back (passive health signal).",
        |u| Some(u.tcp_handshakes_answered as f64),
    ),
    (
        "flowpin_uplink_mss_clamped_total",
        "counter",
        "TCP SYNs leaving and SYN-ACKs entering through the uplink whose MSS was lowered to its clamp.",
        |u| Some(u.mss_clamped as f64),
    ),
    (
        "flowpin_uplink_tcp_handshakes_unanswered_in_a_row",
        "gauge",
        "New TCP flows in a row since the last SYN-ACK that got none within the answer window.",
        |u| Some(u.tcp_handshakes_unanswered_in_a_row as f64),
    ),
    (
        "flowpin_uplink_passive_downs_total",
        "counter",
        "Times the passive handshake trigger took the uplink down.",
        |u| Some(u.passive_downs as f64),
    ),
];

/// Writes every per-uplink family of `status`.
pub(super) fn write(out: &mut String, status: &StatusReport) {
    let mut f = family(
        out,
        "flowpin_uplink_state",
        "gauge",
        "1 for the uplink's current state (up, down, probing, draining).",
    );
    for u in &status.uplinks {
        for state in STATES {
            let on = if u.state == state { 1.0 } else { 0.0 };
            f.sample(&[("uplink", &u.name), ("state", state)], on);
        }
    }
    for (name, kind, help, field) in FAMILIES {
        let mut f = family(out, name, kind, help);
        for u in &status.uplinks {
            if let Some(value) = field(u) {
                f.sample(&[("uplink", &u.name)], value);
            }
        }
    }
    write_nat_ports(out, status);
}

/// The NAT port pools per uplink and protocol: ports mapped now and the pool's size.
fn write_nat_ports(out: &mut String, status: &StatusReport) {
    let mut f = family(
        out,
        "flowpin_uplink_nat_ports_in_use",
        "gauge",
        "External ports (ICMP: echo ids) of the uplink's pool mapped to an internal endpoint now, by protocol.",
    );
    for u in &status.uplinks {
        for (proto, pool) in &u.nat_ports {
            f.sample(&[("uplink", &u.name), ("proto", proto)], pool.in_use as f64);
        }
    }
    let mut f = family(
        out,
        "flowpin_uplink_nat_ports",
        "gauge",
        "Size of the uplink's NAT port pool, by protocol.",
    );
    for u in &status.uplinks {
        for (proto, pool) in &u.nat_ports {
            f.sample(&[("uplink", &u.name), ("proto", proto)], pool.size as f64);
        }
    }
}
