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

mod status;
pub use status::*;

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
    /// Remove the matching flows, resetting their TCP connections both ways.
    KillFlows(KillFilter),
    /// Which uplink a new flow (a LAN-side 5-tuple) would take now, and why; creates nothing.
    ExplainNew(FlowQuery),
}

/// Which flows `flowpin flows kill` removes: those matching every selector given (at least one of
/// `uplink`, `host`, `flow`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillFilter {
    /// Only flows pinned to this uplink (by name).
    pub uplink: Option<String>,
    /// Only flows of this LAN host.
    pub host: Option<std::net::Ipv4Addr>,
    /// Only flows of this protocol (`tcp`, `udp`, `icmp`).
    pub proto: Option<String>,
    /// Only the flows this query names (as `flowpin explain` takes them).
    pub flow: Option<FlowQuery>,
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
    /// Answer to [`Request::KillFlows`].
    Killed(crate::control::flow_kill::KillReport),
    /// Answer to [`Request::ExplainNew`].
    ExplainNew(Box<crate::control::new_flow_explanation::NewFlowExplanation>),
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
    /// The `[[forward]]` that opened it, for a forwarded flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<String>,
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
