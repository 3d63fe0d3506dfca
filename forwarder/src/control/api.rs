//! The daemon's local API: newline-delimited JSON over a root-only Unix socket.
//!
//! One request per line, one response per line, on a socket file of mode 0600, so only root (the
//! daemon's owner) can connect; the server side and its limits are [`super::control_socket`].
//! `flowpin status` and `flowpin flows` are thin clients of this module.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/flowpin/flowpin.sock";

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Per-uplink state and counters, drops by reason.
    Status,
    /// The flows in the table, filtered.
    Flows(FlowFilter),
    /// Re-read the configuration file and apply it if valid.
    Reload,
    /// An operator action on one uplink.
    Uplink(UplinkCommand),
    /// Why the matching flows are on their uplinks.
    Explain(FlowQuery),
}

/// Which flows `flowpin explain` explains: `PROTO INTERNAL REMOTE` (the LAN-side 5-tuple, as the LAN
/// host sent its first packet) or `PROTO EXTERNAL` (the translated endpoint on the uplink, which may be
/// shared by several flows of one internal endpoint). Endpoints are `address:port`; for ICMP the port
/// is the echo identifier and the remote's port is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowQuery {
    /// The protocol: `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The LAN host's endpoint, or the external endpoint when `remote` is `None`.
    pub endpoint: std::net::SocketAddrV4,
    /// The remote endpoint of a LAN-side 5-tuple.
    pub remote: Option<std::net::SocketAddrV4>,
}

/// How `flowpin explain` takes a flow (part of every refusal's text).
const FLOW_QUERY_USAGE: &str = "expected PROTO ENDPOINT [REMOTE], e.g. `udp 10.0.1.2:5000 203.0.113.10:7` (LAN-side 5-tuple) or `udp 198.51.100.2:10000` (external endpoint)";

/// Why the words of `flowpin explain` name no flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowQueryError {
    /// Not one protocol and one or two endpoints.
    #[error("{usage}", usage = FLOW_QUERY_USAGE)]
    Usage,
    /// The protocol is not `tcp`, `udp` or `icmp`.
    #[error("unknown protocol `{0}` (tcp, udp or icmp); {usage}", usage = FLOW_QUERY_USAGE)]
    UnknownProtocol(String),
    /// An endpoint is not `address:port`.
    #[error("`{0}` is not an IPv4 address:port; {usage}", usage = FLOW_QUERY_USAGE)]
    NotAnEndpoint(String),
}

impl FlowQuery {
    /// Parses `PROTO ENDPOINT [REMOTE]` (e.g. `udp 10.0.1.2:5000 203.0.113.10:7`, or
    /// `tcp 198.51.100.2:10001`).
    pub fn parse(words: &[String]) -> Result<Self, FlowQueryError> {
        let (proto, endpoints) = match words {
            [proto, rest @ ..] if (1..=2).contains(&rest.len()) => (proto, rest),
            _ => return Err(FlowQueryError::Usage),
        };
        let proto = proto.to_ascii_lowercase();
        if protocol_named(&proto).is_none() {
            return Err(FlowQueryError::UnknownProtocol(proto));
        }
        let endpoint = |text: &String| {
            text.parse::<std::net::SocketAddrV4>()
                .map_err(|_| FlowQueryError::NotAnEndpoint(text.clone()))
        };
        Ok(Self {
            proto,
            endpoint: endpoint(&endpoints[0])?,
            remote: endpoints.get(1).map(endpoint).transpose()?,
        })
    }

    /// Whether a flow whose LAN-side key is `lan` and external endpoint `external` matches.
    pub fn matches(&self, lan: &flowpin_nat::FlowKey, external: std::net::SocketAddrV4) -> bool {
        let Some(proto) = protocol_named(&self.proto) else {
            return false;
        };
        if lan.protocol != proto {
            return false;
        }
        match self.remote {
            None => external == self.endpoint,
            Some(remote) => {
                lan.source == *self.endpoint.ip()
                    && lan.source_port == self.endpoint.port()
                    && lan.destination == *remote.ip()
                    && (proto == flowpin_nat::IpProtocol::Icmp
                        || lan.destination_port == remote.port())
            }
        }
    }
}

/// The protocol of a lower-case name (`tcp`, `udp`, `icmp`).
pub fn protocol_named(name: &str) -> Option<flowpin_nat::IpProtocol> {
    match name {
        "tcp" => Some(flowpin_nat::IpProtocol::Tcp),
        "udp" => Some(flowpin_nat::IpProtocol::Udp),
        "icmp" => Some(flowpin_nat::IpProtocol::Icmp),
        _ => None,
    }
}

