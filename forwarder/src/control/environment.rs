//! `flowpin check`'s look at the machine around a valid configuration: pitfalls the file cannot show.
//!
//! - A veth port whose peer keeps TX checksum offload: the peer hands frames over with partial
//!   checksums (CHECKSUM_PARTIAL) that nothing finishes before AF_XDP, so translated packets leave
//!   with wrong checksums. Checked when the peer is in this network namespace; a peer in another
//!   one cannot be seen from here, and the warning says what to run there.
//! - The NAT port range against the router's `ip_local_port_range` (an overlap is already a
//!   configuration error): unreadable, or a local socket bound inside the NAT range, whose traffic on
//!   the uplinks' addresses the XDP program hands to flowpin instead.
//! - Strict reverse-path filtering (`rp_filter` 1, the larger of `all` and the interface's) on an
//!   uplink: replies to the router's own probes from an uplink other than the main table's default
//!   route are dropped by the kernel, so the uplink looks dead.
//!
//! Invariants: [`warnings`] is pure (tested with made-up machines); [`read`] only reads (`/sys`,
//! `/proc`, `ip -o link`, `ethtool -i` and `ethtool -k`), never changes anything; a fact it cannot read is
//! `None` and gives no warning unless its absence is itself the pitfall.

use std::process::Command;

use crate::config::{Config, PortRange};

/// What [`read`] found about one configured interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortFacts {
    /// The configured name (`lan` or the uplink's name).
    pub role: String,
    /// The interface.
    pub interface: String,
    /// `Some` when it is a veth.
    pub veth_peer: Option<VethPeer>,
    /// The effective `rp_filter` (the larger of `all` and the interface's); `None`: unreadable.
    pub rp_filter: Option<u8>,
    /// Whether it is an uplink (rp_filter matters there).
    pub uplink: bool,
}

/// A veth's peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VethPeer {
    /// Its name, when it is in this network namespace.
    pub name: Option<String>,
    /// Whether its TX checksum offload is on (`None`: not readable here).
    pub tx_checksum: Option<bool>,
}

/// What [`read`] found about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// The LAN interface, then the uplinks'.
    pub ports: Vec<PortFacts>,
    /// `net.ipv4.ip_local_port_range` (`None`: unreadable).
    pub local_port_range: Option<PortRange>,
    /// Local sockets bound inside the NAT range: (`tcp` | `udp`, port).
    pub sockets_in_nat_range: Vec<(String, u16)>,
    /// Local listening TCP and bound UDP sockets: (`tcp` | `udp`, port).
    pub sockets: Vec<(String, u16)>,
}

/// The warnings for `config` on `env`, one sentence each.
pub fn warnings(config: &Config, env: &Environment) -> Vec<String> {
    let mut out = Vec::new();
    for p in &env.ports {
        match &p.veth_peer {
            Some(VethPeer {
                name: Some(peer),
                tx_checksum: Some(true),
            }) => out.push(format!(
                "{} ({}) is a veth whose peer {peer} keeps TX checksum offload on: its frames reach AF_XDP with unfinished checksums and leave translated with wrong ones; run `ethtool -K {peer} tx off`",
                p.interface, p.role
            )),
            Some(VethPeer { name: None, .. }) => out.push(format!(
                "{} ({}) is a veth whose peer is in another network namespace: there, turn its TX checksum offload off (`ethtool -K PEER tx off`), or its frames reach AF_XDP with unfinished checksums",
                p.interface, p.role
            )),
            _ => {}
        }
        if p.uplink && p.rp_filter == Some(1) {
            out.push(format!(
                "{} ({}) has strict reverse-path filtering (rp_filter 1): the kernel drops replies to the router's own probes arriving on it when the main table routes their source elsewhere; set net.ipv4.conf.{}.rp_filter and net.ipv4.conf.all.rp_filter to 2 (loose) or 0",
                p.interface, p.role, p.interface
            ));
        }
    }
    let nat = config.nat.port_range;
    match env.local_port_range {
        None => out.push(format!(
            "net.ipv4.ip_local_port_range could not be read: the NAT range {}-{} was not checked against the router's own ports",
            nat.first(),
            nat.last()
        )),
        Some(local) if local.overlaps(nat) => out.push(format!(
            "the NAT range {}-{} overlaps net.ipv4.ip_local_port_range {}-{}",
            nat.first(),
            nat.last(),
            local.first(),
            local.last()
        )),
        Some(_) => {}
    }
    for (proto, port) in &env.sockets_in_nat_range {
        out.push(format!(
            "a local {proto} socket is bound to port {port}, inside the NAT range {}-{}: on the uplinks' addresses its packets go to flowpin, not to it",
            nat.first(),
            nat.last()
        ));
    }
    for forward in &config.forwards {
        let protocols: Vec<&str> = (forward.protocol.protocols().iter())
            .map(|p| {
                if *p == crate::config::Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                }
            })
            .collect();
        for (proto, port) in &env.sockets {
            if forward.port.contains(*port) && protocols.contains(&proto.as_str()) {
                out.push(format!(
                    "the router listens on {proto} port {port}, which forward `{}` forwards: on the uplinks {} its packets go to {}, not to the router's socket (the forward wins)",
                    forward.name,
                    forward.uplinks.join(", "),
                    forward.to
                ));
            }
        }
    }
    out
}

