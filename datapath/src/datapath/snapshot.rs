//! The control plane's immutable view of the world, loaded by each worker once per batch.
//!
//! A snapshot is never mutated: the control plane builds a new one and swaps it in atomically
//! ([`SnapshotCell`]), so a batch sees one consistent uplink set, policy table and timeouts. The per-uplink
//! NAT port pools are shared (`Arc`) between consecutive snapshots: mappings outlive reloads.

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use flowpin_nat::{FlowKey, IpProtocol, PortAllocator, Timeouts};

use super::counters::DropReason;
use super::record::{FlowValue, Mac, Placement};
use crate::Ipv4Prefix;
use crate::select::{Decision, PolicyTable};

/// The LAN side of the router.
#[derive(Debug, Clone)]
pub struct LanView {
    /// The router's LAN interface MAC (source of frames sent to LAN hosts).
    pub mac: Mac,
    /// The router's LAN address (source of ICMP errors the datapath sends to LAN hosts).
    pub address: Ipv4Addr,
    /// The LAN interface MTU.
    pub mtu: u16,
    /// Sources allowed from the LAN; anything else is spoofed.
    pub prefixes: Vec<Ipv4Prefix>,
}

impl LanView {
    /// Whether `source` may appear on the LAN.
    #[inline]
    pub fn owns(&self, source: Ipv4Addr) -> bool {
        self.prefixes.iter().any(|p| p.contains(source))
    }

    /// Whether `source`, inside the LAN prefixes, is an address no LAN host may send from: the
    /// router's own LAN address, or a prefix's network or broadcast address (prefixes of /30 and
    /// shorter; /31 and /32 have none, RFC 3021). Checked for a flow's first packet only.
    #[inline]
    pub fn is_reserved_source(&self, source: Ipv4Addr) -> bool {
        source == self.address
            || self
                .prefixes
                .iter()
                .any(|p| p.prefix_len() <= 30 && (source == p.network() || source == p.broadcast()))
    }
}

/// The external port pools of one uplink, one per protocol (RFC 7857 §5: mappings are per protocol;
/// ICMP echo ids are the ICMP "ports"). They belong to the uplink, not to its address: when the
/// address changes (DHCP), its old flows are failed over and the old address's quarantines ended
/// (the control plane's renumbering failover).
#[derive(Debug)]
pub struct UplinkNat {
    /// TCP ports.
    pub tcp: PortAllocator,
    /// UDP ports.
    pub udp: PortAllocator,
    /// ICMP echo identifiers.
    pub icmp: PortAllocator,
}

impl UplinkNat {
    /// The pool for `protocol`.
    #[inline]
    pub fn pool(&self, protocol: IpProtocol) -> &PortAllocator {
        match protocol {
            IpProtocol::Tcp => &self.tcp,
            IpProtocol::Udp => &self.udp,
            IpProtocol::Icmp => &self.icmp,
        }
    }

    /// Ends every quarantine of the three pools (the uplink's address changed, see
    /// [`PortAllocator::end_quarantines`]); returns how many ports were still quarantined.
    pub fn end_quarantines(&self, now_ms: u64) -> usize {
        [&self.tcp, &self.udp, &self.icmp]
            .iter()
            .map(|pool| pool.end_quarantines(now_ms))
            .sum()
    }
}

/// One uplink as the datapath needs it.
#[derive(Debug, Clone)]
pub struct UplinkView {
    /// Configured name.
    pub name: String,
    /// Its external (masquerade) address.
    pub address: Ipv4Addr,
    /// Its interface MAC.
    pub mac: Mac,
    /// The gateway's MAC; `None` until the neighbour is resolved.
    pub gateway_mac: Option<Mac>,
    /// Its MTU.
    pub mtu: u16,
    /// The MSS that TCP SYNs leaving and SYN-ACKs entering through it announce at most (`None`: left
    /// as they are).
    pub mss_clamp: Option<u16>,
    /// Its port pools (shared across snapshots).
    pub nat: Arc<UplinkNat>,
}

/// Everything a worker reads per batch.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every snapshot the control plane publishes.
    pub generation: u64,
    /// The LAN side.
    pub lan: LanView,
    /// Uplinks by slot (the configuration's order); `None` for a slot no longer configured.
    pub uplinks: Vec<Option<UplinkView>>,
    /// Policy rules, stickiness and the per-group weighted choosers (health already applied).
    pub policy: PolicyTable,
    /// Flow timeouts.
    pub timeouts: Timeouts,
    /// LAN hosts' MACs from the kernel's neighbour table, sorted by address (hairpin targets).
    pub lan_neighbours: Vec<(Ipv4Addr, Mac)>,
    /// Whether inbound packets from any remote endpoint may reach a mapped internal endpoint (RFC 4787
    /// endpoint-independent filtering). When false, only the remote address:port a flow was opened to
    /// may answer (address- and port-dependent filtering, the strictest).
    pub endpoint_independent_filtering: bool,
    /// How many ICMP net unreachable answers each worker may send while no uplink is usable.
    pub net_unreachable: super::RateLimit,
    /// How many ICMP administratively prohibited answers each worker may send to new flows that got
    /// no external port (range exhausted or host quota reached).
    pub port_exhausted_icmp: super::RateLimit,
    /// How many ICMP fragmentation needed answers each worker may send out of an uplink to remote
    /// senders of packets too big for the LAN.
    pub frag_needed_to_uplink: super::RateLimit,
    /// How many ICMP fragmentation needed answers each worker may send to LAN hosts whose packets
    /// (DF set) are too big for their egress.
    pub frag_needed_to_lan: super::RateLimit,
    /// Whether the ports of unconfirmed flows early-dropped from a full table
    /// ([`super::Flows::early_drop`]) are freed at once; when false they keep their quarantine.
    pub early_drop_unanswered: bool,
    /// How much of the flow table one LAN host may hold while the table is under pressure.
    pub flow_share: super::FlowShare,
    /// The port forwards, and which uplinks may open forwarded flows now.
    pub forwards: super::ForwardTable,
}

