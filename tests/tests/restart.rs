//! Restart, crash and upgrade without dropping a connection (issue 17).
//!
//! A LAN host holds a TCP connection exchanging one byte every 250 ms, a UDP socket sending to the
//! echo server (which answers with the external endpoint it saw) every 100 ms, and a ping every
//! 250 ms, while flowpin is stopped with SIGTERM or killed with SIGKILL and started again. After
//! every restart: no TCP reset (either end), the exchange goes on, the UDP endpoint the server
//! sees and the ICMP flow's external endpoint never change, and no ISP saw a leaked or a
//! wrong-uplink source. The longest silence of the UDP echo around each restart is the forwarding
//! gap, printed per cycle.
//!
//! The other tests: an upgrade from a build writing the previous state layout (version 1, through
//! the `FLOWPIN_STATE_WRITE_VERSION` test hook) keeps the flows; a state file of an incompatible
//! version and a damaged one are reported and translate nothing wrongly; `--fresh` starts empty.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind};
use flowpin_tests::{assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_flows, lab_up};

/// The TCP byte echo's port (in the inet namespace, on the first server address).
const TCP_ECHO_PORT: u16 = 9107;

/// The byte echo: one connection, every byte sent back; a reset or close is printed.
const TCP_ECHO_PY: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print('listening', flush=True)
c, peer = s.accept()
print('accepted %s:%d' % peer, flush=True)
try:
    while True:
        b = c.recv(1)
        if not b:
            print('closed', flush=True)
            break
        c.sendall(b)
except OSError as e:
    print('reset', e, flush=True)
";

/// The LAN host's client: `tcp T N` per echoed byte, `udp T ENDPOINT` per UDP echo (T: monotonic
/// seconds); `tcp-reset` or `tcp-closed` when the connection breaks; runs until `stop` exists.
const CLIENT_PY: &str = "import os, select, socket, sys, time
server, tport, uport, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = socket.create_connection((server, tport), timeout=10)
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t.setblocking(False)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', 0))
u.setblocking(False)
n, outstanding, next_tcp, next_udp = 0, None, 0.0, 0.0
while not os.path.exists(stop):
    now = time.monotonic()
    if now >= next_udp:
        u.sendto(b'x', (server, uport))
        next_udp = now + 0.1
    if outstanding is None and now >= next_tcp:
        t.send(b'b')
        outstanding = now
    readable, _, _ = select.select([t, u], [], [], 0.02)
    now = time.monotonic()
    if t in readable:
        try:
            b = t.recv(1)
        except ConnectionResetError:
            print('tcp-reset', flush=True)
            sys.exit(2)
        if not b:
            print('tcp-closed', flush=True)
            sys.exit(3)
        n += 1
        print('tcp %.3f %d' % (now, n), flush=True)
        next_tcp, outstanding = outstanding + 0.25, None
    if u in readable:
        data = u.recv(100).decode().strip()
        print('udp %.3f %s' % (now, data), flush=True)
print('done', flush=True)
";

/// The traffic of one LAN host, and the files it reports through.
struct Traffic {
    client: LabProcess,
    echo: LabProcess,
    ping: LabProcess,
    stop_file: std::path::PathBuf,
}

/// What the client reported so far.
#[derive(Debug, Default)]
struct Report {
    tcp: Vec<f64>,
    udp: Vec<(f64, String)>,
    broken: Option<String>,
}

impl Traffic {
    fn start(lab: &Lab) -> Traffic {
        let server = lab.inet().server_addrs[0].to_string();
        let port = TCP_ECHO_PORT.to_string();
        let echo = lab
            .spawn(
                &lab.inet().ns,
                &["python3", "-c", TCP_ECHO_PY, &server, &port],
            )
            .expect("the TCP echo starts");
        wait_for(Duration::from_secs(10), "the TCP echo listens", || {
            echo.stdout().unwrap_or_default().contains("listening")
        });
        let stop_file = lab.dir().join("restart-client.stop");
        let host = &lab.lan_hosts()[0];
        let udp_port = lab.inet().echo_port.to_string();
        let stop = stop_file.to_string_lossy().into_owned();
        let client = lab
            .spawn(
                &host.ns,
                &[
                    "python3", "-u", "-c", CLIENT_PY, &server, &port, &udp_port, &stop,
                ],
            )
            .expect("the client starts");
        let target = lab.inet().server_addrs[1].to_string();
        let ping = lab
            .spawn(&host.ns, &["ping", "-n", "-i", "0.25", &target])
            .expect("ping starts");
        let traffic = Traffic {
            client,
            echo,
            ping,
            stop_file,
        };
        traffic.wait_exchanges(8, 8);
        traffic
    }

