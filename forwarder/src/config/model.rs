//! The validated configuration: what the rest of flowpin reads.
//!
//! Invariants (established by [`super::parse`], relied on by the control plane and
//! [`crate::select`]):
//! - at least one uplink; uplink names unique; no uplink on the LAN interface; uplinks sharing an
//!   interface have distinct `address`es (at most one unset); at least one uplink weight above 0;
//! - every policy names existing uplinks ([`PolicyUplink::index`] points into
//!   [`Config::uplinks`]) and has a positive total weight;
//! - timeouts are whole seconds at or above the RFC floors; ICMP is refreshed by outbound
//!   packets only;
//! - the NAT port range starts at 1024 or above and does not overlap the router's
//!   `ip_local_port_range` when one was given.
//!
//! Serialising a [`Config`] ([`Config::to_toml`]) yields a file that parses back to an equal
//! [`Config`]; field names are those of the file.

use std::fmt;
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use flowpin_nat::{RefreshPolicy, TimeoutKind, Timeouts};

use super::mss_clamp::MssClamp;
use super::{Failback, Failover, Health, Ipv4Prefix, Metrics, PortRange, Protocol, Stickiness};

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The LAN side.
    pub lan: Lan,
    /// The uplinks, in file order (their index is the uplink's number everywhere in flowpin).
    #[serde(rename = "uplink")]
    pub uplinks: Vec<Uplink>,
    /// NAT behaviour.
    pub nat: Nat,
    /// Policy rules, in file order; the first that matches a new flow decides its uplink group.
    #[serde(rename = "policy", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// Datapath sizing and modes.
    pub datapath: Datapath,
    /// The control socket.
    pub control: Control,
    /// Uplink health checking.
    pub health: Health,
    /// What happens to a dead uplink's flows.
    pub failover: Failover,
    /// What happens when an uplink comes back.
    pub failback: Failback,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
    /// The router's own traffic.
    pub router: Router,
    /// `[[forward]]`: inbound port forwards, in file order.
    #[serde(rename = "forward", skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<Forward>,
}

/// `[lan]`: the interface facing the hosts and the prefixes they use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lan {
    /// The LAN interface name.
    pub interface: String,
    /// The LAN's prefixes: packets from other sources are dropped as spoofed.
    pub prefixes: Vec<Ipv4Prefix>,
}

impl Lan {
    /// Whether `address` is a legitimate LAN source.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.prefixes.iter().any(|prefix| prefix.contains(address))
    }
}

/// `[[uplink]]`: one internet uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uplink {
    /// Unique name, used by policies, the CLI and metrics.
    pub name: String,
    /// The interface name (other uplinks may share it, each with its own `address`).
    pub interface: String,
    /// The next hop (its MAC is learnt from the kernel's neighbour table).
    pub gateway: Ipv4Addr,
    /// The external (SNAT) address; `None`: the interface's address at run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Relative share of new flows; 0 = standby (new flows only when no weighted uplink of its
    /// tier is eligible).
    pub weight: u32,
    /// Its tier, 1 (best) to 255: new flows use the best tier that has an eligible uplink.
    pub tier: u8,
    /// How far TCP SYNs leaving and SYN-ACKs entering through it have their MSS lowered; `None`
    /// (absent): to its MTU when that is below the LAN's ([`MssClamp::limit`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss_clamp: Option<MssClamp>,
    /// Its own `[uplink.health]`, already merged over `[health]`; `None`: `[health]` as it is.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::resilience::serialize_uplink_health"
    )]
    pub health: Option<Health>,
}

impl Uplink {
    /// The default tier.
    pub const DEFAULT_TIER: u8 = 1;
}

