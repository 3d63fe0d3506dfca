//! Idle timeouts and the expiry deadline of a flow.
//!
//! Defaults and floors: UDP 300 s, never below 120 s (RFC 4787 REQ-5); TCP established 7440 s (2 h 4 min)
//! and transitory 240 s, never below those (RFC 5382 REQ-5); ICMP query 60 s, never below (RFC 5508
//! REQ-2). Only outbound traffic refreshes a UDP or ICMP mapping by default (RFC 4787 REQ-6 allows
//! inbound refresh as an option, [`RefreshPolicy::Bidirectional`]); TCP is refreshed both ways.
//!
//! The floors are written once ([`minimum`], by kind [`TimeoutKind::floor_ms`]); the configuration
//! checks a file's timeouts with [`Timeouts::violations`].
//!
//! Invariant: [`Timeouts::deadline`] is pure — time is an argument (ms since an arbitrary monotonic
//! epoch), nothing reads a clock; a flow expires when `now >= deadline`.

use crate::tcp_state::TcpPhase;

/// What refreshes a UDP / ICMP mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RefreshPolicy {
    /// Only packets from the inside (RFC 4787 REQ-6 default).
    #[default]
    OutboundOnly,
    /// Packets in either direction.
    Bidirectional,
}

/// Idle timeouts in milliseconds, and what refreshes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// UDP mapping idle timeout.
    pub udp_ms: u64,
    /// TCP established idle timeout.
    pub tcp_established_ms: u64,
    /// TCP transitory (opening, closing, reset) idle timeout.
    pub tcp_transitory_ms: u64,
    /// ICMP query idle timeout.
    pub icmp_ms: u64,
    /// What refreshes UDP mappings.
    pub udp_refresh: RefreshPolicy,
    /// What refreshes ICMP query mappings.
    pub icmp_refresh: RefreshPolicy,
}

/// The RFC floors, in ms: the one place they are written.
pub mod minimum {
    /// RFC 4787 REQ-5.
    pub const UDP_MS: u64 = 120_000;
    /// RFC 5382 REQ-5.
    pub const TCP_ESTABLISHED_MS: u64 = 7_440_000;
    /// RFC 5382 REQ-5.
    pub const TCP_TRANSITORY_MS: u64 = 240_000;
    /// RFC 5508 REQ-2.
    pub const ICMP_MS: u64 = 60_000;
}

/// One of the four idle timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// UDP mapping.
    Udp,
    /// Established TCP connection.
    TcpEstablished,
    /// TCP connection being opened or closed.
    TcpTransitory,
    /// ICMP query mapping.
    Icmp,
}

impl TimeoutKind {
    /// Every kind, in the order [`Timeouts::violations`] reports them.
    pub const ALL: [TimeoutKind; 4] = [
        TimeoutKind::Udp,
        TimeoutKind::TcpEstablished,
        TimeoutKind::TcpTransitory,
        TimeoutKind::Icmp,
    ];

    /// The lowest value the RFCs allow, in ms.
    #[must_use]
    pub const fn floor_ms(self) -> u64 {
        match self {
            TimeoutKind::Udp => minimum::UDP_MS,
            TimeoutKind::TcpEstablished => minimum::TCP_ESTABLISHED_MS,
            TimeoutKind::TcpTransitory => minimum::TCP_TRANSITORY_MS,
            TimeoutKind::Icmp => minimum::ICMP_MS,
        }
    }

    /// The RFC clause that sets [`TimeoutKind::floor_ms`].
    #[must_use]
    pub const fn clause(self) -> &'static str {
        match self {
            TimeoutKind::Udp => "RFC 4787 REQ-5",
            TimeoutKind::TcpEstablished | TimeoutKind::TcpTransitory => "RFC 5382 REQ-5",
            TimeoutKind::Icmp => "RFC 5508 REQ-2",
        }
    }
}

impl Timeouts {
    /// The RFC defaults: UDP 300 s, the other three at their floors; only outbound packets
    /// refresh UDP and ICMP mappings.
    pub const DEFAULT: Timeouts = Timeouts {
        udp_ms: 300_000,
        tcp_established_ms: minimum::TCP_ESTABLISHED_MS,
        tcp_transitory_ms: minimum::TCP_TRANSITORY_MS,
        icmp_ms: minimum::ICMP_MS,
        udp_refresh: RefreshPolicy::OutboundOnly,
        icmp_refresh: RefreshPolicy::OutboundOnly,
    };

