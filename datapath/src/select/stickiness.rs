//! Stickiness modes: which fields of a flow decide its uplink.
//!
//! Every flow whose fields agree on the mode's key goes out through the same uplink (as long as
//! that uplink stays eligible). The default, [`Stickiness::Endpoint`], is the only mode that is
//! both fine-grained and compatible with RFC 4787 endpoint-independent mapping (EIM): one internal
//! address:port always maps to one uplink and hence to one external address:port.

use std::fmt;

/// Which fields of a flow's 5-tuple form the key that pins it to an uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Stickiness {
    /// Protocol, source address and source port: the internal endpoint (default; keeps EIM).
    #[default]
    Endpoint,
    /// Source address only: every flow of a LAN host uses one uplink ("paired" pooling).
    Host,
    /// Source and destination address: like the kernel's L3 multipath hash; breaks EIM when
    /// one internal endpoint talks to destinations placed on different uplinks.
    HostDest,
    /// The whole 5-tuple: the finest spread, but one internal endpoint may appear at several
    /// external addresses, which breaks EIM (STUN, WebRTC, games, peer-to-peer).
    Flow,
}

impl Stickiness {
    /// The fields of the key, for humans.
    pub const fn key_fields(self) -> &'static str {
        match self {
            Stickiness::Endpoint => "protocol, source address, source port",
            Stickiness::Host => "source address",
            Stickiness::HostDest => "source address, destination address",
            Stickiness::Flow => {
                "protocol, source address, destination address, source port, destination port"
            }
        }
    }

    /// Whether the mode keeps RFC 4787 endpoint-independent mapping: only keys that hold no
    /// destination field do, since otherwise one internal endpoint talking to two destinations
    /// may be placed on two uplinks, hence at two external addresses.
    pub const fn keeps_eim(self) -> bool {
        matches!(self, Stickiness::Endpoint | Stickiness::Host)
    }

    /// What the mode means for the LAN's applications, for humans.
    pub const fn meaning(self) -> &'static str {
        match self {
            Stickiness::Endpoint => {
                "each internal address:port keeps one uplink and one external address:port for \
                 every destination (RFC 4787 endpoint-independent mapping holds); new TCP \
                 connections use new source ports, so the spread is close to per-connection"
            }
            Stickiness::Host => {
                "all traffic of a LAN host uses one uplink (safe for sites that pin a session to \
                 the client's address, e.g. banks); the spread is only as fine as the number of \
                 hosts; endpoint-independent mapping holds"
            }
            Stickiness::HostDest => {
                "all traffic between a LAN host and one destination address uses one uplink; one \
                 internal endpoint talking to several destinations may appear at several external \
                 addresses, which breaks endpoint-independent mapping"
            }
            Stickiness::Flow => {
                "every 5-tuple is placed on its own: the finest spread, but one internal endpoint \
                 may appear at several external addresses, which BREAKS endpoint-independent \
                 mapping (STUN, WebRTC, games and peer-to-peer applications may fail)"
            }
        }
    }
}

impl fmt::Display for Stickiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stickiness::Endpoint => "endpoint",
            Stickiness::Host => "host",
            Stickiness::HostDest => "host-dest",
            Stickiness::Flow => "flow",
        })
    }
}
