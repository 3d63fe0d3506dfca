//! The one door to a new snapshot, the history `flowpin explain` reads, and the sweep that gives
//! expired flows' ports back to the published snapshot's pools.
//!
//! Invariants: a published snapshot's uplinks are eligible only when their gateway is resolved, their
//! health is `up` and they are not drained; its weights are the operator's overrides over the file's
//! (all live weights 0 reads as all 1: every uplink on standby); every publish is recorded in the
//! history with the uplink states and weights it was built from.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::Daemon;
use crate::config::Config;
use crate::control::api;
use crate::control::decision_history::Moment;
use crate::control::health::HealthState;
use crate::control::netinfo::InterfaceInfo;
use crate::control::router_route::Candidate;
use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
use crate::datapath::{LanView, Snapshot};

/// Flow records the sweeper visits per 100 ms tick (bounded work per call).
const SWEEP_BATCH: usize = 16_384;

/// A snapshot from `config` and `facts` as they are (`facts[i].eligible`: takes new flows).
pub(super) fn build_snapshot(
    builder: &mut SnapshotBuilder,
    config: &Config,
    lan: &InterfaceInfo,
    lan_address: Ipv4Addr,
    facts: &[Option<UplinkFacts>],
) -> Snapshot {
    let view = LanView {
        mac: lan.mac,
        address: lan_address,
        mtu: u16::try_from(lan.mtu).unwrap_or(u16::MAX),
        prefixes: config.lan.prefixes.clone(),
    };
    builder.build(
        config,
        view,
        facts,
        super::kernel::lan_neighbours(&lan.name),
    )
}

impl Daemon {
    /// The facts with `eligible` = gateway resolved, health `up`, not drained; the config with the
    /// operator's weights; published as the new snapshot.
    pub(super) fn publish(&mut self) {
        let facts = self.eligible_facts();
        let config = self.weighted_config();
        let snapshot = build_snapshot(
            &mut self.builder,
            &config,
            &self.lan,
            self.lan_address,
            &facts,
        );
        self.cell.store(Arc::new(snapshot));
        self.published_config = Arc::new(config);
        self.note_states();
        self.record_history();
        self.update_router_route();
    }

    /// The router's own default route over the uplinks the snapshot just published lets take new
    /// flows, with its weights (see [`crate::control::router_route`]).
    pub(super) fn update_router_route(&mut self) {
        let candidates: Vec<Candidate> = (self.published_config.uplinks.iter().enumerate())
            .map(|(slot, u)| Candidate {
                interface: u.interface.clone(),
                gateway: u.gateway,
                weight: u.weight,
                tier: u.tier,
                eligible: self.eligible(slot),
            })
            .collect();
        let mode = self.config.router.default_route;
        let before = self.router_route.installed().map(<[_]>::to_vec);
        match self.router_route.update(mode, &candidates) {
            Ok(()) => {
                let after = self.router_route.installed();
                if after != before.as_deref() {
                    let via: Vec<String> = (after.unwrap_or_default().iter())
                        .map(|hop| format!("{} weight {}", hop.interface, hop.weight))
                        .collect();
                    let via = if via.is_empty() {
                        "no usable uplink: the main table's default".to_owned()
                    } else {
                        via.join(", ")
                    };
                    tracing::info!(mode = mode.name(), %via, "router default route");
                }
            }
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(%error, "setting the router's default route");
            }
        }
    }

    /// Which uplinks take new flows: the kernel facts with health and drain applied.
    fn eligible_facts(&self) -> Vec<Option<UplinkFacts>> {
        self.facts
            .iter()
            .zip(&self.uplinks)
            .map(|(f, u)| {
                f.clone().map(|mut f| {
                    f.eligible = f.gateway_mac.is_some()
                        && u.health.state() == HealthState::Up
                        && !u.drained;
                    f
                })
            })
            .collect()
    }

    /// What weights are in force: the configuration with the operator's overrides.
    fn weighted_config(&self) -> Config {
        let mut config = self.config.clone();
        for (uplink, runtime) in config.uplinks.iter_mut().zip(&self.uplinks) {
            if let Some(weight) = runtime.weight_override {
                uplink.weight = weight;
            }
        }
        let live = |slot: usize| !self.uplinks[slot].retired;
        if config
            .uplinks
            .iter()
            .enumerate()
            .all(|(slot, u)| !live(slot) || u.weight == 0)
        {
            // Every weight overridden to 0: treat all as standby with equal weights.
            config
                .uplinks
                .iter_mut()
                .enumerate()
                .filter(|(slot, _)| live(*slot))
                .for_each(|(_, u)| u.weight = 1);
        }
        config
    }

    /// Remembers the current snapshot with the uplink states and weights it was built from.
    pub(super) fn record_history(&mut self) {
        let uplinks = (0..self.uplinks.len())
            .map(|slot| {
                let runtime = &self.uplinks[slot];
                (!runtime.retired).then(|| api::UplinkAtDecision {
                    name: self.config.uplinks[slot].name.clone(),
                    state: runtime
                        .state_name(self.facts.get(slot).and_then(Option::as_ref))
                        .to_owned(),
                    weight: self.published_config.uplinks[slot].weight,
                    eligible: self.eligible(slot),
                })
            })
            .collect();
        self.history.record(Moment {
            at_ms: self.clock.now_ms(),
            config: self.published_config.clone(),
            uplinks,
            snapshot: self.cell.load_full(),
        });
    }

    /// Removes expired flows (bounded work) and gives their external ports back to the pools of the
    /// current snapshot.
    pub(super) fn sweep(&mut self) {
        let now_ms = self.clock.now_ms();
        let snapshot = self.cell.load();
        let timeouts = snapshot.timeouts;
        self.flows.sweep(
            now_ms,
            SWEEP_BATCH,
            |value, state, last_seen| {
                now_ms >= crate::datapath::flows::deadline(&timeouts, value, state, last_seen)
            },
            |value| snapshot.release_mapping(value, now_ms),
        );
    }
}
