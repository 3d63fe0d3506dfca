//! Keeping the fail-closed forward guard in place while the daemon runs.
//!
//! Every second, on a task of its own, the daemon lists the guard table (one `nft` run) and, when the table or any of its
//! rules is gone (`nft flush ruleset` by a firewall reload, a hand edit), re-installs it for the LAN
//! and the live uplinks, logs at error and counts it (`flowpin status`: `guard reinstalls`; metrics:
//! `flowpin_guard_reinstalls_total`). A periodic check rather than a nftables netlink subscription:
//! it sees every way the guard can go (including a rule deleted from an intact table) with one short
//! process a second, and a second without the guard is covered by the pinned XDP links.

use std::sync::{Arc, Mutex};

use super::{Daemon, live_uplinks};
use crate::control::guard::{self, GuardSpec};

/// Re-installations of the guard since start, by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct GuardRepairs {
    /// The guard was found missing or altered and re-installed.
    pub reinstalled: u64,
    /// The guard was found missing or altered and `nft` refused to re-install it.
    pub failed: u64,
}

/// Re-installs the guard if it is not intact (see the module documentation). Runs on a blocking
/// thread of its own, not in the control loop: `nft` runs without the daemon's lock, which is taken
/// only to read the guard's interfaces and to count, so a slow process start never delays the
/// control loop's reaction to a kernel event.
pub(super) fn check(daemon: &Mutex<Daemon>) {
    if guard::is_intact() {
        return;
    }
    let spec = lock(daemon).guard_spec();
    let installed = spec.install();
    let mut d = lock(daemon);
    match installed {
        Ok(()) => {
            d.guard_repairs.reinstalled += 1;
            tracing::error!(
                table = guard::GUARD_TABLE,
                reinstalls = d.guard_repairs.reinstalled,
                "the forward guard was removed or altered (nft flush ruleset?): re-installed"
            );
        }
        Err(error) => {
            d.guard_repairs.failed += 1;
            tracing::error!(
                table = guard::GUARD_TABLE,
                %error,
                "the forward guard was removed or altered and cannot be re-installed"
            );
        }
    }
}

/// Checks the guard every [`PERIOD`], each check on a blocking thread, until the task is dropped.
pub(super) async fn watch(daemon: Arc<Mutex<Daemon>>) {
    let mut every = tokio::time::interval(PERIOD);
    loop {
        every.tick().await;
        let daemon = Arc::clone(&daemon);
        // A panic in one check is the daemon's lock poisoned: the control loop reports that itself.
        let _ = tokio::task::spawn_blocking(move || check(&daemon)).await;
    }
}

/// How often the guard is checked.
const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// The daemon, locked.
fn lock(daemon: &Mutex<Daemon>) -> std::sync::MutexGuard<'_, Daemon> {
    daemon.lock().expect("daemon lock")
}

impl Daemon {
    /// The guard for the LAN and the live uplinks.
    fn guard_spec(&mut self) -> GuardSpec {
        let lan = self.config.lan.interface.clone();
        let uplinks = live_uplinks(&self.config, &mut self.uplinks)
            .map(|(_, uplink, _)| uplink.interface.clone())
            .collect();
        GuardSpec { lan, uplinks }
    }
}