/// Reads the machine's facts for `config` (see the module docs).
pub fn read(config: &Config) -> Environment {
    let lan = std::iter::once(("lan".to_owned(), config.lan.interface.clone(), false));
    let uplinks = config
        .uplinks
        .iter()
        .map(|u| (u.name.clone(), u.interface.clone(), true));
    let ports = lan
        .chain(uplinks)
        .map(|(role, interface, uplink)| PortFacts {
            veth_peer: veth_peer(&interface),
            rp_filter: rp_filter(&interface),
            role,
            interface,
            uplink,
        })
        .collect();
    let nat = config.nat.port_range;
    let sockets = bound_ports();
    Environment {
        ports,
        local_port_range: super::runtime::local_port_range().ok(),
        sockets_in_nat_range: (sockets.iter())
            .filter(|(_, port)| nat.contains(*port))
            .cloned()
            .collect(),
        sockets,
    }
}

/// A file under `/sys/class/net/IF/` as a number.
fn sys_number(interface: &str, file: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `interface`'s peer when it is a veth (`ethtool -i` says `driver: veth`).
fn veth_peer(interface: &str) -> Option<VethPeer> {
    let info = Command::new("ethtool")
        .args(["-i", interface])
        .output()
        .ok()?;
    let driver = String::from_utf8_lossy(&info.stdout);
    if !driver.lines().any(|l| l.trim() == "driver: veth") {
        return None;
    }
    // A peer in another namespace: `ip link` names it `link-netns`/`link-netnsid`, and its ifindex
    // (`iflink`) is that namespace's, so it must not be looked up here.
    let link = Command::new("ip")
        .args(["-o", "link", "show", "dev", interface])
        .output()
        .ok()?;
    if String::from_utf8_lossy(&link.stdout).contains(" link-netns") {
        return Some(VethPeer::default());
    }
    let index = sys_number(interface, "ifindex")?;
    let peer_index = sys_number(interface, "iflink")?;
    let peer = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| {
            sys_number(name, "ifindex") == Some(peer_index)
                && sys_number(name, "iflink") == Some(index)
        });
    let tx_checksum = peer.as_deref().and_then(tx_checksum_on);
    Some(VethPeer {
        name: peer,
        tx_checksum,
    })
}

/// Whether `interface`'s TX checksum offload is on (`ethtool -k`: `tx-checksumming: on`).
fn tx_checksum_on(interface: &str) -> Option<bool> {
    let out = Command::new("ethtool")
        .args(["-k", interface])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("tx-checksumming: "))
        .map(|v| v.starts_with("on"))
}

/// The effective `rp_filter` of `interface`: the larger of `all`'s and its own.
fn rp_filter(interface: &str) -> Option<u8> {
    let read = |name: &str| -> Option<u8> {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(read("all")?.max(read(interface)?))
}

/// Local ports of listening TCP sockets and bound UDP sockets (`/proc/net/tcp`, `/proc/net/udp`).
fn bound_ports() -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for (proto, path) in [("tcp", "/proc/net/tcp"), ("udp", "/proc/net/udp")] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        out.extend(parse_proc_net(&text, proto == "tcp").map(|p| (proto.to_owned(), p)));
    }
    out.sort();
    out.dedup();
    out
}

/// The local ports of `/proc/net/{tcp,udp}` lines; for TCP only listening sockets (state `0A`).
fn parse_proc_net(text: &str, listening_only: bool) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let state = fields.get(3)?;
        if listening_only && *state != "0A" {
            return None;
        }
        u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[nat]