/// `[nat]`: translation behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nat {
    /// External ports handed out on every uplink address.
    pub port_range: PortRange,
    /// Which fields of a flow pin it to an uplink.
    pub stickiness: Stickiness,
    /// Idle timeouts (`[nat.timeouts]`, whole seconds in the file) and what refreshes them:
    /// `udp_refresh` is `[nat] udp_refresh_on_inbound` (RFC 4787 REQ-6 makes inbound refresh
    /// optional); `icmp_refresh` is always outbound-only.
    pub timeouts: Timeouts,
    /// Which inbound packets a mapping admits.
    pub filtering: Filtering,
    /// Most mappings (external ports) one LAN host may hold per uplink address and protocol (RFC 6888
    /// REQ-4), a CGN-style hard quota; `None` (the default): no hard quota, only the fair share of a
    /// pool under pressure limits a host (see `flowpin_nat::port_alloc`).
    pub ports_per_host: Option<u32>,
    /// Whether the ports of unconfirmed flows removed to make room in a full flow table (always
    /// done, like conntrack's early drop) are freed at once (the default). Off: they keep their
    /// 120 s quarantine (RFC 6888 REQ-8), and a flood of new endpoints can park the whole range.
    pub early_drop_unanswered: bool,
    /// A new flow refused because its uplink's ports ran out or its host holds its quota gets an
    /// ICMP administratively prohibited (3/13): at most this many per second per worker (0: none).
    pub port_exhausted_icmp_per_s: u32,
    /// ... and at most this many at once (the token bucket's depth).
    pub port_exhausted_icmp_burst: u32,
    /// A LAN packet too big for its egress with DF set gets an ICMP fragmentation needed: at most
    /// this many per second per worker (0: none; the packet is dropped either way).
    pub frag_needed_icmp_per_s: u32,
    /// ... and at most this many at once (the token bucket's depth).
    pub frag_needed_icmp_burst: u32,
}

impl Nat {
    /// Default sustained rate of port-exhaustion answers per worker.
    pub const DEFAULT_PORT_EXHAUSTED_ICMP_PER_S: u32 = 100;
    /// Default burst of port-exhaustion answers per worker.
    pub const DEFAULT_PORT_EXHAUSTED_ICMP_BURST: u32 = 50;
    /// Default sustained rate of fragmentation-needed answers to LAN hosts per worker.
    pub const DEFAULT_FRAG_NEEDED_ICMP_PER_S: u32 = 100;
    /// Default burst of fragmentation-needed answers to LAN hosts per worker.
    pub const DEFAULT_FRAG_NEEDED_ICMP_BURST: u32 = 50;

    /// Whether inbound packets refresh a UDP mapping (`[nat] udp_refresh_on_inbound`).
    pub fn udp_refresh_on_inbound(&self) -> bool {
        self.timeouts.udp_refresh == RefreshPolicy::Bidirectional
    }
}

/// Written as the file has it: `udp_refresh_on_inbound` in `[nat]`, `[nat.timeouts]` in seconds.
impl Serialize for Nat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut nat = serializer.serialize_struct("Nat", 11)?;
        nat.serialize_field("port_range", &self.port_range)?;
        nat.serialize_field("stickiness", &self.stickiness)?;
        nat.serialize_field("timeouts", &TimeoutsInSeconds(&self.timeouts))?;
        nat.serialize_field("udp_refresh_on_inbound", &self.udp_refresh_on_inbound())?;
        nat.serialize_field("filtering", &self.filtering)?;
        match self.ports_per_host {
            Some(quota) => nat.serialize_field("ports_per_host", &quota)?,
            None => nat.skip_field("ports_per_host")?,
        }
        nat.serialize_field("early_drop_unanswered", &self.early_drop_unanswered)?;
        nat.serialize_field("port_exhausted_icmp_per_s", &self.port_exhausted_icmp_per_s)?;
        nat.serialize_field("port_exhausted_icmp_burst", &self.port_exhausted_icmp_burst)?;
        nat.serialize_field("frag_needed_icmp_per_s", &self.frag_needed_icmp_per_s)?;
        nat.serialize_field("frag_needed_icmp_burst", &self.frag_needed_icmp_burst)?;
        nat.end()
    }
}

/// `[nat.timeouts]`: the four idle timeouts in seconds.
struct TimeoutsInSeconds<'a>(&'a Timeouts);

impl Serialize for TimeoutsInSeconds<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut table = serializer.serialize_map(Some(TimeoutKind::ALL.len()))?;
        for kind in TimeoutKind::ALL {
            table.serialize_entry(timeout_key(kind), &(self.0.ms(kind) / 1000))?;
        }
        table.end()
    }
}

/// The key of a timeout in `[nat.timeouts]`.
pub(super) const fn timeout_key(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Udp => "udp",
        TimeoutKind::TcpEstablished => "tcp_established",
        TimeoutKind::TcpTransitory => "tcp_transitory",
        TimeoutKind::Icmp => "icmp",
    }
}

