//! Putting a saved state back: every flow checked against the running snapshot first.
//!
//! A saved flow is restored only when all of these hold, and otherwise dropped and counted under
//! its reason; nothing is ever restored half:
//! 1. its uplink (by name) is configured and usable, with the same external address
//!    (`uplink_gone`, `address_changed`: failed over per class, see [`Restored::to_reset`]);
//! 2. its keys make a valid rewrite, its internal endpoint is inside the LAN prefixes, an outbound
//!    flow changes only the source, a hairpin flow's target is on the LAN, and its state word fits
//!    in 48 bits (`invalid`);
//! 3. it has not expired while flowpin was down (`expired`);
//! 4. its uplink's pool gives it exactly its saved external port (`port_conflict`: another saved
//!    flow's endpoint owns it, or the range changed);
//! 5. the table takes it under both keys (`key_taken`); else its port reference is given back.
//!
//! Then the running quarantines of uplinks whose address is unchanged are put back on free ports.

use std::collections::HashMap;

use flowpin_nat::{Rewrite, TcpTracker};

use super::model::{FileFlow, SavedState};
use crate::datapath::flows::deadline;
use crate::datapath::{FlowKind, FlowValue, Flows, Placement, SavedFlow, Snapshot, UplinkView};

/// What a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Flows restored.
    pub flows: usize,
    /// Quarantines restored.
    pub quarantines: usize,
    /// Flows dropped: their uplink is no longer configured or usable.
    pub uplink_gone: usize,
    /// Flows dropped: their uplink's address changed.
    pub address_changed: usize,
    /// Flows dropped: inconsistent keys or state.
    pub invalid: usize,
    /// Flows dropped: expired while flowpin was down.
    pub expired: usize,
    /// Flows dropped: their external port was not theirs to take.
    pub port_conflict: usize,
    /// Forwarded flows dropped: their `[[forward]]` is gone or now leads elsewhere.
    pub forward_gone: usize,
    /// Flows dropped: a key already taken, or the table or host table full.
    pub key_taken: usize,
    /// TCP flows dropped because of their uplink (gone or renumbered), with their tracker: the
    /// caller resets them towards the LAN host, as a failover does.
    pub to_reset: Vec<(FlowValue, TcpTracker)>,
}

impl Restored {
    /// Flows dropped, whatever the reason.
    pub fn dropped(&self) -> usize {
        self.uplink_gone
            + self.address_changed
            + self.invalid
            + self.expired
            + self.port_conflict
            + self.forward_gone
            + self.key_taken
    }
}

/// Why one saved flow was not restored.
enum Skip {
    UplinkGone,
    AddressChanged,
    Invalid,
    ForwardGone,
}

/// Restores `saved` into `flows` and the pools of `snapshot` at daemon time `now_ms`.
pub fn restore(saved: &SavedState, snapshot: &Snapshot, flows: &Flows, now_ms: u64) -> Restored {
    let slots = uplink_slots(saved, snapshot);
    let mut done = Restored::default();
    for flow in &saved.flows {
        let target = slots.get(&flow.uplink).copied();
        match checked_value(flow, target, snapshot) {
            Ok(value) => restore_flow(flow, value, snapshot, flows, now_ms, &mut done),
            Err(Skip::Invalid) => done.invalid += 1,
            Err(Skip::ForwardGone) => done.forward_gone += 1,
            Err(skip) => {
                if matches!(skip, Skip::UplinkGone) {
                    done.uplink_gone += 1;
                } else {
                    done.address_changed += 1;
                }
                if flow.lan_from.protocol == flowpin_nat::IpProtocol::Tcp
                    && let Ok(value) = value_of(flow, 0)
                {
                    done.to_reset.push((value, flow.tcp));
                }
            }
        }
    }
    for q in &saved.quarantines {
        let Some((_, Some(view))) = slots.get(&q.uplink) else {
            continue;
        };
        let quarantine = flowpin_nat::port_alloc::SavedQuarantine {
            port: q.port,
            until_ms: q.until_ms,
        };
        done.quarantines += usize::from(
            view.nat
                .pool(q.protocol)
                .restore_quarantine(quarantine, now_ms),
        );
    }
    done
}

