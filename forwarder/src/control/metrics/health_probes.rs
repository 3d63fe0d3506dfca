//! The per probe target families (labels `uplink`, `target`) and the state-change hooks' counters.

use super::text::family;
use crate::control::api::{ProbeTargetStatus, StatusReport};

/// A per-target family: name, help, and the value of a target (`None`: no sample).
type TargetFamily = (
    &'static str,
    &'static str,
    fn(&ProbeTargetStatus) -> Option<f64>,
);

const TARGET_FAMILIES: [TargetFamily; 3] = [
    (
        "flowpin_probe_target_loss_ratio",
        "Probe loss of one target through one uplink over the health window (0-1).",
        |t| Some(t.loss_percent / 100.0),
    ),
    (
        "flowpin_probe_target_rtt_seconds",
        "Mean RTT of one target's answered probes through one uplink over the health window.",
        |t| t.rtt_ms.map(|ms| ms / 1000.0),
    ),
    (
        "flowpin_probe_target_jitter_seconds",
        "Mean difference of consecutive RTTs of one target through one uplink over the window.",
        |t| t.jitter_ms.map(|ms| ms / 1000.0),
    ),
];

/// Per uplink and target: loss, RTT, jitter; then the hooks.
pub(super) fn write(out: &mut String, status: &StatusReport) {
    for (name, help, field) in TARGET_FAMILIES {
        let mut f = family(out, name, "gauge", help);
        for u in &status.uplinks {
            for t in &u.probe_targets {
                if let Some(value) = field(t) {
                    f.sample(&[("uplink", &u.name), ("target", &t.target)], value);
                }
            }
        }
    }
    let hooks = &status.hooks;
    let mut f = family(
        out,
        "flowpin_hook_runs_total",
        "counter",
        "State-change hook runs, by result (succeeded, failed, timed_out).",
    );
    f.sample(&[("result", "succeeded")], hooks.succeeded as f64);
    f.sample(&[("result", "failed")], hooks.failed as f64);
    f.sample(&[("result", "timed_out")], hooks.timed_out as f64);
    let mut f = family(
        out,
        "flowpin_hook_events_dropped_total",
        "counter",
        "State changes whose hooks never ran because the hook queue was full.",
    );
    f.sample(&[], hooks.dropped as f64);
    let mut f = family(
        out,
        "flowpin_hook_events_waiting",
        "gauge",
        "State changes queued for their hooks.",
    );
    f.sample(&[], hooks.waiting as f64);
}
