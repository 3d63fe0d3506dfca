//! The validated configuration: what the rest of flowpin reads.
//!
//! Invariants (established by [`super::parse`], relied on by the control plane and
//! [`crate::select`]): at least one uplink; uplink names and interfaces unique and distinct from
//! the LAN interface; at least one uplink with a weight above 0; every policy names existing
//! uplinks (its [`PolicyUplink::index`] points into [`Config::uplinks`]) and has a positive total
//! weight; timeouts at or above the RFC minimums; the NAT port range starts at 1024 or above and
//! does not overlap the router's `ip_local_port_range` when one was given.
//!
//! Serialising a [`Config`] (see [`Config::to_toml`]) yields a file that parses back to an equal
//! [`Config`]; field names are those of the file.

use std::fmt;
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::path::PathBuf;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// The interface name (unique).
    pub interface: String,
    /// The next hop (its MAC is learnt from the kernel's neighbour table).
    pub gateway: Ipv4Addr,
    /// The external (SNAT) address; `None`: the interface's address at run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Relative share of new flows; 0 = standby (new flows only when no weighted uplink is
    /// eligible).
    pub weight: u32,
}

/// `[nat]`: translation behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nat {
    /// External ports handed out on every uplink address.
    pub port_range: PortRange,
    /// Which fields of a flow pin it to an uplink.
    pub stickiness: Stickiness,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Whether inbound packets refresh a UDP mapping (RFC 4787 REQ-6 makes it optional).
    pub udp_refresh_on_inbound: bool,
    /// Which inbound packets a mapping admits.
    pub filtering: Filtering,
    /// Most mappings (external ports) one LAN host may hold per uplink address and protocol (RFC 6888
    /// REQ-4), a CGN-style hard quota; `None` (the default): no hard quota, only the fair share of a
    /// pool under pressure limits a host (see `flowpin_nat::port_alloc`).
    #[serde(skip_serializing_if = "Option::is_none")]
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
}

impl Nat {
    /// Default sustained rate of port-exhaustion answers per worker.
    pub const DEFAULT_PORT_EXHAUSTED_ICMP_PER_S: u32 = 100;
    /// Default burst of port-exhaustion answers per worker.
    pub const DEFAULT_PORT_EXHAUSTED_ICMP_BURST: u32 = 50;
}

/// `[nat.timeouts]`: idle timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// UDP mapping (RFC 4787 REQ-5: at least 120, default 300).
    pub udp: u32,
    /// Established TCP connection (RFC 5382 REQ-5: at least 7440).
    pub tcp_established: u32,
    /// TCP connection being opened or closed (RFC 5382 REQ-5: at least 240).
    pub tcp_transitory: u32,
    /// ICMP query mapping (RFC 5508 REQ-2: at least 60).
    pub icmp: u32,
}

impl Timeouts {
    /// The RFC defaults, which are also the minimums except for UDP (minimum 120).
    pub const DEFAULT: Timeouts = Timeouts {
        udp: 300,
        tcp_established: 7440,
        tcp_transitory: 240,
        icmp: 60,
    };
    /// The lowest values the RFCs allow.
    pub const MINIMUM: Timeouts = Timeouts {
        udp: 120,
        tcp_established: 7440,
        tcp_transitory: 240,
        icmp: 60,
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
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
}

impl Serialize for PolicyUplink {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.weight {
            None => serializer.serialize_str(&self.name),
            Some(weight) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("name", &self.name)?;
                map.serialize_entry("weight", &weight)?;
                map.end()
            }
        }
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
    /// CPU ids workers are pinned to: worker `i` on `cpus[i % len]`. Empty (the key absent): every
    /// CPU the daemon may run on. Not empty, no duplicate, and (when the machine's online CPUs were
    /// given to validation) each one online.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u32>,
}

impl Datapath {
    /// Default flow table capacity.
    pub const DEFAULT_FLOW_CAPACITY: u32 = 1 << 18;
    /// Default UMEM frames per worker: enough (64 MiB of 4 KiB frames) for each of a LAN and two
    /// uplinks to keep a full 2048-entry fill ring, i.e. 20 ms of reception at 100 kpps while the
    /// worker is off its CPU (4096 frames kept 12.8 ms, and lost 1–10 % of a 100 kpps new-flow load
    /// on a busy 2-core machine to `rx_fill_ring_empty_descs`).
    pub const DEFAULT_FRAMES_PER_WORKER: u32 = 16384;
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

impl Config {
    /// The configuration as TOML text that parses back to an equal [`Config`].
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a validated Config always serialises")
    }
}
