//! `[nat]` and `[nat.timeouts]`: a port range from 1024 up, clear of the router's own ephemeral
//! ports; a per-host quota within the range; timeouts at or above nat's RFC floors; bounded
//! port-exhaustion answers.

use std::collections::HashMap;
use std::ops::Range;

use flowpin_nat::{RefreshPolicy, TimeoutKind, Timeouts};

use super::super::PortRange;
use super::super::model::{Nat, timeout_key};
use super::super::raw::{RawNat, RawTimeouts, S};
use super::{Checker, DEFAULT_NAT_PORT_RANGE, MIN_NAT_PORT};

impl Checker<'_> {
    /// How are flows translated? `local_port_range` is the router's own ephemeral range.
    pub(super) fn nat(&mut self, raw: Option<RawNat>, local_port_range: Option<PortRange>) -> Nat {
        let mut nat = Nat {
            port_range: PortRange::new(DEFAULT_NAT_PORT_RANGE.0, DEFAULT_NAT_PORT_RANGE.1)
                .expect("the default NAT port range is not empty"),
            stickiness: Default::default(),
            timeouts: Timeouts::DEFAULT,
            filtering: Default::default(),
            ports_per_host: None,
            early_drop_unanswered: true,
            port_exhausted_icmp_per_s: Nat::DEFAULT_PORT_EXHAUSTED_ICMP_PER_S,
            port_exhausted_icmp_burst: Nat::DEFAULT_PORT_EXHAUSTED_ICMP_BURST,
            frag_needed_icmp_per_s: Nat::DEFAULT_FRAG_NEEDED_ICMP_PER_S,
            frag_needed_icmp_burst: Nat::DEFAULT_FRAG_NEEDED_ICMP_BURST,
        };
        let Some(raw) = raw else {
            self.check_port_range_free(None, nat.port_range, local_port_range);
            return nat;
        };
        nat.port_range = self.nat_port_range(raw.port_range, nat.port_range, local_port_range);
        if let Some(stickiness) = raw.stickiness {
            nat.stickiness = stickiness.into_inner();
        }
        if let Some(refresh) = raw.udp_refresh_on_inbound {
            nat.timeouts.udp_refresh = if refresh.into_inner() {
                RefreshPolicy::Bidirectional
            } else {
                RefreshPolicy::OutboundOnly
            };
        }
        if let Some(filtering) = raw.filtering {
            nat.filtering = filtering.into_inner();
        }
        if let Some(timeouts) = raw.timeouts {
            nat.timeouts = self.timeouts(timeouts, nat.timeouts);
        }
        if let Some(early_drop) = raw.early_drop_unanswered {
            nat.early_drop_unanswered = early_drop.into_inner();
        }
        if let Some(quota) = raw.ports_per_host {
            self.check_ports_per_host(&quota, nat.port_range);
            nat.ports_per_host = Some(quota.into_inner());
        }
        self.rate_limit(
            "nat.port_exhausted_icmp",
            (
                raw.port_exhausted_icmp_per_s,
                &mut nat.port_exhausted_icmp_per_s,
            ),
            (
                raw.port_exhausted_icmp_burst,
                &mut nat.port_exhausted_icmp_burst,
            ),
        );
        self.rate_limit(
            "nat.frag_needed_icmp",
            (raw.frag_needed_icmp_per_s, &mut nat.frag_needed_icmp_per_s),
            (raw.frag_needed_icmp_burst, &mut nat.frag_needed_icmp_burst),
        );
        nat
    }

    /// Which external ports (`raw`, else `default`), starting at 1024 and clear of the router's?
    fn nat_port_range(
        &mut self,
        raw: Option<S<PortRange>>,
        default: PortRange,
        local_port_range: Option<PortRange>,
    ) -> PortRange {
        let Some(range) = raw else {
            self.check_port_range_free(None, default, local_port_range);
            return default;
        };
        if range.get_ref().first() < MIN_NAT_PORT {
            let message = format!(
                "{} starts below {MIN_NAT_PORT}: well-known ports are not handed out \
                 (RFC 4787 §4.2.1) and may belong to the router's own services",
                range.get_ref()
            );
            self.fail(range.span(), "nat.port_range", message);
        }
        self.check_port_range_free(Some(range.span()), *range.get_ref(), local_port_range);
        range.into_inner()
    }

    /// The NAT range must not overlap the router's own ephemeral ports, or the router's own
    /// connections and flowpin's mappings would claim the same ports on the uplink addresses.
    fn check_port_range_free(
        &mut self,
        span: Option<Range<usize>>,
        range: PortRange,
        local_port_range: Option<PortRange>,
    ) {
        let Some(local) = local_port_range else {
            return;
        };
        let Err(overlap) = range.validate_against_local_range(local) else {
            return;
        };
        let message = overlap.to_string();
        match span {
            Some(span) => self.fail(span, "nat.port_range", message),
            None => self.fail_missing_table(
                "nat.port_range",
                &format!("(default) {message}; set [nat] port_range"),
            ),
        }
    }

    /// Does the per-host quota fit in the port range (RFC 6888 REQ-4)?
    fn check_ports_per_host(&mut self, quota: &S<u32>, range: PortRange) {
        let range_len = u32::from(range.last() - range.first()) + 1;
        if !(1..=range_len).contains(quota.get_ref()) {
            let message = format!(
                "{}: must be 1-{range_len} (the size of port_range {range}; RFC 6888 REQ-4)",
                quota.get_ref(),
            );
            self.fail(quota.span(), "nat.ports_per_host", message);
        }
    }

    /// `[nat.timeouts]` over `timeouts`: each key in whole seconds; every value below its RFC
    /// floor (nat's [`Timeouts::violations`]) is reported at its line.
    fn timeouts(&mut self, raw: RawTimeouts, mut timeouts: Timeouts) -> Timeouts {
        let mut spans = HashMap::new();
        for (kind, value) in [
            (TimeoutKind::Udp, raw.udp),
            (TimeoutKind::TcpEstablished, raw.tcp_established),
            (TimeoutKind::TcpTransitory, raw.tcp_transitory),
            (TimeoutKind::Icmp, raw.icmp),
        ] {
            let Some(value) = value else { continue };
            spans.insert(kind, value.span());
            *timeouts.ms_mut(kind) = u64::from(value.into_inner()) * 1000;
        }
        for violation in timeouts.violations() {
            let kind = violation.kind();
            let message = format!(
                "{} s is below the minimum of {} s ({})",
                violation.ms() / 1000,
                kind.floor_ms() / 1000,
                kind.clause()
            );
            let span = spans.get(&kind).cloned().unwrap_or(0..0);
            self.fail(
                span,
                &format!("nat.timeouts.{}", timeout_key(kind)),
                message,
            );
        }
        timeouts
    }
}
