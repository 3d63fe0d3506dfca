//! Mirror of `enum flowpin_decision`: what the XDP program did with a packet, one counter each.

use crate::c_layout as c;

/// What the program does with a packet of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `XDP_PASS`: the kernel's stack.
    Pass,
    /// `XDP_REDIRECT` into the AF_XDP socket of the (interface, queue).
    Redirect,
    /// `XDP_DROP`.
    Drop,
}

/// The decision counters' indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Decision {
    /// ARP, IPv6 (ND), anything that is not IPv4.
    PassNotIpv4 = c::PASS_NOT_IPV4,
    /// The ingress interface has no configuration.
    PassUnknownIface = c::PASS_UNKNOWN_IFACE,
    /// L2 or L3 broadcast / multicast (DHCP, ...).
    PassBroadcast = c::PASS_BROADCAST,
    /// TTL <= 1: the kernel answers with Time Exceeded.
    PassTtl = c::PASS_TTL,
    /// Addressed to one of the router's addresses (outside any hairpin range).
    PassLocal = c::PASS_LOCAL,
    /// To an uplink's address but outside its NAT range: the router's own traffic.
    PassUplinkOwn = c::PASS_UPLINK_OWN,
    /// A non-first fragment to an uplink's address (no ports to classify it by).
    PassUplinkFragment = c::PASS_UPLINK_FRAGMENT,
    /// Arrived on an uplink, addressed to neither the uplink nor the router.
    PassUplinkTransit = c::PASS_UPLINK_TRANSIT,
    /// Arrived on an uplink with a truncated or invalid IPv4 header: the kernel decides.
    PassUplinkMalformed = c::PASS_UPLINK_MALFORMED,
    /// LAN TCP/UDP/ICMP transit, to AF_XDP.
    RedirectLanTransit = c::REDIRECT_LAN_TRANSIT,
    /// LAN to an uplink's NAT address inside its range (hairpin), to AF_XDP.
    RedirectHairpin = c::REDIRECT_HAIRPIN,
    /// Uplink return traffic inside the NAT range (incl. ICMP errors about it), to AF_XDP.
    RedirectUplinkReturn = c::REDIRECT_UPLINK_RETURN,
    /// A non-first fragment to an uplink's address whose first fragment went to AF_XDP, or has not
    /// come yet (UDP, ICMP): the datapath follows or holds it.
    RedirectUplinkFragment = c::REDIRECT_UPLINK_FRAGMENT,
    /// LAN transit of a protocol NAT cannot translate (GRE, ESP, ...): dropped.
    DropUntranslatable = c::DROP_UNTRANSLATABLE,
    /// Arrived on the LAN with a truncated or invalid IPv4 header: dropped.
    DropMalformed = c::DROP_MALFORMED,
    /// Chosen for AF_XDP but no socket serves the queue: dropped (fail closed).
    DropNoSocket = c::DROP_NO_SOCKET,
    /// A LAN TCP SYN (without ACK) over its sender's admission budget: dropped before AF_XDP.
    DropAdmissionHost = c::DROP_ADMISSION_HOST,
    /// A LAN TCP SYN (without ACK) over the whole LAN's admission budget: dropped before AF_XDP.
    DropAdmissionLan = c::DROP_ADMISSION_LAN,
    /// A TCP SYN (without ACK) from an uplink to its NAT range over the inbound budget: dropped.
    DropAdmissionInbound = c::DROP_ADMISSION_INBOUND,
    /// Arrived on an uplink addressed to a LAN prefix (never return traffic): dropped.
    DropUplinkToLan = c::DROP_UPLINK_TO_LAN,
    /// Return traffic on a link-layer-less uplink (tun, PPP) that found no headroom for the
    /// synthetic Ethernet header AF_XDP frames carry: dropped (generic XDP guarantees 256 bytes,
    /// so this counts what should never happen).
    DropL3Headroom = c::DROP_L3_HEADROOM,
    /// Uplink TCP/UDP to a forwarded port of its address (`[[forward]]`), to AF_XDP.
    RedirectForward = c::REDIRECT_FORWARD,
}

