//! What `flowpin status` (and the metrics built from it) carries: the daemon's [`StatusReport`].
//!
//! Invariants: collections a name identifies are JSON objects keyed by that name (drops by reason,
//! XDP decisions, admission budgets, port pools by protocol); the uplinks stay a list in
//! configuration order, each naming itself; every field added later has a serde default, so an
//! older answer still parses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything `flowpin status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// Per uplink, in configuration order.
    pub uplinks: Vec<UplinkStatus>,
    /// The tier new flows of the default group use now (its best tier with an eligible uplink;
    /// `None`: no uplink is eligible).
    #[serde(default)]
    pub tier_in_use: Option<u8>,
    /// `[router] default_route`: `multipath`, `best` or `unmanaged`.
    #[serde(default)]
    pub router_default_route: String,
    /// The nexthops of the router's own default route flowpin keeps, as `interface weight`
    /// (empty: unmanaged, or no uplink usable and the main table's default in force).
    #[serde(default)]
    pub router_default_via: Vec<String>,
    /// Flows in the table.
    pub flows: u64,
    /// Capacity of the flow table.
    pub flow_capacity: u64,
    /// Drops by reason (only non-zero reasons), keyed by reason.
    pub drops: BTreeMap<String, u64>,
    /// Flows that never got a reply, removed to make room for a new flow while the table was full,
    /// or for a new flow of their own host over its fair share of the table.
    #[serde(default)]
    pub flows_early_dropped: u64,
    /// LAN hosts holding at least one flow.
    #[serde(default)]
    pub flow_hosts: u64,
    /// Flows in use from which the table is under pressure (`[datapath]
    /// flow_share_pressure_percent` of the capacity).
    #[serde(default)]
    pub flow_share_pressure: u64,
    /// A host's fair share of the table now: the capacity / (`flow_hosts` + 1), at least `[datapath]
    /// flow_share_floor`; under pressure a host holding it gets no new flow.
    #[serde(default)]
    pub flow_fair_share: u64,
    /// New flows whose host the group's choice refused for its share (fair share under pressure, or
    /// `ports_per_host`) that another uplink of the group took.
    #[serde(default)]
    pub flows_spilled: u64,
    /// Later IPv4 fragments translated by the route their first fragment recorded.
    #[serde(default)]
    pub fragments_followed: u64,
    /// Later IPv4 fragments held because they came before their first (each then followed, or
    /// dropped as `fragment_expired`).
    #[serde(default)]
    pub fragments_held: u64,
    /// By kind of ICMP answer the datapath originates (`net_unreachable`: no uplink for a new flow;
    /// `port_exhausted`: no external port for it; `frag_needed_to_uplink`: a packet from the internet
    /// too big for the LAN): answers its per-worker rate limit suppressed (the frame was still dropped
    /// and counted under its reason). Every kind listed, keyed by kind.
    #[serde(default)]
    pub icmp_suppressed: BTreeMap<String, u64>,
    /// The XDP program's decisions (packets, summed over CPUs; only non-zero ones), keyed by
    /// decision.
    pub xdp: BTreeMap<String, u64>,
    /// The XDP program's TCP SYN admission budgets, keyed by `per_host`, `lan` and `inbound`.
    #[serde(default)]
    pub admission: BTreeMap<String, AdmissionBudget>,
    /// Packets handed to the datapath per worker and other per-worker figures.
    pub workers: Vec<WorkerStatus>,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Reloads refused (invalid configuration) since start.
    pub reloads_failed: u64,
    /// The last reload's outcome (before any: the start, which loaded the file successfully).
    #[serde(default)]
    pub last_reload: LastReload,
    /// flowpin's version (the package's).
    #[serde(default)]
    pub version: String,
    /// When the daemon started, in seconds since the Unix epoch.
    #[serde(default)]
    pub started_at_unix_s: f64,
    /// Flows `flowpin flows kill` removed since start.
    #[serde(default)]
    pub flows_killed: u64,
    /// TCP resets `flowpin flows kill` sent since start (towards the LAN hosts and the remotes).
    #[serde(default)]
    pub kill_resets_sent: u64,
    /// What the control socket and the metrics endpoint refused, displaced or timed out (boxed: the
    /// status stays a small part of [`Response`]).
    #[serde(default)]
    pub control_surfaces: Box<crate::control::surface_counters::SurfaceStatus>,
    /// Times the forward guard was found removed or altered and re-installed since start.
    #[serde(default)]
    pub guard_reinstalls: u64,
    /// Times the forward guard was found removed or altered and could not be re-installed.
    #[serde(default)]
    pub guard_reinstalls_failed: u64,
    /// The state-change hooks: runs by result, events dropped and waiting.
    #[serde(default)]
    pub hooks: crate::control::health::hooks::HookStatus,
    /// The port forwards (`[[forward]]`), in configuration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<ForwardStatus>,
}

