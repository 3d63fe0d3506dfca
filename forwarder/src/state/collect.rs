//! Taking a copy of the running state for the state file.
//!
//! - Control plane only: one weakly consistent walk of the flow table (as `flowpin flows` does,
//!   without stopping the workers) and one scan of every pool for its running quarantines.
//! - A flow is saved with its uplink's name (through the uplink entry), so a restart under another
//!   configuration finds it by name, not by slot.

use flowpin_nat::IpProtocol;

use super::model::{FileFlow, FileQuarantine, SavedState, SavedUplink};
use crate::datapath::{Flows, Snapshot};

/// The state of `flows` and the pools of `snapshot` at daemon time `now_ms`.
pub fn collect(
    flows: &Flows,
    snapshot: &Snapshot,
    stickiness_seed: u64,
    boot_id: [u8; 16],
    now_ms: u64,
) -> SavedState {
    let mut state = SavedState {
        boot_id,
        saved_at_ms: now_ms,
        stickiness_seed,
        uplinks: Vec::new(),
        flows: Vec::new(),
        quarantines: Vec::new(),
    };
    for (slot, view) in snapshot.uplinks.iter().enumerate() {
        let Some(view) = view else { continue };
        let id = slot as u16;
        let nat = &view.nat;
        state.uplinks.push(SavedUplink {
            id,
            name: view.name.clone(),
            address: view.address,
            secrets: [nat.tcp.secret(), nat.udp.secret(), nat.icmp.secret()],
        });
        for protocol in [IpProtocol::Tcp, IpProtocol::Udp, IpProtocol::Icmp] {
            let saved = nat.pool(protocol).quarantines(now_ms);
            state
                .quarantines
                .extend(saved.into_iter().map(|q| FileQuarantine {
                    uplink: id,
                    protocol,
                    port: q.port,
                    until_ms: q.until_ms,
                }));
        }
    }
    for live in flows.table.live_flows(now_ms) {
        let value = live.value;
        if snapshot.uplink(value.uplink).is_none() {
            continue;
        }
        let tcp = match value.protocol() {
            IpProtocol::Tcp => flows
                .tracker(live.handle)
                .map(|t| t.load())
                .unwrap_or_default(),
            IpProtocol::Udp | IpProtocol::Icmp => Default::default(),
        };
        state.flows.push(FileFlow {
            uplink: u16::from(value.uplink),
            lan_from: value.lan_side.from(),
            lan_to: value.lan_side.to(),
            lan_host_mac: value.lan_host_mac,
            peer_mac: value.peer_mac,
            policy: value.policy,
            kind: value.kind,
            placement: value.placement,
            generation: value.generation,
            protocol_state: live.protocol_state,
            last_seen_ms: live.last_seen_ms,
            tcp,
        });
    }
    state
}
