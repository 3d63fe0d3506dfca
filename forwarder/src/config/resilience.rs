//! The validated `[health]`, `[failover]`, `[failback]` and `[metrics]` sections: how an uplink
//! is found dead or alive, what happens to a dead uplink's flows, when flows move back, where the
//! Prometheus endpoint listens.
//!
//! Invariants (established by validation):
//! - `timeout_ms < interval_ms`; `up_loss_percent <= down_loss_percent <= 100`;
//!   `up_rtt_ms <= down_rtt_ms`; `down_after`, `up_after`, `window` at least 1;
//! - with targets, `1 <= min_answers <= targets`; without, each uplink probes its gateway (ICMP
//!   echo, `min_answers` 1) unless `probe_gateway = false`, which leaves its state to its carrier
//!   only; a DNS target has a query name;
//! - an uplink's own `[uplink.health]` is this table with its keys written over, and obeys the
//!   same rules; its targets, when it has any, replace `[health]`'s; the hook keys
//!   ([`Health::GLOBAL_ONLY_KEYS`]) are `[health]`'s alone, inherited and never written over;
//! - the passive trigger (`passive_down_after_unanswered > 0`) has something to probe (targets or
//!   the gateway: only probes bring an uplink it took down back) and
//!   `passive_answer_window_ms >= 100`;
//! - an `http`/`https` target has its [`HttpCheck`] (and only those have one); `hook_timeout_ms`
//!   is 100-600000;
//! - `reset` is only a TCP action; `net_unreachable_per_s == 0` switches the viability guard's
//!   ICMP off, otherwise its burst is at least 1.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PortRange;
use super::http_probe::HttpCheck;

/// `[health]`: active probing through every uplink; the defaults of each `[uplink.health]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Milliseconds between probe rounds.
    pub interval_ms: u32,
    /// A probe not answered within this many milliseconds is lost.
    pub timeout_ms: u32,
    /// A round is answered when at least this many targets answered (M of N).
    pub min_answers: u32,
    /// An up uplink goes down after this many bad rounds in a row (D).
    pub down_after: u32,
    /// A recovering uplink is up again after this many good rounds in a row (U).
    pub up_after: u32,
    /// Loss and RTT are measured over the last `window` rounds.
    pub window: u32,
    /// A round is bad when the window's loss reaches this percentage.
    pub down_loss_percent: u8,
    /// A round is good only when the window's loss is at or below this percentage.
    pub up_loss_percent: u8,
    /// A round is bad when the window's mean RTT reaches this many milliseconds.
    pub down_rtt_ms: u32,
    /// A round is good only when the window's mean RTT is at or below this many milliseconds.
    pub up_rtt_ms: u32,
    /// Passive trigger: an up uplink goes down when this many new TCP flows in a row opened on it got no
    /// SYN-ACK within `passive_answer_window_ms` while none was answered; 0 (default): off.
    pub passive_down_after_unanswered: u32,
    /// How long a new TCP flow's SYN waits for the SYN-ACK before it counts as unanswered.
    pub passive_answer_window_ms: u32,
    /// With no target, probe the uplink's gateway (default); `false`: no probing without targets.
    pub probe_gateway: bool,
    /// Every executable in this directory runs, in name order, on each uplink state change.
    /// Global: `[health]`'s, the same in every uplink's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks_dir: Option<PathBuf>,
    /// A hook still running after this many milliseconds is killed. Global, as `hooks_dir`.
    pub hook_timeout_ms: u32,
    /// Probe targets; empty: the gateway (see `probe_gateway`).
    #[serde(rename = "target", skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ProbeTarget>,
    /// Set by [`Health::resolved_for`] only (never read from a file): the one target is the
    /// gateway it added. A link's return is then trusted at once, as without probes (the gateway
    /// must still resolve), and the probe takes the uplink down if the gateway stops answering.
    #[serde(skip)]
    pub probing_gateway: bool,
}

impl Health {
    /// The defaults of every `[health]` key (no targets).
    pub const DEFAULT: Health = Health {
        interval_ms: 1000,
        timeout_ms: 800,
        min_answers: 1,
        down_after: 3,
        up_after: 5,
        window: 20,
        down_loss_percent: 60,
        up_loss_percent: 20,
        down_rtt_ms: 1500,
        up_rtt_ms: 1000,
        passive_down_after_unanswered: 0,
        passive_answer_window_ms: 3000,
        probe_gateway: true,
        hooks_dir: None,
        hook_timeout_ms: 10_000,
        targets: Vec::new(),
        probing_gateway: false,
    };

