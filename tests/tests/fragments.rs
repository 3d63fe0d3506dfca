//! IPv4 fragments through flowpin (RFC 4787 REQ-14), both directions. The first LAN host and the
//! inet's interfaces get MTU 1280, so their kernels fragment every datagram above 1252 bytes (DF
//! off). A LAN host sends UDP datagrams of 1,400, 3,000 and 8,000 bytes to a fragment echo on the
//! inet, which answers each whole; each way the fragments go either as the kernel cut them (in
//! order) or as scapy cut them and sent in reverse order (raw socket: the first fragment last). The
//! receiving kernel's reassembly and UDP checksum check are the judge: every datagram must come
//! back byte for byte. The ISPs see no leaked or wrong-uplink packet.
//!
//! Then floods of orphan non-first fragments (no first fragment ever comes): from the inet to the
//! uplink's NAT address and from the LAN host to the inet. Every one reaches the datapath, is held
//! while a hold slot is free (at most `fragment_held`) and is dropped and counted
//! (`fragment_hold_full` at once, `fragment_expired` after the timeout); none creates a flow and
//! none reaches the LAN host.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, status_count,
    status_drops,
};

/// The system's Python, which has scapy (the PATH's may be another).
const PYTHON: &str = "/usr/bin/python3";
/// The MTU of the first LAN host's and the inet's interfaces: every size below is fragmented.
const SENDER_MTU: u16 = 1280;
/// The echo's ports: the kernel's fragments back, and scapy's in reverse order.
const ECHO_KERNEL_PORT: u16 = 7801;
const ECHO_REVERSED_PORT: u16 = 7802;
const SIZES: [usize; 3] = [1400, 3000, 8000];
/// Orphan fragments per flood.
const ORPHANS: u64 = 600;

/// The fragment tool. `echo ADDRESS PORT ORDER`: answers every datagram with itself;
/// `client SERVER ORDER PORT SIZE...`: sends one datagram per size to SERVER:PORT and prints
/// `ok SIZE` or `bad SIZE why` for each answer; `orphans SOURCE DESTINATION COUNT`: sends COUNT
/// non-first UDP fragments of datagrams whose first never comes. ORDER `kernel` sends through a
/// socket with DF off (the kernel fragments in order), `reversed` builds the fragments with scapy
/// and sends them last first through a raw socket.
const FRAG_PY: &str = r#"
import os, random, socket, sys
from scapy.all import IP, UDP, Raw, fragment, raw

def raw_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return s

