//! What a reload may change, and how its uplinks map onto the running slots: pure functions.
//!
//! Invariants of a [`SlotPlan`]:
//! - every uplink that stays keeps its slot, whatever the file order;
//! - a removed uplink leaves its slot retired (its placeholder has weight 0 and takes no flows);
//! - an added uplink takes a slot retired by an *earlier* reload (its flows are long gone), never one
//!   this reload retires, or a new slot; at most [`crate::datapath::MAX_UPLINKS`] slots;
//! - trailing retired slots are dropped;
//! - the policies' uplink indices are slots, not file positions.
//!
//! An uplink whose interface, gateway or address changed, or an interface passed from one uplink to
//! another, is refused: two reloads (remove, then add) or a restart apply it.

use std::collections::HashMap;

use super::ReloadError;
use crate::config::{self, Config};

/// What differs between `old` and `new` that a reload cannot apply (`None`: reloadable).
pub(super) fn restart_needed(old: &Config, new: &Config) -> Option<&'static str> {
    if old.lan != new.lan {
        Some("[lan]")
    } else if old.nat.port_range != new.nat.port_range {
        Some("nat.port_range")
    } else if old.nat.ports_per_host != new.nat.ports_per_host {
        // The port pools live across reloads: a new quota would apply to new uplinks only.
        Some("nat.ports_per_host")
    } else if old.datapath != new.datapath {
        Some("[datapath]")
    } else if old.control != new.control {
        Some("control.socket")
    } else if old.metrics != new.metrics {
        Some("metrics.listen")
    } else {
        None
    }
}

/// How a reloaded configuration's uplinks map onto the running slots.
#[derive(Debug, Clone)]
pub(in crate::control::runtime) struct SlotPlan {
    /// The new configuration with its uplinks in slot order (retired slots hold their old uplink with
    /// weight 0) and its policies' uplink indices turned into slots.
    pub(in crate::control::runtime) config: Config,
    /// By slot: no uplink there any more.
    pub(in crate::control::runtime) retired: Vec<bool>,
    /// Slots that get a new uplink.
    pub(in crate::control::runtime) added: Vec<usize>,
    /// Slots whose uplink this reload removes.
    pub(in crate::control::runtime) removed: Vec<usize>,
    /// Their names.
    pub(in crate::control::runtime) removed_names: Vec<String>,
}

/// Lays the uplinks of `new` onto the running slots `current` (uplink, retired); see the module doc
/// for the rules.
pub(super) fn plan_slots(
    current: &[(config::Uplink, bool)],
    new: Config,
) -> Result<SlotPlan, ReloadError> {
    // 1. Nothing redefined in place.
    refuse_redefinitions(current, &new)?;
    // 2. Uplinks gone from the file retire their slots.
    let mut layout = Layout::running(current);
    let (removed, removed_names) = layout.retire_removed(current, &new);
    // 3. Every uplink of the file in its slot: kept, reused or new.
    let mut added = Vec::new();
    let mut slot_of = HashMap::new();
    for u in &new.uplinks {
        let slot = match live_slot(current, &u.name) {
            Some(slot) => slot,
            None => {
                let slot = layout.free_slot(current, &added, &u.name)?;
                added.push(slot);
                slot
            }
        };
        layout.slots[slot] = Some(u.clone());
        slot_of.insert(u.name.clone(), slot);
    }
    // 4. Placeholders in retired slots; trailing ones dropped.
    let (uplinks, retired) = layout.finish(current);
    // 5. Policies name slots.
    let mut config = new;
    for policy in &mut config.policies {
        for member in &mut policy.uplinks {
            member.index = slot_of[&member.name];
        }
    }
    config.uplinks = uplinks;
    Ok(SlotPlan {
        config,
        retired,
        added,
        removed,
        removed_names,
    })
}

/// The slot of the live uplink named `name`.
fn live_slot(current: &[(config::Uplink, bool)], name: &str) -> Option<usize> {
    current
        .iter()
        .position(|(u, retired)| !retired && u.name == name)
}

