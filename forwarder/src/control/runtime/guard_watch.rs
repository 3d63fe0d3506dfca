//! Keeping the fail-closed forward guard in place while the daemon runs.
//!
//! Every second the daemon lists the guard table (one `nft` run) and, when the table or any of its
//! rules is gone (`nft flush ruleset` by a firewall reload, a hand edit), re-installs it for the LAN
//! and the live uplinks, logs at error and counts it (`flowpin status`: `guard reinstalls`; metrics:
//! `flowpin_guard_reinstalls_total`). A periodic check rather than a nftables netlink subscription:
//! it sees every way the guard can go (including a rule deleted from an intact table) with one short
//! process a second, and a second without the guard is covered by the pinned XDP links.

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

impl Daemon {
    /// Re-installs the guard if it is not intact (see the module documentation).
    pub(super) fn watch_guard(&mut self) {
        if guard::is_intact() {
            return;
        }
        let spec = self.guard_spec();
        match spec.install() {
            Ok(()) => {
                self.guard_repairs.reinstalled += 1;
                tracing::error!(
                    table = guard::GUARD_TABLE,
                    reinstalls = self.guard_repairs.reinstalled,
                    "the forward guard was removed or altered (nft flush ruleset?): re-installed"
                );
            }
            Err(error) => {
                self.guard_repairs.failed += 1;
                tracing::error!(
                    table = guard::GUARD_TABLE,
                    %error,
                    "the forward guard was removed or altered and cannot be re-installed"
                );
            }
        }
    }

    /// The guard for the LAN and the live uplinks.
    fn guard_spec(&mut self) -> GuardSpec {
        let lan = self.config.lan.interface.clone();
        let uplinks = live_uplinks(&self.config, &mut self.uplinks)
            .map(|(_, uplink, _)| uplink.interface.clone())
            .collect();
        GuardSpec { lan, uplinks }
    }
}
