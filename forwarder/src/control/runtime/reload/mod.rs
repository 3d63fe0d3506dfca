//! Reload: re-reading the configuration file (SIGHUP, `flowpin reload`).
//!
//! Invariants:
//! - an added uplink whose interface MTU a UMEM frame cannot hold is refused, naming the fix;
//! - an invalid file, or one that changes what needs a restart (the LAN, the NAT port range or
//!   quota, `[datapath]`, the control socket, the metrics address, an uplink's interface, gateway or
//!   address), is refused with what to do instead, and the running configuration stays;
//! - a valid one swaps weights, policies, health, failover, failback and timeouts in one snapshot;
//!   pinned flows keep their uplink and external address:port;
//! - uplinks added or removed keep every other uplink in its slot ([`slots`]) and rebuild the I/O
//!   with the workers stopped ([`rebuild`]): a pause of tens of milliseconds, reported, during which
//!   XDP drops arriving frames (the XSKMAP is empty); the kernel never forwards them;
//! - every reload counts as done or failed; the user sees the same texts as before (tests and scripts
//!   match on them).

mod rebuild;
mod slots;
#[cfg(test)]
mod tests;

use super::{Daemon, kernel, startup::load_config};
use crate::config;
use crate::control::guard::{GuardError, GuardSpec};
use crate::control::netinfo;
use crate::control::queues::{self, QueueError};
use crate::control::snapshot::UplinkFacts;
pub use rebuild::{AddedUplinkFault, IoReopenError};
use slots::{SlotPlan, plan_slots, restart_needed};

