//! `[failover]`, `[failback]`, `[metrics]`: `reset` only for TCP, `move-after` with its delay,
//! a listen address or "off".

use super::super::raw::{RawFailback, RawFailover, RawMetrics, S};
use super::super::resilience::{Failback, FailbackMode, Failover, FailoverAction, Metrics};
use super::Checker;

impl Checker<'_> {
    /// What happens to a dead uplink's flows, per protocol?
    pub(super) fn failover(&mut self, raw: Option<RawFailover>) -> Failover {
        let mut failover = Failover::default();
        let Some(raw) = raw else { return failover };
        for (value, slot, key) in [
            (raw.tcp, &mut failover.tcp, "tcp"),
            (raw.udp, &mut failover.udp, "udp"),
            (raw.icmp, &mut failover.icmp, "icmp"),
        ] {
            let Some(value) = value else { continue };
            if *value.get_ref() == FailoverAction::Reset && key != "tcp" {
                let message = "`reset` is a TCP action (an RST); use `move` or `keep`";
                self.fail(value.span(), &format!("failover.{key}"), message);
            }
            *slot = value.into_inner();
        }
        self.rate_limit(
            "failover.net_unreachable",
            (
                raw.net_unreachable_per_s,
                &mut failover.net_unreachable_per_s,
            ),
            (
                raw.net_unreachable_burst,
                &mut failover.net_unreachable_burst,
            ),
        );
        failover
    }

    /// When do flows move back to a recovered uplink?
    pub(super) fn failback(&mut self, raw: Option<S<RawFailback>>) -> Failback {
        let mut failback = Failback::default();
        let Some(raw) = raw else { return failback };
        let span = raw.span();
        let raw = raw.into_inner();
        if let Some(mode) = raw.mode {
            failback.mode = mode.into_inner();
        }
        if let Some(after) = raw.after_s {
            failback.after_s = after.into_inner();
        } else if failback.mode == FailbackMode::MoveAfter {
            self.fail(
                span,
                "failback.after_s",
                "missing (required with mode = \"move-after\")",
            );
        }
        if let Some(ports) = raw.udp_ports {
            if failback.mode == FailbackMode::Stay {
                self.fail(
                    ports.span(),
                    "failback.udp_ports",
                    "only with mode = \"move-after\"",
                );
            }
            failback.udp_ports = Some(ports.into_inner());
        }
        failback
    }

    /// Where does the Prometheus endpoint listen, if anywhere?
    pub(super) fn metrics(&mut self, raw: Option<RawMetrics>) -> Metrics {
        let mut metrics = Metrics::default();
        let Some(listen) = raw.and_then(|raw| raw.listen) else {
            return metrics;
        };
        let text = listen.get_ref();
        if text == "off" {
            metrics.listen = None;
        } else {
            match text.parse() {
                Ok(address) => metrics.listen = Some(address),
                Err(_) => {
                    let message = format!("`{text}` is not `address:port` or \"off\"");
                    self.fail(listen.span(), "metrics.listen", message);
                }
            }
        }
        metrics
    }
}