    fn report(&self) -> Report {
        let mut report = Report::default();
        for line in self.client.stdout().unwrap_or_default().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["tcp", t, _] => report.tcp.push(t.parse().expect("a time")),
                ["udp", t, endpoint] => {
                    report
                        .udp
                        .push((t.parse().expect("a time"), (*endpoint).to_owned()));
                }
                ["tcp-reset" | "tcp-closed"] => report.broken = Some(line.to_owned()),
                _ => {}
            }
        }
        report
    }

    /// Waits until `tcp` more bytes and `udp` more echoes than now came back (20 s at most).
    fn wait_exchanges(&self, tcp: usize, udp: usize) {
        let before = self.report();
        wait_for(Duration::from_secs(20), "the exchange goes on", || {
            let now = self.report();
            assert_eq!(now.broken, None, "the TCP connection broke");
            now.tcp.len() >= before.tcp.len() + tcp && now.udp.len() >= before.udp.len() + udp
        });
    }

    /// Stops the client, the echo and ping; returns ping's output.
    fn stop(self) -> String {
        std::fs::write(&self.stop_file, b"stop").expect("the stop file");
        self.client
            .wait_success(Duration::from_secs(10))
            .expect("the client ends cleanly");
        self.ping.signal("INT").expect("SIGINT to ping");
        let ping = self
            .ping
            .wait_output(Duration::from_secs(10))
            .expect("ping ends")
            .stdout;
        let echo = self.echo.stdout().unwrap_or_default();
        assert!(!echo.contains("reset"), "the server saw a reset: {echo}");
        self.echo.kill().expect("the echo ends");
        ping
    }
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

/// The external endpoint and uplink of the LAN host's flow of `proto` to `remote`.
fn external_of(lab: &Lab, proto: &str, remote: &str) -> (String, String) {
    let flows = flowpin_flows(lab)["flows"].clone();
    let flow = flows
        .as_array()
        .expect("flows")
        .iter()
        .find(|f| {
            f["proto"] == proto && f["remote"].as_str().is_some_and(|r| r.starts_with(remote))
        })
        .unwrap_or_else(|| panic!("no {proto} flow to {remote}: {flows:#}"));
    (
        flow["external"].as_str().expect("external").to_owned(),
        flow["uplink"].as_str().expect("uplink").to_owned(),
    )
}

/// The running forwarder the lab started (the last one).
fn running_flowpin(lab: &Lab) -> LabProcess {
    lab.processes()
        .into_iter()
        .rev()
        .find(|p| p.description().contains(" run -c ") && p.is_running().unwrap_or(false))
        .expect("a running flowpin")
}

