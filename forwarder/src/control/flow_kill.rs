//! `flowpin flows kill`: removes chosen flows from the table (like `conntrack -D`, or "kill states by
//! gateway"), telling both ends of each TCP connection with an RST.
//!
//! Invariants:
//! - only outbound flows the caller's selection matches are touched (hairpin flows have no remote
//!   beyond the LAN and no uplink);
//! - a live TCP flow (not already reset or closed both ways) gets an RST to the LAN host *and* one to
//!   the remote, each with the sequence number that side expects, sent *before* the flow is removed;
//!   a side whose sequence numbers the tracker does not know gets none;
//! - a flow is removed before its external port is released (quarantined: the address is still the
//!   uplink's), and only by the call that removed it ([`failover::remove_and_release`]);
//! - nothing is sent through the datapath: the host's RST goes through the router's LAN route, the
//!   remote's through the uplink's raw socket bound to its interface and address.

use flowpin_nat::{IpProtocol, TcpPhase};

use super::failover::{self, PortRelease, RstSender};
use crate::datapath::{FlowKind, FlowValue, Flows, Snapshot};

/// What one kill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KillReport {
    /// Flows removed.
    pub killed: u64,
    /// Of those, live TCP connections reset.
    pub tcp_reset: u64,
    /// RSTs sent towards LAN hosts.
    pub resets_to_hosts: u64,
    /// RSTs sent towards remotes.
    pub resets_to_remotes: u64,
}

/// The sockets a kill sends its RSTs through: one towards the LAN, one per uplink slot (`None`: the
/// slot has none; its remotes get no RST).
#[derive(Debug)]
pub struct KillSockets<'a> {
    /// Towards LAN hosts.
    pub lan: Option<&'a RstSender>,
    /// Towards remotes, by uplink slot.
    pub uplinks: &'a [Option<RstSender>],
}

/// Kills every outbound flow `selected` accepts.
pub fn kill(
    flows: &Flows,
    snapshot: &Snapshot,
    selected: impl Fn(&FlowValue) -> bool,
    sockets: &KillSockets<'_>,
    now_ms: u64,
) -> KillReport {
    let mut report = KillReport::default();
    for flow in flows.table.live_flows(now_ms) {
        let value = flow.value;
        if value.kind != FlowKind::Outbound || !selected(&value) {
            continue;
        }
        if value.protocol() == IpProtocol::Tcp
            && let Some(tracker) = flows.tracker(flow.handle).map(|t| t.load())
            && !matches!(tracker.phase(), TcpPhase::Reset | TcpPhase::FinBoth)
        {
            report.tcp_reset += 1;
            if let Some(lan) = sockets.lan {
                match lan.reset(&value, tracker) {
                    Ok(()) => report.resets_to_hosts += 1,
                    Err(error) => tracing::warn!(%error, "sending a TCP reset to the LAN host"),
                }
            }
            if let Some(Some(uplink)) = sockets.uplinks.get(usize::from(value.uplink)) {
                match uplink.reset_remote(&value, tracker) {
                    Ok(true) => report.resets_to_remotes += 1,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "sending a TCP reset to the remote"),
                }
            }
        }
        if failover::remove_and_release(
            flows,
            snapshot,
            flow.handle,
            PortRelease::Quarantine,
            now_ms,
        ) {
            report.killed += 1;
        }
    }
    report
}