/// Inbound filtering of a mapping (RFC 4787 §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Inbound packets only from the remote address *and port* a flow was opened to (default): the
    /// strictest filtering of RFC 4787 §5, and what a flow table keyed by the full 5-tuple gives.
    #[default]
    AddressAndPortDependent,
    /// Inbound TCP/UDP packets from anyone to a live mapping open a flow to its internal endpoint
    /// ("full cone"; RFC 4787 REQ-8 recommends it where application transparency matters most).
    EndpointIndependent,
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
            Filtering::EndpointIndependent => "endpoint-independent",
        })
    }
}

/// `[[policy]]`: a rule steering matching new flows to an uplink group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Unique name (shown by `flowpin explain`).
    pub name: String,
    /// What a new flow must match; an empty match matches every flow.
    #[serde(rename = "match")]
    pub matcher: PolicyMatch,
    /// The group: one or more uplinks with their weights.
    pub uplinks: Vec<PolicyUplink>,
}

/// `[policy.match]`: every present criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyMatch {
    /// Source prefixes (any of them); empty = any source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<Ipv4Prefix>,
    /// Destination prefixes (any of them); empty = any destination.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dst: Vec<Ipv4Prefix>,
    /// Protocol; `None` = any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<Protocol>,
    /// Destination port range (TCP and UDP flows only); `None` = any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<PortRange>,
    /// DSCP code point (0..=63) of the flow's first packet; `None` = any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dscp: Option<u8>,
}

/// One member of a policy's uplink group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyUplink {
    /// The uplink's name.
    pub name: String,
    /// The uplink's index in [`Config::uplinks`].
    pub index: usize,
    /// The weight inside this group; `None`: the uplink's own (possibly changed at run time)
    /// weight.
    pub weight: Option<u32>,
    /// The tier inside this group; `None`: the uplink's own tier.
    pub tier: Option<u8>,
}

impl Serialize for PolicyUplink {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.weight.is_none() && self.tier.is_none() {
            return serializer.serialize_str(&self.name);
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        if let Some(weight) = self.weight {
            map.serialize_entry("weight", &weight)?;
        }
        if let Some(tier) = self.tier {
            map.serialize_entry("tier", &tier)?;
        }
        map.end()
    }
}

/// `[datapath]`: workers, AF_XDP mode, idle strategy and sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Datapath {
    /// Worker threads.
    pub workers: Workers,
    /// AF_XDP bind mode.
    pub mode: XdpMode,
    /// What a worker does when no packet is waiting.
    pub idle: IdleStrategy,
    /// Flow table capacity (flows), fixed at start.
    pub flow_capacity: u32,
    /// UMEM frames per worker (a power of two).
    pub frames_per_worker: u32,
    /// The flow table is under pressure once this percentage of it is in use (1–100): then a LAN
    /// host holding its fair share of the table gets no new flow (see `flowpin_datapath::flow_share`).
    pub flow_share_pressure_percent: u8,
    /// The least fair share of the flow table a LAN host has, in flows (1 to `flow_capacity`).
    pub flow_share_floor: u32,
    /// CPU ids workers are pinned to: worker `i` on `cpus[i % len]`. Empty (the key absent): every
    /// CPU the daemon may run on. Not empty, no duplicate, and (when the machine's online CPUs were
    /// given to validation) each one online.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u32>,
    /// The name of this instance's pin directory, `/sys/fs/bpf/flowpin/<name>/`, where the XDP links
    /// are pinned. `None` (the key absent): the LAN interface's name. One path component of
    /// `[A-Za-z0-9_.-]`, at most [`Datapath::PIN_NAME_MAX`] characters, not `.` or `..`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_name: Option<String>,
    /// TCP SYNs (without ACK) one LAN sender (source MAC) may open per second, checked in XDP
    /// before the AF_XDP ring; 0: no per-sender budget.
    pub syn_per_host_per_s: u32,
    /// ... and at once (the bucket's depth).
    pub syn_per_host_burst: u32,
    /// TCP SYNs (without ACK) the whole LAN may open per second; 0: no LAN budget.
    pub syn_per_s: u32,
    /// ... and at once.
    pub syn_burst: u32,
    /// TCP SYNs (without ACK) from the uplinks to their NAT ranges per second, all uplinks
    /// together; 0: no inbound budget.
    pub inbound_syn_per_s: u32,
    /// ... and at once.
    pub inbound_syn_burst: u32,
    /// IPv4 datagrams whose fragments' translation each worker remembers at once.
    pub fragment_datagrams: u32,
    /// Later IPv4 fragments each worker holds at once while their first has not come.
    pub fragment_held: u32,
    /// Seconds a datagram's translation, or a held fragment, lives after its last fragment.
    pub fragment_timeout: u32,
}

