//! Uplink health and failover on the lab, through `flowpin run` in the router namespace.
//! Probing is switched on by a live reload (the lab starts flowpin without probe targets), which also
//! exercises `flowpin reload`. Every test asserts that no ISP saw a leaked or wrong-uplink source.

use std::time::{Duration, Instant};

use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{Fault, Lab, UplinkWiring};
use flowpin_tests::long_flows::epoch_seconds;
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_cli,
    flowpin_metrics, flowpin_status, health_section, on_every_host_at_once, prometheus,
    uplink_state, wait_for_probes_answered, wait_for_status,
};

#[path = "suite/uplinks.rs"]
mod uplinks;

use uplinks::{DOWN_AFTER, INTERVAL_MS, ping_ok};

fn flowpin_lab() -> Lab {
    uplinks::flowpin_lab(&[1, 1], UplinkWiring::Separate)
}

#[test]
fn blackholed_isp_is_detected_within_the_bound_and_recovers_after_hysteresis() {
    uplinks::blackholed_isp_fails_over_and_recovers(UplinkWiring::Separate);
}

#[test]
fn link_down_fails_over_at_once_and_invalid_reloads_are_refused() {
    let lab = flowpin_lab();
    let wan2 = lab.uplinks()[1].router_iface.clone();
    let router = lab.router().ns.clone();
    lab.exec_ok(&router, &["ip", "link", "set", &wan2, "down"])
        .unwrap();
    let took = wait_for_status(&lab, Duration::from_secs(1), |s| {
        uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("link down not acted on within 1 s: {s:#}"));
    eprintln!("link down acted on after {took:?}");
    for _ in 0..6 {
        assert!(ping_ok(&lab, "203.0.113.11"));
    }
    lab.exec_ok(&router, &["ip", "link", "set", &wan2, "up"])
        .unwrap();
    wait_for_status(&lab, Duration::from_secs(5), |s| uplink_state(s, 1) == "up")
        .unwrap_or_else(|s| panic!("isp2 not back: {s:#}"));

    // An invalid file is refused with file:line:field, and the daemon keeps running its config.
    let files = lab.flowpin_files().unwrap();
    let good = std::fs::read_to_string(&files.config).unwrap();
    std::fs::write(
        &files.config,
        format!("{good}\n[health]\ntimeout_ms = 5000\n"),
    )
    .unwrap();
    let out = flowpin_cli(&lab, &["reload"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("health.timeout_ms"), "{error}");
    std::fs::write(&files.config, &good).unwrap();
    assert!(flowpin_cli(&lab, &["reload"]).status.success());
    let status = flowpin_status(&lab);
    assert_eq!(status["reloads"], 1);
    assert_eq!(status["reloads_failed"], 1);

    // Drain: no new flows on isp1; undrain restores it.
    assert!(
        flowpin_cli(&lab, &["uplink", "drain", "isp1"])
            .status
            .success()
    );
    assert_eq!(uplink_state(&flowpin_status(&lab), 0), "draining");
    let before = lab.isp_counters().unwrap();
    for _ in 0..6 {
        assert!(ping_ok(&lab, "203.0.113.12"));
    }
    let after = lab.isp_counters().unwrap();
    assert_eq!(
        after[0].good, before[0].good,
        "a drained uplink takes no new flows"
    );
    assert!(
        flowpin_cli(&lab, &["uplink", "undrain", "isp1"])
            .status
            .success()
    );

    // Metrics parse as Prometheus text.
    let metrics = lab
        .exec_ok(&router, &["curl", "-sf", "http://127.0.0.1:9469/metrics"])
        .unwrap();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').expect(line);
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad sample {line}"));
    }
    assert!(
        metrics.contains("flowpin_uplink_state{uplink=\"isp2\",state=\"up\"} 1"),
        "{metrics}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

/// Opens a new UDP socket (a new internal endpoint, hence a new flow) every `period` seconds for
/// `seconds`, sends a datagram to the echo (up to 3 times, on the same socket: one flow) and prints
/// `first-send-time seen-as` (or `timeout`).
const NEW_UDP_FLOWS: &str = r#"
import socket, sys, time
server, port, period, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
end = time.time() + seconds
while time.time() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(0.5)
    sent = time.time()
    seen = "timeout"
    for attempt in range(3):
        s.sendto(b"new\n", (server, port))
        try:
            seen = s.recvfrom(512)[0].decode().strip()
            break
        except socket.timeout:
            pass
    print(sent, seen, flush=True)
    s.close()
    time.sleep(period)
"#;

/// Probe settings of the flapping test: a short window so loss is judged on the last 5 rounds.
const FLAP_WINDOW: u64 = 5;
const FLAP_UP_AFTER: u64 = 3;

#[test]
fn thirty_percent_probe_loss_never_flaps_and_recovery_waits_for_the_up_hysteresis() {
    let lab = flowpin_lab();
    append_config_and_reload(
        &lab,
        &health_section(INTERVAL_MS, DOWN_AFTER, FLAP_UP_AFTER, FLAP_WINDOW),
    );
    wait_for_probes_answered(&lab);
    let changes = |s: &serde_json::Value| s["uplinks"][1]["state_changes"].as_u64().unwrap();

    // 1. 30 % of isp2's probe packets dropped for 25 rounds: the state never changes. A round is bad
    // only when no target answers (0.3³ ≈ 3 %) or the window's loss reaches 60 %; three bad rounds
    // in a row are needed to go down.
    lab.inject_fault(1, Fault::ProbeLoss { percent: 30 })
        .unwrap();
    let changes_before = changes(&flowpin_status(&lab));
    // At least 25 intervals and 25 rounds' probes (3 targets each): on a loaded machine rounds
    // can come later than the interval.
    let rounds = 25;
    let start = Instant::now();
    let mut worst_loss: f64 = 0.0;
    let faults = loop {
        let status = flowpin_status(&lab);
        assert_eq!(
            uplink_state(&status, 1),
            "up",
            "flapped under 30 % probe loss: {status:#}"
        );
        assert_eq!(status["uplinks"][1]["eligible"], true);
        worst_loss = worst_loss.max(status["uplinks"][1]["probe_loss_percent"].as_f64().unwrap());
        let faults = lab.fault_counters(1).unwrap();
        if start.elapsed() >= Duration::from_millis(rounds * INTERVAL_MS)
            && faults.probes_seen >= rounds * 3
        {
            break faults;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "only {} probes in 40 s",
            faults.probes_seen
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = flowpin_status(&lab);
    assert_eq!(
        changes(&status),
        changes_before,
        "state changes under loss: {status:#}"
    );
    // The loss was real: about 30 % of the router's probes were dropped (15-45 % allows for the
    // sampling spread of ~75 probes).
    let (seen, dropped) = (faults.probes_seen, faults.probes_dropped);
    assert!(
        dropped * 100 >= seen * 15 && dropped * 100 <= seen * 45,
        "{dropped} of {seen} probe packets dropped"
    );
    assert!(worst_loss > 0.0, "the window never showed the loss");
    eprintln!(
        "30 % probe loss: {dropped} of {seen} probe packets dropped, worst window loss {worst_loss:.0} %, no state change"
    );

    // 2. A real outage, then a real recovery: new flows go to isp2 only once it is up again.
    lab.inject_fault(1, Fault::Blackhole).unwrap();
    wait_for_status(&lab, Duration::from_secs(5), |s| {
        uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("isp2 not down: {s:#}"));
    let changes_down = changes(&flowpin_status(&lab));
    let host = &lab.lan_hosts()[0];
    let isp1 = lab.uplinks()[0].router_addr;
    let isp2 = lab.uplinks()[1].router_addr;
    // A new UDP endpoint every 50 ms from now on, through the recovery.
    let (server, port) = (
        lab.inet().server_addrs[0].to_string(),
        lab.inet().echo_port.to_string(),
    );
    let new_flows = lab
        .spawn(
            &host.ns,
            &["python3", "-c", NEW_UDP_FLOWS, &server, &port, "0.05", "8"],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.inject_fault(1, Fault::None).unwrap();
    let lifted = Instant::now();
    let lifted_at = epoch_seconds();
    // The start of the last `flowpin status` that still showed isp2 not up: a flow whose first
    // packet left before it was placed with a snapshot that did not offer isp2.
    let mut last_not_up = epoch_seconds();
    let recovered = loop {
        let asked = epoch_seconds();
        let status = flowpin_status(&lab);
        if uplink_state(&status, 1) == "up" {
            break lifted.elapsed();
        }
        last_not_up = asked;
        assert!(
            lifted.elapsed() < Duration::from_secs(20),
            "isp2 did not recover: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let up_seen = epoch_seconds();
    let output = new_flows
        .wait_success(Duration::from_secs(30))
        .expect("the new-flow client");
    let drops = flowpin_status(&lab)["drops"].clone();
    let (mut checked, mut after_up, mut on_isp2_after_up) = (0, 0, 0);
    for line in output.lines() {
        let (sent, seen) = line.split_once(' ').expect(line);
        let sent: f64 = sent.parse().expect(line);
        let seen: Option<std::net::SocketAddrV4> = seen.parse().ok();
        if sent < last_not_up {
            assert_eq!(
                seen.map(|s| *s.ip()),
                Some(isp1),
                "a new flow before isp2 was up again did not leave by isp1: {line} (lifted, last not up, up seen at {lifted_at:.3}, {last_not_up:.3}, {up_seen:.3}), drops {drops}:\n{output}"
            );
            checked += 1;
        } else if sent > up_seen + 0.2 {
            after_up += 1;
            on_isp2_after_up += usize::from(seen.map(|s| *s.ip()) == Some(isp2));
        }
    }
    assert!(
        checked >= 3,
        "only {checked} new flows checked during recovery"
    );
    assert!(
        after_up >= 10 && on_isp2_after_up > 0,
        "{on_isp2_after_up} of {after_up} new flows on the recovered isp2"
    );
    assert!(
        recovered >= Duration::from_millis((FLAP_UP_AFTER - 1) * INTERVAL_MS),
        "recovered after {recovered:?}: faster than {FLAP_UP_AFTER} good rounds allow"
    );
    assert_eq!(
        changes(&flowpin_status(&lab)) - changes_down,
        2,
        "recovery is down → probing → up, nothing else"
    );
    eprintln!(
        "recovery took {recovered:?}; {checked} new flows before it all on isp1; {on_isp2_after_up} of {after_up} new flows after it on isp2"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

/// The metrics endpoint is strict Prometheus text, and its per-uplink packet counters agree with what
/// the ISPs saw. No far target is probed, and the ISPs count the router's gateway probes apart (not as
/// `good`), so every packet an ISP counts as `good` is one flowpin translated: the counts must match exactly
/// (packets and bytes — both count IP total lengths).
#[test]
fn metrics_parse_as_prometheus_text_and_match_the_isp_counters() {
    let lab = flowpin_lab();
    let before = flowpin_metrics(&lab);
    let isp_before = lab.isp_counters().unwrap();
    on_every_host_at_once(&lab, |index, host| {
        let http = traffic::http_get(&lab, host, 40).expect("curl runs");
        assert_eq!(http.ok, 40, "{http:?}");
        let servers: Vec<std::net::Ipv4Addr> = lab.inet().server_addrs.clone();
        for protocol in [EchoProtocol::Udp, EchoProtocol::Tcp] {
            let replies = traffic::echo(&lab, host, protocol, &servers).unwrap();
            assert!(replies.iter().all(|r| r.seen_as.is_some()), "{replies:?}");
        }
        let udp = traffic::iperf3(
            &lab,
            host,
            lab.inet().iperf_servers[index],
            IperfMode::Udp {
                bits_per_second: 2_000_000,
            },
            1,
        )
        .expect("iperf3 UDP");
        assert!(udp.udp_packets.unwrap().0 > 100);
    });
    // Let late packets (FINs, the last ACKs) pass before reading both sides.
    std::thread::sleep(Duration::from_millis(500));
    let after = flowpin_metrics(&lab);
    let isp_after = lab.isp_counters().unwrap();
    for (index, uplink) in lab.uplinks().iter().enumerate() {
        let name = format!("isp{}", uplink.number);
        let delta = |e: &prometheus::Exposition, metric: &str| {
            e.value(metric, &[("uplink", &name)])
                .unwrap_or_else(|| panic!("{metric} for {name}"))
        };
        let tx_packets = delta(&after, "flowpin_uplink_tx_packets_total")
            - delta(&before, "flowpin_uplink_tx_packets_total");
        let tx_bytes = delta(&after, "flowpin_uplink_tx_bytes_total")
            - delta(&before, "flowpin_uplink_tx_bytes_total");
        let seen = isp_after[index].since(&isp_before[index]);
        eprintln!(
            "{name}: flowpin tx {tx_packets} packets / {tx_bytes} bytes, ISP saw {} / {}",
            seen.good, seen.good_bytes
        );
        assert!(seen.good > 100, "{name} carried traffic: {seen:?}");
        assert_eq!(tx_packets as u64, seen.good, "{name}: packets out vs ISP");
        assert_eq!(tx_bytes as u64, seen.good_bytes, "{name}: bytes out vs ISP");
        assert_eq!(
            after.value(
                "flowpin_uplink_state",
                &[("uplink", &name), ("state", "up")]
            ),
            Some(1.0)
        );
        assert_eq!(after.kinds["flowpin_uplink_tx_packets_total"], "counter");
    }
    assert_no_leak_or_wrong_uplink(&lab, &isp_after);
    down_and_assert_clean(lab);
}