/// The lower-case name of a protocol.
pub fn protocol_name(protocol: flowpin_nat::IpProtocol) -> &'static str {
    match protocol {
        flowpin_nat::IpProtocol::Tcp => "tcp",
        flowpin_nat::IpProtocol::Udp => "udp",
        flowpin_nat::IpProtocol::Icmp => "icmp",
    }
}

/// Answer to [`Request::Explain`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExplainReport {
    /// One explanation per matching flow (at most 100).
    pub flows: Vec<FlowExplanation>,
    /// How many snapshots the daemon remembers, and the oldest generation among them.
    pub history: usize,
    /// The oldest remembered generation.
    pub oldest_generation: u64,
}

/// Why one flow is on its uplink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowExplanation {
    /// The flow as `flowpin flows` shows it.
    pub flow: FlowEntry,
    /// `outbound` (LAN host to the internet) or `hairpin` (LAN host to another through a mapping).
    pub kind: String,
    /// The policy rule the flow matched (`policy[INDEX] NAME: MATCH`), or `default group`.
    pub rule: String,
    /// The stickiness mode in force at the decision.
    pub stickiness: String,
    /// The fields the stickiness key hashes, with their values.
    pub stickiness_fields: String,
    /// The keyed hash itself (hex).
    pub stickiness_key: String,
    /// The snapshot generation the flow was decided under.
    pub generation: u64,
    /// Whether that snapshot is still in the daemon's history (else the rest is unknown).
    pub decision_known: bool,
    /// Seconds since that snapshot was published.
    pub decided_s_ago: Option<f64>,
    /// What the rule's group chose for this key under that snapshot.
    pub chooser_pick: Option<String>,
    /// The uplinks of that snapshot: state, weight, whether they took new flows.
    pub uplinks: Vec<UplinkAtDecision>,
    /// A sentence summing the decision up.
    pub summary: String,
}

/// One uplink as a published snapshot saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkAtDecision {
    /// Name.
    pub name: String,
    /// `up`, `down`, `probing`, `draining`.
    pub state: String,
    /// Weight in force.
    pub weight: u32,
    /// Whether it took new flows.
    pub eligible: bool,
}

/// `flowpin uplink ACTION NAME [WEIGHT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkCommand {
    /// The uplink's name.
    pub name: String,
    /// What to do.
    pub action: UplinkAction,
}

/// Operator actions on an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum UplinkAction {
    /// No new flows; existing flows stay.
    Drain,
    /// Back to normal.
    Undrain,
    /// Weight override (`None`: back to the configured weight). Kept across reloads.
    SetWeight {
        /// The new weight.
        weight: Option<u32>,
    },
}

/// Which flows `flows` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    /// Only flows pinned to this uplink (by name).
    pub uplink: Option<String>,
    /// Only flows of this LAN host (internal address).
    pub host: Option<std::net::Ipv4Addr>,
    /// Only flows of this protocol (`tcp`, `udp`, `icmp`).
    pub proto: Option<String>,
    /// At most this many flows (default 1000).
    pub limit: Option<usize>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(Box<StatusReport>),
    /// Answer to [`Request::Flows`].
    Flows(FlowsReport),
    /// Answer to [`Request::Explain`].
    Explain(ExplainReport),
    /// A command was carried out.
    Done {
        /// What was done.
        message: String,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

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
    /// Flows in the table.
    pub flows: u64,
    /// Capacity of the flow table.
    pub flow_capacity: u64,
    /// Drops by reason (only non-zero reasons), sorted by name.
    pub drops: Vec<(String, u64)>,
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
    /// By kind of ICMP answer the datapath originates (`net_unreachable`: no uplink for a new flow;
    /// `port_exhausted`: no external port for it; `frag_needed_to_uplink`: a packet from the internet
    /// too big for the LAN): answers its per-worker rate limit suppressed (the frame was still dropped
    /// and counted under its reason). Every kind listed.
    #[serde(default)]
    pub icmp_suppressed: Vec<(String, u64)>,
    /// The XDP program's decisions (packets, summed over CPUs; only non-zero ones).
    pub xdp: Vec<(String, u64)>,
    /// The XDP program's TCP SYN admission budgets: (`per_host` | `lan` | `inbound`, SYNs per
    /// second, burst); 0 per second: no budget.
    #[serde(default)]
    pub admission: Vec<(String, u32, u32)>,
    /// Packets handed to the datapath per worker and other per-worker figures.
    pub workers: Vec<WorkerStatus>,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Reloads refused (invalid configuration) since start.
    pub reloads_failed: u64,
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

/// Answer to `flows`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowsReport {
    /// The matching flows, up to the limit.
    pub flows: Vec<FlowEntry>,
    /// How many matched in all (may exceed `flows.len()`).
    pub matched: u64,
}