def udp_socket(address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: DF off
    s.bind((address, port))
    return s

def send(sock, rawsock, order, source, peer, data):
    if order == "kernel":
        sock.sendto(data, peer)
        return
    port = sock.getsockname()[1]
    datagram = IP(src=source, dst=peer[0], id=random.randint(1, 65535), flags=0) / \
        UDP(sport=port, dport=peer[1]) / Raw(data)
    pieces = fragment(datagram, fragsize=1200)
    assert len(pieces) >= 2, "not fragmented"
    for piece in reversed(pieces):
        rawsock.sendto(raw(piece), (peer[0], 0))

mode = sys.argv[1]
if mode == "echo":
    address, port, order = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sock, rawsock = udp_socket(address, port), raw_socket()
    print("listening", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        send(sock, rawsock, order, address, peer, data)
elif mode == "client":
    server, order, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    source = sys.argv[5]
    sock, rawsock = udp_socket(source, 0), raw_socket()
    sock.settimeout(5)
    for size in map(int, sys.argv[6:]):
        data = os.urandom(size)
        send(sock, rawsock, order, source, (server, port), data)
        try:
            answer, _ = sock.recvfrom(65535)
        except socket.timeout:
            print("bad", size, "no answer", flush=True)
            continue
        if answer == data:
            print("ok", size, flush=True)
        else:
            print("bad", size, "differs", flush=True)
elif mode == "orphans":
    source, destination, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    rawsock = raw_socket()
    for n in range(count):
        piece = IP(src=source, dst=destination, id=n + 1, proto=17, frag=150, flags=0) / Raw(b"o" * 64)
        rawsock.sendto(raw(piece), (destination, 0))
    print("sent", count, flush=True)
"#;

fn set_mtu(lab: &Lab, ns: &str, iface: &str) {
    lab.exec_ok(
        ns,
        &[
            "ip",
            "link",
            "set",
            "dev",
            iface,
            "mtu",
            &SENDER_MTU.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("setting the MTU of {iface} in {ns}: {e:#}"));
}

/// Starts the echo on the first server address, answering as `order` says.
fn start_echo(lab: &Lab, port: u16, order: &str) -> LabProcess {
    let server = lab.inet().server_addrs[0].to_string();
    let echo = lab
        .spawn(
            &lab.inet().ns,
            &[
                PYTHON,
                "-c",
                FRAG_PY,
                "echo",
                &server,
                &port.to_string(),
                order,
            ],
        )
        .expect("the fragment echo starts");
    let start = Instant::now();
    while !echo.stdout().unwrap_or_default().contains("listening") {
        assert!(
            start.elapsed() < Duration::from_secs(30) && echo.is_running().unwrap_or(false),
            "the echo on {port} did not start: {:?}",
            echo.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    echo
}

/// Every size, sent `order` from the first LAN host to the echo on `port`: each answer's line.
fn exchange(lab: &Lab, order: &str, port: u16) -> Vec<String> {
    let host = &lab.lan_hosts()[0];
    let server = lab.inet().server_addrs[0].to_string();
    let mut argv = vec![
        PYTHON.to_owned(),
        "-c".to_owned(),
        FRAG_PY.to_owned(),
        "client".to_owned(),
        server,
        order.to_owned(),
        port.to_string(),
        host.addr.to_string(),
    ];
    argv.extend(SIZES.iter().map(ToString::to_string));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = lab
        .spawn(&host.ns, &argv)
        .expect("the client starts")
        .wait_success(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the client ({order} to {port}): {e:#}"));
    output.lines().map(str::to_owned).collect()
}

fn orphans(lab: &Lab, ns: &str, source: &str, destination: &str) {
    let count = ORPHANS.to_string();
    let said = lab
        .spawn(
            ns,
            &[
                PYTHON,
                "-c",
                FRAG_PY,
                "orphans",
                source,
                destination,
                &count,
            ],
        )
        .expect("the orphan flood starts")
        .wait_success(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the orphan flood from {ns}: {e:#}"));
    assert!(said.contains(&format!("sent {ORPHANS}")), "{said}");
}

/// Captures the non-first fragments the first LAN host receives.
fn capture_fragments(lab: &Lab) -> LabProcess {
    let host = &lab.lan_hosts()[0];
    let capture = lab
        .spawn(
            &host.ns,
            &[
                "tcpdump",
                "-i",
                &host.iface,
                "-Q",
                "in",
                "-nn",
                "-l",
                "-p",
                "ip[6:2] & 0x1fff != 0",
            ],
        )
        .expect("tcpdump starts");
    let start = Instant::now();
    while !capture
        .stderr()
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tcpdump did not start: {:?}",
            capture.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    capture
}

fn captured(capture: LabProcess) -> String {
    std::thread::sleep(Duration::from_millis(300));
    capture.signal("INT").expect("stopping tcpdump");
    let _ = capture.wait(Duration::from_secs(5));
    capture.stdout().unwrap_or_default()
}

fn fragment_counts(status: &serde_json::Value) -> (u64, u64, u64) {
    (
        status["fragments_held"].as_u64().expect("fragments_held"),
        status_drops(status, "fragment_hold_full"),
        status_drops(status, "fragment_expired"),
    )
}

/// Waits until every held fragment expired: held = expired.
fn held_fragments_expire(lab: &Lab) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = flowpin_status(lab);
        let (held, _, expired) = fragment_counts(&status);
        if held == expired {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "held fragments did not expire: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn udp_datagrams_in_fragments_echo_whole_both_ways_in_order_and_reversed_and_orphans_are_bounded() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1])
    });
    let host = lab.lan_hosts()[0].clone();
    let uplink = lab.uplinks()[0].clone();
    set_mtu(&lab, &host.ns, &host.iface);
    set_mtu(&lab, &lab.inet().ns, &uplink.inet_iface);

    // Orphans first, on a router with no flow: they create none and reach no LAN host.
    let capture = capture_fragments(&lab);
    let server = lab.inet().server_addrs[0].to_string();
    let nat_address = uplink.router_addr.to_string();
    orphans(&lab, &lab.inet().ns, &server, &nat_address);
    orphans(&lab, &host.ns, &host.addr.to_string(), &server);
    let status = held_fragments_expire(&lab);
    let (held, hold_full, expired) = fragment_counts(&status);
    assert_eq!(
        held + hold_full,
        2 * ORPHANS,
        "every orphan reached the datapath and was held or refused: {status:#}"
    );
    assert!(
        hold_full > 0 && held < 2 * ORPHANS,
        "the hold is bounded: {status:#}"
    );
    assert_eq!(expired, held, "every held orphan expired, counted");
    assert_eq!(status["flows"].as_u64(), Some(0), "orphans create no flow");
    assert_eq!(
        status_count(&status, "xdp", "redirect_uplink_fragment"),
        ORPHANS,
        "the inet's orphans went to the datapath: {status:#}"
    );
    let seen = captured(capture);
    assert!(
        seen.trim().is_empty(),
        "orphans reached the LAN host: {seen}"
    );

    let _kernel_echo = start_echo(&lab, ECHO_KERNEL_PORT, "kernel");
    let _reversed_echo = start_echo(&lab, ECHO_REVERSED_PORT, "reversed");
    for (out_order, port) in [
        ("kernel", ECHO_KERNEL_PORT),
        ("kernel", ECHO_REVERSED_PORT),
        ("reversed", ECHO_KERNEL_PORT),
        ("reversed", ECHO_REVERSED_PORT),
    ] {
        let lines = exchange(&lab, out_order, port);
        let expected: Vec<String> = SIZES.iter().map(|size| format!("ok {size}")).collect();
        assert_eq!(
            lines,
            expected,
            "out {out_order}, back from port {port}: {:#}",
            flowpin_status(&lab)
        );
    }
    let status = flowpin_status(&lab);
    assert!(
        status["fragments_followed"]
            .as_u64()
            .expect("fragments_followed")
            > 0,
        "{status:#}"
    );
    assert!(
        status["fragments_held"].as_u64().expect("fragments_held") > held,
        "reversed fragments were held for their first: {status:#}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    down_and_assert_clean(lab);
}
