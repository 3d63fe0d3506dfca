//! Long-lived TCP and UDP flows from one LAN host, watched packet by packet across a failover.
//!
//! A python client on the host opens TCP connections to a *held* echo in inet (it first prints the
//! client's address:port as it saw it, then echoes everything back) — busy ones (`tcp`, a byte every
//! period) and idle ones (`tcp-idle`, silent after the greeting) — and UDP sockets to the lab's UDP
//! echo (which answers every datagram with the source it saw). It keeps opening flows until at
//! least `min_per_uplink` of each kind sit on every uplink (the uplink is known from the address the
//! server saw), then sends one small message per flow every `period_ms` until `seconds` have passed,
//! reads for 1.5 s more (so every echo in flight arrives), and prints, per flow, every reply (with
//! the source the UDP echo saw) and the error that ended a TCP connection (`reset` for ECONNRESET,
//! `eof`). Timestamps are the wall clock (seconds since the
//! epoch), comparable with [`epoch_seconds`] in the test process.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use flowpin_lab::servers::{Listener, wait_until_listening};
use flowpin_lab::{Lab, LabProcess, LanHost};

/// TCP port of the held echo [`start_held_echo`] starts.
pub const HELD_ECHO_PORT: u16 = 7778;

const CLIENT: &str = r#"
import json, select, socket, sys, time
tcp_server, udp_server = sys.argv[1], sys.argv[2]
uplinks = sys.argv[3].split(",")
min_per, max_flows, period, seconds = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]) / 1000, float(sys.argv[7])
def endpoint(text):
    host, port = text.rsplit(":", 1)
    return (host, int(port))
flows = []
def enough(proto):
    return all(sum(1 for f in flows if f["proto"] == proto and f["seen"].split(":")[0] == u) >= min_per for u in uplinks)
for kind in ("tcp", "tcp-idle"):
    opened = 0
    while not enough(kind) and opened < max_flows:
        opened += 1
        s = socket.create_connection(endpoint(tcp_server), 5)
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                raise SystemExit("held echo closed before naming the peer")
            line += chunk
        s.setblocking(False)
        flows.append({"proto": kind, "sock": s, "local_port": s.getsockname()[1], "seen": line.decode().strip(), "replies": [], "end": None, "sent": 0})
opened = 0
while not enough("udp") and opened < max_flows:
    opened += 1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(1.0)
    seen = None
    for attempt in range(5):
        s.sendto(b"hello\n", endpoint(udp_server))
        try:
            data, peer = s.recvfrom(512)
            seen = data.decode().strip()
            break
        except socket.timeout:
            pass
    if seen is None:
        raise SystemExit("the UDP echo did not answer")
    s.setblocking(False)
    flows.append({"proto": "udp", "sock": s, "local_port": s.getsockname()[1], "seen": seen, "replies": [], "end": None, "sent": 0})
print(json.dumps({"ready": [{"proto": f["proto"], "local_port": f["local_port"], "seen": f["seen"]} for f in flows]}), flush=True)
start = time.time()
# Each flow sends at its own offset within the period, so the echoes never get a burst.
for i, f in enumerate(flows):
    f["next"] = start + period * i / len(flows)
# Send for `seconds`, then only read for DRAIN seconds so every echo in flight arrives.
DRAIN = 1.5
while time.time() - start < seconds + DRAIN:
    now = time.time()
    sending = now - start < seconds
    for f in flows:
        if f["end"] is not None or f["proto"] == "tcp-idle" or now < f["next"] or not sending:
            continue
        f["next"] += period
        try:
            if f["proto"] == "tcp":
                f["sock"].send(b"x")
            else:
                f["sock"].sendto(b"ping\n", endpoint(udp_server))
            f["sent"] += 1
        except BlockingIOError:
            pass
        except OSError as e:
            f["end"] = [time.time(), "reset" if isinstance(e, ConnectionResetError) else "error:" + str(e)]
    next_send = min(f["next"] for f in flows) if sending else start + seconds + DRAIN
    live = [f for f in flows if f["end"] is None]
    readable, _, _ = select.select([f["sock"] for f in live], [], [], max(0.0, next_send - time.time()))
    for f in live:
        if f["sock"] not in readable:
            continue
        try:
            if f["proto"] != "udp":
                data = f["sock"].recv(4096)
                if not data:
                    f["end"] = [time.time(), "eof"]
                else:
                    for _ in range(len(data)):
                        f["replies"].append([time.time(), None])
            else:
                data, peer = f["sock"].recvfrom(512)
                f["replies"].append([time.time(), data.decode().strip()])
        except ConnectionResetError:
            f["end"] = [time.time(), "reset"]
        except OSError as e:
            f["end"] = [time.time(), "error:" + str(e)]
for f in flows:
    del f["sock"], f["next"]
print(json.dumps({"flows": flows}), flush=True)
"#;

