//! flowpin in the router's place, end to end: real clients on the LAN hosts
//! (curl, iperf3, an echo client, ping, traceroute, mausezahn, hping3) against real servers in inet,
//! through `flowpin run` in the router namespace. Every test also asserts that no ISP saw a private
//! (leaked) or another uplink's source address.

use std::time::Duration;

use flowpin_lab::traffic::{self, IperfMode};
use flowpin_lab::{Lab, UplinkWiring};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_flows, flowpin_status,
    on_every_host_at_once, status_drops,
};

#[path = "suite/uplinks.rs"]
mod uplinks;

use uplinks::counters;

fn flowpin_lab(weights: &[u32]) -> Lab {
    uplinks::flowpin_lab(weights, UplinkWiring::Separate)
}

/// A `pgrep -f` pattern matching this lab's forwarder only (network namespaces do not separate
/// processes: other labs' forwarders run in parallel tests).
fn this_labs_flowpin(lab: &Lab) -> String {
    let config = lab.flowpin_files().expect("flowpin files").config;
    format!("run -c {}", config.display())
}

fn drops(lab: &Lab, reason: &str) -> u64 {
    status_drops(&flowpin_status(lab), reason)
}

/// (a) + (b): 200 curl requests, iperf3 TCP and UDP, from two LAN hosts at once.
#[test]
fn flowpin_carries_curl_and_iperf3_from_two_hosts_without_leaks() {
    let lab = flowpin_lab(&[1, 1]);
    let servers = &lab.inet().iperf_servers;
    on_every_host_at_once(&lab, |_, host| {
        let http = traffic::http_get(&lab, host, 200).expect("curl runs");
        assert_eq!(
            http.ok, 200,
            "{}: failed requests {:?}",
            host.ns, http.failed_codes
        );
    });
    on_every_host_at_once(&lab, |index, host| {
        let tcp = traffic::iperf3(&lab, host, servers[index], IperfMode::Tcp { streams: 2 }, 2)
            .unwrap_or_else(|e| panic!("iperf3 TCP from {}: {e:#}", host.ns));
        assert!(
            tcp.received_bytes > 1_000_000,
            "{}: TCP moved only {tcp:?}",
            host.ns
        );
    });
    on_every_host_at_once(&lab, |index, host| {
        let udp = traffic::iperf3(
            &lab,
            host,
            servers[index + 2],
            IperfMode::Udp {
                bits_per_second: 10_000_000,
            },
            2,
        )
        .unwrap_or_else(|e| panic!("iperf3 UDP from {}: {e:#}", host.ns));
        let (packets, lost) = udp.udp_packets.expect("UDP report");
        assert!(packets > 1000, "{}: {udp:?}", host.ns);
        assert!(
            lost * 100 <= packets * 10,
            "{}: lost {lost} of {packets}",
            host.ns
        );
    });
    let c = counters(&lab);
    assert_no_leak_or_wrong_uplink(&lab, &c);
    assert!(
        c.iter().all(|c| c.good > 100),
        "both uplinks carry flows: {c:?}"
    );
    down_and_assert_clean(lab);
}

/// (c): new internal endpoints spread by weight, each uplink within 15 % of its share, none at 0.
#[test]
fn new_endpoints_split_by_weight_1_1_2_1_and_11_45() {
    uplinks::new_endpoints_split_by_weight(UplinkWiring::Separate);
}

/// (d): every packet of a long iperf3 flow leaves on one uplink with one external address:port.
#[test]
fn a_long_flow_stays_on_one_uplink_with_one_external_endpoint() {
    uplinks::a_long_flow_stays_on_one_uplink(UplinkWiring::Separate);
}

/// (e) EIM: one UDP socket talking to many servers is seen by all at one external address:port;
/// (f) two LAN hosts using the same source port, both on one uplink, get distinct external ports and
/// both get replies.
#[test]
fn one_socket_has_one_external_endpoint_and_equal_source_ports_stay_apart() {
    uplinks::one_socket_has_one_external_endpoint(UplinkWiring::Separate);
}