/// Why a reload was refused or only partly applied (the text is what `flowpin reload` prints).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is invalid.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// It changes something only a restart applies.
    #[error("{0} changed: restart flowpin to apply it")]
    RestartNeeded(&'static str),
    /// A running uplink's interface, gateway or address changed.
    #[error(
        "uplink {uplink}: its {what} changed: that needs its flows re-pinned; remove the uplink in one reload and add it back in another, or restart flowpin"
    )]
    UplinkRedefined {
        /// The uplink.
        uplink: String,
        /// What changed, old → new.
        what: String,
    },
    /// An interface passes from one uplink to another.
    #[error(
        "interface {interface} passes from uplink {from} to uplink {to}: remove {from} in one reload and add {to} in another, or restart flowpin"
    )]
    InterfaceMoved {
        /// The interface.
        interface: String,
        /// The uplink that has it now.
        from: String,
        /// The uplink the file gives it to.
        to: String,
    },
    /// Every slot is taken.
    #[error(
        "uplink {uplink}: no free uplink slot (at most {max} uplinks, counting slots of uplinks removed earlier whose flows are gone only after a restart)",
        max = crate::datapath::MAX_UPLINKS
    )]
    NoFreeSlot {
        /// The uplink that found none.
        uplink: String,
    },
    /// An added uplink's interface does not have one receive queue per worker.
    #[error("uplink {uplink}: {source}")]
    AddedUplinkQueues {
        /// The added uplink.
        uplink: String,
        /// What its queues are.
        source: QueueError,
    },
    /// An added uplink's interface, address or gateway could not be read, or its MTU is larger than
    /// a UMEM frame holds.
    #[error("{0:#}")]
    AddedUplinkUnreadable(anyhow::Error),
    /// The forward guard could not be re-installed for the new uplink set.
    #[error("re-installing the forward guard for the new uplink set: {0}")]
    Guard(#[source] GuardError),
    /// The daemon is shutting down.
    #[error("the XDP program is gone (shutting down)")]
    ShuttingDown,
    /// The workers could not be stopped.
    #[error("{0:#}")]
    StoppingWorkers(anyhow::Error),
    /// The new uplink set's I/O could not be opened: nothing forwards.
    #[error("{0} (forwarding is stopped: fix the cause and reload, or restart flowpin)")]
    ForwardingStopped(#[source] IoReopenError),
    /// Forwarding runs with the new uplink set, but some added uplinks are not fully set up.
    #[error("{applied}, but: {}", join_faults(.faults))]
    PartlyApplied {
        /// What was applied.
        applied: String,
        /// What went wrong, by added uplink.
        faults: Vec<AddedUplinkFault>,
    },
}

/// The faults as one line, `; ` between them.
fn join_faults(faults: &[AddedUplinkFault]) -> String {
    faults
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Daemon {
    /// Re-reads the configuration file and applies it (see the module doc); returns what was done.
    /// systemd hears `RELOADING=1` before and `READY=1` after, whatever the outcome.
    pub(in crate::control::runtime) fn reload(&mut self) -> Result<String, ReloadError> {
        self.notifier.reloading();
        let result = self.apply_file();
        match &result {
            Ok(message) => {
                self.reloads += 1;
                self.notifier.ready(message);
            }
            Err(error) => {
                self.reloads_failed += 1;
                self.notifier.ready(&format!(
                    "reload refused, running the previous configuration: {error}"
                ));
            }
        }
        self.observed.reloaded(result.is_ok());
        result
    }

    /// The steps of a reload.
    fn apply_file(&mut self) -> Result<String, ReloadError> {
        // 1. The file, valid on this machine.
        let new = load_config(&self.config_path).map_err(ReloadError::Invalid)?;
        // 2. Nothing in it that needs a restart.
        if let Some(what) = restart_needed(&self.config, &new) {
            return Err(ReloadError::RestartNeeded(what));
        }
        // 3. Its uplinks on the running slots.
        let plan = plan_slots(&self.running_slots(), new)?;
        // 4. One publish, or the I/O rebuilt for a new uplink set.
        let forwards_before = self.config.forwards.clone();
        let result = if plan.added.is_empty() && plan.removed.is_empty() {
            self.config = plan.config;
            self.update_probing();
            self.publish();
            Ok(format!("reloaded {}", self.config_path.display()))
        } else {
            self.apply_uplink_set(plan)
        };
        // 5. The forwards: their ports into XDP, the flows of changed ones removed.
        self.apply_forwards(&forwards_before);
        result
    }

    /// The running slots: (uplink, retired).
    fn running_slots(&self) -> Vec<(config::Uplink, bool)> {
        self.config
            .uplinks
            .iter()
            .cloned()
            .zip(self.uplinks.iter().map(|u| u.retired))
            .collect()
    }

    /// Applies a reload that adds or removes uplinks: checks what is added and re-installs the
    /// guard before anything changes, then rebuilds the I/O ([`rebuild`]).
    fn apply_uplink_set(&mut self, plan: SlotPlan) -> Result<String, ReloadError> {
        // 1. The added uplinks: queues that match the workers, facts readable.
        let added_facts = self.read_added_uplinks(&plan)?;
        // 2. The guard for the new set.
        guard_for(&plan).install().map_err(ReloadError::Guard)?;
        // 3. The I/O rebuilt with the workers stopped.
        let Some(mut xdp) = self.xdp.take() else {
            return Err(ReloadError::ShuttingDown);
        };
        let result = self.rebuild_io(&mut xdp, plan, added_facts);
        self.xdp = Some(xdp);
        result
    }

    /// Are the added uplinks' interfaces there, with one receive queue per worker and an MTU a UMEM
    /// frame holds? Their facts, by slot (each gateway solicited first).
    fn read_added_uplinks(
        &self,
        plan: &SlotPlan,
    ) -> Result<Vec<(usize, UplinkFacts)>, ReloadError> {
        plan.added
            .iter()
            .map(|&slot| {
                let u = &plan.config.uplinks[slot];
                let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
                queues::check_added(&u.interface, self.queues.len() as u32).map_err(|source| {
                    ReloadError::AddedUplinkQueues {
                        uplink: u.name.clone(),
                        source,
                    }
                })?;
                let facts = kernel::uplink_facts(u).map_err(ReloadError::AddedUplinkUnreadable)?;
                if let Some(refusal) = self.xsk_config.mtu_refusal(&u.interface, facts.mtu.into()) {
                    return Err(ReloadError::AddedUplinkUnreadable(anyhow::anyhow!(
                        "uplink {}: {refusal}",
                        u.name
                    )));
                }
                Ok((slot, facts))
            })
            .collect()
    }
}

/// The forward guard for the LAN and the plan's live uplinks.
fn guard_for(plan: &SlotPlan) -> GuardSpec {
    GuardSpec {
        lan: plan.config.lan.interface.clone(),
        uplinks: plan
            .config
            .uplinks
            .iter()
            .zip(&plan.retired)
            .filter(|(_, retired)| !**retired)
            .map(|(u, _)| u.interface.clone())
            .collect(),
    }
}