impl Datapath {
    /// Default `syn_per_host_per_s`: far above what a host opens in normal use (a browser opens
    /// tens of connections for a page), far below what one host's flood offers.
    pub const DEFAULT_SYN_PER_HOST_PER_S: u32 = 2_000;
    /// Default `syn_per_host_burst`: two seconds' worth.
    pub const DEFAULT_SYN_PER_HOST_BURST: u32 = 4_000;
    /// Default `syn_per_s`: ten hosts at their full budget; well under what one worker sets up.
    pub const DEFAULT_SYN_PER_S: u32 = 20_000;
    /// Default `syn_burst`: two seconds' worth.
    pub const DEFAULT_SYN_BURST: u32 = 40_000;
    /// Default `inbound_syn_per_s`: inbound SYNs to a NAT port open only port-forwarded or
    /// endpoint-independent mappings (or simultaneous opens), rare on a home/SMB uplink.
    pub const DEFAULT_INBOUND_SYN_PER_S: u32 = 5_000;
    /// Default `inbound_syn_burst`: two seconds' worth.
    pub const DEFAULT_INBOUND_SYN_BURST: u32 = 10_000;

    /// The XDP program's admission budgets.
    pub fn admission(&self) -> flowpin_bpf::Admission {
        let budget = |per_s, burst| flowpin_bpf::Budget { per_s, burst };
        flowpin_bpf::Admission {
            host: budget(self.syn_per_host_per_s, self.syn_per_host_burst),
            lan: budget(self.syn_per_s, self.syn_burst),
            inbound: budget(self.inbound_syn_per_s, self.inbound_syn_burst),
        }
    }

    /// Default `fragment_datagrams`.
    pub const DEFAULT_FRAGMENT_DATAGRAMS: u32 = 4096;
    /// Default `fragment_held`.
    pub const DEFAULT_FRAGMENT_HELD: u32 = 64;
    /// Default `fragment_timeout` (seconds): fragments of one datagram are sent back to back.
    pub const DEFAULT_FRAGMENT_TIMEOUT: u32 = 2;
    /// The longest fragment (whole frame) a worker holds: an AF_XDP frame.
    pub const FRAGMENT_HELD_BYTES: usize = 4096;

    /// The bounds of each worker's IPv4 fragment state.
    pub fn fragment_limits(&self) -> flowpin_nat::FragmentLimits {
        flowpin_nat::FragmentLimits {
            datagrams: self.fragment_datagrams as usize,
            timeout_ms: u64::from(self.fragment_timeout) * 1000,
            held: self.fragment_held as usize,
            held_bytes: Self::FRAGMENT_HELD_BYTES,
        }
    }

    /// Longest `pin_name`.
    pub const PIN_NAME_MAX: usize = 64;

    /// The pin directory's name: `pin_name`, else the LAN interface's name.
    pub fn pin_name<'a>(&'a self, lan_interface: &'a str) -> &'a str {
        self.pin_name.as_deref().unwrap_or(lan_interface)
    }

    /// Default flow table capacity.
    pub const DEFAULT_FLOW_CAPACITY: u32 = 1 << 18;
    /// Default UMEM frames per worker: enough (64 MiB of 4 KiB frames) for each of a LAN and two
    /// uplinks to keep a full 2048-entry fill ring, i.e. 20 ms of reception at 100 kpps while the
    /// worker is off its CPU (4096 frames kept 12.8 ms, and lost 1–10 % of a 100 kpps new-flow load
    /// on a busy 2-core machine to `rx_fill_ring_empty_descs`).
    pub const DEFAULT_FRAMES_PER_WORKER: u32 = 16384;
    /// Default `flow_share_pressure_percent`.
    pub const DEFAULT_FLOW_SHARE_PRESSURE_PERCENT: u8 = 75;
    /// Default `flow_share_floor`.
    pub const DEFAULT_FLOW_SHARE_FLOOR: u32 = 256;
}

/// How many worker threads to run. Worker `i` serves receive queue `i` of every attached interface,
/// so at start every one must have exactly this many receive queues
/// ([`crate::control::queues`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workers {
    /// One per receive queue of the LAN interface (decided at start; every uplink must match).
    #[default]
    Auto,
    /// Exactly this many (every attached interface must have this many receive queues).
    Count(NonZeroU16),
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Count(count) => write!(f, "{count}"),
        }
    }
}