impl Snapshot {
    /// The uplink in `slot`, if configured.
    #[inline]
    pub fn uplink(&self, slot: u8) -> Option<&UplinkView> {
        self.uplinks.get(usize::from(slot)).and_then(Option::as_ref)
    }

    /// The uplink whose NAT address is `address`, with its slot (uplinks sharing an interface are
    /// told apart by their addresses).
    pub fn uplink_addressed(&self, address: Ipv4Addr) -> Option<(u8, &UplinkView)> {
        (self.uplinks.iter().enumerate()).find_map(|(slot, view)| {
            let view = view.as_ref()?;
            (view.address == address).then_some((slot as u8, view))
        })
    }

    /// Gives a removed flow's reference on its external mapping back to its uplink's port pool (the
    /// last reference quarantines the port). Used by every path that removes flows: expiry, early drop.
    pub fn release_mapping(&self, value: &FlowValue, now_ms: u64) {
        if let Some((pool, (address, port), external)) = self.mapping_of(value) {
            let _ = pool.release(external, address, port, now_ms);
        }
    }

    /// Like [`Self::release_mapping`] for a flow that never got an answer (early drop): the last
    /// reference frees the port at once, without quarantine
    /// ([`PortAllocator::release_unanswered`]).
    pub fn release_unanswered_mapping(&self, value: &FlowValue, now_ms: u64) {
        if let Some((pool, (address, port), external)) = self.mapping_of(value) {
            let _ = pool.release_unanswered(external, address, port, now_ms);
        }
    }

    /// A flow's port pool, internal endpoint and external port; `None` for a forwarded flow, whose
    /// external port is its forward's and belongs to no pool.
    fn mapping_of(&self, value: &FlowValue) -> Option<(&PortAllocator, (Ipv4Addr, u16), u16)> {
        if value.placement == Placement::Forwarded {
            return None;
        }
        let uplink = self.uplink(value.uplink)?;
        let (_, external) = value.external_endpoint();
        Some((
            uplink.nat.pool(value.protocol()),
            value.internal_endpoint(),
            external,
        ))
    }

    /// The MAC of LAN host `address`, if the kernel's neighbour table knew it.
    #[inline]
    pub fn lan_neighbour(&self, address: Ipv4Addr) -> Option<Mac> {
        self.lan_neighbours
            .binary_search_by_key(&address, |(a, _)| *a)
            .ok()
            .map(|i| self.lan_neighbours[i].1)
    }

    /// The uplink of a new flow `key` whose policy decision is `decision`, and what decided it. Under a
    /// stickiness that keeps endpoint-independent mapping (`endpoint`, `host`): the group's member on
    /// which the flow's internal endpoint already has a live mapping, else the group's choice. A
    /// mapping outlives the weights and states it was chosen under (a reload, `set-weight`, an uplink
    /// coming back would otherwise send the endpoint's next flow elsewhere with a second mapping), so
    /// this keeps one external endpoint per internal endpoint (RFC 4787 REQ-1, RFC 5382 REQ-1) for as
    /// long as the mapping lives on an uplink the group may use. When the endpoint holds mappings on
    /// two members, the group's choice wins. Costs one quota-table probe per other member, plus a
    /// candidate scan where the host holds mappings. Under `host-dest` and `flow`, which are
    /// documented to break EIM, the group's choice always decides: those modes spread one endpoint's
    /// flows by their own key. Read-only: the datapath's first packet and `flowpin explain --new`
    /// both ask it.
    ///
    /// # Errors
    /// [`DropReason::NoUplink`] when the group has no eligible uplink.
    pub fn new_flow_uplink(
        &self,
        key: &FlowKey,
        decision: &Decision,
    ) -> Result<(u8, Placement), DropReason> {
        let chosen = decision
            .uplink
            .and_then(|i| u8::try_from(i).ok())
            .ok_or(DropReason::NoUplink)?;
        if !self.policy.stickiness().keeps_eim() {
            return Ok((chosen, Placement::Chosen));
        }
        let has_mapping = |slot: u8| {
            self.uplink(slot).is_some_and(|uplink| {
                uplink
                    .nat
                    .pool(key.protocol)
                    .mapping_of(key.source, key.source_port)
                    .is_some()
            })
        };
        let elsewhere = self
            .policy
            .group(decision.group)
            .members()
            .filter_map(|member| u8::try_from(member).ok())
            .find(|&member| member != chosen && has_mapping(member));
        Ok(match elsewhere {
            Some(mapped) if !has_mapping(chosen) => (mapped, Placement::JoinedLiveMapping),
            _ => (chosen, Placement::Chosen),
        })
    }

    /// The slot of the uplink whose external address is `address` (hairpin detection).
    #[inline]
    pub fn uplink_with_address(&self, address: Ipv4Addr) -> Option<u8> {
        self.uplinks
            .iter()
            .position(|u| u.as_ref().is_some_and(|u| u.address == address))
            .and_then(|i| u8::try_from(i).ok())
    }
}

/// The atomically swappable cell holding the current snapshot.
pub type SnapshotCell = ArcSwap<Snapshot>;
