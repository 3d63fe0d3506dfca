//! The I/O rebuild of a reload that adds or removes uplinks, run with the workers stopped.
//!
//! Invariants:
//! - one AF_XDP UMEM serves all of a worker's sockets, so every socket is closed and reopened for
//!   the new set; the pause runs from stopping the workers to starting them again and is logged with
//!   its parts and reported;
//! - with no worker running, no flow can be pinned to a removed uplink behind the failover's back:
//!   its flows fail over per class (`keep` acts as `move`: the uplink is gone) and the hairpin flows
//!   left on it are removed;
//! - slots kept keep their runtime, slots (re)filled start fresh and count from 0;
//! - the flow table and the port pools live in the process, untouched.
#![deny(unsafe_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{ReloadError, SlotPlan};
use crate::control::failover;
use crate::control::runtime::slot_totals::rebase_slots;
use crate::control::runtime::{Daemon, UplinkRuntime, io};
use crate::control::snapshot::UplinkFacts;
use crate::datapath::{Flows, Snapshot};
use crate::worker::WorkerPool;
use crate::xdp::{AttachMode, XdpError, XdpProgram};

/// Why the new uplink set's I/O could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IoReopenError {
    /// A worker's sockets could not be opened or registered.
    #[error("{0:#}")]
    Sockets(anyhow::Error),
    /// The worker threads could not be started.
    #[error("starting the workers: {0}")]
    Workers(#[source] std::io::Error),
}

/// What went wrong setting up one added uplink (forwarding runs without it).
#[derive(Debug, thiserror::Error)]
pub enum AddedUplinkFault {
    /// Its address and ports could not be given to the XDP program.
    #[error("uplink {uplink}: {source}")]
    Configure {
        /// The added uplink.
        uplink: String,
        /// Why.
        source: XdpError,
    },
    /// The XDP program could not be attached to its interface.
    #[error("uplink {uplink}: attaching XDP to {interface}: {source}")]
    Attach {
        /// The added uplink.
        uplink: String,
        /// Its interface.
        interface: String,
        /// Why.
        source: XdpError,
    },
}

impl Daemon {
    /// The part of a reload that runs with the workers stopped; returns what was done.
    pub(super) fn rebuild_io(
        &mut self,
        xdp: &mut XdpProgram,
        plan: SlotPlan,
        added_facts: Vec<(usize, UplinkFacts)>,
    ) -> Result<String, ReloadError> {
        let paused = Instant::now();
        // 1. The workers stop: the pause starts.
        self.stop_workers(xdp)?;
        let stopped = paused.elapsed();
        // 2. The removed uplinks' flows fail over; their XDP and source routes go.
        let failed_over = self.retire_removed(xdp, &plan.removed);
        // 3. Slots given to new uplinks count from 0 (read while no worker counts).
        rebase_slots(&mut self.slot_baselines, &self.counters, &plan.added);
        // 4. The new layout, described to XDP and published.
        self.lay_out(&plan, &added_facts);
        self.config = plan.config;
        let mut faults = configure_added(xdp, &self.config, &added_facts);
        self.publish();
        let reorganised = paused.elapsed();
        // 5. Every worker's sockets reopened, the workers restarted: the pause ends.
        let restarted = self.restart_workers(xdp);
        let pause = paused.elapsed();
        match restarted {
            Ok(workers) => self.workers = Some(workers),
            Err(error) => {
                tracing::error!(%error, "the new uplink set's I/O could not be opened; forwarding is stopped");
                return Err(ReloadError::ForwardingStopped(error));
            }
        }
        // 6. XDP on the added uplinks; probing for the new set.
        faults.extend(attach_added(xdp, &self.config, &added_facts));
        self.update_probing();
        self.last_io_pause = Some(pause);
        tracing::info!(
            pause_ms = pause.as_secs_f64() * 1000.0,
            stop_ms = stopped.as_secs_f64() * 1000.0,
            failover_and_publish_ms = (reorganised - stopped).as_secs_f64() * 1000.0,
            open_ms = (pause - reorganised).as_secs_f64() * 1000.0,
            failed_over,
            "uplink set changed: I/O rebuilt"
        );
        // 7. The answer.
        let applied = self.describe(&plan.added, &plan.removed_names, failed_over, pause);
        if faults.is_empty() {
            Ok(applied)
        } else {
            Err(ReloadError::PartlyApplied { applied, faults })
        }
    }

    /// Are the workers stopped and their sockets out of the XSKMAP?
    fn stop_workers(&mut self, xdp: &mut XdpProgram) -> Result<(), ReloadError> {
        if let Some(workers) = self.workers.take() {
            for xsk in workers.stop().map_err(ReloadError::StoppingWorkers)? {
                let _ = xdp.unregister_worker(&xsk);
            }
        }
        Ok(())
    }

    /// Fails over the flows of the uplinks in `removed` and detaches them; returns how many flows.
    fn retire_removed(&mut self, xdp: &mut XdpProgram, removed: &[usize]) -> u64 {
        let old_snapshot = self.cell.load_full();
        let now_ms = self.clock.now_ms();
        let policy = self.config.failover.keep_as_move();
        let mut failed_over = 0;
        for &slot in removed {
            let name = self.config.uplinks[slot].name.clone();
            let report = failover::fail_over(
                &self.flows,
                &old_snapshot,
                slot as u8,
                &policy,
                self.rst.as_ref(),
                now_ms,
            );
            let hairpins = remove_remaining_flows(&self.flows, &old_snapshot, slot as u8, now_ms);
            failed_over += report.moved + report.reset + hairpins;
            tracing::info!(uplink = %name, moved = report.moved, reset = report.reset, hairpin = hairpins, "uplink removed: its flows failed over");
            if let Err(error) = xdp.remove_uplink(&name) {
                tracing::warn!(uplink = %name, %error, "detaching XDP from the removed uplink");
            }
            crate::control::source_routes::remove(slot as u8);
            if let Some(installed) = self.source_routes.get_mut(slot) {
                *installed = None;
            }
            self.builder.forget(&name);
        }
        failed_over
    }