    /// The timeout of `kind`, in ms.
    #[must_use]
    pub const fn ms(&self, kind: TimeoutKind) -> u64 {
        match kind {
            TimeoutKind::Udp => self.udp_ms,
            TimeoutKind::TcpEstablished => self.tcp_established_ms,
            TimeoutKind::TcpTransitory => self.tcp_transitory_ms,
            TimeoutKind::Icmp => self.icmp_ms,
        }
    }

    /// The timeout of `kind`, to set it.
    pub fn ms_mut(&mut self, kind: TimeoutKind) -> &mut u64 {
        match kind {
            TimeoutKind::Udp => &mut self.udp_ms,
            TimeoutKind::TcpEstablished => &mut self.tcp_established_ms,
            TimeoutKind::TcpTransitory => &mut self.tcp_transitory_ms,
            TimeoutKind::Icmp => &mut self.icmp_ms,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A timeout below its RFC floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutsError {
    /// UDP below 120 s.
    #[error("UDP timeout {0} ms is below the 120 s of RFC 4787 REQ-5")]
    UdpTooShort(u64),
    /// TCP established below 7440 s.
    #[error("TCP established timeout {0} ms is below the 2 h 4 min of RFC 5382 REQ-5")]
    TcpEstablishedTooShort(u64),
    /// TCP transitory below 240 s.
    #[error("TCP transitory timeout {0} ms is below the 4 min of RFC 5382 REQ-5")]
    TcpTransitoryTooShort(u64),
    /// ICMP below 60 s.
    #[error("ICMP query timeout {0} ms is below the 60 s of RFC 5508 REQ-2")]
    IcmpTooShort(u64),
}

impl TimeoutsError {
    /// `kind`'s timeout of `ms` is below its floor.
    const fn below_floor(kind: TimeoutKind, ms: u64) -> Self {
        match kind {
            TimeoutKind::Udp => TimeoutsError::UdpTooShort(ms),
            TimeoutKind::TcpEstablished => TimeoutsError::TcpEstablishedTooShort(ms),
            TimeoutKind::TcpTransitory => TimeoutsError::TcpTransitoryTooShort(ms),
            TimeoutKind::Icmp => TimeoutsError::IcmpTooShort(ms),
        }
    }

    /// Which timeout is too short.
    #[must_use]
    pub const fn kind(self) -> TimeoutKind {
        match self {
            TimeoutsError::UdpTooShort(_) => TimeoutKind::Udp,
            TimeoutsError::TcpEstablishedTooShort(_) => TimeoutKind::TcpEstablished,
            TimeoutsError::TcpTransitoryTooShort(_) => TimeoutKind::TcpTransitory,
            TimeoutsError::IcmpTooShort(_) => TimeoutKind::Icmp,
        }
    }

    /// The refused value, in ms.
    #[must_use]
    pub const fn ms(self) -> u64 {
        match self {
            TimeoutsError::UdpTooShort(ms)
            | TimeoutsError::TcpEstablishedTooShort(ms)
            | TimeoutsError::TcpTransitoryTooShort(ms)
            | TimeoutsError::IcmpTooShort(ms) => ms,
        }
    }
}

/// What kind of flow a deadline is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// A UDP mapping.
    Udp,
    /// An ICMP query (echo) mapping.
    IcmpQuery,
    /// A TCP connection in this phase.
    Tcp(TcpPhase),
}

/// When a flow last saw traffic each way, in ms (0 = never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowActivity {
    /// Last packet from the inside.
    pub last_outbound_ms: u64,
    /// Last packet from the outside.
    pub last_inbound_ms: u64,
}

impl Timeouts {
    /// Every timeout below its RFC floor, in [`TimeoutKind::ALL`] order.
    pub fn violations(&self) -> impl Iterator<Item = TimeoutsError> + '_ {
        TimeoutKind::ALL
            .into_iter()
            .filter(|kind| self.ms(*kind) < kind.floor_ms())
            .map(|kind| TimeoutsError::below_floor(kind, self.ms(kind)))
    }

    /// Checks every timeout against its RFC floor.
    ///
    /// # Errors
    /// The first [`TimeoutsError`].
    pub fn validate(&self) -> Result<(), TimeoutsError> {
        self.violations().next().map_or(Ok(()), Err)
    }

