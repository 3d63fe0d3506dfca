//! What the daemon reports: `flowpin status` (and the metrics built from it), `flowpin flows` and
//! `flowpin explain`.
//!
//! Invariants: reports only read (counters through relaxed loads; the flow table is scanned without
//! the lock by [`super::flow_scan`]); retired slots are not reported; an uplink's counters count from when its current
//! uplink took the slot ([`super::slot_totals`]); at most 100 flows are explained.

use std::collections::BTreeMap;

use super::Daemon;
use super::flow_scan::{FlowCounts, FoundFlow};
use super::slot_totals::SlotTotals;
use crate::config;
use crate::control::api::{self, ExplainReport, StatusReport};
use crate::control::decision_history;
use crate::datapath::Snapshot;
use crate::select::GroupId;
use crate::worker::WorkerPool;

impl Daemon {
    /// Everything `flowpin status` shows; `flows` were counted without the lock
    /// ([`FlowScan::counts`](super::flow_scan::FlowScan::counts)).
    pub(super) fn status(&self, flows: FlowCounts) -> StatusReport {
        let now_ms = self.clock.now_ms();
        let snapshot = self.cell.load();
        StatusReport {
            reloads: self.reloads,
            reloads_failed: self.reloads_failed,
            guard_reinstalls: self.guard_repairs.reinstalled,
            guard_reinstalls_failed: self.guard_repairs.failed,
            xdp: self.xdp_decisions(),
            admission: self.admission_budgets(),
            uptime_s: now_ms / 1000,
            uplinks: self.uplink_statuses(&snapshot, &flows.per_slot),
            tier_in_use: snapshot.policy.group(GroupId::Default).tier(),
            flows: flows.total,
            flow_capacity: self.flows.table.capacity() as u64,
            drops: self.drop_totals(),
            flows_early_dropped: self
                .counters
                .iter()
                .map(|c| c.flows_early_dropped.get())
                .sum(),
            flows_spilled: self.counters.iter().map(|c| c.flows_spilled.get()).sum(),
            flow_hosts: self.flows.hosts.live() as u64,
            flow_share_pressure: snapshot
                .flow_share
                .pressure_threshold(self.flows.table.capacity()),
            flow_fair_share: u64::from(
                snapshot
                    .flow_share
                    .fair_share(self.flows.table.capacity(), self.flows.hosts.live()),
            ),
            icmp_suppressed: self.icmp_suppressed(),
            workers: self.worker_statuses(),
            control_surfaces: Box::new(self.surfaces.report()),
            hooks: self.hooks.status(),
        }
    }

    /// The workers' drops by reason, summed (only non-zero reasons), sorted by name.
    fn drop_totals(&self) -> Vec<(String, u64)> {
        let mut drops = BTreeMap::<String, u64>::new();
        for c in &self.counters {
            for (name, n) in c.nonzero_drops() {
                *drops.entry(name.to_owned()).or_default() += n;
            }
        }
        drops.into_iter().collect()
    }

    /// The ICMP answers the rate limits suppressed, by kind, summed over the workers.
    fn icmp_suppressed(&self) -> Vec<(String, u64)> {
        let mut sums: Vec<(String, u64)> = Vec::new();
        for counters in &self.counters {
            for (index, (kind, n)) in counters.answers_suppressed().into_iter().enumerate() {
                match sums.get_mut(index) {
                    Some((_, sum)) => *sum += n,
                    None => sums.push((kind.to_owned(), n)),
                }
            }
        }
        sums
    }

    /// The XDP program's admission budgets, as configured.
    fn admission_budgets(&self) -> Vec<(String, u32, u32)> {
        let admission = self.config.datapath.admission();
        [
            ("per_host", admission.host),
            ("lan", admission.lan),
            ("inbound", admission.inbound),
        ]
        .into_iter()
        .map(|(name, budget)| (name.to_owned(), budget.per_s, budget.burst))
        .collect()
    }