/// One `[[forward]]` as `flowpin status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardStatus {
    /// Its name.
    pub name: String,
    /// `tcp`, `udp` or `both`.
    pub protocol: String,
    /// The external port or range.
    pub port: String,
    /// The LAN host and port or range it leads to.
    pub to: String,
    /// Per uplink it listens on.
    pub uplinks: Vec<ForwardUplinkStatus>,
}

/// One forward on one uplink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardUplinkStatus {
    /// The uplink's name.
    pub uplink: String,
    /// Whether the uplink takes new flows, so the forward opens flows there now.
    pub open: bool,
    /// Live flows the forward opened through the uplink.
    pub flows: u64,
}

/// One XDP admission budget: TCP SYNs per second and burst (0 per second: no budget).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionBudget {
    /// SYNs per second (0: no budget).
    pub per_s: u32,
    /// Burst.
    pub burst: u32,
}

/// The outcome of the daemon's last configuration load: a reload, or the start before any reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// Whether it was applied.
    pub success: bool,
    /// When, in seconds since the Unix epoch.
    pub at_unix_s: f64,
    /// When it last succeeded, in seconds since the Unix epoch.
    pub last_success_unix_s: f64,
}

/// One NAT port pool of an uplink: external ports (ICMP: echo ids) mapped now, and the pool's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPoolStatus {
    /// Ports mapped to an internal endpoint now.
    pub in_use: u64,
    /// Ports in the pool.
    pub size: u64,
}

/// One uplink's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// Configured name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// External address.
    pub address: String,
    /// `up`, `down`, `probing`, or `draining` (up, but drained by the operator).
    pub state: String,
    /// When its state last changed (or the daemon started), in seconds since the Unix epoch.
    #[serde(default)]
    pub state_since_unix_s: f64,
    /// Seconds in its current state.
    #[serde(default)]
    pub state_for_s: u64,
    /// Whether it takes new flows now.
    pub eligible: bool,
    /// Weight in force (configured, or the operator's override).
    pub weight: u32,
    /// Its tier (1 = best): new flows use the best tier with an eligible uplink.
    #[serde(default)]
    pub tier: u8,
    /// Probe loss over the health window, in percent (`None`: no active probing).
    pub probe_loss_percent: Option<f64>,
    /// Mean probe RTT over the window, in milliseconds.
    pub probe_rtt_ms: Option<f64>,
    /// Health state changes since start.
    pub state_changes: u64,
    /// Times its flows were failed over.
    pub failovers: u64,
    /// Flows moved or reset away from it by failover.
    pub flows_failed_over: u64,
    /// Flows moved back to it by failback.
    pub flows_failed_back: u64,
    /// Flows created on it since start.
    pub flows_created: u64,
    /// Live flows pinned to it.
    pub flows: u64,
    /// Packets and bytes sent out of it (LAN → internet).
    pub tx_packets: u64,
    /// Bytes sent out of it.
    pub tx_bytes: u64,
    /// Packets received on it and delivered to the LAN.
    pub rx_packets: u64,
    /// Bytes received on it and delivered to the LAN.
    pub rx_bytes: u64,
    /// Rates over the last measured interval (about a second; zero before the first one).
    #[serde(default)]
    pub rates: TrafficRates,
    /// Its NAT port pools, keyed by protocol (`tcp`, `udp`, `icmp`).
    #[serde(default)]
    pub nat_ports: BTreeMap<String, PortPoolStatus>,
    /// Passive signal: new TCP flows opened on it by a SYN.
    #[serde(default)]
    pub tcp_handshakes_started: u64,
    /// Passive signal: those whose SYN-ACK came back.
    #[serde(default)]
    pub tcp_handshakes_answered: u64,
    /// TCP SYNs leaving and SYN-ACKs entering through it whose MSS was lowered to its clamp.
    #[serde(default)]
    pub mss_clamped: u64,
    /// Passive signal: new TCP flows in a row, since the last answer, with no SYN-ACK within
    /// `health.passive_answer_window_ms`.
    #[serde(default)]
    pub tcp_handshakes_unanswered_in_a_row: u64,
    /// Times the passive trigger took it down.
    #[serde(default)]
    pub passive_downs: u64,
    /// Per probe target, through this uplink (empty: no active probing).
    #[serde(default)]
    pub probe_targets: Vec<ProbeTargetStatus>,
}

