//! Uplink state over time: health inputs (carrier, probe rounds, passive handshakes), failover,
//! failback, and what the prober probes.
//!
//! Invariants:
//! - a health change publishes a snapshot first, then every live uplink not `up` has its flows failed
//!   over per `[failover]` (see [`crate::control::failover`]);
//! - nothing is evicted while no other uplink is eligible (the flows stay pinned and fail over once
//!   one is back);
//! - failback `move-after` runs at most once per up period, once the uplink has been up long enough;
//! - every live uplink with an address has its source routes (see [`crate::control::source_routes`]),
//!   re-installed when its address changes and when a check finds them gone, removed at shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Daemon, kernel, live_uplinks};
use crate::control::failover;
use crate::control::health::hooks::HookEvent;
use crate::control::health::{self, HealthState, ProbeSource};
use crate::control::netinfo;
use crate::control::source_routes;
use crate::select::GroupId;

impl Daemon {
    /// `forwarding: isp1 down, isp2 up`: the live uplinks' states, for systemd's status line.
    fn uplink_summary(&self) -> String {
        let states: Vec<String> = (0..self.uplinks.len())
            .filter(|&slot| !self.uplinks[slot].retired)
            .map(|slot| {
                let state =
                    self.uplinks[slot].state_name(self.facts.get(slot).and_then(Option::as_ref));
                format!("{} {state}", self.config.uplinks[slot].name)
            })
            .collect();
        format!("forwarding: {}", states.join(", "))
    }

    /// Feeds every uplink's carrier to its health tracker (on every rtnetlink link or address event, and
    /// every second as the safety net).
    pub(super) fn check_carriers(&mut self) {
        let config = &self.config;
        let changes = live_uplinks(config, &mut self.uplinks)
            .filter_map(|(slot, u, runtime)| {
                let settings = config.uplink_health(slot);
                let carrier = kernel::carrier(&u.interface);
                let state = runtime.health.carrier(carrier, &settings)?;
                let reason = if carrier {
                    "carrier back"
                } else {
                    "carrier lost"
                };
                Some((slot, state, reason.to_owned()))
            })
            .collect();
        self.apply_changes(changes);
    }

