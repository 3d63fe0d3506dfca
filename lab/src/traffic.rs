//! Real clients run on the LAN hosts against the inet servers: curl, iperf3 and an echo client.
//! Used by the end-to-end tests, the demo and the benchmarks. Each function blocks until its
//! client finishes; run several from scoped threads for parallel traffic.
//!
//! Invariant: a report only counts what the client itself observed (HTTP status codes, iperf3's
//! JSON, echo replies); failures are data in the report, or errors when the client could not run.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::Lab;
use crate::plan::LanHost;

/// Result of a batch of HTTP GETs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HttpReport {
    /// Requests made.
    pub requests: usize,
    /// Requests answered `200`.
    pub ok: usize,
    /// Status codes of the others (`000` = no response).
    pub failed_codes: Vec<String>,
}

/// `requests` GETs from `host`, one new TCP connection each (`Connection: close`), cycling over
/// every server address, in one curl process.
pub fn http_get(lab: &Lab, host: &LanHost, requests: usize) -> Result<HttpReport> {
    let inet = lab.inet();
    let urls: Vec<String> = (0..requests)
        .map(|i| {
            format!(
                "http://{}:{}/",
                inet.server_addrs[i % inet.server_addrs.len()],
                inet.http_port
            )
        })
        .collect();
    let mut argv = vec![
        "curl",
        "-s",
        "-H",
        "Connection: close",
        "--connect-timeout",
        "3",
        "--max-time",
        "5",
    ];
    argv.extend(["-w", "%{http_code}\\n"]);
    for url in &urls {
        argv.extend(["-o", "/dev/null", url.as_str()]);
    }
    // curl's exit status reflects only the last transfer; the per-request codes are the truth.
    let output = lab.exec(&host.ns, &argv)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(parse_http_codes(&stdout, requests))
}

/// Turns curl's one-code-per-line output into a report of `requests` requests.
pub fn parse_http_codes(output: &str, requests: usize) -> HttpReport {
    let codes: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let ok = codes.iter().filter(|code| **code == "200").count();
    let mut failed_codes: Vec<String> = codes
        .iter()
        .filter(|code| **code != "200")
        .map(|c| (*c).to_owned())
        .collect();
    // A curl that died early printed fewer codes: the missing ones failed too.
    failed_codes.extend(std::iter::repeat_n(
        "missing".to_owned(),
        requests.saturating_sub(codes.len()),
    ));
    HttpReport {
        requests,
        ok,
        failed_codes,
    }
}

/// What an iperf3 client should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IperfMode {
    /// TCP with this many parallel streams.
    Tcp {
        /// Parallel streams (`-P`).
        streams: u32,
    },
    /// UDP at this bitrate in bits per second.
    Udp {
        /// Target bitrate (`-b`).
        bits_per_second: u64,
    },
}

/// Result of one iperf3 client run, as iperf3 reported it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct IperfReport {
    /// Bytes the client sent.
    pub sent_bytes: u64,
    /// Bytes the server received.
    pub received_bytes: u64,
    /// UDP only: datagrams sent and datagrams lost (as seen by the server).
    pub udp_packets: Option<(u64, u64)>,
    /// Receiver throughput in bits per second.
    pub received_bits_per_second: f64,
}

/// Runs an iperf3 client on `host` against the iperf3 server `server` (one of
/// [`crate::InetNode::iperf_servers`]) for `seconds`.
pub fn iperf3(
    lab: &Lab,
    host: &LanHost,
    server: SocketAddrV4,
    mode: IperfMode,
    seconds: u32,
) -> Result<IperfReport> {
    let (port, seconds) = (server.port().to_string(), seconds.to_string());
    let server = server.ip().to_string();
    let mut argv = vec![
        "iperf3", "--client", &server, "--port", &port, "--time", &seconds, "--json",
    ];
    let (streams, bitrate);
    match mode {
        IperfMode::Tcp { streams: count } => {
            streams = count.to_string();
            argv.extend(["--parallel", &streams]);
        }
        IperfMode::Udp { bits_per_second } => {
            bitrate = bits_per_second.to_string();
            argv.extend(["--udp", "--bitrate", &bitrate]);
        }
    }
    let output = lab.exec(&host.ns, &argv)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "iperf3 {mode:?} from {} to {server}:{port} failed ({}): {} {}",
            host.ns,
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_iperf_json(&stdout, mode)
}