/// An uplink's traffic rates over the last measured interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficRates {
    /// Packets per second sent out of it.
    pub tx_pps: f64,
    /// Bits per second sent out of it.
    pub tx_bps: f64,
    /// Packets per second received on it for the LAN.
    pub rx_pps: f64,
    /// Bits per second received on it for the LAN.
    pub rx_bps: f64,
}

/// One probe target's figures through one uplink, over the health window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeTargetStatus {
    /// The target: its URL, or `kind address[:port]`.
    pub target: String,
    /// Lost probes, in percent.
    pub loss_percent: f64,
    /// Mean RTT of the answered probes, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Mean difference of consecutive answered RTTs, in milliseconds.
    pub jitter_ms: Option<f64>,
    /// Why its latest lost probe was lost (`DNS answered SERVFAIL`, `HTTP status 503`, ...).
    pub last_failure: Option<String>,
}

/// One worker's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Worker index.
    pub index: usize,
    /// Frames received.
    pub rx_frames: u64,
    /// Frames queued for transmission (frames refused at the egress are drops, not counted here).
    pub tx_frames: u64,
    /// Batches processed.
    pub batches: u64,
    /// Packets it received on the LAN and translated out of an uplink.
    #[serde(default)]
    pub outbound_packets: u64,
    /// Packets it received on an uplink and translated to the LAN. With several workers a flow's
    /// replies arrive on whichever queue the uplink's RSS picks, so this worker translates replies
    /// of flows other workers created (the flow table is shared).
    #[serde(default)]
    pub inbound_packets: u64,
    /// Flows it created (from a flow's first packet).
    #[serde(default)]
    pub flows_created: u64,
    /// Where its UMEM frames are, as it last published (`None`: not published yet, or the workers
    /// are stopped while the I/O is rebuilt).
    #[serde(default)]
    pub frames: Option<crate::xsk::FrameAccounting>,
    /// By AF_XDP socket (one per port: the LAN, then the uplinks), the kernel's counters as the
    /// worker last read them (empty before its first reading, or while the I/O is rebuilt).
    #[serde(default)]
    pub sockets: Vec<XskSocketStatus>,
}

/// The kernel's counters of one of a worker's AF_XDP sockets (`XDP_STATISTICS`), cumulative since
/// the socket was bound (the sockets are reopened when a reload changes the uplink set). Frames the
/// XDP program redirected but the kernel could not hand to the worker show here and nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskSocketStatus {
    /// The port: `lan` or the uplink's name.
    pub port: String,
    /// The kernel's counters (flattened into this object in JSON).
    #[serde(flatten)]
    pub kernel: crate::xsk::KernelSocketStats,
}

impl XskSocketStatus {
    /// The counters, named as the kernel and the metrics name them.
    pub fn counters(&self) -> [(&'static str, u64); 6] {
        self.kernel.named()
    }
}
