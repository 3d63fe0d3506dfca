//! An uplink without a link layer (as PPPoE, WireGuard and raw-IP LTE uplinks are) through flowpin:
//! the lab's isp2 is a tun device in the router joined to a tun in the ISP by a relay process (the
//! modem, `flowpin_lab::tun_relay`). The same end-to-end checks as an Ethernet uplink: curl, iperf3,
//! EIM, failover by carrier (the relay stops: the tun loses its carrier) and by probes (a black hole
//! at the ISP), recovery, and no leaked or wrong-uplink source at either ISP.

use std::collections::BTreeSet;
use std::time::Duration;

use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{Fault, Lab, LabSpec, RouterKind, UplinkSpec};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_flows,
    flowpin_status, health_section, lab_up, pin_new_flows_to, status_drops, uplink_state,
    wait_for_probes_answered, wait_for_status,
};

/// isp1 over a veth, isp2 over a tun pair and the relay.
fn tun_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        uplinks: vec![
            UplinkSpec::ethernet(1),
            UplinkSpec {
                weight: 1,
                tun: true,
            },
        ],
        ..LabSpec::default()
    })
}

fn isp_good(lab: &Lab, index: usize) -> u64 {
    lab.isp_counters().expect("ISP counters")[index].good
}

#[test]
fn a_tun_uplink_carries_curl_iperf3_and_one_external_endpoint_per_socket() {
    let lab = tun_lab();
    let wan2 = &lab.uplinks()[1];
    let link = lab
        .exec_ok(
            &lab.router().ns,
            &["ip", "-d", "link", "show", &wan2.router_iface],
        )
        .unwrap();
    assert!(
        link.contains("link/none") && link.contains("tun type tun"),
        "{link}"
    );

    // Unsolicited inbound through the tun, into the NAT range: it reaches the datapath (behind the
    // synthetic Ethernet header) and is dropped there, creating nothing.
    let before = status_drops(&flowpin_status(&lab), "unsolicited_inbound");
    let target = wan2.router_addr.to_string();
    for flag in ["-2", "-S"] {
        // hping3 exits 1 when nothing answers, which is the point here.
        let out = lab
            .exec(
                &wan2.isp_ns,
                &[
                    "hping3", "-q", flag, "-p", "20000", "-c", "20", "-i", "u2000", &target,
                ],
            )
            .unwrap_or_else(|e| panic!("hping3 {flag}: {e:#}"));
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("20 packets transmitted, 0 packets received"),
            "{flag}: {text}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        flowpin_flows(&lab)["matched"],
        0,
        "unsolicited traffic created flows"
    );
    let after = status_drops(&flowpin_status(&lab), "unsolicited_inbound");
    assert!(
        after >= before + 40,
        "dropped as unsolicited: {before} -> {after}"
    );
    pin_new_flows_to(&lab, "isp2");
    let host = &lab.lan_hosts()[0];

    let http = traffic::http_get(&lab, host, 200).expect("curl runs");
    assert_eq!(http.ok, 200, "failed requests {:?}", http.failed_codes);
    let after_curl = isp_good(&lab, 1);
    assert!(
        after_curl >= 200 * 5,
        "200 requests through isp2: {after_curl} packets"
    );

    let server = lab.inet().iperf_servers[1];
    let tcp = traffic::iperf3(&lab, host, server, IperfMode::Tcp { streams: 2 }, 2)
        .unwrap_or_else(|e| panic!("iperf3 TCP through the tun: {e:#}"));
    assert!(tcp.received_bytes > 10_000_000, "{tcp:?}");

    // EIM: one UDP socket, three servers, one external endpoint: isp2's address.
    let servers = &lab.inet().server_addrs[..3];
    let replies = traffic::echo(&lab, host, EchoProtocol::Udp, servers).expect("echo runs");
    let seen: BTreeSet<_> = replies
        .iter()
        .map(|r| {
            r.seen_as
                .unwrap_or_else(|| panic!("no answer: {replies:?}"))
        })
        .collect();
    assert_eq!(
        seen.len(),
        1,
        "one socket, one external endpoint: {replies:?}"
    );
    let external = seen.into_iter().next().unwrap();
    assert_eq!(*external.ip(), wan2.router_addr, "{replies:?}");

    let status = flowpin_status(&lab);
    assert_eq!(
        status["xdp"]["drop_l3_headroom"].as_u64().unwrap_or(0),
        0,
        "{status:#}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

#[test]
fn the_relay_stopping_takes_the_tun_uplink_down_its_flows_move_and_it_comes_back() {
    let lab = tun_lab();
    pin_new_flows_to(&lab, "isp2");
    let host = &lab.lan_hosts()[0];
    let http = traffic::http_get(&lab, host, 20).expect("curl runs");
    assert_eq!(http.ok, 20, "{:?}", http.failed_codes);
    // A UDP flow pinned to isp2 before the line goes.
    let servers = &lab.inet().server_addrs[..1];
    traffic::echo(&lab, host, EchoProtocol::Udp, servers).expect("echo runs");
    let status = flowpin_status(&lab);
    assert!(
        status["uplinks"][1]["flows"].as_u64().unwrap() > 0,
        "{status:#}"
    );

    // Back to the default policy (both uplinks), then the modem loses the line.
    let files = lab.flowpin_files().unwrap();
    let pinned = std::fs::read_to_string(&files.config).unwrap();
    let policy = pinned
        .find("[[policy]]\nname = \"only-isp2\"")
        .expect("the pin policy");
    std::fs::write(&files.config, &pinned[..policy]).unwrap();
    assert!(
        flowpin_tests::flowpin_cli(&lab, &["reload"])
            .status
            .success()
    );
    let relay = lab
        .processes()
        .into_iter()
        .find(|p| p.description().contains("tun-relay.py"))
        .expect("the lab's relay");
    relay.kill().unwrap();
    let took = wait_for_status(&lab, Duration::from_secs(2), |s| {
        uplink_state(s, 1) == "down" && s["uplinks"][1]["flows"] == 0
    })
    .unwrap_or_else(|s| panic!("carrier loss not acted on within 2 s: {s:#}"));
    eprintln!("tun carrier loss acted on after {took:?}");
    let isp1_before = isp_good(&lab, 0);
    let http = traffic::http_get(&lab, host, 40).expect("curl runs");
    assert_eq!(
        http.ok, 40,
        "everything through isp1: {:?}",
        http.failed_codes
    );
    assert!(isp_good(&lab, 0) >= isp1_before + 40 * 5);

    // The line comes back: the uplink is up and carries new flows again.
    lab.start_tun_relay(1).expect("the relay restarts");
    wait_for_status(&lab, Duration::from_secs(3), |s| uplink_state(s, 1) == "up")
        .unwrap_or_else(|s| panic!("isp2 not back: {s:#}"));
    pin_new_flows_to(&lab, "isp2");
    let isp2_before = isp_good(&lab, 1);
    let http = traffic::http_get(&lab, host, 40).expect("curl runs");
    assert_eq!(http.ok, 40, "through isp2 again: {:?}", http.failed_codes);
    assert!(isp_good(&lab, 1) >= isp2_before + 40 * 5);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

#[test]
fn probes_through_the_tun_uplink_see_a_black_hole_and_its_end() {
    let lab = tun_lab();
    append_config_and_reload(&lab, &health_section(300, 3, 3, 20));
    wait_for_probes_answered(&lab);
    lab.inject_fault(1, Fault::Blackhole).unwrap();
    wait_for_status(&lab, Duration::from_secs(3), |s| {
        uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("black hole behind the tun not seen: {s:#}"));
    let host = &lab.lan_hosts()[0];
    let http = traffic::http_get(&lab, host, 40).expect("curl runs");
    assert_eq!(http.ok, 40, "new flows avoid isp2: {:?}", http.failed_codes);
    lab.clear_faults(1).unwrap();
    // Back only after the up hysteresis; the upper bound is liveness only (as in failover.rs: on a
    // loaded machine late probes make neutral rounds that restart the streak).
    let took = wait_for_status(&lab, Duration::from_secs(20), |s| {
        uplink_state(s, 1) == "up"
    })
    .unwrap_or_else(|s| panic!("isp2 not back after the black hole: {s:#}"));
    assert!(
        took >= Duration::from_millis(600),
        "recovered after {took:?}: before the hysteresis"
    );
    pin_new_flows_to(&lab, "isp2");
    let http = traffic::http_get(&lab, host, 20).expect("curl runs");
    assert_eq!(http.ok, 20, "{:?}", http.failed_codes);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