/// Does `new` change a live uplink's interface, gateway or address, or pass an interface from one
/// uplink to another?
fn refuse_redefinitions(
    current: &[(config::Uplink, bool)],
    new: &Config,
) -> Result<(), ReloadError> {
    for u in &new.uplinks {
        if let Some(slot) = live_slot(current, &u.name) {
            let old = &current[slot].0;
            let changed = if old.interface != u.interface {
                Some(format!("interface ({} → {})", old.interface, u.interface))
            } else if old.gateway != u.gateway {
                Some(format!("gateway ({} → {})", old.gateway, u.gateway))
            } else if old.address != u.address {
                Some(format!("address ({:?} → {:?})", old.address, u.address))
            } else {
                None
            };
            if let Some(what) = changed {
                return Err(ReloadError::UplinkRedefined {
                    uplink: u.name.clone(),
                    what,
                });
            }
        } else if let Some((old, _)) = current
            .iter()
            .find(|(old, retired)| !retired && old.interface == u.interface)
        {
            return Err(ReloadError::InterfaceMoved {
                interface: u.interface.clone(),
                from: old.name.clone(),
                to: u.name.clone(),
            });
        }
    }
    Ok(())
}

/// The slots while a plan is made.
struct Layout {
    /// By slot: its uplink after the reload (`None`: retired, or not yet placed).
    slots: Vec<Option<config::Uplink>>,
    /// By slot: no uplink there after the reload.
    retired: Vec<bool>,
}

impl Layout {
    /// The running slots as they are.
    fn running(current: &[(config::Uplink, bool)]) -> Self {
        Self {
            slots: current
                .iter()
                .map(|(u, retired)| (!retired).then(|| u.clone()))
                .collect(),
            retired: current.iter().map(|(_, r)| *r).collect(),
        }
    }

    /// Which live uplinks are gone from `new`? Their slots become retired; returns (slots, names).
    fn retire_removed(
        &mut self,
        current: &[(config::Uplink, bool)],
        new: &Config,
    ) -> (Vec<usize>, Vec<String>) {
        let mut removed = Vec::new();
        let mut removed_names = Vec::new();
        for (slot, (u, was_retired)) in current.iter().enumerate() {
            if !was_retired && !new.uplinks.iter().any(|n| n.name == u.name) {
                removed.push(slot);
                removed_names.push(u.name.clone());
                self.retired[slot] = true;
            }
        }
        (removed, removed_names)
    }

    /// Which slot may added uplink `name` take: one retired by an earlier reload and not yet given
    /// (`added`), or a new one?
    fn free_slot(
        &mut self,
        current: &[(config::Uplink, bool)],
        added: &[usize],
        name: &str,
    ) -> Result<usize, ReloadError> {
        let reusable = (0..self.retired.len()).find(|s| {
            self.retired[*s] && current.get(*s).is_some_and(|(_, r)| *r) && !added.contains(s)
        });
        let slot = reusable.unwrap_or_else(|| {
            self.retired.push(false);
            self.slots.push(None);
            self.retired.len() - 1
        });
        if slot >= crate::datapath::MAX_UPLINKS {
            return Err(ReloadError::NoFreeSlot {
                uplink: name.to_owned(),
            });
        }
        self.retired[slot] = false;
        Ok(slot)
    }

    /// The uplinks in slot order (a retired slot keeps its last uplink with weight 0, never eligible,
    /// as a placeholder) and the retired flags, trailing retired slots dropped.
    fn finish(self, current: &[(config::Uplink, bool)]) -> (Vec<config::Uplink>, Vec<bool>) {
        let mut retired = self.retired;
        let mut uplinks: Vec<config::Uplink> = self
            .slots
            .into_iter()
            .enumerate()
            .map(|(slot, u)| match u {
                Some(u) if !retired[slot] => u,
                _ => config::Uplink {
                    weight: 0,
                    ..current[slot].0.clone()
                },
            })
            .collect();
        while retired.last() == Some(&true) {
            retired.pop();
            uplinks.pop();
        }
        (uplinks, retired)
    }
}