/// How many flows a started flowpin restored (its `saved flows restored restored=N` line).
fn restored_flows(flowpin: &LabProcess) -> usize {
    let log = flowpin.stderr().expect("stderr");
    log.lines()
        .find(|l| l.contains("saved flows restored"))
        .and_then(|l| l.split("restored=").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no restore line: {log}"))
}

/// How a cycle ends the running flowpin.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

/// Stops `flowpin` the `how` way and starts it again; returns the new process and how long the
/// UDP echo was silent around it.
fn cycle(lab: &Lab, traffic: &Traffic, flowpin: LabProcess, how: Stop) -> (LabProcess, f64) {
    let replies_before = traffic.report().udp.len();
    match how {
        Stop::Term => {
            flowpin.signal("TERM").expect("SIGTERM");
            let status = flowpin
                .wait(Duration::from_secs(20))
                .expect("flowpin stops");
            assert!(status.success(), "flowpin exits 0 on SIGTERM: {status}");
        }
        Stop::Kill => flowpin.kill().expect("kill -9"),
    }
    let flowpin = lab.start_flowpin().expect("flowpin starts again");
    assert!(
        restored_flows(&flowpin) >= 3,
        "the client's TCP, UDP and ICMP flows restored"
    );
    traffic.wait_exchanges(2, 3);
    let udp = traffic.report().udp;
    let window = &udp[replies_before.saturating_sub(1)..];
    let gap = window
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .fold(0.0, f64::max);
    (flowpin, gap)
}

/// The endurance run: 20 SIGTERM/start and 10 `kill -9`/start cycles, interleaved.
#[test]
fn flows_survive_20_stops_and_10_kills_with_the_same_external_endpoints() {
    let lab = flowpin_lab();
    let mut flowpin = running_flowpin(&lab);
    let traffic = Traffic::start(&lab);
    let udp_server = lab.inet().server_addrs[0].to_string();
    let ping_target = lab.inet().server_addrs[1].to_string();
    let udp_before = external_of(&lab, "udp", &udp_server);
    let icmp_before = external_of(&lab, "icmp", &ping_target);
    let tcp_before = external_of(&lab, "tcp", &udp_server);
    let seen = traffic.report().udp.last().expect("a UDP echo").1.clone();
    assert_eq!(
        seen, udp_before.0,
        "the echo reports the flow's external endpoint"
    );
    let plan: Vec<Stop> = (0..30)
        .map(|i| if i % 3 == 2 { Stop::Kill } else { Stop::Term })
        .collect();
    let mut gaps = Vec::new();
    for (i, how) in plan.into_iter().enumerate() {
        let (next, gap) = cycle(&lab, &traffic, flowpin, how);
        flowpin = next;
        eprintln!(
            "cycle {i:2} {how:?}: UDP echo silent for {:.0} ms",
            gap * 1000.0
        );
        gaps.push(gap);
        assert_eq!(
            external_of(&lab, "udp", &udp_server),
            udp_before,
            "cycle {i}: UDP mapping"
        );
        assert_eq!(
            external_of(&lab, "icmp", &ping_target),
            icmp_before,
            "cycle {i}: ICMP mapping"
        );
        assert_eq!(
            external_of(&lab, "tcp", &udp_server),
            tcp_before,
            "cycle {i}: TCP mapping"
        );
    }
    let report = traffic.report();
    assert_eq!(report.broken, None);
    let endpoints: std::collections::BTreeSet<&str> =
        report.udp.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        endpoints.len(),
        1,
        "the UDP endpoint never changed: {endpoints:?}"
    );
    let ping = traffic.stop();
    let sent: usize = ping
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted")
                .next()
                .filter(|_| l.contains("packets transmitted"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ping's summary: {ping}"));
    let last_answered = ping
        .lines()
        .filter_map(|l| {
            l.split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        last_answered + 4 >= sent,
        "ping answered after the last restart: {ping}"
    );
    gaps.sort_by(f64::total_cmp);
    let (median, max) = (gaps[gaps.len() / 2], gaps[gaps.len() - 1]);
    eprintln!(
        "forwarding gap per restart (UDP echo every 100 ms): median {:.0} ms, max {:.0} ms; ping {} of {sent} answered",
        median * 1000.0,
        max * 1000.0,
        ping.lines().filter(|l| l.contains("bytes from")).count(),
    );
    // The gap is reported, not bounded: it is mostly the new process's start-up, which a loaded
    // machine stretches (see docs/operations.md); that forwarding resumed is asserted per cycle.
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    flowpin.signal("TERM").expect("SIGTERM");
    let _ = flowpin.wait(Duration::from_secs(20));
    down_and_assert_clean(lab);
}

/// Starts flowpin with `env` set and `extra` arguments after `run -c FILE`.
fn start_flowpin_with(lab: &Lab, env: &[&str], extra: &[&str]) -> LabProcess {
    let files = lab.flowpin_files().expect("flowpin files");
    flowpin_lab::flowpin_router::start(lab.topology(), &files, |ns, argv| {
        let mut full: Vec<&str> = vec!["env"];
        full.extend_from_slice(env);
        full.extend_from_slice(argv);
        full.extend_from_slice(extra);
        lab.spawn(ns, &full)
    })
    .expect("flowpin starts")
}

fn state_file(lab: &Lab) -> std::path::PathBuf {
    flowpin_lab::state::flowpin_state_files(lab.prefix())[0].clone()
}

fn discarded_file(lab: &Lab) -> std::path::PathBuf {
    flowpin_lab::state::flowpin_state_files(lab.prefix())[1].clone()
}

fn stop(flowpin: &LabProcess) {
    flowpin.signal("TERM").expect("SIGTERM");
    let status = flowpin
        .wait(Duration::from_secs(20))
        .expect("flowpin stops");
    assert!(status.success(), "flowpin exits 0 on SIGTERM: {status}");
}

fn flow_count(lab: &Lab) -> usize {
    flowpin_flows(lab)["flows"].as_array().expect("flows").len()
}

/// Upgrade: a build writing the previous layout (version 1) is stopped under traffic and the
/// current build started: it converts the file and every flow goes on. Then a file of an
/// incompatible version is set aside with one clear line and flowpin starts empty and forwards;
/// `--fresh` sets a good file aside on purpose.
#[test]
fn an_upgrade_converts_the_previous_layout_and_an_incompatible_one_is_refused() {
    let lab = flowpin_lab();
    stop(&running_flowpin(&lab));
    let old_build = start_flowpin_with(&lab, &["FLOWPIN_STATE_WRITE_VERSION=1"], &[]);
    let traffic = Traffic::start(&lab);
    let udp_server = lab.inet().server_addrs[0].to_string();
    let ping_target = lab.inet().server_addrs[1].to_string();
    let before = [
        external_of(&lab, "udp", &udp_server),
        external_of(&lab, "icmp", &ping_target),
        external_of(&lab, "tcp", &udp_server),
    ];
    stop(&old_build);
    let saved = std::fs::read(state_file(&lab)).expect("the old build saved its state");
    assert_eq!(&saved[..8], b"FLOWPINS");
    assert_eq!(saved[8..12], 1u32.to_le_bytes(), "layout version 1 written");
    let new_build = lab.start_flowpin().expect("the new build starts");
    let log = new_build.stderr().expect("stderr");
    assert!(
        log.contains("saved state converted from an older layout"),
        "{log}"
    );
    traffic.wait_exchanges(4, 4);
    let after = [
        external_of(&lab, "udp", &udp_server),
        external_of(&lab, "icmp", &ping_target),
        external_of(&lab, "tcp", &udp_server),
    ];
    assert_eq!(
        after, before,
        "every flow kept its uplink and external endpoint"
    );
    traffic.stop();

    // Incompatible: layout version 99.
    stop(&new_build);
    let mut saved = std::fs::read(state_file(&lab)).expect("state saved");
    assert_eq!(
        saved[8..12],
        2u32.to_le_bytes(),
        "the new build writes version 2"
    );
    assert!(flow_count_in(&saved) >= 3);
    saved[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(state_file(&lab), &saved).expect("writing the file");
    let refusing = lab
        .start_flowpin()
        .expect("flowpin starts despite the file");
    let log = refusing.stderr().expect("stderr");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("saved state discarded"))
        .collect();
    assert_eq!(lines.len(), 1, "one clear line: {log}");
    assert!(lines[0].contains("state layout version 99"), "{}", lines[0]);
    assert!(
        discarded_file(&lab).exists(),
        "the refused file is set aside"
    );
    assert_eq!(flow_count(&lab), 0, "nothing restored from it");
    let host = &lab.lan_hosts()[0];
    assert_eq!(
        flowpin_lab::traffic::http_get(&lab, host, 3)
            .expect("curl")
            .ok,
        3
    );

    // --fresh: a good file set aside on purpose.
    stop(&refusing);
    std::fs::remove_file(discarded_file(&lab)).expect("removing the old discarded file");
    assert!(flow_count_in(&std::fs::read(state_file(&lab)).expect("saved")) >= 1);
    let fresh = start_flowpin_with(&lab, &[], &["--fresh"]);
    assert!(
        discarded_file(&lab).exists(),
        "--fresh sets the state aside"
    );
    assert_eq!(flow_count(&lab), 0, "--fresh starts empty");
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    stop(&fresh);
    down_and_assert_clean(lab);
}

/// Flow records in a state file (kind byte 3 at the start of each 128-byte record).
fn flow_count_in(file: &[u8]) -> usize {
    file[16..].chunks(128).filter(|r| r[0] == 3).count()
}

/// 16 UDP sockets of one LAN host, each told its external endpoint by the echo; on `again`, each
/// asks once more; prints `N ENDPOINT` then `again N ENDPOINT`.
const SOCKETS_PY: &str = "import os, socket, sys, time
server, port, again, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for i in range(16):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b'x', (server, port))
    print(i, s.recv(100).decode().strip(), flush=True)
    socks.append(s)
while not os.path.exists(again):
    time.sleep(0.05)
for i, s in enumerate(socks):
    s.sendto(b'x', (server, port))
    print('again', i, s.recv(100).decode().strip(), flush=True)
while not os.path.exists(stop):
    time.sleep(0.05)
";

/// A damaged state file — one flow record with a flipped byte, one torn (half zeroed), the file
/// truncated in its last record — is reported, and what is restored is exactly what was saved:
/// every flow flowpin lists after the start had that external endpoint before, and each socket
/// whose flow survived is seen by the echo from the same endpoint.
#[test]
fn a_damaged_state_file_is_reported_and_translates_nothing_wrongly() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    let server = lab.inet().server_addrs[0].to_string();
    let port = lab.inet().echo_port.to_string();
    let again = lab.dir().join("sockets.again");
    let stop_file = lab.dir().join("sockets.stop");
    let (again_s, stop_s) = (
        again.to_string_lossy().into_owned(),
        stop_file.to_string_lossy().into_owned(),
    );
    let sockets = lab
        .spawn(
            &host.ns,
            &[
                "python3", "-u", "-c", SOCKETS_PY, &server, &port, &again_s, &stop_s,
            ],
        )
        .expect("the sockets start");
    wait_for(Duration::from_secs(20), "16 first echoes", || {
        sockets.stdout().unwrap_or_default().lines().count() >= 16
    });
    let first: Vec<String> = sockets
        .stdout()
        .expect("stdout")
        .lines()
        .map(|l| l.split(' ').nth(1).expect("endpoint").to_owned())
        .collect();
    let before: Vec<(String, String)> = flowpin_flows(&lab)["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| {
            (
                f["internal"].as_str().expect("internal").to_owned(),
                f["external"].as_str().expect("external").to_owned(),
            )
        })
        .collect();
    let flowpin = running_flowpin(&lab);
    stop(&flowpin);
    let mut file = std::fs::read(state_file(&lab)).expect("saved state");
    let flows: Vec<usize> = (0..(file.len() - 16) / 128)
        .map(|i| 16 + i * 128)
        .filter(|&at| file[at] == 3)
        .collect();
    assert!(flows.len() >= 16, "{} flow records", flows.len());
    file[flows[2] + 20] ^= 0x40; // a flipped byte in a key
    file[flows[5]..flows[5] + 64].fill(0); // torn
    let cut = file.len() - 60; // the last record cut short
    file.truncate(cut);
    std::fs::write(state_file(&lab), &file).expect("writing the damaged file");
    let restarted = lab
        .start_flowpin()
        .expect("flowpin starts despite the damage");
    let log = restarted.stderr().expect("stderr");
    assert!(log.contains("saved state damaged"), "{log}");
    let after: Vec<(String, String)> = flowpin_flows(&lab)["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| {
            (
                f["internal"].as_str().expect("internal").to_owned(),
                f["external"].as_str().expect("external").to_owned(),
            )
        })
        .collect();
    assert!(
        after.len() >= 13 && after.len() < before.len(),
        "{} of {} restored",
        after.len(),
        before.len()
    );
    for flow in &after {
        assert!(
            before.contains(flow),
            "restored {flow:?} was never saved so"
        );
    }
    std::fs::write(&again, b"again").expect("again");
    wait_for(Duration::from_secs(20), "16 second echoes", || {
        sockets
            .stdout()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("again"))
            .count()
            >= 16
    });
    let second: Vec<String> = sockets
        .stdout()
        .expect("stdout")
        .lines()
        .filter(|l| l.starts_with("again"))
        .map(|l| l.split(' ').nth(2).expect("endpoint").to_owned())
        .collect();
    let unchanged = first.iter().zip(&second).filter(|(a, b)| a == b).count();
    // A dropped flow's socket may well get its old endpoint back (same secrets, same candidates).
    assert!(
        unchanged >= after.len(),
        "{unchanged} sockets kept their endpoint: {first:?} {second:?}"
    );
    std::fs::write(&stop_file, b"stop").expect("stop");
    let _ = sockets.wait(Duration::from_secs(10));
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    stop(&restarted);
    down_and_assert_clean(lab);
}