    /// The instant (ms) at which a flow in `state` with `activity` expires.
    #[must_use]
    pub fn deadline(&self, state: FlowState, activity: FlowActivity) -> u64 {
        let both = if activity.last_outbound_ms > activity.last_inbound_ms {
            activity.last_outbound_ms
        } else {
            activity.last_inbound_ms
        };
        let refreshed = |policy: RefreshPolicy| match policy {
            RefreshPolicy::OutboundOnly => activity.last_outbound_ms,
            RefreshPolicy::Bidirectional => both,
        };
        let (since, timeout) = match state {
            FlowState::Udp => (refreshed(self.udp_refresh), self.udp_ms),
            FlowState::IcmpQuery => (refreshed(self.icmp_refresh), self.icmp_ms),
            FlowState::Tcp(phase) => (
                both,
                if phase.is_transitory() {
                    self.tcp_transitory_ms
                } else {
                    self.tcp_established_ms
                },
            ),
        };
        since.saturating_add(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rfc_values_and_validate() {
        let t = Timeouts::default();
        assert_eq!(
            (
                t.udp_ms,
                t.tcp_established_ms,
                t.tcp_transitory_ms,
                t.icmp_ms
            ),
            (300_000, 7_440_000, 240_000, 60_000)
        );
        assert_eq!(t.udp_refresh, RefreshPolicy::OutboundOnly);
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn floors_are_enforced() {
        let d = Timeouts::default();
        assert_eq!(
            Timeouts {
                udp_ms: 119_999,
                ..d
            }
            .validate(),
            Err(TimeoutsError::UdpTooShort(119_999))
        );
        assert_eq!(
            Timeouts {
                udp_ms: 120_000,
                ..d
            }
            .validate(),
            Ok(())
        );
        assert!(matches!(
            Timeouts {
                tcp_established_ms: 7_439_999,
                ..d
            }
            .validate(),
            Err(TimeoutsError::TcpEstablishedTooShort(_))
        ));
        assert!(matches!(
            Timeouts {
                tcp_transitory_ms: 1,
                ..d
            }
            .validate(),
            Err(TimeoutsError::TcpTransitoryTooShort(_))
        ));
        assert!(matches!(
            Timeouts {
                icmp_ms: 59_999,
                ..d
            }
            .validate(),
            Err(TimeoutsError::IcmpTooShort(_))
        ));
    }

    #[test]
    fn every_violation_is_reported_in_kind_order() {
        let t = Timeouts {
            udp_ms: 1,
            icmp_ms: 2,
            ..Timeouts::default()
        };
        let violations: Vec<_> = t.violations().collect();
        assert_eq!(
            violations,
            vec![
                TimeoutsError::UdpTooShort(1),
                TimeoutsError::IcmpTooShort(2)
            ]
        );
        assert_eq!(
            (violations[1].kind(), violations[1].ms()),
            (TimeoutKind::Icmp, 2)
        );
        assert_eq!(TimeoutKind::Icmp.floor_ms(), 60_000);
        assert_eq!(TimeoutKind::TcpTransitory.clause(), "RFC 5382 REQ-5");
    }

    #[test]
    fn only_outbound_refreshes_udp_by_default() {
        let t = Timeouts::default();
        let activity = FlowActivity {
            last_outbound_ms: 1_000,
            last_inbound_ms: 200_000,
        };
        assert_eq!(t.deadline(FlowState::Udp, activity), 301_000);
        assert_eq!(t.deadline(FlowState::IcmpQuery, activity), 61_000);
        let both = Timeouts {
            udp_refresh: RefreshPolicy::Bidirectional,
            ..t
        };
        assert_eq!(both.deadline(FlowState::Udp, activity), 500_000);
    }

    #[test]
    fn tcp_deadline_follows_the_phase_and_both_directions() {
        let t = Timeouts::default();
        let activity = FlowActivity {
            last_outbound_ms: 10,
            last_inbound_ms: 20,
        };
        assert_eq!(
            t.deadline(FlowState::Tcp(TcpPhase::Established), activity),
            20 + 7_440_000
        );
        assert_eq!(
            t.deadline(FlowState::Tcp(TcpPhase::FinOut), activity),
            20 + 7_440_000
        );
        assert_eq!(
            t.deadline(FlowState::Tcp(TcpPhase::SynOut), activity),
            20 + 240_000
        );
        assert_eq!(
            t.deadline(FlowState::Tcp(TcpPhase::Reset), activity),
            20 + 240_000
        );
        assert_eq!(
            t.deadline(
                FlowState::Tcp(TcpPhase::FinBoth),
                FlowActivity {
                    last_outbound_ms: u64::MAX,
                    last_inbound_ms: 0
                }
            ),
            u64::MAX
        );
    }
}