/// Extracts an [`IperfReport`] from `iperf3 --json` output.
pub fn parse_iperf_json(json: &str, mode: IperfMode) -> Result<IperfReport> {
    let document: serde_json::Value =
        serde_json::from_str(json).context("iperf3 output is not JSON")?;
    if let Some(error) = document.get("error").and_then(serde_json::Value::as_str) {
        bail!("iperf3 reported: {error}");
    }
    let end = document.get("end").context("iperf3 JSON has no \"end\"")?;
    let number = |section: &str, field: &str| -> Result<f64> {
        end.get(section)
            .and_then(|s| s.get(field))
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("iperf3 JSON lacks end.{section}.{field}"))
    };
    // iperf3 reports byte and packet counts as integral JSON numbers; truncation is exact.
    let whole = |value: f64| value as u64;
    match mode {
        IperfMode::Tcp { .. } => Ok(IperfReport {
            sent_bytes: whole(number("sum_sent", "bytes")?),
            received_bytes: whole(number("sum_received", "bytes")?),
            udp_packets: None,
            received_bits_per_second: number("sum_received", "bits_per_second")?,
        }),
        IperfMode::Udp { .. } => {
            let packets = whole(number("sum", "packets")?);
            let lost = whole(number("sum", "lost_packets")?);
            let sent_bytes = whole(number("sum", "bytes")?);
            let seconds = number("sum", "seconds")?.max(f64::EPSILON);
            let lost_bytes = (sent_bytes * lost).checked_div(packets).unwrap_or(0);
            let received_bytes = sent_bytes.saturating_sub(lost_bytes);
            Ok(IperfReport {
                sent_bytes,
                received_bytes,
                udp_packets: Some((packets, lost)),
                received_bits_per_second: received_bytes as f64 * 8.0 / seconds,
            })
        }
    }
}

/// Transport of an echo exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoProtocol {
    /// One UDP socket for every server.
    Udp,
    /// One TCP connection per server.
    Tcp,
}

/// One echo exchange: which server, from which local port, and how the server saw the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EchoReply {
    /// Server address asked.
    pub server: Ipv4Addr,
    /// Client's local port.
    pub local_port: u16,
    /// The client's address and port as the server saw them (after NAT); `None` = no answer.
    pub seen_as: Option<SocketAddrV4>,
}

/// The echo client, run with `python3 -c`: `proto port timeout server...`; prints
/// `server local_port reply` per server (`reply` = `timeout` when nothing came back). UDP uses
/// one socket for every server (up to 5 tries of `timeout` each); TCP one connection per server
/// (up to 3 tries of 3 × `timeout`, since a lost SYN is only retransmitted after 1 s).
const ECHO_CLIENT: &str = r#"
import socket, sys
proto, port, timeout, servers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
if proto == "udp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(timeout)
    for server in servers:
        reply = "timeout"
        for attempt in range(5):
            sock.sendto(b"ping\n", (server, port))
            try:
                while True:
                    data, peer = sock.recvfrom(512)
                    if peer[0] == server:
                        reply = data.decode().strip()
                        break
                break
            except socket.timeout:
                pass
        print(server, sock.getsockname()[1], reply, flush=True)
else:
    for server in servers:
        reply, local_port = "timeout", 0
        for attempt in range(3):
            try:
                conn = socket.create_connection((server, port), 3 * timeout)
                local_port = conn.getsockname()[1]
                data = b""
                while chunk := conn.recv(512):
                    data += chunk
                conn.close()
                reply = data.decode().strip() or "timeout"
                break
            except OSError:
                pass
        print(server, local_port, reply, flush=True)
