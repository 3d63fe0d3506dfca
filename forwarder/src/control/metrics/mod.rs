//! The Prometheus text exposition (format 0.0.4) of a [`StatusReport`], and the small HTTP server
//! ([`server`], on the daemon's runtime) that serves it on the configured address (loopback by
//! default).
//!
//! Invariants: every sample belongs to a family announced by `# HELP` and `# TYPE` lines; label values
//! are escaped; counters only grow for the life of the daemon, except the kernel's AF_XDP socket
//! counters (`flowpin_xsk_*_total`, one family per counter), which restart from 0 when a reload
//! reopens the sockets (a counter reset, which `rate()` handles); timestamps are seconds since the
//! Unix epoch, in families named `*_timestamp_seconds` or `*_time_seconds`; the server answers
//! `GET`/`HEAD /metrics` with the metrics, `/` with the read-only status page and `/status.json`
//! with its data, other paths with `404`, other methods with `405`, and closes the connection after
//! each answer ([`http`]).

mod health_probes;
pub mod http;
pub mod server;
mod surfaces;
mod text;
mod uplinks;
mod workers;

use super::api::StatusReport;
use text::family;

/// The metrics text of `status`.
pub fn render(status: &StatusReport) -> String {
    let mut out = String::new();
    // 1. Per uplink.
    uplinks::write(&mut out, status);
    health_probes::write(&mut out, status);
    // 2. The flow table, and the port forwards' flows.
    write_flow_table(&mut out, status);
    write_forwards(&mut out, status);
    // 3. What the datapath and the XDP program refused or decided.
    write_datapath(&mut out, status);
    // 4. Per worker.
    workers::write(&mut out, status);
    // 5. The daemon.
    write_daemon(&mut out, status);
    // 6. The control socket and this endpoint.
    surfaces::write(&mut out, &status.control_surfaces);
    out
}

/// Per port forward and uplink: whether it opens flows now, and its live flows.
fn write_forwards(out: &mut String, status: &StatusReport) {
    if status.forwards.is_empty() {
        return;
    }
    let mut f = family(
        out,
        "flowpin_forward_flows",
        "gauge",
        "Live flows a port forward opened through the uplink.",
    );
    for forward in &status.forwards {
        for u in &forward.uplinks {
            f.sample(
                &[("forward", &forward.name), ("uplink", &u.uplink)],
                u.flows as f64,
            );
        }
    }
    let mut f = family(
        out,
        "flowpin_forward_open",
        "gauge",
        "1 while the uplink takes new flows, so the port forward opens flows there.",
    );
    for forward in &status.forwards {
        for u in &forward.uplinks {
            f.sample(
                &[("forward", &forward.name), ("uplink", &u.uplink)],
                f64::from(u8::from(u.open)),
            );
        }
    }
}

/// The flow table's occupancy and early drops.
fn write_flow_table(out: &mut String, status: &StatusReport) {
    let mut f = family(out, "flowpin_flows", "gauge", "Live flows in the table.");
    f.sample(&[], status.flows as f64);
    let mut f = family(
        out,
        "flowpin_flow_capacity",
        "gauge",
        "Capacity of the flow table.",
    );
    f.sample(&[], status.flow_capacity as f64);
    let mut f = family(
        out,
        "flowpin_flows_early_dropped_total",
        "counter",
        "Flows that never got a reply, removed to make room for a new flow while the table was full.",
    );
    f.sample(&[], status.flows_early_dropped as f64);
    let mut f = family(
        out,
        "flowpin_flows_spilled_total",
        "counter",
        "New flows refused on their chosen uplink for their host's share that another uplink of the group took.",
    );
    f.sample(&[], status.flows_spilled as f64);
    let mut f = family(
        out,
        "flowpin_fragments_followed_total",
        "counter",
        "Later IPv4 fragments translated by the route their first fragment recorded.",
    );
    f.sample(&[], status.fragments_followed as f64);
    let mut f = family(
        out,
        "flowpin_fragments_held_total",
        "counter",
        "Later IPv4 fragments held because they came before their first fragment.",
    );
    f.sample(&[], status.fragments_held as f64);
    let mut f = family(
        out,
        "flowpin_flow_hosts",
        "gauge",
        "LAN hosts holding at least one flow.",
    );
    f.sample(&[], status.flow_hosts as f64);
    let mut f = family(
        out,
        "flowpin_flow_share_pressure_flows",
        "gauge",
        "Flows in use from which the flow table is under pressure and hosts are held to their fair share.",
    );
    f.sample(&[], status.flow_share_pressure as f64);
    let mut f = family(
        out,
        "flowpin_flow_fair_share_flows",
        "gauge",
        "A LAN host's fair share of the flow table now: capacity / (hosts holding flows + 1), at least the floor.",
    );
    f.sample(&[], status.flow_fair_share as f64);
}

