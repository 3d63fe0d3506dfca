//! The 5-tuple that identifies one direction of a flow.
//!
//! Invariant: for ICMP query messages (echo request / reply) the echo identifier stands in both port
//! fields, so the key of a request and the key of its reply are exact mirrors
//! ([`FlowKey::reversed`]) — RFC 5508 REQ-1a treats the identifier as the ICMP "port".

use crate::wire::ipv4::protocol;
use std::net::Ipv4Addr;

/// The transport protocols the translator handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum IpProtocol {
    /// ICMPv4 (queries by echo id; errors by their embedded packet).
    Icmp = protocol::ICMP,
    /// TCP.
    Tcp = protocol::TCP,
    /// UDP.
    Udp = protocol::UDP,
}

impl IpProtocol {
    /// The protocol for an IP protocol number, if handled.
    #[must_use]
    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            protocol::ICMP => Some(Self::Icmp),
            protocol::TCP => Some(Self::Tcp),
            protocol::UDP => Some(Self::Udp),
            _ => None,
        }
    }

    /// The IP protocol number.
    #[must_use]
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// One direction of a flow: protocol, addresses and ports (echo id for ICMP queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Transport protocol.
    pub protocol: IpProtocol,
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// Source port (echo id for ICMP).
    pub source_port: u16,
    /// Destination port (echo id for ICMP).
    pub destination_port: u16,
}

impl FlowKey {
    /// Length of [`FlowKey::to_bytes`].
    pub const BYTES: usize = 13;

    /// The key of the opposite direction (source and destination swapped).
    #[must_use]
    pub const fn reversed(self) -> Self {
        Self {
            protocol: self.protocol,
            source: self.destination,
            destination: self.source,
            source_port: self.destination_port,
            destination_port: self.source_port,
        }
    }

    /// A fixed-size encoding (protocol, source, destination, ports — network order), for hashing and
    /// for fixed-size flow-table keys.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; Self::BYTES] {
        let s = self.source.octets();
        let d = self.destination.octets();
        let sp = self.source_port.to_be_bytes();
        let dp = self.destination_port.to_be_bytes();
        [
            self.protocol.number(),
            s[0],
            s[1],
            s[2],
            s[3],
            d[0],
            d[1],
            d[2],
            d[3],
            sp[0],
            sp[1],
            dp[0],
            dp[1],
        ]
    }

    /// Decodes [`FlowKey::to_bytes`]; `None` for an unknown protocol number.
    #[must_use]
    pub const fn from_bytes(b: [u8; Self::BYTES]) -> Option<Self> {
        match IpProtocol::from_number(b[0]) {
            Some(protocol) => Some(Self {
                protocol,
                source: Ipv4Addr::new(b[1], b[2], b[3], b[4]),
                destination: Ipv4Addr::new(b[5], b[6], b[7], b[8]),
                source_port: u16::from_be_bytes([b[9], b[10]]),
                destination_port: u16::from_be_bytes([b[11], b[12]]),
            }),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_twice_is_identity_and_bytes_round_trip() {
        let key = FlowKey {
            protocol: IpProtocol::Udp,
            source: Ipv4Addr::new(10, 0, 0, 2),
            destination: Ipv4Addr::new(198, 51, 100, 7),
            source_port: 5000,
            destination_port: 53,
        };
        assert_eq!(key.reversed().source_port, 53);
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(FlowKey::from_bytes(key.to_bytes()), Some(key));
        assert_eq!(key.to_bytes()[0], 17);
        let mut bad = key.to_bytes();
        bad[0] = 50;
        assert_eq!(FlowKey::from_bytes(bad), None);
    }
}