/// (g): ping through; traceroute shows the hops; a port unreachable from inet reaches the host.
#[test]
fn icmp_echo_traceroute_and_port_unreachable_work_through_flowpin() {
    let lab = flowpin_lab(&[1, 1]);
    let host = &lab.lan_hosts()[0];
    let ping = lab
        .exec(
            &host.ns,
            &["ping", "-c", "3", "-i", "0.2", "-W", "1", "203.0.113.11"],
        )
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let trace = lab
        .exec_ok(
            &host.ns,
            &[
                "traceroute",
                "-n",
                "-q",
                "1",
                "-w",
                "1",
                "-m",
                "6",
                "203.0.113.12",
            ],
        )
        .expect("traceroute runs");
    let router = lab.router().lan_addr.to_string();
    assert!(trace.contains(&router), "first hop is the router: {trace}");
    let isp_hop = lab
        .uplinks()
        .iter()
        .any(|u| trace.contains(&u.gateway.to_string()));
    assert!(isp_hop, "an ISP gateway is a hop: {trace}");
    let last = trace.lines().last().unwrap_or_default();
    assert!(
        last.contains("203.0.113.12"),
        "the destination answers: {trace}"
    );

    // A connected UDP socket sees ECONNREFUSED when the translated port unreachable arrives.
    let refused = lab
        .exec_ok(
            &host.ns,
            &[
                "python3",
                "-c",
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1)\n\
                 s.connect(('203.0.113.10',9))\nr='timeout'\n\
                 for i in range(5):\n  s.send(b'x')\n  \
                 try:\n    s.recv(10)\n  except ConnectionRefusedError:\n    r='refused';break\n  \
                 except socket.timeout: pass\nprint(r)\n",
            ],
        )
        .expect("client runs");
    assert_eq!(
        refused.trim(),
        "refused",
        "ICMP port unreachable reached the LAN host translated"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// (h): unsolicited inbound traffic to the uplink addresses creates no flow and reaches no LAN host.
#[test]
fn unsolicited_inbound_creates_no_flow_and_reaches_no_lan_host() {
    let lab = flowpin_lab(&[1, 1]);
    let host = &lab.lan_hosts()[0];
    // A LAN host listens on the port the attack aims at; nothing may reach it.
    let listener = lab
        .spawn(&host.ns, &["socat", "-u", "UDP-RECV:20000", "STDOUT"])
        .expect("listener starts");
    let before = drops(&lab, "unsolicited_inbound");
    for uplink in lab.uplinks() {
        let target = uplink.router_addr.to_string();
        for (proto, flag) in [("udp", "-2"), ("tcp", "-S")] {
            // hping3 exits 1 when nothing answers, which is the point here.
            let out = lab
                .exec(
                    &uplink.isp_ns,
                    &[
                        "hping3", "-q", flag, "-p", "20000", "-c", "20", "-i", "u2000", &target,
                    ],
                )
                .unwrap_or_else(|e| panic!("hping3 {proto}: {e:#}"));
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("20 packets transmitted, 0 packets received"),
                "{proto}: {text}"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let flows = flowpin_flows(&lab);
    assert_eq!(
        flows["matched"], 0,
        "unsolicited traffic created flows: {flows}"
    );
    let after = drops(&lab, "unsolicited_inbound");
    assert!(
        after >= before + 70,
        "dropped as unsolicited: {before} -> {after}"
    );
    listener.kill().expect("stop listener");
    assert_eq!(
        listener.stdout().unwrap_or_default(),
        "",
        "a LAN host received unsolicited data"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// (i): `kill -9` of flowpin mid-traffic: nothing un-NATed leaves; a restart resumes forwarding.
#[test]
fn killing_flowpin_fails_closed_and_a_restart_resumes() {
    let lab = flowpin_lab(&[1, 1]);
    let host = &lab.lan_hosts()[0];
    let ok = traffic::http_get(&lab, host, 10).expect("curl runs");
    assert_eq!(ok.ok, 10);
    // Traffic keeps flowing from the LAN while flowpin dies.
    let flood = lab
        .spawn(
            &host.ns,
            &[
                "hping3",
                "-q",
                "-2",
                "-p",
                "7777",
                "-i",
                "u500",
                "-c",
                "6000",
                "203.0.113.10",
            ],
        )
        .expect("hping3 starts");
    std::thread::sleep(Duration::from_millis(500));
    let pid = lab
        .exec_ok(&lab.router().ns, &["pgrep", "-f", &this_labs_flowpin(&lab)])
        .expect("flowpin is running");
    let pid = pid.lines().next().expect("a pid").trim().to_owned();
    lab.exec_ok(&lab.router().ns, &["kill", "-9", &pid])
        .expect("kill -9");
    std::thread::sleep(Duration::from_millis(1500));
    let dead = traffic::http_get(&lab, host, 3).expect("curl runs");
    assert_eq!(dead.ok, 0, "nothing may be forwarded while flowpin is dead");
    let _ = flood.wait(Duration::from_secs(20));
    // What the kernel itself sends from uplink 2's address (its answers to replies that arrive while
    // flowpin is down) follows the default route via uplink 1: the guard must drop it there.
    let second = lab.uplinks()[1].router_addr.to_string();
    let _ = lab.exec(
        &lab.router().ns,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            &second,
            "203.0.113.10",
        ],
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));

    let started = std::time::Instant::now();
    lab.start_flowpin().expect("flowpin restarts");
    let back = traffic::http_get(&lab, host, 10).expect("curl runs");
    assert_eq!(
        back.ok,
        10,
        "forwarding resumed after {:?}",
        started.elapsed()
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// SIGTERM: flowpin exits, removes its socket, and leaves its pinned XDP links attached and the
/// forward guard in place, so transit stays closed twice over.
#[test]
fn sigterm_leaves_the_pinned_xdp_links_and_the_forward_guard() {
    let lab = flowpin_lab(&[1, 1]);
    let host = &lab.lan_hosts()[0];
    assert_eq!(traffic::http_get(&lab, host, 5).expect("curl runs").ok, 5);
    let status = flowpin_status(&lab);
    assert!(
        flowpin_tests::status_count(&status, "xdp", "redirect_lan_transit") > 0,
        "the XDP program redirected LAN transit: {}",
        status["xdp"]
    );
    let router = &lab.router().ns;
    let pattern = this_labs_flowpin(&lab);
    lab.exec_ok(router, &["pkill", "-TERM", "-f", &pattern])
        .expect("SIGTERM sent");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lab
        .exec(router, &["pgrep", "-f", &pattern])
        .unwrap()
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flowpin did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let links = lab
        .exec_ok(router, &["ip", "-j", "link", "show"])
        .expect("ip link");
    let links: serde_json::Value = serde_json::from_str(&links).expect("ip -j output");
    let with_xdp: Vec<&str> = links
        .as_array()
        .expect("links")
        .iter()
        .filter(|link| link.get("xdp").is_some())
        .filter_map(|link| link["ifname"].as_str())
        .collect();
    assert_eq!(
        with_xdp,
        ["lan0", "wan1", "wan2"],
        "the pinned links stay attached"
    );
    assert!(
        flowpin_lab::state::pin_dir(lab.prefix())
            .join("link_lan0")
            .exists()
    );
    assert!(
        !lab.flowpin_files().unwrap().socket.exists(),
        "control socket removed"
    );
    lab.exec_ok(router, &["nft", "list", "table", "inet", "flowpin_guard"])
        .expect("the forward guard stays after a clean stop");
    assert_eq!(
        traffic::http_get(&lab, host, 2).expect("curl runs").ok,
        0,
        "transit stays closed"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}