    /// The XDP program's non-zero decisions (none when it is gone or unreadable).
    fn xdp_decisions(&self) -> Vec<(String, u64)> {
        self.xdp
            .as_ref()
            .and_then(|x| x.counters().ok())
            .map(|c| {
                c.iter()
                    .filter(|(_, n)| n.packets > 0)
                    .map(|(d, n)| (d.name().to_owned(), n.packets))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every live uplink's status, in slot order.
    fn uplink_statuses(
        &self,
        snapshot: &Snapshot,
        flows_per_uplink: &[u64],
    ) -> Vec<api::UplinkStatus> {
        self.config
            .uplinks
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.uplinks[*i].retired)
            .map(|(i, u)| {
                let flows = flows_per_uplink.get(i).copied().unwrap_or(0);
                self.uplink_status(i, u, snapshot, flows)
            })
            .collect()
    }

    /// Uplink `slot`'s state, health and counters.
    fn uplink_status(
        &self,
        slot: usize,
        u: &config::Uplink,
        snapshot: &Snapshot,
        flows: u64,
    ) -> api::UplinkStatus {
        let runtime = &self.uplinks[slot];
        let totals = SlotTotals::sum(&self.counters, slot)
            .since(self.slot_baselines.get(slot).copied().unwrap_or_default());
        let fact = self.facts.get(slot).and_then(Option::as_ref);
        api::UplinkStatus {
            name: u.name.clone(),
            interface: u.interface.clone(),
            address: snapshot
                .uplink(slot as u8)
                .map(|v| v.address.to_string())
                .unwrap_or_default(),
            state: runtime.state_name(fact).to_owned(),
            eligible: self.eligible(slot),
            weight: runtime.weight_override.unwrap_or(u.weight),
            tier: u.tier,
            probe_loss_percent: (!self.config.uplink_health(slot).targets.is_empty())
                .then(|| runtime.health.loss_percent()),
            probe_rtt_ms: runtime.health.rtt_ms(),
            state_changes: runtime.health.transitions,
            failovers: runtime.failovers,
            flows_failed_over: runtime.flows_failed_over,
            flows_failed_back: runtime.flows_failed_back,
            flows_created: totals.flows_created,
            flows,
            tx_packets: totals.tx_packets,
            tx_bytes: totals.tx_bytes,
            rx_packets: totals.rx_packets,
            rx_bytes: totals.rx_bytes,
            tcp_handshakes_started: totals.tcp_handshakes_started,
            tcp_handshakes_answered: totals.tcp_handshakes_answered,
            mss_clamped: totals.mss_clamped,
            tcp_handshakes_unanswered_in_a_row: runtime.health.passive().unanswered_in_a_row(),
            passive_downs: runtime.health.passive_downs,
            probe_targets: self.probe_target_statuses(slot),
        }
    }

    /// Uplink `slot`'s probe targets (its gateway when no target is configured; none while it is
    /// not probed).
    fn probe_target_statuses(&self, slot: usize) -> Vec<api::ProbeTargetStatus> {
        if self.config.uplink_health(slot).targets.is_empty() {
            return Vec::new();
        }
        self.uplinks[slot]
            .targets
            .targets()
            .iter()
            .map(|t| api::ProbeTargetStatus {
                target: t.label.clone(),
                loss_percent: t.loss_percent(),
                rtt_ms: t.rtt_ms(),
                jitter_ms: t.jitter_ms(),
                last_failure: t.last_failure.clone(),
            })
            .collect()
    }

    /// Every worker's frames, batches, translations and kernel socket figures.
    fn worker_statuses(&self) -> Vec<api::WorkerStatus> {
        let frames = self
            .workers
            .as_ref()
            .map(WorkerPool::frame_states)
            .unwrap_or_default();
        let mut sockets = self
            .workers
            .as_ref()
            .map(WorkerPool::kernel_stats)
            .unwrap_or_default();
        self.counters
            .iter()
            .enumerate()
            .map(|(index, c)| api::WorkerStatus {
                index,
                rx_frames: c.frames.get(),
                tx_frames: c.transmitted(),
                batches: c.batches.get(),
                outbound_packets: c.translated().outbound_packets,
                inbound_packets: c.translated().inbound_packets,
                flows_created: c.translated().flows_created,
                frames: frames.get(index).copied().flatten(),
                sockets: sockets
                    .get_mut(index)
                    .map(std::mem::take)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(port, stats)| api::XskSocketStatus {
                        port: self.port_name(port).to_owned(),
                        kernel: stats,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The name of datapath port `port`: `lan`, or its uplink's.
    fn port_name(&self, port: crate::datapath::PortId) -> &str {
        match port.0.checked_sub(1) {
            None => "lan",
            Some(slot) => self.uplink_name(slot),
        }
    }

    /// `flowpin explain`: why each flow `found` (at most 100, scanned without the lock) is on its
    /// uplink.
    pub(super) fn explain(&self, found: Vec<FoundFlow>) -> ExplainReport {
        let now_ms = self.clock.now_ms();
        let flows = found
            .into_iter()
            .map(|f| {
                decision_history::explain(
                    &f.value,
                    f.entry,
                    self.history.find(f.value.generation),
                    &self.config,
                    now_ms,
                )
            })
            .collect();
        ExplainReport {
            flows,
            history: self.history.len(),
            oldest_generation: self.history.oldest_generation(),
        }
    }
}
