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
use crate::control::new_flow_explanation::{NewFlowExplanation, explain_new};
use crate::datapath::Snapshot;
use crate::select::GroupId;
use crate::worker::WorkerPool;

impl Daemon {
    /// Everything `flowpin status` shows; `flows` were counted without the lock
    /// ([`FlowScan::counts`](super::flow_scan::FlowScan::counts)).
    pub(super) fn status(&self, flows: FlowCounts) -> StatusReport {
        let snapshot = self.cell.load();
        StatusReport {
            reloads: self.reloads,
            reloads_failed: self.reloads_failed,
            last_reload: self.observed.last_reload.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_unix_s: super::observed::unix_seconds(self.observed.started_at),
            flows_killed: self.observed.flows_killed,
            kill_resets_sent: self.observed.kill_resets_sent,
            guard_reinstalls: self.guard_repairs.reinstalled,
            guard_reinstalls_failed: self.guard_repairs.failed,
            xdp: self.xdp_decisions(),
            admission: self.admission_budgets(),
            uptime_s: self
                .observed
                .started_at
                .elapsed()
                .map_or(0, |d| d.as_secs()),
            uplinks: self.uplink_statuses(&snapshot, &flows.per_slot),
            tier_in_use: snapshot.policy.group(GroupId::Default).tier(),
            router_default_route: self.config.router.default_route.name().to_owned(),
            router_default_via: (self.router_route.installed().unwrap_or_default().iter())
                .map(|hop| format!("{} {}", hop.interface, hop.weight))
                .collect(),
            flows: flows.total,
            flow_capacity: self.flows.table.capacity() as u64,
            drops: self.drop_totals(),
            flows_early_dropped: self
                .counters
                .iter()
                .map(|c| c.flows_early_dropped.get())
                .sum(),
            flows_spilled: self.counters.iter().map(|c| c.flows_spilled.get()).sum(),
            fragments_followed: self
                .counters
                .iter()
                .map(|c| c.fragments_followed.get())
                .sum(),
            fragments_held: self.counters.iter().map(|c| c.fragments_held.get()).sum(),
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
            forwards: self.forward_statuses(&snapshot, &flows.per_forward),
        }
    }

    /// Each `[[forward]]` per uplink: open to new flows, and its live flows there.
    fn forward_statuses(
        &self,
        snapshot: &crate::datapath::Snapshot,
        per_forward: &std::collections::BTreeMap<(u8, u8), u64>,
    ) -> Vec<crate::control::api::ForwardStatus> {
        let slot_of = |name: &str| self.config.uplinks.iter().position(|u| u.name == name);
        (self.config.forwards.iter().enumerate())
            .map(|(index, f)| crate::control::api::ForwardStatus {
                name: f.name.clone(),
                protocol: f.protocol.name().to_owned(),
                port: f.port.to_string(),
                to: format!("{}:{}", f.to, f.to_port),
                uplinks: (f.uplinks.iter())
                    .map(|uplink| {
                        let slot = slot_of(uplink).and_then(|s| u8::try_from(s).ok());
                        crate::control::api::ForwardUplinkStatus {
                            uplink: uplink.clone(),
                            open: slot.is_some_and(|s| snapshot.forwards.open(s)),
                            flows: slot
                                .and_then(|s| per_forward.get(&(index as u8, s)))
                                .copied()
                                .unwrap_or(0),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The workers' drops by reason, summed (only non-zero reasons).
    fn drop_totals(&self) -> BTreeMap<String, u64> {
        let mut drops = BTreeMap::<String, u64>::new();
        for c in &self.counters {
            for (name, n) in c.nonzero_drops() {
                *drops.entry(name.to_owned()).or_default() += n;
            }
        }
        drops
    }

    /// The ICMP answers the rate limits suppressed, by kind (every kind), summed over the workers.
    fn icmp_suppressed(&self) -> BTreeMap<String, u64> {
        let mut sums = BTreeMap::<String, u64>::new();
        for counters in &self.counters {
            for (kind, n) in counters.answers_suppressed() {
                *sums.entry(kind.to_owned()).or_default() += n;
            }
        }
        sums
    }

    /// The XDP program's admission budgets, as configured.
    fn admission_budgets(&self) -> BTreeMap<String, api::AdmissionBudget> {
        let admission = self.config.datapath.admission();
        [
            ("per_host", admission.host),
            ("lan", admission.lan),
            ("inbound", admission.inbound),
        ]
        .into_iter()
        .map(|(name, budget)| {
            let budget = api::AdmissionBudget {
                per_s: budget.per_s,
                burst: budget.burst,
            };
            (name.to_owned(), budget)
        })
        .collect()
    }

    /// The XDP program's non-zero decisions (none when it is gone or unreadable).
    fn xdp_decisions(&self) -> BTreeMap<String, u64> {
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
            state_since_unix_s: super::observed::unix_seconds(runtime.state_since),
            state_for_s: runtime.state_since.elapsed().map_or(0, |d| d.as_secs()),
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
            rates: self.observed.meter.rates(slot),
            nat_ports: snapshot
                .uplink(slot as u8)
                .map(|v| port_pools(&v.nat))
                .unwrap_or_default(),
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

    /// `flowpin explain --new`: which uplink the new flow `query` (a LAN-side 5-tuple) would take now.
    pub(super) fn explain_new(&self, query: &api::FlowQuery) -> Result<NewFlowExplanation, String> {
        let (Some(proto), Some(remote)) = (api::protocol_named(&query.proto), query.remote) else {
            return Err(
                "explain --new takes PROTO INTERNAL REMOTE (the LAN-side 5-tuple of the new flow)"
                    .to_owned(),
            );
        };
        let snapshot = self.cell.load();
        let uplinks = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .filter(|(slot, _)| !self.uplinks[*slot].retired)
            .map(|(slot, u)| api::UplinkAtDecision {
                name: u.name.clone(),
                state: self.uplinks[slot]
                    .state_name(self.facts.get(slot).and_then(Option::as_ref))
                    .to_owned(),
                weight: self.uplinks[slot].weight_override.unwrap_or(u.weight),
                eligible: self.eligible(slot),
            })
            .collect();
        Ok(explain_new(
            &snapshot,
            &self.published_config,
            uplinks,
            proto,
            query.endpoint,
            remote,
        ))
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

/// An uplink's NAT port pools by protocol: ports mapped now and pool size (a scan of each pool).
fn port_pools(nat: &crate::datapath::UplinkNat) -> BTreeMap<String, api::PortPoolStatus> {
    [("tcp", &nat.tcp), ("udp", &nat.udp), ("icmp", &nat.icmp)]
        .into_iter()
        .map(|(proto, pool)| {
            let status = api::PortPoolStatus {
                in_use: pool.mapped_ports() as u64,
                size: pool.config().range.len() as u64,
            };
            (proto.to_owned(), status)
        })
        .collect()
}