/// One long-lived flow as the client saw it.
#[derive(Debug, Clone)]
pub struct LongFlow {
    /// `tcp`, `tcp-idle` or `udp`.
    pub proto: String,
    /// The client's local port.
    pub local_port: u16,
    /// How the server saw the client when the flow opened (its external endpoint then).
    pub seen_at_start: SocketAddrV4,
    /// Messages sent after the start.
    pub sent: u64,
    /// Every reply: wall-clock time and, for UDP, the source the echo saw.
    pub replies: Vec<(f64, Option<SocketAddrV4>)>,
    /// What ended a TCP connection, and when (`reset`, `eof`, `error:...`).
    pub end: Option<(f64, String)>,
}

impl LongFlow {
    /// The longest silence between replies within `[from, to]` (both ends count as replies).
    pub fn longest_gap(&self, from: f64, to: f64) -> f64 {
        let mut last = from;
        let mut gap: f64 = 0.0;
        for &(t, _) in self.replies.iter().filter(|(t, _)| *t >= from && *t <= to) {
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(to - last)
    }
}

/// The running client (see the module documentation).
#[derive(Debug)]
pub struct LongFlowClient {
    process: LabProcess,
    /// The flows it opened, as reported once they were all open.
    pub opened: Vec<(String, u16, SocketAddrV4)>,
    seconds: u32,
}

/// Starts the held TCP echo on every inet address, port [`HELD_ECHO_PORT`].
pub fn start_held_echo(lab: &Lab) {
    let inet = lab.inet().ns.clone();
    let listen = format!("TCP4-LISTEN:{HELD_ECHO_PORT},reuseaddr,fork");
    // A script, because socat splits its address arguments at ':'.
    let script = lab.dir().join("held-echo.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$SOCAT_PEERADDR:$SOCAT_PEERPORT\"\nexec cat\n",
    )
    .expect("writing the held echo script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("making the held echo script executable");
    let system = format!("SYSTEM:{}", script.display());
    let server = lab
        .spawn(&inet, &["socat", &listen, &system])
        .expect("starting the held echo");
    wait_until_listening(
        &inet,
        &[Listener {
            netid: "tcp",
            addr: None,
            port: HELD_ECHO_PORT,
        }],
        &[server],
    )
    .expect("the held echo listens");
}

/// Seconds since the epoch, as the client's timestamps.
pub fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl LongFlowClient {
    /// Starts the client on `host` against `server` (held echo on TCP, UDP echo on UDP) and waits
    /// until its flows are open: at least `min_per_uplink` of each kind on each uplink address of
    /// `uplinks`. Needs [`start_held_echo`].
    pub fn start(
        lab: &Lab,
        host: &LanHost,
        server: Ipv4Addr,
        uplinks: &[Ipv4Addr],
        min_per_uplink: usize,
        period_ms: u32,
        seconds: u32,
    ) -> LongFlowClient {
        let tcp = format!("{server}:{HELD_ECHO_PORT}");
        let udp = format!("{server}:{}", lab.inet().echo_port);
        let uplinks: Vec<String> = uplinks.iter().map(Ipv4Addr::to_string).collect();
        let uplinks = uplinks.join(",");
        let (min, max, period, secs) = (
            min_per_uplink.to_string(),
            "64".to_owned(),
            period_ms.to_string(),
            seconds.to_string(),
        );
        let process = lab
            .spawn(
                &host.ns,
                &[
                    "python3", "-c", CLIENT, &tcp, &udp, &uplinks, &min, &max, &period, &secs,
                ],
            )
            .expect("starting the long-flow client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = process.stdout().unwrap_or_default();
            if let Some(line) = out.lines().next() {
                let ready: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                let opened = ready["ready"]
                    .as_array()
                    .expect("ready list")
                    .iter()
                    .map(|f| {
                        (
                            f["proto"].as_str().unwrap().to_owned(),
                            f["local_port"].as_u64().unwrap() as u16,
                            f["seen"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect();
                return LongFlowClient {
                    process,
                    opened,
                    seconds,
                };
            }
            if !process.is_running().unwrap_or(false) || Instant::now() > deadline {
                panic!(
                    "the long-flow client did not open its flows: {}",
                    process.stderr().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the client to finish and returns every flow.
    pub fn finish(self) -> Vec<LongFlow> {
        let out = self
            .process
            .wait_success(Duration::from_secs(u64::from(self.seconds) + 30))
            .expect("the long-flow client finishes");
        let last = out.lines().last().expect("a report line");
        let report: serde_json::Value = serde_json::from_str(last).expect("report JSON");
        report["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .map(|f| LongFlow {
                proto: f["proto"].as_str().unwrap().to_owned(),
                local_port: f["local_port"].as_u64().unwrap() as u16,
                seen_at_start: f["seen"].as_str().unwrap().parse().unwrap(),
                sent: f["sent"].as_u64().unwrap(),
                replies: f["replies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r[0].as_f64().unwrap(),
                            r[1].as_str().map(|s| s.parse().unwrap()),
                        )
                    })
                    .collect(),
                end: f["end"]
                    .as_array()
                    .map(|e| (e[0].as_f64().unwrap(), e[1].as_str().unwrap().to_owned())),
            })
            .collect()
    }
}