/// Suppressed ICMP answers, drops by reason, the XDP program's decisions.
fn write_datapath(out: &mut String, status: &StatusReport) {
    let mut f = family(
        out,
        "flowpin_icmp_suppressed_total",
        "counter",
        "ICMP answers to refused new flows that the per-worker rate limit suppressed, by kind.",
    );
    for (kind, n) in &status.icmp_suppressed {
        f.sample(&[("kind", kind)], *n as f64);
    }
    let mut f = family(
        out,
        "flowpin_drops_total",
        "counter",
        "Frames the datapath dropped, by reason.",
    );
    for (reason, n) in &status.drops {
        f.sample(&[("reason", reason)], *n as f64);
    }
    let mut f = family(
        out,
        "flowpin_xdp_decisions_total",
        "counter",
        "The XDP program's decisions, in packets.",
    );
    for (decision, n) in &status.xdp {
        f.sample(&[("decision", decision)], *n as f64);
    }
}

/// Reloads by result and uptime.
fn write_daemon(out: &mut String, status: &StatusReport) {
    let mut f = family(
        out,
        "flowpin_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    f.sample(&[("result", "applied")], status.reloads as f64);
    f.sample(&[("result", "rejected")], status.reloads_failed as f64);
    let mut f = family(
        out,
        "flowpin_guard_reinstalls_total",
        "counter",
        "Times the forward guard was found removed or altered and re-installed, by result.",
    );
    f.sample(&[("result", "reinstalled")], status.guard_reinstalls as f64);
    f.sample(
        &[("result", "failed")],
        status.guard_reinstalls_failed as f64,
    );
    let mut f = family(
        out,
        "flowpin_config_last_reload_successful",
        "gauge",
        "1 when the last configuration reload was applied (or none was tried since the start), 0 when it was refused.",
    );
    f.sample(&[], f64::from(u8::from(status.last_reload.success)));
    let mut f = family(
        out,
        "flowpin_config_last_reload_timestamp_seconds",
        "gauge",
        "When the configuration was last reloaded, applied or refused (the start before any reload).",
    );
    f.sample(&[], status.last_reload.at_unix_s);
    let mut f = family(
        out,
        "flowpin_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When a configuration was last applied (the start before any reload).",
    );
    f.sample(&[], status.last_reload.last_success_unix_s);
    let mut f = family(
        out,
        "flowpin_flows_killed_total",
        "counter",
        "Flows the operator removed with flowpin flows kill.",
    );
    f.sample(&[], status.flows_killed as f64);
    let mut f = family(
        out,
        "flowpin_kill_resets_sent_total",
        "counter",
        "TCP resets flowpin flows kill sent, towards LAN hosts and remotes.",
    );
    f.sample(&[], status.kill_resets_sent as f64);
    let mut f = family(
        out,
        "flowpin_build_info",
        "gauge",
        "Always 1; the label is flowpin's version.",
    );
    f.sample(&[("version", &status.version)], 1.0);
    let mut f = family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    f.sample(&[], status.started_at_unix_s);
    let mut f = family(
        out,
        "flowpin_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    f.sample(&[], status.uptime_s as f64);
    let mut f = family(
        out,
        "flowpin_tier_in_use",
        "gauge",
        "The tier new flows of the default group use (no sample: no uplink eligible).",
    );
    if let Some(tier) = status.tier_in_use {
        f.sample(&[], f64::from(tier));
    }
}

#[cfg(test)]
mod monitoring_tests;
#[cfg(test)]
mod tests;
