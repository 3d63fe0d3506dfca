//! Active probes sent *through* one uplink: bound to its interface (`SO_BINDTODEVICE`) and its address,
//! so they leave by that uplink whatever the main routing table says, and their replies come back to
//! it. Source ports come from the kernel's ephemeral range, which validation keeps outside the NAT
//! range, and echo ids are below 1024 (never in the NAT range): the XDP program passes the replies to the
//! kernel (`pass_uplink_own`), and no probe creates a flow.
//!
//! Each probe returns its RTT, or the [`ProbeFailure`] that made it count as lost: no answer within
//! the timeout, or an answer that says the service is broken (a DNS response other than NOERROR, an
//! HTTP status outside the expected range, a certificate that does not verify).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::http_probe;
use crate::config::{ProbeKind, ProbeTarget};

/// Why a probe counts as lost.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    /// Nothing (or nothing complete) came back within the timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The socket failed (refused bind, unreachable, reset, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A DNS response whose code is not NOERROR.
    #[error("DNS answered {}", dns_rcode_name(*.0))]
    DnsRcode(u8),
    /// An HTTP status outside `expect_status`.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The HTTP body lacked `expect_body`.
    #[error("HTTP body lacks the expected text")]
    HttpBody,
    /// Not an HTTP/1.x response.
    #[error("malformed HTTP response")]
    HttpMalformed,
    /// The TLS handshake failed (certificate not trusted, wrong name, ...) or could not start.
    #[error("TLS: {0}")]
    Tls(String),
}

/// How a probe ended: its RTT, or why it counts as lost.
pub type ProbeOutcome = Result<Duration, ProbeFailure>;

/// Where a probe leaves from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSource {
    /// The uplink's interface.
    pub interface: String,
    /// The uplink's address.
    pub address: Ipv4Addr,
}

/// ICMP echo identifiers of probes: below 1024, so never inside a NAT range.
pub const ECHO_ID_BASE: u16 = 0x0300;

/// Probes `target` once from `source`; `sequence` tells rounds apart; `tls` is the HTTPS client
/// (`Err`: it could not be built). `Ok(rtt)` when answered as expected.
pub async fn probe(
    target: &ProbeTarget,
    source: &ProbeSource,
    slot: u8,
    sequence: u16,
    timeout: Duration,
    tls: Result<Option<std::sync::Arc<rustls::ClientConfig>>, String>,
) -> ProbeOutcome {
    let start = Instant::now();
    let attempt = async {
        match (target.kind, &target.http) {
            (ProbeKind::Icmp, _) => {
                icmp_echo(target.address, source, slot, sequence, timeout).await
            }
            (ProbeKind::Tcp, _) => tcp_connect(target.address, target.port, source).await,
            (ProbeKind::Dns, _) => dns_query(target, source, sequence).await,
            (ProbeKind::Http | ProbeKind::Https, Some(check)) => {
                let tls = tls.map_err(ProbeFailure::Tls)?;
                http_probe::http_get(target, check, source, tls).await
            }
            (ProbeKind::Http | ProbeKind::Https, None) => Err(ProbeFailure::HttpMalformed),
        }
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(ProbeFailure::Timeout(timeout.as_millis() as u64)),
    };
    if let Err(failure) = &outcome {
        tracing::trace!(%failure, target = %target.label(), "probe failed");
    }
    outcome
}

/// A socket bound to the uplink's interface and address.
fn bound_socket(kind: Type, protocol: Protocol, source: &ProbeSource) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, kind, Some(protocol))?;
    socket.bind_device(Some(source.interface.as_bytes()))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(source.address, 0)))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The ICMP echo request flowpin sends: type 8, the uplink's id, the round's sequence, 16 bytes of
/// payload.
pub fn echo_request(id: u16, sequence: u16) -> [u8; 24] {
    let mut packet = [0u8; 24];
    packet[0] = 8;
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..].copy_from_slice(b"flowpin-health..");
    let checksum = flowpin_nat::checksum::internet_checksum(&packet, 0);
    packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    packet
}

/// Whether `datagram` (an IPv4 packet as a raw socket reads it) is the echo reply from `from` with `id`
/// and `sequence`.
pub fn is_echo_reply(datagram: &[u8], from: Ipv4Addr, id: u16, sequence: u16) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    let header = usize::from(first & 0x0f) * 4;
    if datagram.len() < header + 8 || header < 20 || datagram[9] != 1 {
        return false;
    }
    let source = Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    let icmp = &datagram[header..];
    source == from
        && icmp[0] == 0
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == sequence.to_be_bytes()
}

async fn icmp_echo(
    target: Ipv4Addr,
    source: &ProbeSource,
    slot: u8,
    sequence: u16,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let source = source.clone();
    // A raw socket has no async wrapper without `unsafe` registration: wait for the reply on the
    // blocking pool, bounded by the probe timeout.
    tokio::task::spawn_blocking(move || {
        icmp_echo_blocking(target, &source, slot, sequence, timeout)
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(ProbeFailure::from)
}

fn icmp_echo_blocking(
    target: Ipv4Addr,
    source: &ProbeSource,
    slot: u8,
    sequence: u16,
    timeout: Duration,
) -> std::io::Result<()> {
    let socket = bound_socket(Type::RAW, Protocol::ICMPV4, source)?;
    socket.set_nonblocking(false)?;
    let id = ECHO_ID_BASE + u16::from(slot);
    socket.send_to(
        &echo_request(id, sequence),
        &SockAddr::from(SocketAddrV4::new(target, 0)),
    )?;
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(left))?;
        let len = (&socket).read(&mut buffer)?;
        if is_echo_reply(&buffer[..len], target, id, sequence) {
            return Ok(());
        }
    }
}