    /// The `[health]` keys an `[uplink.health]` may not set: one hook directory and one timeout
    /// serve every uplink (each run is told which uplink changed).
    pub const GLOBAL_ONLY_KEYS: [&'static str; 2] = ["hooks_dir", "hook_timeout_ms"];

    /// The settings an uplink whose next hop is `gateway` is probed with: with no target and
    /// `probe_gateway`, its gateway is the one target (ICMP echo) and one answer a round suffices.
    #[must_use]
    pub fn resolved_for(&self, gateway: Ipv4Addr) -> Health {
        let mut health = self.clone();
        if health.targets.is_empty() && health.probe_gateway {
            health.targets.push(ProbeTarget {
                kind: ProbeKind::Icmp,
                address: gateway,
                port: 0,
                query: String::new(),
                http: None,
            });
            health.min_answers = 1;
            health.probing_gateway = true;
        }
        health
    }

    /// Whether an uplink probed with these (unresolved) settings has anything to probe.
    pub fn probes(&self) -> bool {
        !self.targets.is_empty() || self.probe_gateway
    }

    /// Whether the passive handshake signal may take uplinks down.
    pub const fn passive_trigger_enabled(&self) -> bool {
        self.passive_down_after_unanswered > 0
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Serialises an uplink's own settings as its `[uplink.health]` table: every key but
/// [`Health::GLOBAL_ONLY_KEYS`], which the uplink inherits from `[health]`, where they are written.
pub(super) fn serialize_uplink_health<S: serde::Serializer>(
    health: &Option<Health>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let Some(health) = health else {
        return serializer.serialize_none();
    };
    let mut table = toml::Table::try_from(health).map_err(serde::ser::Error::custom)?;
    for key in Health::GLOBAL_ONLY_KEYS {
        table.remove(key);
    }
    table.serialize(serializer)
}

/// `[[health.target]]`: one probe target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeTarget {
    /// How to probe it.
    pub kind: ProbeKind,
    /// Its address.
    pub address: Ipv4Addr,
    /// TCP port (default 80) or DNS port (default 53); 0 for ICMP.
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    /// The name a DNS probe asks for (type A); empty for other kinds.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// HTTP and HTTPS: what is fetched and which answer counts; `None` for other kinds.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpCheck>>,
}

impl ProbeTarget {
    /// How status and the metrics name the target: its URL (HTTP), else `kind address[:port]`.
    pub fn label(&self) -> String {
        match (&self.http, self.kind) {
            (Some(http), _) => http.url.clone(),
            (None, ProbeKind::Icmp) => format!("icmp {}", self.address),
            (None, kind) => format!("{kind} {}:{}", self.address, self.port),
        }
    }
}

/// The kinds of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// ICMP echo request; answered by an echo reply.
    Icmp,
    /// TCP connect; answered by a SYN-ACK (connected) or an RST (refused: the path works).
    Tcp,
    /// DNS query over UDP; answered by a NOERROR response with the query's id.
    Dns,
    /// HTTP/1.1 GET; answered by an expected status (and body, when set).
    Http,
    /// HTTP/1.1 GET over TLS (certificate checked against the system's and `ca_file`'s CAs).
    Https,
}

impl ProbeKind {
    /// The default port of a target of this kind.
    pub const fn default_port(self) -> u16 {
        match self {
            ProbeKind::Icmp => 0,
            ProbeKind::Tcp => 80,
            ProbeKind::Dns => 53,
            ProbeKind::Http => 80,
            ProbeKind::Https => 443,
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Icmp => "icmp",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Dns => "dns",
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
        })
    }
}

/// What happens to a dead uplink's flows of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverAction {
    /// Remove the flow and free its port: the next packet opens a new flow on a healthy uplink.
    Move,
    /// TCP only: send an RST to the LAN host, then remove the flow.
    Reset,
    /// Leave the flow pinned (for links that flap).
    Keep,
}

impl fmt::Display for FailoverAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailoverAction::Move => "move",
            FailoverAction::Reset => "reset",
            FailoverAction::Keep => "keep",
        })
    }
}

/// `[failover]`: per protocol action when an uplink goes down, and the viability guard's answer when
/// none is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Failover {
    /// TCP flows (default `reset`).
    pub tcp: FailoverAction,
    /// UDP flows (default `move`).
    pub udp: FailoverAction,
    /// ICMP query flows (default `move`).
    pub icmp: FailoverAction,
    /// With no usable uplink, new flows are dropped and their LAN hosts get an ICMP net unreachable: at
    /// most this many per second per worker (0: none is sent).
    pub net_unreachable_per_s: u32,
    /// ... and at most this many at once (the token bucket's depth).
    pub net_unreachable_burst: u32,
}

impl Failover {
    /// Default sustained rate of net-unreachable answers per worker.
    pub const DEFAULT_NET_UNREACHABLE_PER_S: u32 = 100;
    /// Default burst of net-unreachable answers per worker.
    pub const DEFAULT_NET_UNREACHABLE_BURST: u32 = 50;

    /// This policy with every `keep` turned into `move`: for flows that cannot stay where they are
    /// (their uplink was removed, or their external address is no longer the uplink's).
    #[must_use]
    pub fn keep_as_move(mut self) -> Self {
        for action in [&mut self.tcp, &mut self.udp, &mut self.icmp] {
            if *action == FailoverAction::Keep {
                *action = FailoverAction::Move;
            }
        }
        self
    }
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            tcp: FailoverAction::Reset,
            udp: FailoverAction::Move,
            icmp: FailoverAction::Move,
            net_unreachable_per_s: Self::DEFAULT_NET_UNREACHABLE_PER_S,
            net_unreachable_burst: Self::DEFAULT_NET_UNREACHABLE_BURST,
        }
    }
}

/// `[failback]`: what happens when an uplink comes back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Failback {
    /// `stay` (default) or `move-after`.
    pub mode: FailbackMode,
    /// `move-after`: seconds the uplink must have been up before flows move back.
    pub after_s: u32,
    /// `move-after`: the UDP class (destination ports) that moves back; `None`: every UDP flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<PortRange>,
}

/// Failback modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailbackMode {
    /// Existing flows stay where they are; only new flows use the recovered uplink.
    #[default]
    Stay,
    /// UDP flows of the class that are not on the uplink the chooser now picks for them are moved
    /// (removed; the next packet opens a new flow) once the recovered uplink has been up `after_s`.
    MoveAfter,
}

/// `[metrics]`: the Prometheus text endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Listen address; `None` (`listen = "off"`): no endpoint.
    #[serde(serialize_with = "serialize_listen")]
    pub listen: Option<SocketAddr>,
}

impl Metrics {
    /// The default listen address: loopback only.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9469));
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: Some(Self::DEFAULT_LISTEN),
        }
    }
}

fn serialize_listen<S: serde::Serializer>(
    listen: &Option<SocketAddr>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match listen {
        Some(address) => serializer.collect_str(address),
        None => serializer.serialize_str("off"),
    }
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}
