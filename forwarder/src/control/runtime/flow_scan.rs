//! Scans of the flow table for `status`, `flows` and `explain`, done without the daemon's lock.
//!
//! Invariants: a [`FlowScan`] holds only what a scan needs, copied under the lock (the shared table,
//! the time, the uplinks' names by slot), so the whole-table walk never holds the lock the control
//! loop and the other requests need; it only reads (lock-free copies of each live flow).

use std::sync::Arc;

use super::Daemon;
use crate::control::api::{self, FlowEntry, FlowFilter, FlowQuery, FlowsReport};
use crate::datapath::{FlowValue, Flows};

/// How many flows `flowpin flows` lists when the filter sets no limit.
const DEFAULT_FLOW_LIMIT: usize = 1000;

/// How many flows `flowpin explain` explains at most.
pub(super) const EXPLAIN_LIMIT: usize = 100;

/// What a scan needs, taken under the lock.
pub(super) struct FlowScan {
    flows: Arc<Flows>,
    now_ms: u64,
    /// Uplink names by slot.
    names: Vec<String>,
    /// `[[forward]]` names by index.
    forwards: Vec<String>,
}

/// How many flows the table holds, in all and by uplink slot.
#[derive(Debug, Default)]
pub(super) struct FlowCounts {
    /// Live flows.
    pub total: u64,
    /// Live flows by uplink slot.
    pub per_slot: Vec<u64>,
    /// Live forwarded flows by (forward index, uplink slot).
    pub per_forward: std::collections::BTreeMap<(u8, u8), u64>,
}

/// A flow `explain` matched: its value and how `flows` shows it.
pub(super) struct FoundFlow {
    /// The flow's immutable value.
    pub value: FlowValue,
    /// The flow as `flowpin flows` shows it.
    pub entry: FlowEntry,
}

impl Daemon {
    /// What a scan of the flow table needs (call under the lock, scan after releasing it).
    pub(super) fn flow_scan(&self) -> FlowScan {
        FlowScan {
            flows: self.flows.clone(),
            now_ms: self.clock.now_ms(),
            names: self.config.uplinks.iter().map(|u| u.name.clone()).collect(),
            forwards: self
                .config
                .forwards
                .iter()
                .map(|f| f.name.clone())
                .collect(),
        }
    }
}

impl FlowScan {
    /// Counts the live flows, by uplink slot too.
    pub(super) fn counts(&self) -> FlowCounts {
        let mut counts = FlowCounts {
            total: 0,
            per_slot: vec![0; self.names.len()],
            per_forward: std::collections::BTreeMap::new(),
        };
        for f in self.flows.table.live_flows(self.now_ms) {
            counts.total += 1;
            if f.value.placement == crate::datapath::Placement::Forwarded {
                *(counts.per_forward)
                    .entry((f.value.policy, f.value.uplink))
                    .or_default() += 1;
            }
            if let Some(n) = counts.per_slot.get_mut(usize::from(f.value.uplink)) {
                *n += 1;
            }
        }
        counts
    }

    /// `flowpin flows`: the flows matching `filter`, at most its limit, and how many matched.
    pub(super) fn flows(&self, filter: &FlowFilter) -> FlowsReport {
        let limit = filter.limit.unwrap_or(DEFAULT_FLOW_LIMIT);
        let mut report = FlowsReport::default();
        for f in self.flows.table.live_flows(self.now_ms) {
            if !self.passes(filter, &f.value) {
                continue;
            }
            report.matched += 1;
            if report.flows.len() < limit {
                report.flows.push(self.flow_entry(&f));
            }
        }
        report
    }

    /// The status page's busiest flows: per uplink name, at most `n` outbound flows with the most
    /// packets (both directions), busiest first.
    pub(super) fn top_flows(&self, n: usize) -> std::collections::BTreeMap<String, Vec<FlowEntry>> {
        let mut top: Vec<Vec<(u64, FlowEntry)>> = vec![Vec::new(); self.names.len()];
        for f in self.flows.table.live_flows(self.now_ms) {
            let Some(list) = top.get_mut(usize::from(f.value.uplink)) else {
                continue;
            };
            let packets = f.counters.packets[0] + f.counters.packets[1];
            if list.len() < n || list.last().is_some_and(|(p, _)| *p < packets) {
                let at = list.partition_point(|(p, _)| *p >= packets);
                list.insert(at, (packets, self.flow_entry(&f)));
                list.truncate(n);
            }
        }
        self.names
            .iter()
            .zip(top)
            .map(|(name, list)| (name.clone(), list.into_iter().map(|(_, e)| e).collect()))
            .collect()
    }

    /// The flows `query` names, at most [`EXPLAIN_LIMIT`].
    pub(super) fn matching(&self, query: &FlowQuery) -> Vec<FoundFlow> {
        self.flows
            .table
            .live_flows(self.now_ms)
            .filter(|f| {
                let (ip, port) = f.value.external_endpoint();
                query.matches(&f.value.lan_key(), std::net::SocketAddrV4::new(ip, port))
            })
            .take(EXPLAIN_LIMIT)
            .map(|f| FoundFlow {
                value: f.value,
                entry: self.flow_entry(&f),
            })
            .collect()
    }

    /// The name of the uplink in `slot` (`?` when none).
    fn uplink_name(&self, slot: u8) -> &str {
        self.names
            .get(usize::from(slot))
            .map_or("?", String::as_str)
    }

    /// Does flow `v` pass `filter`'s uplink, host and protocol?
    fn passes(&self, filter: &FlowFilter, v: &FlowValue) -> bool {
        let (ip, _) = v.internal_endpoint();
        !(filter
            .uplink
            .as_deref()
            .is_some_and(|u| u != self.uplink_name(v.uplink))
            || filter.host.is_some_and(|h| h != ip)
            || filter
                .proto
                .as_deref()
                .is_some_and(|p| p != api::protocol_name(v.protocol())))
    }

    /// One flow as `flowpin flows` shows it.
    fn flow_entry(
        &self,
        f: &flowpin_flowtable::LiveFlow<flowpin_nat::FlowKey, FlowValue>,
    ) -> FlowEntry {
        let v = &f.value;
        let (ip, port) = v.internal_endpoint();
        let (eip, eport) = v.external_endpoint();
        let remote = v.lan_key();
        FlowEntry {
            proto: api::protocol_name(v.protocol()).to_owned(),
            internal: format!("{ip}:{port}"),
            external: format!("{eip}:{eport}"),
            remote: format!("{}:{}", remote.destination, remote.destination_port),
            uplink: self.uplink_name(v.uplink).to_owned(),
            state: flow_state(v, f.protocol_state),
            idle_ms: self.now_ms.saturating_sub(f.last_seen_ms),
            packets_out: f.counters.packets[0],
            packets_in: f.counters.packets[1],
            forward: (v.placement == crate::datapath::Placement::Forwarded)
                .then(|| self.forwards.get(usize::from(v.policy)).cloned())
                .flatten(),
        }
    }
}

/// A flow's state word: its TCP phase in lower case, or `active`.
fn flow_state(v: &FlowValue, protocol_state: u64) -> String {
    if v.protocol() != flowpin_nat::IpProtocol::Tcp {
        return "active".to_owned();
    }
    format!(
        "{:?}",
        flowpin_nat::TcpTracker {
            phase_word: protocol_state as u32,
            inside: 0,
            outside: 0,
        }
        .phase()
    )
    .to_lowercase()
}