/// The file's uplink ids → the running slot and view (`None` view: the address changed).
fn uplink_slots<'a>(
    saved: &SavedState,
    snapshot: &'a Snapshot,
) -> HashMap<u16, (u8, Option<&'a UplinkView>)> {
    let mut slots = HashMap::new();
    for uplink in &saved.uplinks {
        let found = snapshot
            .uplinks
            .iter()
            .enumerate()
            .find_map(|(slot, view)| {
                view.as_ref()
                    .filter(|v| v.name == uplink.name)
                    .map(|v| (slot, v))
            });
        if let Some((slot, view)) = found {
            let same_address = view.address == uplink.address;
            slots.insert(uplink.id, (slot as u8, same_address.then_some(view)));
        }
    }
    slots
}

/// Steps 1 and 2: the flow's value under the running snapshot.
fn checked_value(
    flow: &FileFlow,
    target: Option<(u8, Option<&UplinkView>)>,
    snapshot: &Snapshot,
) -> Result<FlowValue, Skip> {
    let (slot, view) = target.ok_or(Skip::UplinkGone)?;
    let view = view.ok_or(Skip::AddressChanged)?;
    if flow.lan_to.source != view.address {
        return Err(Skip::AddressChanged);
    }
    let (from, to) = (flow.lan_from, flow.lan_to);
    let consistent = snapshot.lan.owns(from.source)
        && flow.protocol_state < 1 << 48
        && match flow.kind {
            // A forwarded flow's LAN-side destination port is a stand-in (a clash moves it).
            FlowKind::Outbound if flow.placement == Placement::Forwarded => {
                to.destination == from.destination
            }
            // ICMP keys carry the echo id in both ports (checked by the rewrite).
            FlowKind::Outbound => {
                to.destination == from.destination
                    && (from.protocol == flowpin_nat::IpProtocol::Icmp
                        || to.destination_port == from.destination_port)
            }
            FlowKind::Hairpin => snapshot.lan.owns(to.destination),
        };
    if !consistent {
        return Err(Skip::Invalid);
    }
    if flow.placement == Placement::Forwarded && !forward_still_leads_there(flow, slot, snapshot) {
        return Err(Skip::ForwardGone);
    }
    value_of(flow, slot).map_err(|_| Skip::Invalid)
}

/// Whether a forwarded flow's `[[forward]]` (its index in `policy`) still covers its external port
/// on uplink `slot` and still leads to the flow's LAN endpoint.
fn forward_still_leads_there(flow: &FileFlow, slot: u8, snapshot: &Snapshot) -> bool {
    let (from, to) = (flow.lan_from, flow.lan_to);
    snapshot
        .forwards
        .find(slot, from.protocol, to.source_port)
        .is_some_and(|rule| {
            rule.index == flow.policy
                && rule.target(to.source_port) == Some((from.source, from.source_port))
        })
}

/// The flow's value on uplink `slot`.
fn value_of(flow: &FileFlow, slot: u8) -> Result<FlowValue, flowpin_nat::RewriteBuildError> {
    let lan_side = Rewrite::new(flow.lan_from, flow.lan_to)?;
    Ok(FlowValue {
        lan_side,
        uplink_side: lan_side.inverse(),
        lan_host_mac: flow.lan_host_mac,
        peer_mac: flow.peer_mac,
        uplink: slot,
        policy: flow.policy,
        kind: flow.kind,
        placement: flow.placement,
        generation: flow.generation,
    })
}

/// Steps 3 to 5 for one valid flow.
fn restore_flow(
    flow: &FileFlow,
    value: FlowValue,
    snapshot: &Snapshot,
    flows: &Flows,
    now_ms: u64,
    done: &mut Restored,
) {
    if deadline(
        &snapshot.timeouts,
        &value,
        flow.protocol_state,
        flow.last_seen_ms,
    ) <= now_ms
    {
        done.expired += 1;
        return;
    }
    let Some(view) = snapshot.uplink(value.uplink) else {
        done.uplink_gone += 1;
        return;
    };
    let pool = view.nat.pool(value.protocol());
    let (internal, external) = (value.internal_endpoint(), value.external_endpoint());
    // A forwarded flow's external port is its forward's: it belongs to no pool.
    let pooled = value.placement != Placement::Forwarded;
    if pooled
        && pool
            .restore_mapping(external.1, internal.0, internal.1)
            .is_err()
    {
        done.port_conflict += 1;
        return;
    }
    let saved = SavedFlow {
        value,
        protocol_state: flow.protocol_state,
        tcp: flow.tcp,
    };
    match flows.restore(&saved, now_ms) {
        Ok(_) => done.flows += 1,
        Err(_) => {
            if pooled {
                let _ = pool.release_unanswered(external.1, internal.0, internal.1, now_ms);
            }
            done.key_taken += 1;
        }
    }
}
