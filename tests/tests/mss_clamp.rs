//! MSS clamping on the lab: the router's uplink `wan1` (and the ISP's end of it) is narrowed to MTU
//! 1400 behind a 1500 LAN. tcpdump in the ISP sees the SYN a LAN host opens with (MSS 1460) leave
//! flowpin announcing what the uplink takes: 1360 by default (`"pmtu"` is the default for an uplink
//! narrower than the LAN), the configured MSS after a reload with `mss_clamp = 1200`, and 1460 again
//! with `"off"`; tcpdump on the LAN host sees the server's SYN-ACK (MSS 1460) arrive clamped the same
//! way. flowpin counts the clamped segments, and HTTP through the narrow uplink keeps working.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind, traffic};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, reload_with,
    with_uplink_keys,
};

const UPLINK_MTU: u16 = 1400;
/// What hosts on 1500-byte links announce.
const HOST_MSS: u16 = 1460;

/// Starts tcpdump on `iface` in `ns` for TCP segments with SYN set to or from `server`, and waits
/// until it captures.
fn capture_syns(lab: &Lab, ns: &str, iface: &str, server: &str) -> LabProcess {
    let filter = format!("tcp[tcpflags] & tcp-syn != 0 and host {server}");
    let capture = lab
        .spawn(ns, &["tcpdump", "-i", iface, "-nn", "-l", "-p", &filter])
        .expect("tcpdump starts");
    let start = Instant::now();
    while !capture
        .stderr()
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tcpdump on {iface} in {ns} did not start: {:?}",
            capture.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    capture
}

/// Stops `capture` and returns the MSS of every segment it saw with exactly `flags` (`[S]` or
/// `[S.]`), from tcpdump lines like `… Flags [S], seq 1, win 64240, options [mss 1460,…], length 0`.
fn announced(capture: LabProcess, flags: &str) -> Vec<u16> {
    // tcpdump prints a packet after reading it: give the last one time to leave the buffer.
    std::thread::sleep(Duration::from_millis(300));
    capture.signal("INT").expect("stopping tcpdump");
    let _ = capture.wait(Duration::from_secs(5));
    let text = capture.stdout().unwrap_or_default();
    text.lines()
        .filter(|line| line.contains(&format!("Flags {flags},")))
        .map(|line| {
            let at = line
                .find("mss ")
                .unwrap_or_else(|| panic!("no MSS option in {line}"));
            let digits: String = line[at + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap_or_else(|_| panic!("MSS in {line}"))
        })
        .collect()
}

fn mss_clamped(status: &serde_json::Value) -> u64 {
    status["uplinks"][0]["mss_clamped"]
        .as_u64()
        .unwrap_or_else(|| panic!("no mss_clamped in {status:#}"))
}

/// One HTTP request from the first LAN host while the ISP and the host capture SYNs: the MSS of the
/// SYNs the ISP saw leave the router, and of the SYN-ACKs the host received.
fn one_connection(lab: &Lab) -> (Vec<u16>, Vec<u16>) {
    let host = &lab.lan_hosts()[0];
    let uplink = &lab.uplinks()[0];
    let server = lab.inet().server_addrs[0].to_string();
    let at_isp = capture_syns(lab, &uplink.isp_ns, &uplink.isp_router_iface, &server);
    let at_host = capture_syns(lab, &host.ns, &host.iface, &server);
    let http = traffic::http_get(lab, host, 1).expect("curl runs");
    assert_eq!(http.ok, 1, "the request fails: {:?}", http.failed_codes);
    (announced(at_isp, "[S]"), announced(at_host, "[S.]"))
}

fn set_mtu(lab: &Lab, ns: &str, iface: &str, mtu: u16) {
    lab.exec_ok(
        ns,
        &["ip", "link", "set", "dev", iface, "mtu", &mtu.to_string()],
    )
    .unwrap_or_else(|e| panic!("setting the MTU of {iface}: {e:#}"));
}

#[test]
fn syns_through_a_narrow_uplink_announce_what_it_takes_by_default_as_configured_or_not_at_all() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1])
    });
    let uplink = lab.uplinks()[0].clone();
    set_mtu(&lab, &lab.router().ns, &uplink.router_iface, UPLINK_MTU);
    set_mtu(&lab, &uplink.isp_ns, &uplink.isp_router_iface, UPLINK_MTU);

    // The control plane reads the new MTU on the link event (or its next refresh): until then SYNs
    // pass unclamped, so connect until one was clamped.
    let start = Instant::now();
    while mss_clamped(&flowpin_status(&lab)) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no SYN clamped after the MTU fell: {:#}",
            flowpin_status(&lab)
        );
        let _ = traffic::http_get(&lab, &lab.lan_hosts()[0], 1);
        std::thread::sleep(Duration::from_millis(100));
    }

    let pmtu = UPLINK_MTU - 40;
    let before = mss_clamped(&flowpin_status(&lab));
    let (syns, syn_acks) = one_connection(&lab);
    assert_eq!(syns, [pmtu], "the ISP sees the SYN clamped to MTU − 40");
    assert_eq!(syn_acks, [pmtu], "the LAN host sees the SYN-ACK clamped");
    assert_eq!(
        mss_clamped(&flowpin_status(&lab)) - before,
        2,
        "the SYN and the SYN-ACK are counted"
    );

    let files = lab.flowpin_files().expect("flowpin files");
    let config = std::fs::read_to_string(&files.config).expect("the config");
    let (applied, said) = reload_with(
        &lab,
        &with_uplink_keys(&config, "isp1", "mss_clamp = 1200\n"),
    );
    assert!(applied, "reload with mss_clamp = 1200: {said}");
    assert_eq!(one_connection(&lab), (vec![1200], vec![1200]));

    let (applied, said) = reload_with(
        &lab,
        &with_uplink_keys(&config, "isp1", "mss_clamp = \"off\"\n"),
    );
    assert!(applied, "reload with mss_clamp = \"off\": {said}");
    let before = mss_clamped(&flowpin_status(&lab));
    assert_eq!(
        one_connection(&lab),
        (vec![HOST_MSS], vec![HOST_MSS]),
        "off: SYN and SYN-ACK pass as they are"
    );
    assert_eq!(mss_clamped(&flowpin_status(&lab)), before);

    // Back to the default: new connections through the narrow uplink keep working.
    let (applied, said) = reload_with(&lab, &config);
    assert!(applied, "reload back to the default: {said}");
    let http = traffic::http_get(&lab, &lab.lan_hosts()[1], 20).expect("curl runs");
    assert_eq!(http.ok, 20, "failed requests {:?}", http.failed_codes);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
