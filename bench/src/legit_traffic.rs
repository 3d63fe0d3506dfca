//! The legitimate traffic that runs beside a SYN flood, to measure what survives it:
//!
//! - one *established* UDP flow: a LAN host sends datagrams at a steady moderate rate from one socket
//!   to a reflector in the internet namespace ([`serve_reflector`]), which sends each one back, so the
//!   router sees the flow answered in both directions (kernel conntrack marks it assured after 2 s of
//!   replies; flowpin has it in its table) before the flood starts;
//! - *fresh connections*: a TCP connect to a server every [`LegitSpec::probe_interval`], each from a new
//!   source port, given less time than the first SYN retransmission (1 s), so it succeeds only if the
//!   router lets the very first SYN of a new flow through.
//!
//! [`serve_legit`] runs both in the LAN host's namespace as a line-driven service (see
//! [`crate::service::Service`]): `ready` once the established flow has been answered for the warm-up
//! time, then one JSON [`LegitReading`] per stdin line. The sink behind the router counts the
//! established flow's datagrams apart (its destination port is watched), so its delivered fraction is
//! measured where it leaves the router.
//!
//! Invariants: counters only grow; the sender never sends ahead of `rate × elapsed`; a probe counts as
//! tried before it starts and as connected only when the handshake completed in time.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The destination port of the established flow (the sinks watch it).
pub const ESTABLISHED_PORT: u16 = 7100;
/// The longest the established flow may take to be answered at start.
const FIRST_REPLY_LIMIT: Duration = Duration::from_secs(10);

/// What the legitimate traffic should be.
#[derive(Debug, Clone, Copy)]
pub struct LegitSpec {
    /// The reflector of the established flow.
    pub established_server: SocketAddrV4,
    /// Datagrams per second of the established flow.
    pub rate_pps: u32,
    /// The TCP server fresh connections go to.
    pub probe_server: SocketAddrV4,
    /// Time between fresh connections.
    pub probe_interval: Duration,
    /// Time a fresh connection gets to complete its handshake.
    pub probe_timeout: Duration,
    /// How long the established flow must have been answered before `ready`.
    pub warm_up: Duration,
}

/// What the legitimate traffic has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegitReading {
    /// Datagrams of the established flow sent.
    pub established_sent: u64,
    /// Of them, answered by the reflector (a round trip through the router).
    pub established_replies: u64,
    /// Fresh connections attempted (finished or not).
    pub probes_tried: u64,
    /// Fresh connections whose handshake completed within the probe timeout.
    pub probes_connected: u64,
}

impl LegitReading {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &LegitReading) -> LegitReading {
        LegitReading {
            established_sent: self
                .established_sent
                .saturating_sub(earlier.established_sent),
            established_replies: self
                .established_replies
                .saturating_sub(earlier.established_replies),
            probes_tried: self.probes_tried.saturating_sub(earlier.probes_tried),
            probes_connected: self
                .probes_connected
                .saturating_sub(earlier.probes_connected),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    replies: AtomicU64,
    tried: AtomicU64,
    connected: AtomicU64,
}

impl Counters {
    fn reading(&self) -> LegitReading {
        LegitReading {
            established_sent: self.sent.load(Ordering::Relaxed),
            established_replies: self.replies.load(Ordering::Relaxed),
            probes_tried: self.tried.load(Ordering::Relaxed),
            probes_connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// Runs the legitimate traffic of `spec` and serves readings until stdin closes.
pub fn serve_legit(spec: &LegitSpec) -> Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding the established flow's socket")?;
    socket
        .connect(spec.established_server)
        .with_context(|| format!("connecting to {}", spec.established_server))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let counters = Arc::new(Counters::default());
    let sender = socket.try_clone()?;
    let rate = f64::from(spec.rate_pps.max(1));
    let sending = Arc::clone(&counters);
    std::thread::Builder::new()
        .name("established-tx".into())
        .spawn(move || {
            let start = Instant::now();
            let mut sent: u64 = 0;
            loop {
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                while sent < due {
                    // A refused send (ICMP error from an earlier datagram) still counts: it was offered.
                    let _ = sender.send(&sent.to_be_bytes());
                    sent += 1;
                    sending.sent.store(sent, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })?;
    let receiving = Arc::clone(&counters);
    std::thread::Builder::new()
        .name("established-rx".into())
        .spawn(move || {
            let mut buffer = [0u8; 64];
            loop {
                if socket.recv(&mut buffer).is_ok() {
                    receiving.replies.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?;
    let started = Instant::now();
    let first_reply = loop {
        if counters.replies.load(Ordering::Relaxed) > 0 {
            break Instant::now();
        }
        if started.elapsed() > FIRST_REPLY_LIMIT {
            bail!(
                "the established flow to {} got no reply within {FIRST_REPLY_LIMIT:?}",
                spec.established_server
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(spec.warm_up.saturating_sub(first_reply.elapsed()));
    let probing = Arc::clone(&counters);
    let probe = *spec;
    std::thread::Builder::new()
        .name("fresh-probes".into())
        .spawn(move || {
            loop {
                std::thread::sleep(probe.probe_interval);
                probing.tried.fetch_add(1, Ordering::Relaxed);
                let server = SocketAddr::V4(probe.probe_server);
                if TcpStream::connect_timeout(&server, probe.probe_timeout).is_ok() {
                    probing.connected.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line.context("reading stdin")?;
        writeln!(out, "{}", serde_json::to_string(&counters.reading())?)?;
        out.flush()?;
    }
    Ok(())
}

/// Sends every UDP datagram arriving at `address` back to its sender, forever (the service is
/// killed). Bound to the server's own address, so replies leave from the address the flow was sent
/// to (a wildcard socket would answer from the interface's address, which no NAT maps back).
pub fn serve_reflector(address: SocketAddrV4) -> Result<()> {
    let socket = UdpSocket::bind(address).with_context(|| format!("binding UDP {address}"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut buffer = [0u8; 2048];
    loop {
        reflect_one(&socket, &mut buffer)?;
    }
}

/// Receives one datagram on `socket` and sends it back to its sender.
fn reflect_one(socket: &UdpSocket, buffer: &mut [u8]) -> Result<()> {
    let (len, peer) = socket.recv_from(buffer)?;
    // A lost reply is what the measurement is about; never stop for it.
    let _ = socket.send_to(&buffer[..len], peer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_subtract_fieldwise() {
        let earlier = LegitReading {
            established_sent: 10,
            established_replies: 9,
            probes_tried: 3,
            probes_connected: 2,
        };
        let later = LegitReading {
            established_sent: 25,
            established_replies: 20,
            probes_tried: 5,
            probes_connected: 2,
        };
        assert_eq!(
            later.since(&earlier),
            LegitReading {
                established_sent: 15,
                established_replies: 11,
                probes_tried: 2,
                probes_connected: 0,
            }
        );
    }

    #[test]
    fn the_reflector_answers_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        let reflector = std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            reflect_one(&server, &mut buffer)
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(address).unwrap();
        client.send(b"seven").unwrap();
        let mut buffer = [0u8; 8];
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let len = client.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], b"seven");
        reflector.join().unwrap().unwrap();
    }
}