/// One flow as `flowpin flows` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowEntry {
    /// `tcp`, `udp`, `icmp`.
    pub proto: String,
    /// LAN host address:port (echo id for ICMP).
    pub internal: String,
    /// External address:port it is translated to.
    pub external: String,
    /// Remote address:port.
    pub remote: String,
    /// Uplink name.
    pub uplink: String,
    /// Protocol state (`established`, `syn_sent`, ...).
    pub state: String,
    /// Milliseconds since the last packet.
    pub idle_ms: u64,
    /// Packets LAN → internet.
    pub packets_out: u64,
    /// Packets internet → LAN.
    pub packets_in: u64,
}

/// Client side: sends one request and waits for its answer.
pub fn call(path: &Path, request: &Request) -> anyhow::Result<Response> {
    use anyhow::Context;
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to the flowpin daemon at {} (is `flowpin run` running, and are you root?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).with_context(|| format!("bad answer from the daemon: {answer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_commands_have_a_readable_wire_format() {
        let command = Request::Uplink(UplinkCommand {
            name: "isp1".into(),
            action: UplinkAction::SetWeight { weight: Some(3) },
        });
        let text = serde_json::to_string(&command).unwrap();
        assert!(text.contains("\"action\":\"set-weight\""), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), command);
        assert_eq!(
            serde_json::from_str::<Request>("{\"cmd\":\"reload\"}").unwrap(),
            Request::Reload
        );
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn key(proto: flowpin_nat::IpProtocol, s: &str, d: &str) -> flowpin_nat::FlowKey {
        let s: std::net::SocketAddrV4 = s.parse().unwrap();
        let d: std::net::SocketAddrV4 = d.parse().unwrap();
        flowpin_nat::FlowKey {
            protocol: proto,
            source: *s.ip(),
            destination: *d.ip(),
            source_port: s.port(),
            destination_port: d.port(),
        }
    }

    #[test]
    fn a_flow_query_names_a_lan_side_tuple_or_an_external_endpoint() {
        use flowpin_nat::IpProtocol::{Icmp, Tcp, Udp};
        let ext: std::net::SocketAddrV4 = "198.51.100.2:10001".parse().unwrap();
        let q = FlowQuery::parse(&words("udp 10.0.1.2:5000 203.0.113.10:7")).unwrap();
        assert!(q.matches(&key(Udp, "10.0.1.2:5000", "203.0.113.10:7"), ext));
        assert!(!q.matches(&key(Udp, "10.0.1.2:5000", "203.0.113.10:8"), ext));
        assert!(!q.matches(&key(Tcp, "10.0.1.2:5000", "203.0.113.10:7"), ext));
        assert!(!q.matches(&key(Udp, "10.0.1.3:5000", "203.0.113.10:7"), ext));

        let q = FlowQuery::parse(&words("TCP 198.51.100.2:10001")).unwrap();
        assert!(q.matches(&key(Tcp, "10.0.1.2:1", "203.0.113.10:7"), ext));
        assert!(!q.matches(
            &key(Tcp, "10.0.1.2:1", "203.0.113.10:7"),
            "198.51.100.2:10002".parse().unwrap()
        ));

        // ICMP: the remote's "port" is the echo id again; it is not compared.
        let q = FlowQuery::parse(&words("icmp 10.0.1.2:77 203.0.113.10:0")).unwrap();
        assert!(q.matches(&key(Icmp, "10.0.1.2:77", "203.0.113.10:77"), ext));

        for bad in [
            "",
            "udp",
            "sctp 1.2.3.4:5",
            "udp 1.2.3.4",
            "udp 1.2.3.4:5 6.7.8.9:1 x",
        ] {
            assert!(FlowQuery::parse(&words(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn flow_query_refusals_name_the_fault_then_the_usage() {
        let usage = "expected PROTO ENDPOINT [REMOTE], e.g. `udp 10.0.1.2:5000 203.0.113.10:7` (LAN-side 5-tuple) or `udp 198.51.100.2:10000` (external endpoint)";
        let refusal = |text: &str| FlowQuery::parse(&words(text)).unwrap_err().to_string();
        assert_eq!(refusal("udp"), usage);
        assert_eq!(
            refusal("SCTP 1.2.3.4:5"),
            format!("unknown protocol `sctp` (tcp, udp or icmp); {usage}")
        );
        assert_eq!(
            refusal("udp 1.2.3.4"),
            format!("`1.2.3.4` is not an IPv4 address:port; {usage}")
        );
    }

    #[test]
    fn request_wire_format_is_tagged_by_cmd() {
        let s = serde_json::to_string(&Request::Flows(FlowFilter {
            limit: Some(5),
            ..Default::default()
        }))
        .unwrap();
        assert!(s.contains("\"cmd\":\"flows\""), "{s}");
        assert_eq!(
            serde_json::from_str::<Request>("{\"cmd\":\"status\"}").unwrap(),
            Request::Status
        );
    }
}
