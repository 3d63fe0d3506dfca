//! Port forwards on the daemon: the XDP program's forwarded ports, set at start and at every
//! reload, and the flows of a forward a reload changed or removed.
//!
//! Invariants:
//! - the forwarded-ports map always reflects the running configuration's `[[forward]]`s (the XDP
//!   program re-derives its keys when an uplink's address changes);
//! - a reload keeps the flows of every forward left as it was at the same place in the file, and
//!   removes the flows of the others (changed, moved or removed): their record names a forward by
//!   its index, and their target may be gone.

use crate::config::{Config, Forward};
use crate::control::failover::{PortRelease, remove_and_release};
use crate::datapath::Placement;
use crate::xdp::{ForwardPorts, XdpError, XdpProgram};

use super::Daemon;

/// The XDP program's view of `config`'s forwards: one entry per (forward, uplink, protocol).
pub(super) fn forward_ports(config: &Config) -> Vec<ForwardPorts> {
    let mut ports = Vec::new();
    for forward in &config.forwards {
        for uplink in &forward.uplinks {
            let Some(u) = config.uplinks.iter().find(|u| &u.name == uplink) else {
                continue;
            };
            for protocol in forward.protocol.protocols() {
                ports.push(ForwardPorts {
                    uplink: u.name.clone(),
                    protocol: protocol.ip_number(),
                    ports: forward.port.first()..=forward.port.last(),
                });
            }
        }
    }
    ports
}

/// Sets `config`'s forwarded ports in the XDP program.
pub(super) fn set_forward_ports(xdp: &mut XdpProgram, config: &Config) -> Result<(), XdpError> {
    xdp.set_forwards(forward_ports(config))
}

/// The indices of `before`'s forwards that `after` does not keep at the same index.
fn changed_forwards(before: &[Forward], after: &[Forward]) -> Vec<u8> {
    (before.iter().enumerate())
        .filter(|(i, forward)| after.get(*i) != Some(forward))
        .filter_map(|(i, _)| u8::try_from(i).ok())
        .collect()
}

impl Daemon {
    /// Asks the kernel to resolve every forward target it has no usable neighbour entry for (a
    /// datagram to its discard port makes it send the ARP request), so the first inbound packet of
    /// a forward finds the LAN server's MAC. Called once a second by the refresh.
    pub(super) fn solicit_forward_targets(&self) {
        let snapshot = self.cell.load();
        for forward in &self.config.forwards {
            if snapshot.lan_neighbour(forward.to).is_none()
                && let Err(error) = crate::control::netinfo::solicit_neighbour_on(
                    &self.config.lan.interface,
                    forward.to,
                )
            {
                tracing::debug!(%error, target = %forward.to, "soliciting a forward's LAN host");
            }
        }
    }

    /// After a reload from `before`: the new forwarded ports into XDP, and the flows of the
    /// forwards that changed removed. Returns how many flows were removed.
    pub(super) fn apply_forwards(&mut self, before: &[Forward]) -> usize {
        if let Some(xdp) = self.xdp.as_mut()
            && let Err(error) = set_forward_ports(xdp, &self.config)
        {
            tracing::error!(%error, "setting the forwarded ports in the XDP program");
        }
        let changed = changed_forwards(before, &self.config.forwards);
        if changed.is_empty() {
            return 0;
        }
        let snapshot = self.cell.load_full();
        let now_ms = self.clock.now_ms();
        let mut removed = 0;
        for flow in self.flows.table.live_flows(now_ms) {
            let value = flow.value;
            if value.placement == Placement::Forwarded
                && changed.contains(&value.policy)
                && remove_and_release(
                    &self.flows,
                    &snapshot,
                    flow.handle,
                    PortRelease::Quarantine,
                    now_ms,
                )
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "reload: flows of changed or removed forwards removed"
            );
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ForwardProtocol, PortRange};

    fn forward(name: &str, port: u16) -> Forward {
        Forward {
            name: name.to_owned(),
            uplinks: vec!["isp1".to_owned()],
            protocol: ForwardProtocol::Tcp,
            port: PortRange::new(port, port).unwrap(),
            to: std::net::Ipv4Addr::new(10, 0, 0, 5),
            to_port: PortRange::new(80, 80).unwrap(),
        }
    }

    #[test]
    fn a_forward_kept_in_place_keeps_its_flows_and_the_others_lose_theirs() {
        let before = [forward("a", 8080), forward("b", 8081), forward("c", 8082)];
        let after = [forward("a", 8080), forward("c", 8082)];
        assert_eq!(changed_forwards(&before, &after), [1, 2]);
        assert_eq!(changed_forwards(&before, &before), Vec::<u8>::new());
        let edited = [forward("a", 9090), forward("b", 8081), forward("c", 8082)];
        assert_eq!(changed_forwards(&before, &edited), [0]);
    }
}