    /// Asks again for the gateways that are still unresolved on links that carry packets, on each
    /// uplink's [`GatewayRetry`](crate::control::gateway_retry::GatewayRetry) schedule (every 100 ms
    /// tick). The answer's neighbour event wakes the control loop, which re-reads the tables.
    pub(super) fn ask_gateways_again(&mut self) {
        let now_ms = self.clock.now_ms();
        for (slot, u, runtime) in live_uplinks(&self.config, &mut self.uplinks) {
            let waiting = self
                .facts
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|f| f.eligible && f.gateway_mac.is_none());
            if runtime.gateway_retry.due(waiting, now_ms)
                && let Err(error) = netinfo::ask_gateway_again(&u.interface, u.gateway)
            {
                let error = format!("{error:#}");
                tracing::debug!(uplink = %u.name, %error, "asking for the gateway again failed");
            }
        }
    }

    /// Feeds every uplink's passive handshake counts to its health tracker (every 100 ms tick, so the
    /// passive trigger acts within a tick of its window).
    pub(super) fn check_handshakes(&mut self) {
        let now_ms = self.clock.now_ms();
        let config = &self.config;
        let counters = &self.counters;
        let changes = live_uplinks(config, &mut self.uplinks)
            .filter_map(|(slot, _, runtime)| {
                let counts = health::HandshakeCounts::sum(counters, slot);
                let settings = config.uplink_health(slot);
                let state = runtime.health.handshakes(now_ms, counts, &settings)?;
                let reason = format!(
                    "passive: {} new TCP flows in a row got no SYN-ACK",
                    settings.passive_down_after_unanswered
                );
                Some((slot, state, reason))
            })
            .collect();
        self.apply_changes(changes);
    }

    /// Applies one uplink's probe round: each target's outcome to its statistics, the sums to the
    /// verdict, both under the uplink's own settings.
    pub(super) fn apply_round(&mut self, round: &health::UplinkRound) {
        let slot = usize::from(round.slot);
        if slot >= self.uplinks.len() {
            return;
        }
        let settings = self.config.uplink_health(slot);
        let runtime = &mut self.uplinks[slot];
        runtime
            .targets
            .record(&round.targets, settings.window as usize);
        let Some(state) = runtime.health.round(round.result, &settings) else {
            return;
        };
        let reason = round_reason(round, &runtime.health);
        self.apply_changes(vec![(slot, state, reason)]);
    }

    /// Publishes a snapshot for state changes, queues their hooks, then fails over uplinks that
    /// went down.
    fn apply_changes(&mut self, changed: Vec<(usize, HealthState, String)>) {
        if changed.is_empty() {
            return;
        }
        let now_ms = self.clock.now_ms();
        let mut reported = Vec::with_capacity(changed.len());
        for (slot, state, reason) in changed {
            let u = &mut self.uplinks[slot];
            let old = std::mem::replace(&mut u.reported_state, state);
            let name = &self.config.uplinks[slot].name;
            let (loss_percent, rtt_ms) =
                (u.health.loss_percent(), u.health.rtt_ms().unwrap_or(0.0));
            // An uplink going down is a warning (journal priority 4); any other change is news.
            if state == HealthState::Down {
                tracing::warn!(uplink = %name, state = state.name(), loss_percent, rtt_ms, %reason, "uplink health changed");
            } else {
                tracing::info!(uplink = %name, state = state.name(), loss_percent, rtt_ms, %reason, "uplink health changed");
            }
            if state == HealthState::Up {
                u.up_since_ms = now_ms;
                u.failed_back = false;
            }
            reported.push(ReportedChange {
                slot,
                old,
                new: state,
                reason,
                time: SystemTime::now(),
            });
        }
        self.publish();
        self.queue_hooks(reported);
        self.notifier.status(&self.uplink_summary());
        // Every uplink not up gets its flows failed over (a no-op when it has none): the one that
        // just went down, and ones whose flows were kept while no uplink was healthy.
        for slot in 0..self.uplinks.len() {
            if !self.uplinks[slot].retired && self.uplinks[slot].health.state() != HealthState::Up {
                self.fail_over(slot);
            }
        }
    }

    /// Queues the hooks of published state changes (`[health] hooks_dir`, global), each with the
    /// uplink's tier and the tier new flows use now that the change is published.
    fn queue_hooks(&self, changes: Vec<ReportedChange>) {
        let Some(dir) = &self.config.health.hooks_dir else {
            return;
        };
        let tier_in_use = self.cell.load().policy.group(GroupId::Default).tier();
        let timeout = Duration::from_millis(u64::from(self.config.health.hook_timeout_ms));
        for change in changes {
            let uplink = &self.config.uplinks[change.slot];
            self.hooks.notify(HookEvent {
                uplink: uplink.name.clone(),
                interface: uplink.interface.clone(),
                old_state: change.old.name(),
                new_state: change.new.name(),
                reason: change.reason,
                tier: uplink.tier,
                tier_in_use,
                time: change.time,
                dir: dir.clone(),
                timeout,
            });
        }
    }

    /// Fails over uplink `slot`'s flows, unless no other uplink takes new flows (viability guard).
    fn fail_over(&mut self, slot: usize) {
        let others = (0..self.uplinks.len()).any(|other| other != slot && self.eligible(other));
        if !others {
            tracing::warn!(uplink = %self.config.uplinks[slot].name, "no healthy uplink left: its flows stay pinned");
            return;
        }
        let snapshot = self.cell.load();
        let report = failover::fail_over(
            &self.flows,
            &snapshot,
            slot as u8,
            &self.config.failover,
            self.rst.as_ref(),
            self.clock.now_ms(),
        );
        if report.moved + report.reset > 0 {
            let u = &mut self.uplinks[slot];
            u.failovers += 1;
            u.flows_failed_over += report.moved + report.reset;
            tracing::info!(
                uplink = %self.config.uplinks[slot].name,
                moved = report.moved,
                reset = report.reset,
                kept = report.kept,
                "flows failed over"
            );
        }
    }

    /// Failback `move-after`: once an uplink has been up long enough, moves its class back (once per up
    /// period).
    pub(super) fn fail_back(&mut self) {
        let failback = self.config.failback;
        let now_ms = self.clock.now_ms();
        for slot in 0..self.uplinks.len() {
            let u = &self.uplinks[slot];
            if u.failed_back
                || !self.eligible(slot)
                || now_ms < u.up_since_ms + u64::from(failback.after_s) * 1000
            {
                continue;
            }
            let snapshot = self.cell.load();
            let moved = failover::move_back(&self.flows, &snapshot, slot as u8, &failback, now_ms);
            let u = &mut self.uplinks[slot];
            u.failed_back = true;
            u.flows_failed_back += moved;
            if moved > 0 {
                tracing::info!(uplink = %self.config.uplinks[slot].name, moved, "flows failed back");
            }
        }
    }

    /// Probe sources and each uplink's settings for the prober; every uplink's source routes, for
    /// its current address.
    pub(super) fn update_probing(&mut self) {
        let settings: Vec<_> = (0..self.config.uplinks.len())
            .map(|slot| self.config.uplink_health(slot))
            .collect();
        let sources: Vec<Option<ProbeSource>> = self
            .config
            .uplinks
            .iter()
            .zip(&self.facts)
            .map(|(u, f)| {
                f.as_ref().map(|f| ProbeSource {
                    interface: u.interface.clone(),
                    address: f.address,
                })
            })
            .collect();
        self.install_source_routes();
        self.prober.sources.store(Arc::new(sources));
        self.prober.settings.store(Arc::new(settings));
    }

    /// Routes every live uplink's address out of its own gateway, (re)installed for a slot whenever
    /// its interface, address or gateway changes, and when its link carries packets again (taking a
    /// link down makes the kernel flush the routes through it); an uplink without an address has none
    /// (its old address's rules go).
    fn install_source_routes(&mut self) {
        let slots = self.config.uplinks.len();
        self.source_routes.resize(slots, None);
        for slot in 0..slots {
            let u = &self.config.uplinks[slot];
            let live = self
                .uplinks
                .get(slot)
                .is_some_and(|runtime| !runtime.retired);
            let fact = self
                .facts
                .get(slot)
                .and_then(Option::as_ref)
                .filter(|_| live);
            let wanted = fact.map(|f| SourceRouteKey {
                interface: u.interface.clone(),
                address: f.address,
                gateway: u.gateway,
                carrier: f.eligible,
            });
            if wanted == self.source_routes[slot] {
                continue;
            }
            match &wanted {
                Some(key) => {
                    if let Err(error) =
                        source_routes::install(slot as u8, key.address, key.gateway, &key.interface)
                    {
                        if key.carrier {
                            tracing::warn!(uplink = %u.name, %error, "installing the source routes");
                        } else {
                            tracing::debug!(uplink = %u.name, %error, "source routes wait for the link");
                        }
                    }
                }
                None => source_routes::remove(slot as u8),
            }
            self.source_routes[slot] = wanted;
        }
    }

    /// Re-installs what the kernel lost of the uplinks' source routes and the router's default route
    /// (every second): taking a link down makes the kernel delete the routes through it, and an admin's
    /// `ip route flush` or `ip rule flush` removes them, while nothing in flowpin's own view changed.
    pub(super) fn repair_routes(&mut self) {
        let inventory = match source_routes::RoutingInventory::read() {
            Ok(inventory) => inventory,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::debug!(%error, "reading the routing tables");
                return;
            }
        };
        let mut lost = false;
        for (slot, installed) in self.source_routes.iter_mut().enumerate() {
            if installed.as_ref().is_some_and(|key| key.carrier)
                && !inventory.has_source_routes(slot as u8)
            {
                *installed = None;
                lost = true;
            }
        }
        if lost {
            tracing::info!("source routes found missing: re-installed");
            self.install_source_routes();
        }
        if self.router_route.lost_from(&inventory) {
            tracing::info!("the router's default route or its rules found missing: re-installed");
            self.router_route.forget();
            self.update_router_route();
        }
    }

    /// Removes every slot's source routes.
    pub(super) fn remove_source_routes(&mut self) {
        for (slot, installed) in self.source_routes.iter_mut().enumerate() {
            if installed.take().is_some() {
                source_routes::remove(slot as u8);
            }
        }
    }
}

/// What a slot's source routes were last installed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SourceRouteKey {
    interface: String,
    address: std::net::Ipv4Addr,
    gateway: std::net::Ipv4Addr,
    /// Whether its link carried packets then.
    carrier: bool,
}

/// One uplink's state change, between its log line and its hooks.
struct ReportedChange {
    slot: usize,
    old: HealthState,
    new: HealthState,
    reason: String,
    time: SystemTime,
}

/// Why a probe round changed an uplink's state: the round's answers, the window's figures, and the
/// first target that failed with its reason.
fn round_reason(round: &health::UplinkRound, health: &health::UplinkHealth) -> String {
    let mut reason = format!(
        "probes: {}/{} answered, window loss {:.0} %, rtt {:.1} ms",
        round.result.answered,
        round.result.sent,
        health.loss_percent(),
        health.rtt_ms().unwrap_or(0.0)
    );
    if let Some((label, Err(failure))) = round
        .targets
        .iter()
        .map(|t| (&t.label, &t.outcome))
        .find(|(_, outcome)| outcome.is_err())
    {
        reason.push_str(&format!("; {label}: {failure}"));
    }
    reason
}