/// A TCP connection to `target:port` bound to the uplink's interface and address.
pub async fn connect_bound(
    target: Ipv4Addr,
    port: u16,
    source: &ProbeSource,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind_device(Some(source.interface.as_bytes()))?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source.address, 0)))?;
    socket
        .connect(SocketAddr::V4(SocketAddrV4::new(target, port)))
        .await
}

async fn tcp_connect(
    target: Ipv4Addr,
    port: u16,
    source: &ProbeSource,
) -> Result<(), ProbeFailure> {
    match connect_bound(target, port, source).await {
        Ok(_stream) => Ok(()),
        // An RST from the target: the path through the uplink works.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// A DNS query (RFC 1035 §4.1) for `name`, type A, class IN, recursion desired, with id `id`.
pub fn dns_query_packet(name: &str, id: u16) -> Vec<u8> {
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        packet.push(label.len().min(63) as u8);
        packet.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    packet.push(0);
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet
}

/// Whether `message` is a DNS response (QR set) with id `id`.
pub fn is_dns_response(message: &[u8], id: u16) -> bool {
    message.len() >= 12 && message[0..2] == id.to_be_bytes() && message[2] & 0x80 != 0
}

/// The response code of a DNS message (RFC 1035 §4.1.1; the header's low 4 bits of byte 3).
pub fn dns_rcode(message: &[u8]) -> u8 {
    message.get(3).map_or(0, |b| b & 0x0f)
}

/// The name of DNS response code `rcode` (RFC 1035, RFC 6895 §2.3).
pub fn dns_rcode_name(rcode: u8) -> String {
    match rcode {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE {other}"),
    }
}

/// The verdict on a DNS response: only NOERROR answers. SERVFAIL and REFUSED (the resolver is
/// broken or not serving us) and NXDOMAIN (the configured name must exist) are failures.
pub fn judge_dns_response(message: &[u8]) -> Result<(), ProbeFailure> {
    match dns_rcode(message) {
        0 => Ok(()),
        rcode => Err(ProbeFailure::DnsRcode(rcode)),
    }
}

async fn dns_query(
    target: &ProbeTarget,
    source: &ProbeSource,
    sequence: u16,
) -> Result<(), ProbeFailure> {
    let socket = bound_socket(Type::DGRAM, Protocol::UDP, source)?;
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    let server = SocketAddr::V4(SocketAddrV4::new(target.address, target.port));
    let id = sequence ^ rand::random::<u16>();
    socket
        .send_to(&dns_query_packet(&target.query, id), server)
        .await?;
    let mut buffer = [0u8; 1500];
    loop {
        let (len, from) = socket.recv_from(&mut buffer).await?;
        if from == server && is_dns_response(&buffer[..len], id) {
            return judge_dns_response(&buffer[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_has_a_valid_checksum_and_matches_its_reply() {
        let request = echo_request(ECHO_ID_BASE + 1, 77);
        assert_eq!(flowpin_nat::checksum::internet_checksum(&request, 0), 0);
        let mut reply = vec![
            0x45, 0, 0, 44, 0, 0, 0, 0, 64, 1, 0, 0, 203, 0, 113, 10, 192, 0, 2, 2,
        ];
        let mut icmp = request;
        icmp[0] = 0;
        reply.extend_from_slice(&icmp);
        let from = Ipv4Addr::new(203, 0, 113, 10);
        assert!(is_echo_reply(&reply, from, ECHO_ID_BASE + 1, 77));
        assert!(
            !is_echo_reply(&reply, from, ECHO_ID_BASE + 1, 78),
            "other round"
        );
        assert!(
            !is_echo_reply(&reply, from, ECHO_ID_BASE + 2, 77),
            "other uplink"
        );
        assert!(!is_echo_reply(
            &reply,
            Ipv4Addr::new(203, 0, 113, 11),
            ECHO_ID_BASE + 1,
            77
        ));
        reply[20] = 8;
        assert!(
            !is_echo_reply(&reply, from, ECHO_ID_BASE + 1, 77),
            "a request is no reply"
        );
        assert!(
            !is_echo_reply(&reply[..24], from, ECHO_ID_BASE + 1, 77),
            "truncated"
        );
    }

    #[test]
    fn dns_query_encodes_labels_and_responses_match_by_id() {
        let q = dns_query_packet("probe.flowpin.test.", 0xBEEF);
        assert_eq!(&q[..4], &[0xBE, 0xEF, 0x01, 0x00]);
        assert_eq!(&q[12..18], b"\x05probe");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(is_dns_response(&response, 0xBEEF));
        assert!(!is_dns_response(&q, 0xBEEF), "a query is no response");
        assert!(!is_dns_response(&response, 0xBEEE));
    }

    #[test]
    fn only_a_noerror_dns_response_counts_as_answered() {
        let mut response = dns_query_packet("probe.flowpin.test", 7);
        response[2] |= 0x80;
        response[3] = 0x80; // RA, NOERROR
        assert!(judge_dns_response(&response).is_ok());
        for (rcode, name) in [(2u8, "SERVFAIL"), (5, "REFUSED"), (3, "NXDOMAIN")] {
            response[3] = 0x80 | rcode;
            let failure = judge_dns_response(&response).unwrap_err();
            assert!(matches!(failure, ProbeFailure::DnsRcode(r) if r == rcode));
            assert_eq!(failure.to_string(), format!("DNS answered {name}"));
        }
    }
}