impl Decision {
    /// Number of decisions (entries of the counters map).
    pub const COUNT: usize = c::DECISION_COUNT as usize;

    /// Every decision, in counter-index order.
    pub const ALL: [Decision; Self::COUNT] = [
        Self::PassNotIpv4,
        Self::PassUnknownIface,
        Self::PassBroadcast,
        Self::PassTtl,
        Self::PassLocal,
        Self::PassUplinkOwn,
        Self::PassUplinkFragment,
        Self::PassUplinkTransit,
        Self::PassUplinkMalformed,
        Self::RedirectLanTransit,
        Self::RedirectHairpin,
        Self::RedirectUplinkReturn,
        Self::RedirectUplinkFragment,
        Self::DropUntranslatable,
        Self::DropMalformed,
        Self::DropNoSocket,
        Self::DropAdmissionHost,
        Self::DropAdmissionLan,
        Self::DropAdmissionInbound,
        Self::DropUplinkToLan,
        Self::DropL3Headroom,
        Self::RedirectForward,
    ];

    /// The counter index.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The XDP action taken.
    pub const fn action(self) -> Action {
        match self {
            Self::PassNotIpv4
            | Self::PassUnknownIface
            | Self::PassBroadcast
            | Self::PassTtl
            | Self::PassLocal
            | Self::PassUplinkOwn
            | Self::PassUplinkFragment
            | Self::PassUplinkTransit
            | Self::PassUplinkMalformed => Action::Pass,
            Self::RedirectLanTransit
            | Self::RedirectHairpin
            | Self::RedirectUplinkReturn
            | Self::RedirectForward
            | Self::RedirectUplinkFragment => Action::Redirect,
            Self::DropUntranslatable
            | Self::DropMalformed
            | Self::DropNoSocket
            | Self::DropAdmissionHost
            | Self::DropAdmissionLan
            | Self::DropAdmissionInbound
            | Self::DropUplinkToLan
            | Self::DropL3Headroom => Action::Drop,
        }
    }

    /// A stable snake_case name for metrics and status output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PassNotIpv4 => "pass_not_ipv4",
            Self::PassUnknownIface => "pass_unknown_iface",
            Self::PassBroadcast => "pass_broadcast",
            Self::PassTtl => "pass_ttl",
            Self::PassLocal => "pass_local",
            Self::PassUplinkOwn => "pass_uplink_own",
            Self::PassUplinkFragment => "pass_uplink_fragment",
            Self::PassUplinkTransit => "pass_uplink_transit",
            Self::PassUplinkMalformed => "pass_uplink_malformed",
            Self::RedirectLanTransit => "redirect_lan_transit",
            Self::RedirectHairpin => "redirect_hairpin",
            Self::RedirectUplinkReturn => "redirect_uplink_return",
            Self::RedirectUplinkFragment => "redirect_uplink_fragment",
            Self::DropUntranslatable => "drop_untranslatable",
            Self::DropMalformed => "drop_malformed",
            Self::DropNoSocket => "drop_no_socket",
            Self::DropAdmissionHost => "drop_admission_host",
            Self::DropAdmissionLan => "drop_admission_lan",
            Self::DropAdmissionInbound => "drop_admission_inbound",
            Self::DropUplinkToLan => "drop_uplink_to_lan",
            Self::DropL3Headroom => "drop_l3_headroom",
            Self::RedirectForward => "redirect_forward",
        }
    }
}

const _: () = {
    let mut index = 0;
    while index < Decision::COUNT {
        assert!(
            Decision::ALL[index] as usize == index,
            "ALL out of counter-index order"
        );
        index += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed_by_their_action() {
        let mut names = std::collections::HashSet::new();
        for decision in Decision::ALL {
            let name = decision.name();
            assert!(names.insert(name), "duplicate name {name}");
            let prefix = match decision.action() {
                Action::Pass => "pass_",
                Action::Redirect => "redirect_",
                Action::Drop => "drop_",
            };
            assert!(
                name.starts_with(prefix),
                "{name} is not a {prefix} decision"
            );
        }
    }
}