impl Serialize for Workers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => serializer.serialize_str("auto"),
            Workers::Count(count) => serializer.serialize_u16(count.get()),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WorkersVisitor;
        impl serde::de::Visitor<'_> for WorkersVisitor {
            type Value = Workers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a number of workers (1-65535)")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Workers, E> {
                match text {
                    "auto" => Ok(Workers::Auto),
                    _ => Err(E::custom(format!(
                        "`{text}`: expected \"auto\" or a number"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<Workers, E> {
                u16::try_from(count)
                    .ok()
                    .and_then(NonZeroU16::new)
                    .map(Workers::Count)
                    .ok_or_else(|| E::custom(format!("{count} workers: must be 1-65535")))
            }
        }
        deserializer.deserialize_any(WorkersVisitor)
    }
}

/// AF_XDP bind mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Zero-copy where the driver supports it, copy otherwise.
    #[default]
    Auto,
    /// Copy mode (the only mode on veth).
    Copy,
    /// Zero-copy; start fails where the driver lacks it.
    Zerocopy,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Copy => "copy",
            XdpMode::Zerocopy => "zerocopy",
        })
    }
}

/// What a worker does when its rings are empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleStrategy {
    /// Spin on the rings: lowest latency, one full core per worker.
    BusyPoll,
    /// Sleep in `poll()` with need_wakeup until packets arrive (default).
    #[default]
    Poll,
}

impl fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdleStrategy::BusyPoll => "busy-poll",
            IdleStrategy::Poll => "poll",
        })
    }
}

/// `[control]`: the daemon's Unix socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Control {
    /// Path of the root-only Unix socket serving `flowpin status`, `flows`, `reload`.
    pub socket: PathBuf,
}

impl Control {
    /// The default socket path.
    pub const DEFAULT_SOCKET: &'static str = "/run/flowpin/flowpin.sock";
}

/// `[router]`: the router's own traffic (its resolver, NTP, updates, VPN client).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Router {
    /// What flowpin does with the router's default route.
    pub default_route: DefaultRoute,
}

/// `[router] default_route`: which uplinks the router's own traffic leaves by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultRoute {
    /// A multipath default over the usable uplinks of the best tier in use, weighted like new flows.
    #[default]
    Multipath,
    /// A default via the one best usable uplink (best tier, then highest weight, then file order).
    Best,
    /// flowpin leaves the router's default route alone (an admin's routing daemon owns it).
    Unmanaged,
}

impl DefaultRoute {
    /// The name the file uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Multipath => "multipath",
            Self::Best => "best",
            Self::Unmanaged => "unmanaged",
        }
    }
}

impl Config {
    /// The health settings uplink `slot` is probed with: its `[uplink.health]` or `[health]`,
    /// resolved for its gateway ([`Health::resolved_for`]).
    pub fn uplink_health(&self, slot: usize) -> Health {
        let uplink = &self.uplinks[slot];
        uplink
            .health
            .as_ref()
            .unwrap_or(&self.health)
            .resolved_for(uplink.gateway)
    }

    /// The configuration as TOML text that parses back to an equal [`Config`].
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a validated Config always serialises")
    }
}

/// `[[forward]]`: inbound traffic to an uplink's address and `port` goes to LAN host `to`, port
/// `to_port`, pinned to the uplink it arrived on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Forward {
    /// Unique name (shown by `status`, `flows`, `explain` and the metrics).
    pub name: String,
    /// The names of the uplinks it listens on (`"all"` in the file: every uplink, in file order).
    pub uplinks: Vec<String>,
    /// TCP, UDP or both.
    pub protocol: ForwardProtocol,
    /// The external ports, outside `[nat] port_range`.
    pub port: PortRange,
    /// The LAN host (inside a `[lan]` prefix).
    pub to: Ipv4Addr,
    /// The LAN ports, as long as `port` (default: `port`).
    pub to_port: PortRange,
}

/// `[[forward]] protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardProtocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP.
    Both,
}

impl ForwardProtocol {
    /// The transport protocols it covers.
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            Self::Tcp => &[Protocol::Tcp],
            Self::Udp => &[Protocol::Udp],
            Self::Both => &[Protocol::Tcp, Protocol::Udp],
        }
    }

    /// Its name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Both => "both",
        }
    }
}
