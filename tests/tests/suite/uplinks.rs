//! The uplink suite every way of wiring uplinks must pass (`flowpin_router.rs`, `failover.rs`,
//! `shared_interface.rs` and `macvlan_uplinks.rs` run it on their wiring): new endpoints split by
//! weight, a long flow pinned to one uplink and one external endpoint, EIM with equal source ports
//! kept apart, and failover by black-hole with recovery after the hysteresis. Every test asserts
//! that no ISP saw a leaked or wrong-uplink source.
// Each including test target calls the part of the suite it runs.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{IspCounters, Lab, LabSpec, RouterKind, UplinkWiring};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean,
    flowpin_status, health_section, lab_up, mausezahn_burst, on_every_host_at_once,
    pin_new_flows_to, uplink_state, wait_for_probes_answered, wait_for_status,
};

/// Probe interval, timeout and down hysteresis the failover tests configure.
pub const INTERVAL_MS: u64 = 300;
/// Lost rounds before an uplink is down.
pub const DOWN_AFTER: u64 = 3;

/// A lab whose router is flowpin, with uplinks of `weights` wired as `wiring`.
pub fn flowpin_lab(weights: &[u32], wiring: UplinkWiring) -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        wiring,
        ..LabSpec::with_weights(weights)
    })
}

/// What every ISP counted.
pub fn counters(lab: &Lab) -> Vec<IspCounters> {
    lab.isp_counters().expect("reading the ISP counters")
}

/// Appends probe settings to the lab's configuration and reloads it.
pub fn enable_probing(lab: &Lab) {
    append_config_and_reload(lab, &health_section(INTERVAL_MS, DOWN_AFTER, 3, 20));
    // Probes answer: loss is measured and both uplinks stay up.
    wait_for_probes_answered(lab);
}

/// Whether one ping from the first LAN host to `target` is answered.
pub fn ping_ok(lab: &Lab, target: &str) -> bool {
    lab.exec(
        &lab.lan_hosts()[0].ns,
        &["ping", "-c", "1", "-W", "1", target],
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}

/// (c): new internal endpoints spread by weight, each uplink within 15 % of its share, none at 0.
pub fn new_endpoints_split_by_weight(wiring: UplinkWiring) {
    for weights in [[1u32, 1], [2, 1], [11, 45]] {
        let lab = flowpin_lab(&weights, wiring);
        let before = counters(&lab);
        // 2 × 3000 new internal endpoints (source ports 1024..=4023), one UDP datagram each.
        on_every_host_at_once(&lab, |_, host| {
            let src = host.addr.to_string();
            mausezahn_burst(
                &lab,
                host,
                &src,
                "udp",
                "sp=1024-4023,dp=7777",
                Some("200usec"),
            )
            .expect("mausezahn runs");
        });
        std::thread::sleep(Duration::from_millis(500));
        let after = counters(&lab);
        assert_no_leak_or_wrong_uplink(&lab, &after);
        let sent: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.good - b.good)
            .collect();
        let total: u64 = sent.iter().sum();
        assert!(
            total >= 5000,
            "{weights:?}: only {total} endpoints reached the ISPs ({sent:?})"
        );
        let weight_sum: u32 = weights.iter().sum();
        for (i, (&n, &w)) in sent.iter().zip(&weights).enumerate() {
            let share = n as f64 / total as f64;
            let expected = f64::from(w) / f64::from(weight_sum);
            assert!(n > 0, "{weights:?}: uplink {} got nothing", i + 1);
            assert!(
                (share - expected).abs() <= 0.15 * expected,
                "{weights:?}: uplink {} got {:.1} % instead of {:.1} % ({sent:?})",
                i + 1,
                share * 100.0,
                expected * 100.0
            );
        }
        down_and_assert_clean(lab);
    }
}