port_range = "20000-29999"
"#;

    fn config() -> Config {
        crate::config::parse(CONFIG, "t.toml", None).unwrap()
    }

    fn port(role: &str, interface: &str, uplink: bool) -> PortFacts {
        PortFacts {
            role: role.into(),
            interface: interface.into(),
            uplink,
            rp_filter: Some(0),
            veth_peer: None,
        }
    }

    fn clean() -> Environment {
        Environment {
            ports: vec![port("lan", "lan0", false), port("isp1", "wan1", true)],
            local_port_range: Some(PortRange::new(32768, 60999).unwrap()),
            sockets_in_nat_range: Vec::new(),
            sockets: Vec::new(),
        }
    }

    #[test]
    fn a_clean_machine_has_no_warning() {
        assert_eq!(warnings(&config(), &clean()), Vec::<String>::new());
    }

    #[test]
    fn a_veth_peer_with_tx_checksum_offload_is_named_with_the_fix() {
        let mut env = clean();
        env.ports[0].veth_peer = Some(VethPeer {
            name: Some("lan0-peer".into()),
            tx_checksum: Some(true),
        });
        env.ports[1].veth_peer = Some(VethPeer {
            name: Some("wan1-peer".into()),
            tx_checksum: Some(false),
        });
        let w = warnings(&config(), &env);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "lan0 (lan) is a veth whose peer lan0-peer keeps TX checksum offload on"
            ),
            "{w:?}"
        );
        assert!(w[0].contains("ethtool -K lan0-peer tx off"), "{w:?}");
        env.ports[1].veth_peer = Some(VethPeer::default());
        let w = warnings(&config(), &env);
        assert!(
            w[1].contains("wan1 (isp1) is a veth whose peer is in another network namespace"),
            "{w:?}"
        );
    }

    #[test]
    fn strict_rp_filter_matters_on_uplinks_only() {
        let mut env = clean();
        env.ports[0].rp_filter = Some(1);
        assert!(warnings(&config(), &env).is_empty());
        env.ports[1].rp_filter = Some(2);
        assert!(warnings(&config(), &env).is_empty(), "loose is fine");
        env.ports[1].rp_filter = Some(1);
        let w = warnings(&config(), &env);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("wan1 (isp1) has strict reverse-path filtering"),
            "{w:?}"
        );
    }

    #[test]
    fn the_nat_range_against_the_local_ports_and_bound_sockets() {
        let mut env = clean();
        env.local_port_range = None;
        env.sockets_in_nat_range = vec![("udp".into(), 20053)];
        let w = warnings(&config(), &env);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("ip_local_port_range could not be read"),
            "{w:?}"
        );
        assert!(
            w[1].contains(
                "a local udp socket is bound to port 20053, inside the NAT range 20000-29999"
            ),
            "{w:?}"
        );
        env.local_port_range = Some(PortRange::new(25000, 60999).unwrap());
        assert!(
            warnings(&config(), &env)[0]
                .contains("overlaps net.ipv4.ip_local_port_range 25000-60999")
        );
    }

    #[test]
    fn a_forwarded_port_the_router_listens_on_is_named() {
        let text = format!(
            "{CONFIG}\n[[forward]]\nname = \"ssh\"\nuplinks = [\"isp1\"]\nprotocol = \"tcp\"\nport = 22\nto = \"10.77.0.5\"\n"
        );
        let config = crate::config::parse(&text, "f", None).expect("valid");
        let mut env = clean();
        env.sockets = vec![("tcp".into(), 22), ("udp".into(), 22), ("tcp".into(), 23)];
        let w = warnings(&config, &env);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("listens on tcp port 22, which forward `ssh` forwards"),
            "{w:?}"
        );
    }

    #[test]
    fn proc_net_lines_give_local_ports_listening_tcp_only() {
        let tcp = "  sl  local_address rem_address   st tx_queue\n\
                   0: 00000000:4E35 00000000:0000 0A 00000000:00000000\n\
                   1: 0100007F:4E36 0100007F:1F90 01 00000000:00000000\n";
        assert_eq!(parse_proc_net(tcp, true).collect::<Vec<_>>(), [0x4E35]);
        assert_eq!(
            parse_proc_net(tcp, false).collect::<Vec<_>>(),
            [0x4E35, 0x4E36]
        );
    }
}
