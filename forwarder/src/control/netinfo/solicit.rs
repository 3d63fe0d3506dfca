//! Making the kernel resolve a gateway's MAC: a datagram to the gateway's discard port (9) from a socket
//! bound to the uplink's device (`SO_BINDTODEVICE`). The kernel sends the ARP request itself out of that
//! device and queues the datagram until the gateway answers (or drops it if nobody does).
//!
//! Binding to the device matters when two uplinks share a gateway address (two modems both at
//! 192.168.1.1, say): an unbound datagram follows the routing table out of one of them only, so only that
//! uplink's gateway would ever be resolved.
//!
//! Invariant: a send error (`EHOSTUNREACH` once resolution has failed, say) is not an error — it says
//! nothing the neighbour table will not say; failing to open or bind the socket is.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The discard port: a datagram that reaches the gateway is dropped there.
const DISCARD_PORT: u16 = 9;

/// Sends the soliciting datagram to `gateway` out of `device` (`None`: wherever the routing table says).
pub(super) fn send_probe(device: Option<&str>, gateway: Ipv4Addr) -> Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .context("opening a UDP socket to solicit a neighbour")?;
    if let Some(device) = device {
        socket
            .bind_device(Some(device.as_bytes()))
            .with_context(|| format!("binding a UDP socket to device {device:?}"))?;
    }
    let target = SockAddr::from(SocketAddrV4::new(gateway, DISCARD_PORT));
    // Errors are expected while the neighbour is unresolved; see the module invariant.
    let _ = socket.send_to(&[0], &target);
    Ok(())
}

/// Whether `address` lies in `network/prefix_len`.
pub(super) fn in_subnet(address: Ipv4Addr, network: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    u32::from(address) & mask == u32::from(network) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_membership() {
        let gw: Ipv4Addr = "192.168.1.1".parse().unwrap();
        assert!(in_subnet(gw, "192.168.1.20".parse().unwrap(), 24));
        assert!(!in_subnet(gw, "192.168.2.20".parse().unwrap(), 24));
        assert!(in_subnet(gw, "10.0.0.1".parse().unwrap(), 0));
        assert!(!in_subnet(gw, "192.168.1.2".parse().unwrap(), 32));
        assert!(in_subnet(gw, "192.168.1.1".parse().unwrap(), 32));
    }
}