/// Captures, in every ISP, the source endpoints of TCP packets to `server:port` while `during` runs.
pub fn capture_sources(
    lab: &Lab,
    server: SocketAddrV4,
    during: impl FnOnce(),
) -> Vec<BTreeMap<SocketAddrV4, u64>> {
    let filter = format!(
        "tcp and dst host {} and dst port {}",
        server.ip(),
        server.port()
    );
    let captures: Vec<_> = lab
        .uplinks()
        .iter()
        .map(|u| {
            lab.spawn(
                &u.isp_ns,
                &[
                    "tcpdump",
                    "-i",
                    &u.isp_router_iface,
                    "-nn",
                    "-l",
                    "-q",
                    "-p",
                    &filter,
                ],
            )
            .expect("tcpdump starts")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    during();
    std::thread::sleep(Duration::from_millis(500));
    captures
        .into_iter()
        .map(|c| {
            c.signal("INT").expect("stop tcpdump");
            let _ = c.wait(Duration::from_secs(5));
            let mut seen = BTreeMap::new();
            for line in c.stdout().unwrap_or_default().lines() {
                // "12:00:00.000000 IP 198.51.100.2.10001 > 203.0.113.10.5201: tcp 0"
                if let Some(src) = line.split_whitespace().nth(2)
                    && let Some((ip, port)) = src.rsplit_once('.')
                    && let (Ok(ip), Ok(port)) = (ip.parse::<Ipv4Addr>(), port.parse::<u16>())
                {
                    *seen.entry(SocketAddrV4::new(ip, port)).or_insert(0) += 1;
                }
            }
            seen
        })
        .collect()
}

/// (d): every packet of a long iperf3 flow leaves on one uplink with one external address:port.
pub fn a_long_flow_stays_on_one_uplink(wiring: UplinkWiring) {
    let lab = flowpin_lab(&[1, 1], wiring);
    let server = lab.inet().iperf_servers[0];
    let host = &lab.lan_hosts()[0];
    let seen = capture_sources(&lab, server, || {
        let tcp = traffic::iperf3(&lab, host, server, IperfMode::Tcp { streams: 1 }, 4)
            .expect("iperf3 runs");
        assert!(tcp.received_bytes > 1_000_000, "{tcp:?}");
    });
    // iperf3 opens a control and a data connection: two internal endpoints, two external ones, and
    // each external endpoint seen by exactly one ISP.
    let all: Vec<&SocketAddrV4> = seen.iter().flat_map(|m| m.keys()).collect();
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "an external endpoint appeared on two uplinks: {seen:?}"
    );
    assert_eq!(distinct.len(), 2, "control + data connection: {seen:?}");
    for (uplink, endpoints) in lab.uplinks().iter().zip(&seen) {
        for ep in endpoints.keys() {
            assert_eq!(
                *ep.ip(),
                uplink.router_addr,
                "{} carried {ep}",
                uplink.isp_ns
            );
        }
    }
    let data_packets = seen
        .iter()
        .flat_map(|m| m.values())
        .max()
        .copied()
        .unwrap_or(0);
    assert!(data_packets > 1000, "the data connection is long: {seen:?}");
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// (e) EIM: one UDP socket talking to many servers is seen by all at one external address:port;
/// (f) two LAN hosts using the same source port, both on one uplink, get distinct external ports and
/// both get replies.
pub fn one_socket_has_one_external_endpoint(wiring: UplinkWiring) {
    let lab = flowpin_lab(&[1, 1], wiring);
    let servers = lab.inet().server_addrs.clone();
    assert!(servers.len() >= 4);
    let replies = traffic::echo(&lab, &lab.lan_hosts()[0], EchoProtocol::Udp, &servers)
        .expect("echo client runs");
    let seen: BTreeSet<_> = replies
        .iter()
        .map(|r| r.seen_as.expect("every server answered"))
        .collect();
    assert_eq!(
        seen.len(),
        1,
        "EIM: one socket, one external endpoint for every server: {replies:?}"
    );

    // Both hosts on one uplink: distinct external addresses would hide a shared port.
    pin_new_flows_to(&lab, "isp1");
    let port = lab.inet().echo_port;
    let seen_by_host: Vec<SocketAddrV4> = lab
        .lan_hosts()
        .iter()
        .map(|host| {
            let out = lab
                .exec_ok(
                    &host.ns,
                    &[
                        "python3", "-c",
                        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                         s.bind(('0.0.0.0',40000));s.settimeout(1)\n\
                         for i in range(5):\n  s.sendto(b'x',(sys.argv[1],int(sys.argv[2])))\n  \
                         try:\n    print(s.recv(100).decode().strip());break\n  except socket.timeout: pass\n",
                        "203.0.113.10", &port.to_string(),
                    ],
                )
                .expect("client runs");
            out.trim().parse().unwrap_or_else(|_| panic!("{}: no reply ({out:?})", host.ns))
        })
        .collect();
    let isp1 = lab.uplinks()[0].router_addr;
    assert!(
        seen_by_host.iter().all(|seen| *seen.ip() == isp1),
        "both hosts leave through isp1: {seen_by_host:?}"
    );
    assert_ne!(
        seen_by_host[0].port(),
        seen_by_host[1].port(),
        "two hosts, one source port, one external address: {seen_by_host:?}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

pub fn blackholed_isp_fails_over_and_recovers(wiring: UplinkWiring) {
    let lab = flowpin_lab(&[1, 1], wiring);
    enable_probing(&lab);
    let isp2 = lab.uplinks()[1].isp_ns.clone();
    lab.exec_ok(&isp2, &["nft", "add table inet fp_blackhole"])
        .unwrap();
    lab.exec_ok(
        &isp2,
        &["nft", "add chain inet fp_blackhole drop_all { type filter hook prerouting priority -300; policy drop; }"],
    )
    .unwrap();
    // Down after DOWN_AFTER lost rounds: bound = (DOWN_AFTER + 1) intervals + timeout + polling slack.
    let bound = Duration::from_millis((DOWN_AFTER + 1) * INTERVAL_MS + 200 + 1_000);
    let took = wait_for_status(&lab, bound, |s| uplink_state(s, 1) == "down")
        .unwrap_or_else(|s| panic!("isp2 not down within {bound:?}: {s:#}"));
    eprintln!("blackhole detected after {took:?}");
    let status = flowpin_status(&lab);
    assert_eq!(
        uplink_state(&status, 0),
        "up",
        "the healthy uplink stays up"
    );
    assert_eq!(status["uplinks"][1]["eligible"], false);
    // New flows only on the healthy uplink: every ping from a new echo id gets through.
    let before = lab.isp_counters().unwrap();
    for _ in 0..10 {
        assert!(
            ping_ok(&lab, "203.0.113.10"),
            "new flows avoid the dead uplink"
        );
    }
    let after = lab.isp_counters().unwrap();
    assert!(after[0].good > before[0].good, "isp1 carried the new flows");
    assert_no_leak_or_wrong_uplink(&lab, &after);

    lab.exec_ok(&isp2, &["nft", "delete table inet fp_blackhole"])
        .unwrap();
    // Back up only after probing: down → probing → up takes at least up_after rounds. The upper bound
    // is only liveness: on a loaded machine late probes make neutral rounds that restart the streak.
    let took = wait_for_status(&lab, Duration::from_secs(20), |s| {
        uplink_state(s, 1) == "up"
    })
    .unwrap_or_else(|s| panic!("isp2 did not recover: {s:#}"));
    assert!(
        took >= Duration::from_millis(2 * INTERVAL_MS),
        "recovered after {took:?}: faster than the up hysteresis allows"
    );
    let status = flowpin_status(&lab);
    assert!(
        status["uplinks"][1]["state_changes"].as_u64().unwrap() >= 3,
        "{status:#}"
    );
    down_and_assert_clean(lab);
}
