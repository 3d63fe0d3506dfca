//! `flowpin flows kill` on the daemon: a plan taken under the lock, the kill done without it (a
//! whole-table walk, like the scans), the counts added under the lock again.
//!
//! Invariants: a kill names at least one of an uplink, a host or a flow (never the whole table by
//! accident), and an uplink it names is a live one; the remote's RSTs leave by the flow's own uplink
//! from its address (a raw socket per uplink the kill may touch, opened for the kill); the flows are
//! removed through [`flow_kill::kill`](crate::control::flow_kill::kill).

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::Daemon;
use crate::control::api::{self, KillFilter};
use crate::control::failover::RstSender;
use crate::control::flow_kill::{self, KillReport, KillSockets};
use crate::datapath::{FlowValue, Flows, Snapshot};

/// What a kill needs, taken under the lock.
pub(super) struct KillPlan {
    flows: Arc<Flows>,
    snapshot: Arc<Snapshot>,
    now_ms: u64,
    filter: KillFilter,
    /// Uplink names by slot (retired slots: `None`).
    names: Vec<Option<String>>,
    /// By slot, the uplink's interface and address (`None`: retired or no address yet).
    uplinks: Vec<Option<(String, Ipv4Addr)>>,
}

/// Why a kill was refused (the text is what `flowpin flows kill` prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillRefusal {
    /// No selector: it would kill every flow.
    #[error(
        "name an uplink, a host or a flow to kill (--uplink, --host, or PROTO ENDPOINT [REMOTE])"
    )]
    NothingNamed,
    /// No live uplink has that name.
    #[error("no uplink named `{0}`")]
    NoSuchUplink(String),
    /// The protocol is not one of `tcp`, `udp`, `icmp`.
    #[error("unknown protocol `{0}` (tcp, udp or icmp)")]
    UnknownProtocol(String),
}

impl Daemon {
    /// The plan for killing what `filter` names (call under the lock, run after releasing it).
    pub(super) fn kill_plan(&self, filter: KillFilter) -> Result<KillPlan, KillRefusal> {
        if filter.uplink.is_none() && filter.host.is_none() && filter.flow.is_none() {
            return Err(KillRefusal::NothingNamed);
        }
        if let Some(proto) = &filter.proto
            && api::protocol_named(proto).is_none()
        {
            return Err(KillRefusal::UnknownProtocol(proto.clone()));
        }
        let names: Vec<Option<String>> = self
            .config
            .uplinks
            .iter()
            .zip(&self.uplinks)
            .map(|(u, runtime)| (!runtime.retired).then(|| u.name.clone()))
            .collect();
        if let Some(name) = &filter.uplink
            && !names.iter().flatten().any(|n| n == name)
        {
            return Err(KillRefusal::NoSuchUplink(name.clone()));
        }
        let snapshot = self.cell.load_full();
        let uplinks = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .map(|(slot, u)| {
                let view = snapshot.uplink(slot as u8)?;
                names[slot].as_ref()?;
                Some((u.interface.clone(), view.address))
            })
            .collect();
        Ok(KillPlan {
            flows: self.flows.clone(),
            snapshot,
            now_ms: self.clock.now_ms(),
            filter,
            names,
            uplinks,
        })
    }

    /// Adds a kill's figures to the counters.
    pub(super) fn count_kill(&mut self, report: &KillReport) {
        self.observed.flows_killed += report.killed;
        self.observed.kill_resets_sent += report.resets_to_hosts + report.resets_to_remotes;
        tracing::info!(
            killed = report.killed,
            tcp_reset = report.tcp_reset,
            resets_to_hosts = report.resets_to_hosts,
            resets_to_remotes = report.resets_to_remotes,
            "operator killed flows"
        );
    }
}

impl KillPlan {
    /// Kills the flows (without the daemon's lock).
    pub(super) fn run(self) -> KillReport {
        let lan = RstSender::open()
            .inspect_err(|error| tracing::warn!(%error, "no raw socket for the hosts' TCP resets"))
            .ok();
        let uplinks: Vec<Option<RstSender>> = self
            .uplinks
            .iter()
            .enumerate()
            .map(|(slot, uplink)| {
                let (interface, address) = uplink.as_ref()?;
                if self
                    .filter
                    .uplink
                    .as_ref()
                    .is_some_and(|name| self.names[slot].as_ref() != Some(name))
                {
                    return None;
                }
                RstSender::open_on_uplink(interface, *address)
                    .inspect_err(|error| {
                        tracing::warn!(%error, interface, "no raw socket for the remotes' TCP resets");
                    })
                    .ok()
            })
            .collect();
        let sockets = KillSockets {
            lan: lan.as_ref(),
            uplinks: &uplinks,
        };
        flow_kill::kill(
            &self.flows,
            &self.snapshot,
            |value| self.selects(value),
            &sockets,
            self.now_ms,
        )
    }

    /// Does the filter select flow `value`?
    fn selects(&self, value: &FlowValue) -> bool {
        let f = &self.filter;
        let name = self
            .names
            .get(usize::from(value.uplink))
            .and_then(Option::as_deref);
        let (host, _) = value.internal_endpoint();
        let (external, external_port) = value.external_endpoint();
        f.uplink.as_deref().is_none_or(|u| Some(u) == name)
            && f.host.is_none_or(|h| h == host)
            && f.proto
                .as_deref()
                .is_none_or(|p| p == api::protocol_name(value.protocol()))
            && f.flow.as_ref().is_none_or(|q| {
                q.matches(
                    &value.lan_key(),
                    std::net::SocketAddrV4::new(external, external_port),
                )
            })
    }
}
