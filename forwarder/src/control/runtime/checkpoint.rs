//! The state file from the daemon's side: taken from it at start, saved each second and at
//! shutdown (see [`crate::state`]).
//!
//! - Start: the saved secrets (stickiness seed, each uplink's pool secrets) go into the snapshot
//!   builder before the first snapshot; the saved flows are restored into the table before any
//!   worker runs; the TCP flows of uplinks that are gone or renumbered are reset towards their
//!   host once the reset socket is open (per-class failover at start).
//! - Each second: the copy and the write run on a blocking thread, off the control loop and
//!   without the daemon's lock (the table walk is weakly consistent, as `flowpin flows`).
//! - Shutdown: saved once more after the workers stopped, so a stop loses nothing.

use std::collections::HashMap;
use std::sync::Arc;

use flowpin_nat::{AllocatorSecret, TcpTracker};

use super::Daemon;
use crate::datapath::{FlowValue, Flows, Snapshot};
use crate::state::StateFile;
use crate::state::collect::collect;
use crate::state::model::SavedState;
use crate::state::restore::restore;

/// What a start takes from the saved state.
pub(super) struct Resumed {
    /// The stickiness hash's seed: the saved one, or a fresh one.
    pub seed: u64,
    /// The pools' secrets by uplink name.
    pub secrets: HashMap<String, [AllocatorSecret; 3]>,
    /// The saved state itself (`None`: start empty).
    pub saved: Option<SavedState>,
}

/// Reads the state file (or sets it aside with `fresh`).
pub(super) fn resume(file: &StateFile, fresh: bool) -> Resumed {
    let saved = if fresh {
        file.discard("flowpin run --fresh");
        None
    } else {
        file.load().map(|decoded| decoded.state)
    };
    Resumed {
        seed: saved
            .as_ref()
            .map_or_else(rand::random, |s| s.stickiness_seed),
        secrets: saved
            .iter()
            .flat_map(|s| &s.uplinks)
            .map(|u| (u.name.clone(), u.secrets))
            .collect(),
        saved,
    }
}

/// Restores `saved` into the table before the workers start; returns the TCP flows to reset.
pub(super) fn restore_flows(
    saved: &SavedState,
    snapshot: &Snapshot,
    flows: &Flows,
    now_ms: u64,
) -> Vec<(FlowValue, TcpTracker)> {
    let done = restore(saved, snapshot, flows, now_ms);
    tracing::info!(
        restored = done.flows,
        quarantines = done.quarantines,
        dropped = done.dropped(),
        uplink_gone = done.uplink_gone,
        address_changed = done.address_changed,
        expired = done.expired,
        invalid = done.invalid,
        port_conflict = done.port_conflict,
        forward_gone = done.forward_gone,
        key_taken = done.key_taken,
        "saved flows restored"
    );
    done.to_reset
}

impl Daemon {
    /// Resets towards their hosts the TCP flows the restore dropped with their uplink.
    pub(super) fn reset_dropped(&self, to_reset: &[(FlowValue, TcpTracker)]) {
        let Some(rst) = &self.rst else { return };
        for (value, tracker) in to_reset {
            let _ = rst.reset(value, *tracker);
        }
        if !to_reset.is_empty() {
            tracing::info!(
                reset = to_reset.len(),
                "TCP flows of uplinks gone since the last run reset"
            );
        }
    }

    /// Saves the state on a blocking thread (skipped while the previous save still runs).
    pub(super) fn checkpoint(&self) {
        let take = self.state_taker();
        let file = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || file.checkpoint(take));
    }

    /// Saves the state now, on this thread (shutdown, after the workers stopped), once the last
    /// second's checkpoint, if still running, is done.
    pub(super) fn save_state(&self) {
        self.state.wait_idle(std::time::Duration::from_secs(5));
        let take = self.state_taker();
        if self.state.checkpoint(take) {
            tracing::info!(file = %self.state.path().display(), flows = self.flows.table.len(), "state saved for the next start");
        }
    }

    /// What a save takes: the table, the published snapshot, the seed and the time, all owned.
    fn state_taker(&self) -> impl FnOnce() -> SavedState + Send + 'static {
        let flows = Arc::clone(&self.flows);
        let snapshot = self.cell.load_full();
        let seed = self.builder.seed();
        let boot_id = self.state.boot_id();
        let clock = self.clock;
        move || collect(&flows, &snapshot, seed, boot_id, clock.now_ms())
    }
}
