//! The fields of a new flow that uplink selection looks at.

use std::net::Ipv4Addr;

/// A flow's LAN-side 5-tuple as seen on its first packet.
///
/// For ICMP queries the "ports" are the echo identifier (`src_port`) and 0 (`dst_port`), the
/// same convention the NAT uses for ICMP query mappings (RFC 5508).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub proto: u8,
    /// Source (LAN host) address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (ICMP: echo identifier).
    pub src_port: u16,
    /// Destination port (ICMP: 0).
    pub dst_port: u16,
}