    /// The runtimes and facts by slot after `plan`: slots kept keep theirs; slots (re)filled start
    /// fresh.
    fn lay_out(&mut self, plan: &SlotPlan, added_facts: &[(usize, UplinkFacts)]) {
        let slots = plan.config.uplinks.len();
        let mut uplinks = Vec::with_capacity(slots);
        let mut facts = Vec::with_capacity(slots);
        let mut old_uplinks: Vec<Option<UplinkRuntime>> = std::mem::take(&mut self.uplinks)
            .into_iter()
            .map(Some)
            .collect();
        for slot in 0..slots {
            let added = added_facts.iter().find(|(s, _)| *s == slot);
            let kept = old_uplinks
                .get_mut(slot)
                .and_then(Option::take)
                .filter(|_| added.is_none() && !plan.removed.contains(&slot));
            let mut runtime = match (kept, added) {
                (Some(runtime), _) => runtime,
                (None, Some((_, f))) => UplinkRuntime::new(f.eligible),
                (None, None) => UplinkRuntime::new(false),
            };
            runtime.retired = plan.retired[slot];
            uplinks.push(runtime);
            facts.push(match added {
                Some((_, f)) => Some(f.clone()),
                None if plan.retired[slot] => None,
                None => self.facts.get(slot).cloned().flatten(),
            });
        }
        self.uplinks = uplinks;
        self.facts = facts;
    }

    /// Every worker's sockets for the live slots, registered, and the workers started on them.
    fn restart_workers(&mut self, xdp: &mut XdpProgram) -> Result<WorkerPool, IoReopenError> {
        let retired: Vec<bool> = self.uplinks.iter().map(|u| u.retired).collect();
        let sockets = io::open_io(&self.config, &retired, xdp, &self.queues, &self.xsk_config)
            .map_err(IoReopenError::Sockets)?;
        WorkerPool::start(
            sockets,
            &self.cell,
            &self.flows,
            self.clock,
            &self.counters,
            &self.config.datapath,
            &self.cores,
        )
        .map_err(IoReopenError::Workers)
    }

    /// What the reload did, as `flowpin reload` says it.
    fn describe(
        &self,
        added: &[usize],
        removed_names: &[String],
        failed_over: u64,
        pause: Duration,
    ) -> String {
        let mut message = format!("reloaded {}", self.config_path.display());
        if !added.is_empty() {
            let names: Vec<&str> = added
                .iter()
                .map(|&s| self.config.uplinks[s].name.as_str())
                .collect();
            let _ = write!(message, "; added {}", names.join(", "));
        }
        if !removed_names.is_empty() {
            let _ = write!(
                message,
                "; removed {} ({failed_over} flows failed over)",
                removed_names.join(", ")
            );
        }
        let _ = write!(
            message,
            "; workers paused {:.1} ms while the I/O was rebuilt",
            pause.as_secs_f64() * 1000.0
        );
        message
    }
}

/// Each added uplink's address and ports given to the program; the faults.
fn configure_added(
    xdp: &mut XdpProgram,
    config: &crate::config::Config,
    added_facts: &[(usize, UplinkFacts)],
) -> Vec<AddedUplinkFault> {
    let ports = config.nat.port_range;
    let mut faults = Vec::new();
    for (slot, fact) in added_facts {
        let u = &config.uplinks[*slot];
        if let Err(source) = xdp.configure_uplink(
            &u.interface,
            &u.name,
            fact.address,
            ports.first()..=ports.last(),
        ) {
            faults.push(AddedUplinkFault::Configure {
                uplink: u.name.clone(),
                source,
            });
        }
    }
    faults
}

/// The program attached to each added uplink; the faults.
fn attach_added(
    xdp: &mut XdpProgram,
    config: &crate::config::Config,
    added_facts: &[(usize, UplinkFacts)],
) -> Vec<AddedUplinkFault> {
    let mut faults = Vec::new();
    for (slot, _) in added_facts {
        let u = &config.uplinks[*slot];
        match xdp.attach(&u.interface, AttachMode::Auto) {
            Ok(mode) => {
                tracing::info!(uplink = %u.name, interface = %u.interface, ?mode, "uplink added: XDP attached")
            }
            Err(source) => faults.push(AddedUplinkFault::Attach {
                uplink: u.name.clone(),
                interface: u.interface.clone(),
                source,
            }),
        }
    }
    faults
}

/// Removes the flows still pinned to `slot` after its failover (hairpin flows through its address),
/// giving their ports back to the pools of `snapshot`. Returns how many.
fn remove_remaining_flows(flows: &Flows, snapshot: &Snapshot, slot: u8, now_ms: u64) -> u64 {
    let mut removed = 0;
    for flow in flows.table.live_flows(now_ms) {
        if flow.value.uplink != slot {
            continue;
        }
        let Some(value) = flows.remove(flow.handle) else {
            continue;
        };
        removed += 1;
        snapshot.release_mapping(&value, now_ms);
    }
    removed
}
