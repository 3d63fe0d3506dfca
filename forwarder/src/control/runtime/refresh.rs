//! Re-reading the kernel: interfaces, gateways and LAN neighbours, the XDP program's addresses, and
//! the flows an uplink's address change left behind.
//!
//! Order of one refresh, and why:
//! 1. read the facts (a gateway is solicited only on a link that carries packets);
//! 2. re-write the XDP maps first: return traffic to a new address must reach AF_XDP before flows
//!    use it;
//! 3. publish when the facts or the LAN neighbours changed;
//! 4. then fail over the renumbered uplinks' old-address flows: a moved flow's next packet must open
//!    its new flow on the new address. The uplinks renumbered at the previous refresh are looked at
//!    once more (a worker may have opened a flow from the snapshot it loaded before the publish).

use super::{Daemon, kernel};
use crate::control::failover;
use crate::control::snapshot::UplinkFacts;
use crate::xdp::XdpProgram;

impl Daemon {
    /// Re-reads interfaces and neighbours; publishes a new snapshot when anything changed.
    pub(super) fn refresh(&mut self) {
        let facts: Vec<Option<UplinkFacts>> = self
            .config
            .uplinks
            .iter()
            .zip(&self.uplinks)
            .map(|(u, runtime)| {
                (!runtime.retired)
                    .then_some(u)
                    .and_then(kernel::refreshed_uplink_facts)
            })
            .collect();
        let renumbered = self.sync_xdp_addresses(&facts);
        self.solicit_forward_targets();
        if self.kernel_view_changed(&facts) {
            self.facts = facts;
            self.update_probing();
            self.publish();
        }
        self.fail_over_renumbered(renumbered);
        self.note_states();
        self.sample_traffic();
    }

    /// Do `facts` or the LAN's neighbours differ from what the current snapshot was built from?
    fn kernel_view_changed(&self, facts: &[Option<UplinkFacts>]) -> bool {
        if !kernel::same_facts(facts, &self.facts) {
            return true;
        }
        let mut neighbours = kernel::lan_neighbours(&self.lan.name);
        neighbours.sort_unstable_by_key(|(a, _)| *a);
        neighbours.dedup_by_key(|(a, _)| *a);
        neighbours != self.cell.load().lan_neighbours
    }

    /// Fails over, per `[failover]` (`keep` as `move`), the flows that the uplinks in `renumbered`
    /// (their address just changed) still carry with an old address, and ends the quarantines of their
    /// port pools (they guarded the old address's ports). The uplinks renumbered at the previous
    /// refresh are looked at once more. Logged once per renumbering, at info; counted as a failover of
    /// the uplink.
    pub(super) fn fail_over_renumbered(&mut self, renumbered: Vec<usize>) {
        let previous = std::mem::replace(&mut self.renumbered, renumbered.clone());
        let again = previous
            .into_iter()
            .filter(|slot| !renumbered.contains(slot));
        let passes = renumbered.iter().map(|&slot| (slot, true));
        for (slot, first_pass) in passes.chain(again.map(|slot| (slot, false))) {
            self.fail_over_old_address(slot, first_pass);
        }
    }

    /// One pass over uplink `slot`'s flows still on an old address (the first pass also ends the
    /// quarantines of its port pools).
    fn fail_over_old_address(&mut self, slot: usize, first_pass: bool) {
        let snapshot = self.cell.load();
        let now_ms = self.clock.now_ms();
        let Some(uplink) = snapshot.uplink(slot as u8) else {
            return;
        };
        let unquarantined = if first_pass {
            uplink.nat.end_quarantines(now_ms)
        } else {
            0
        };
        let report = failover::fail_over_renumbered(
            &self.flows,
            &snapshot,
            slot as u8,
            &self.config.failover,
            self.rst.as_ref(),
            now_ms,
        );
        let failed_over = report.moved + report.reset;
        if failed_over > 0 {
            let u = &mut self.uplinks[slot];
            u.failovers += 1;
            u.flows_failed_over += failed_over;
        }
        if first_pass || failed_over > 0 {
            tracing::info!(
                uplink = %self.config.uplinks[slot].name,
                address = %uplink.address,
                moved = report.moved,
                reset = report.reset,
                ports_unquarantined = unquarantined,
                "uplink address changed: flows on the old address failed over"
            );
        }
    }

    /// Keeps the XDP maps in step with the kernel's addresses (every refresh): an uplink whose address
    /// changed (a DHCP renewal with a new address) is reconfigured with it, so return traffic to the
    /// new address reaches flowpin; the router's host addresses are re-set. Each change is logged once,
    /// at info. Returns the slots of the uplinks reconfigured with a new address.
    fn sync_xdp_addresses(&mut self, facts: &[Option<UplinkFacts>]) -> Vec<usize> {
        let Some(xdp) = self.xdp.as_mut() else {
            return Vec::new();
        };
        let renumbered = sync_uplink_addresses(xdp, &self.config, facts);
        sync_host_addresses(xdp, self.lan_address);
        renumbered
    }
}

/// Which uplinks' addresses changed, each re-written in the program's maps?
fn sync_uplink_addresses(
    xdp: &mut XdpProgram,
    config: &crate::config::Config,
    facts: &[Option<UplinkFacts>],
) -> Vec<usize> {
    let mut renumbered = Vec::new();
    let ports = config.nat.port_range;
    for (slot, (u, fact)) in config.uplinks.iter().zip(facts).enumerate() {
        // Retired or without an address now: the map keeps the last address until a new one.
        let Some(fact) = fact else { continue };
        let Some(previous) = xdp.uplink_address(&u.name) else {
            continue;
        };
        if previous == fact.address {
            continue;
        }
        match xdp.configure_uplink(
            &u.interface,
            &u.name,
            fact.address,
            ports.first()..=ports.last(),
        ) {
            Ok(_) => {
                renumbered.push(slot);
                tracing::info!(
                    uplink = %u.name,
                    from = %previous,
                    to = %fact.address,
                    "uplink address changed: return traffic to the new address goes to flowpin"
                );
            }
            Err(error) => {
                tracing::warn!(uplink = %u.name, %error, "configuring XDP for the uplink's new address");
            }
        }
    }
    renumbered
}

/// Does the program pass traffic to every current address of the router to the kernel?
fn sync_host_addresses(xdp: &mut XdpProgram, lan_address: std::net::Ipv4Addr) {
    let Some(addresses) = kernel::host_addresses(lan_address) else {
        return;
    };
    match xdp.set_host_addresses(&addresses) {
        Ok(change) if change.is_empty() => {}
        Ok(change) => tracing::info!(
            added = ?change.added,
            removed = ?change.removed,
            "router addresses changed: XDP passes traffic to them to the kernel"
        ),
        Err(error) => {
            tracing::warn!(%error, "updating the router's addresses in the XDP map");
        }
    }
}
