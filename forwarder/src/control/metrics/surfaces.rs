//! The control surfaces' families: what the control socket and the metrics endpoint refused,
//! displaced or timed out.

use super::text::family;
use crate::control::surface_counters::SurfaceStatus;

/// Writes the control socket's and the metrics endpoint's families.
pub(super) fn write(out: &mut String, s: &SurfaceStatus) {
    let mut f = family(
        out,
        "flowpin_control_connections_open",
        "gauge",
        "Control socket connections holding a slot.",
    );
    f.sample(&[], s.api_connections_open as f64);
    let mut f = family(
        out,
        "flowpin_control_connections_total",
        "counter",
        "Control socket connections, by what became of them at accept (accepted; displaced: a waiting one closed to make room; refused: every slot answering).",
    );
    f.sample(&[("result", "accepted")], s.api_connections_accepted as f64);
    f.sample(
        &[("result", "displaced")],
        s.api_connections_displaced as f64,
    );
    f.sample(&[("result", "refused")], s.api_connections_refused as f64);
    let mut f = family(
        out,
        "flowpin_control_closed_total",
        "counter",
        "Control socket connections closed by a limit, by reason.",
    );
    f.sample(
        &[("reason", "line_too_long")],
        s.api_requests_too_long as f64,
    );
    f.sample(&[("reason", "timeout")], s.api_timeouts as f64);
    let mut f = family(
        out,
        "flowpin_metrics_requests_total",
        "counter",
        "Requests to this endpoint, by HTTP status answered.",
    );
    f.sample(&[("code", "200")], s.metrics_ok as f64);
    f.sample(&[("code", "400")], s.metrics_bad_request as f64);
    f.sample(&[("code", "404")], s.metrics_not_found as f64);
    f.sample(&[("code", "405")], s.metrics_bad_method as f64);
    f.sample(&[("code", "503")], s.metrics_refused as f64);
    let mut f = family(
        out,
        "flowpin_metrics_timeouts_total",
        "counter",
        "Connections to this endpoint closed at the read or write deadline.",
    );
    f.sample(&[], s.metrics_timeouts as f64);
}
