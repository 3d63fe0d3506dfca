//! Idle timeouts and the expiry deadline of a flow.
//!
//! Defaults and floors: UDP 300 s, never below 120 s (RFC 4787 REQ-5); TCP established 7440 s (2 h 4 min)
//! and transitory 240 s, never below those (RFC 5382 REQ-5); ICMP query 60 s, never below (RFC 5508
//! REQ-2). Only outbound traffic refreshes a UDP or ICMP mapping by default (RFC 4787 REQ-6 allows
//! inbound refresh as an option, [`RefreshPolicy::Bidirectional`]); TCP is refreshed both ways.
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

/// Idle timeouts in milliseconds.
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

/// The RFC floors, in ms.
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

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            udp_ms: 300_000,
            tcp_established_ms: minimum::TCP_ESTABLISHED_MS,
            tcp_transitory_ms: minimum::TCP_TRANSITORY_MS,
            icmp_ms: minimum::ICMP_MS,
            udp_refresh: RefreshPolicy::OutboundOnly,
            icmp_refresh: RefreshPolicy::OutboundOnly,
        }
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
    /// Checks every timeout against its RFC floor.
    ///
    /// # Errors
    /// The first [`TimeoutsError`].
    pub const fn validate(&self) -> Result<(), TimeoutsError> {
        if self.udp_ms < minimum::UDP_MS {
            return Err(TimeoutsError::UdpTooShort(self.udp_ms));
        }
        if self.tcp_established_ms < minimum::TCP_ESTABLISHED_MS {
            return Err(TimeoutsError::TcpEstablishedTooShort(
                self.tcp_established_ms,
            ));
        }
        if self.tcp_transitory_ms < minimum::TCP_TRANSITORY_MS {
            return Err(TimeoutsError::TcpTransitoryTooShort(self.tcp_transitory_ms));
        }
        if self.icmp_ms < minimum::ICMP_MS {
            return Err(TimeoutsError::IcmpTooShort(self.icmp_ms));
        }
        Ok(())
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
