//! The servers in the inet namespace, and the wait until they all listen.
//!
//! - HTTP (`python3 -m http.server`) on port 80 of every server address, serving a small page;
//! - iperf3 servers, server i on `server_addrs[i]:IPERF_PORTS[i]` (one test at a time each);
//! - an echo on TCP and UDP port 7777 that answers with the `address:port` it saw the client as
//!   (TCP: `socat ... SYSTEM:'echo $SOCAT_PEERADDR:$SOCAT_PEERPORT'`, one process per connection;
//!   UDP: [`UDP_ECHO_PY`], one datagram in, one `address:port` line back to its sender, in a single
//!   process — socat's `UDP4-RECVFROM,fork` forks a shell per datagram and, under load, now and then
//!   answered one datagram twice, to the previous peer, and another not at all). The TCP echo listens
//!   on the wildcard address; the UDP echo runs once per server address, bound to it, so its replies
//!   leave from the address the client sent to (an unbound UDP socket would answer from the
//!   address the route picks, which no NAT would match).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::command::run_in;
use crate::plan::Topology;
use crate::process::LabProcess;

/// How long servers get to start listening.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The echo's reply script: prints the peer as the server saw it.
pub const ECHO_SCRIPT: &str = "#!/bin/sh\necho \"$SOCAT_PEERADDR:$SOCAT_PEERPORT\"\n";

/// The UDP echo (`python3 -c UDP_ECHO_PY ADDRESS PORT`): answers every datagram with the sender's
/// `address:port` and a newline, to that sender, from the bound address.
pub const UDP_ECHO_PY: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    _, peer = s.recvfrom(65535)
    s.sendto(('%s:%d' % peer + chr(10)).encode(), peer)
";

/// A socket a server must have open before the lab is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `tcp` or `udp` (the `ss` netid).
    pub netid: &'static str,
    /// Local address it is bound to, or `None` for any (wildcard) address.
    pub addr: Option<std::net::Ipv4Addr>,
    /// Local port.
    pub port: u16,
}

/// Command lines of every server, and the listeners they open; `echo_script` is the path of a
/// file holding [`ECHO_SCRIPT`].
pub fn server_commands(
    topology: &Topology,
    http_root: &str,
    echo_script: &str,
) -> (Vec<Vec<String>>, Vec<Listener>) {
    let inet = &topology.inet;
    let echo_reply = format!("SYSTEM:{echo_script}");
    let echo_reply = echo_reply.as_str();
    let mut commands = Vec::new();
    let mut listeners = Vec::new();
    let http_port = inet.http_port.to_string();
    commands.push(
        [
            "python3",
            "-m",
            "http.server",
            &http_port,
            "--bind",
            "0.0.0.0",
            "--directory",
            http_root,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    listeners.push(Listener {
        netid: "tcp",
        addr: None,
        port: inet.http_port,
    });
    for server in &inet.iperf_servers {
        let (addr, port) = (server.ip().to_string(), server.port().to_string());
        commands.push(
            ["iperf3", "--server", "--bind", &addr, "--port", &port]
                .map(str::to_owned)
                .to_vec(),
        );
        listeners.push(Listener {
            netid: "tcp",
            addr: Some(*server.ip()),
            port: server.port(),
        });
    }
    let echo = inet.echo_port;
    commands.push(
        [
            "socat",
            &format!("TCP4-LISTEN:{echo},reuseaddr,fork"),
            echo_reply,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    listeners.push(Listener {
        netid: "tcp",
        addr: None,
        port: echo,
    });
    for addr in &inet.server_addrs {
        commands.push(
            [
                "python3",
                "-c",
                UDP_ECHO_PY,
                &addr.to_string(),
                &echo.to_string(),
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        listeners.push(Listener {
            netid: "udp",
            addr: Some(*addr),
            port: echo,
        });
    }
    (commands, listeners)
}

/// Whether `ss -Hlntu` output shows `listener`.
pub fn is_listening(ss_output: &str, listener: &Listener) -> bool {
    ss_output.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let netid = fields.next();
        let local = fields.nth(3);
        let Some((addr, port)) = local.and_then(|local| local.rsplit_once(':')) else {
            return false;
        };
        let addr_matches = match listener.addr {
            Some(wanted) => addr == wanted.to_string(),
            None => matches!(addr, "0.0.0.0" | "*" | "[::]"),
        };
        netid == Some(listener.netid) && port == listener.port.to_string() && addr_matches
    })
}

/// Waits until every listener is open in `ns`; fails early if a server exits, with its stderr.
pub fn wait_until_listening(
    ns: &str,
    listeners: &[Listener],
    servers: &[LabProcess],
) -> Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let sockets = run_in(ns, &["ss", "-Hlntu"])?;
        let missing: Vec<&Listener> = listeners
            .iter()
            .filter(|l| !is_listening(&sockets, l))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for server in servers {
            if let Some(status) = server.try_status()? {
                bail!(
                    "{} exited ({status}) before listening: {}",
                    server.description(),
                    server.stderr()?.trim()
                );
            }
        }
        if Instant::now() >= deadline {
            bail!("servers in {ns} not listening after {READY_DEADLINE:?}: {missing:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    const SS_SAMPLE: &str = "\
udp   UNCONN 0      0      203.0.113.10:7777       0.0.0.0:*
tcp   LISTEN 0      5           0.0.0.0:80         0.0.0.0:*
tcp   LISTEN 0      4096              *:5201             *:*
tcp   LISTEN 0      5           0.0.0.0:7777       0.0.0.0:*
";

    #[test]
    fn listeners_are_matched_by_protocol_address_and_port() {
        let tcp = |port| Listener {
            netid: "tcp",
            addr: None,
            port,
        };
        assert!(is_listening(SS_SAMPLE, &tcp(80)));
        assert!(is_listening(SS_SAMPLE, &tcp(5201)));
        assert!(!is_listening(SS_SAMPLE, &tcp(5202)));
        let udp = |last| Listener {
            netid: "udp",
            addr: Some(std::net::Ipv4Addr::new(203, 0, 113, last)),
            port: 7777,
        };
        assert!(is_listening(SS_SAMPLE, &udp(10)));
        assert!(!is_listening(SS_SAMPLE, &udp(11)));
        assert!(!is_listening(
            SS_SAMPLE,
            &Listener {
                netid: "udp",
                addr: None,
                port: 80
            }
        ));
    }

    #[test]
    fn every_server_address_gets_a_bound_udp_echo() {
        let topology = Topology::plan("fps", &LabSpec::default());
        let (commands, listeners) = server_commands(&topology, "/srv", "/srv/echo.sh");
        let udp_echoes: Vec<&Vec<String>> = commands
            .iter()
            .filter(|c| c[0] == "python3" && c[2] == UDP_ECHO_PY)
            .collect();
        assert_eq!(udp_echoes.len(), topology.inet.server_addrs.len());
        for addr in &topology.inet.server_addrs {
            assert!(
                udp_echoes
                    .iter()
                    .any(|c| c[3] == addr.to_string() && c[4] == "7777"),
                "{addr}"
            );
        }
        assert_eq!(
            listeners.iter().filter(|l| l.netid == "tcp").count(),
            1 + 4 + 1
        );
    }
}