"#;

/// Asks the echo on each of `servers` how it sees `host` (see [`EchoProtocol`]).
pub fn echo(
    lab: &Lab,
    host: &LanHost,
    protocol: EchoProtocol,
    servers: &[Ipv4Addr],
) -> Result<Vec<EchoReply>> {
    let proto = match protocol {
        EchoProtocol::Udp => "udp",
        EchoProtocol::Tcp => "tcp",
    };
    let port = lab.inet().echo_port.to_string();
    let servers: Vec<String> = servers.iter().map(Ipv4Addr::to_string).collect();
    let mut argv = vec!["python3", "-c", ECHO_CLIENT, proto, &port, "1.0"];
    argv.extend(servers.iter().map(String::as_str));
    let stdout = lab.exec_ok(&host.ns, &argv)?;
    stdout.lines().map(parse_echo_line).collect()
}

/// Parses one `server local_port reply` line of the echo client.
pub fn parse_echo_line(line: &str) -> Result<EchoReply> {
    let mut fields = line.split_whitespace();
    let (Some(server), Some(local_port), Some(reply)) =
        (fields.next(), fields.next(), fields.next())
    else {
        bail!("echo client printed {line:?}");
    };
    Ok(EchoReply {
        server: server
            .parse()
            .with_context(|| format!("server in {line:?}"))?,
        local_port: local_port
            .parse()
            .with_context(|| format!("port in {line:?}"))?,
        seen_as: if reply == "timeout" {
            None
        } else {
            Some(
                reply
                    .parse()
                    .with_context(|| format!("echo reply in {line:?}"))?,
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_codes_count_missing_lines_as_failures() {
        let report = parse_http_codes("200\n200\n000\n", 5);
        assert_eq!(report.ok, 2);
        assert_eq!(report.failed_codes, ["000", "missing", "missing"]);
        assert_eq!(parse_http_codes("200\n", 1).failed_codes.len(), 0);
    }

    #[test]
    fn echo_lines_parse_replies_and_timeouts() {
        let reply = parse_echo_line("203.0.113.10 40000 198.51.100.2:40000").unwrap();
        assert_eq!(reply.seen_as, Some("198.51.100.2:40000".parse().unwrap()));
        assert_eq!(reply.local_port, 40000);
        assert_eq!(
            parse_echo_line("203.0.113.11 0 timeout").unwrap().seen_as,
            None
        );
        assert!(parse_echo_line("garbage").is_err());
    }

    #[test]
    fn iperf_json_sums_are_extracted_per_mode() {
        let tcp = r#"{"end": {"sum_sent": {"bytes": 1000, "bits_per_second": 8000.0},
                               "sum_received": {"bytes": 990, "bits_per_second": 7920.0}}}"#;
        let report = parse_iperf_json(tcp, IperfMode::Tcp { streams: 4 }).unwrap();
        assert_eq!(
            (report.sent_bytes, report.received_bytes, report.udp_packets),
            (1000, 990, None)
        );
        let udp = r#"{"end": {"sum": {"bytes": 10000, "packets": 100, "lost_packets": 10, "seconds": 2.0}}}"#;
        let report = parse_iperf_json(udp, IperfMode::Udp { bits_per_second: 1 }).unwrap();
        assert_eq!(report.udp_packets, Some((100, 10)));
        assert_eq!(report.received_bytes, 9000);
        assert!((report.received_bits_per_second - 36000.0).abs() < 1e-6);
        let failed = r#"{"start": {}, "error": "unable to connect to server"}"#;
        let error = parse_iperf_json(failed, IperfMode::Tcp { streams: 1 })
            .unwrap_err()
            .to_string();
        assert!(error.contains("unable to connect"), "{error}");
    }
}
