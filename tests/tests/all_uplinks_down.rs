//! All uplinks down (the viability guard): both of the router's uplink links go down. New
//! flows from the LAN are dropped and answered with ICMP net unreachable at the configured rate, nothing
//! leaks, flowpin keeps running, and bringing the links back restores service.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabSpec, RouterKind, traffic};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean,
    flowpin_status, lab_up, status_drops, wait_for_status,
};

/// The viability guard's rate limit this test configures (the lab runs one worker).
const PER_S: u64 = 2;
const BURST: u64 = 4;

fn all_uplinks(status: &serde_json::Value, state: &str) -> bool {
    status["uplinks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["state"] == state)
}

/// Pings `target` `count` times every `interval` from the first LAN host; returns ping's output and how
/// many "Destination Net Unreachable" answers it printed.
fn ping(lab: &Lab, target: &str, count: u32, interval: &str) -> (String, u64) {
    let count = count.to_string();
    let out = lab
        .exec(
            &lab.lan_hosts()[0].ns,
            &[
                "ping", "-n", "-c", &count, "-i", interval, "-W", "1", target,
            ],
        )
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let unreachable = text
        .lines()
        .filter(|l| l.contains("Destination Net Unreachable"))
        .count() as u64;
    (text, unreachable)
}

#[test]
fn with_every_uplink_down_hosts_get_rate_limited_net_unreachable_and_service_returns() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    append_config_and_reload(
        &lab,
        &format!("[failover]\nnet_unreachable_per_s = {PER_S}\nnet_unreachable_burst = {BURST}\n"),
    );
    let host = &lab.lan_hosts()[0];
    let before = traffic::http_get(&lab, host, 4).expect("curl runs");
    assert_eq!(before.ok, 4, "service before the outage: {before:?}");

    let router = lab.router().ns.clone();
    for uplink in lab.uplinks() {
        lab.exec_ok(
            &router,
            &["ip", "link", "set", &uplink.router_iface, "down"],
        )
        .unwrap();
    }
    wait_for_status(&lab, Duration::from_secs(3), |s| all_uplinks(s, "down"))
        .unwrap_or_else(|s| panic!("both uplinks not down within 3 s: {s:#}"));
    let counters_at_outage = lab.isp_counters().unwrap();
    let flows_at_outage = flowpin_status(&lab)["flows"].as_u64().unwrap();

    // A new TCP connection fails at once (the SYN is answered with net unreachable), not after its
    // connect timeout.
    let server = lab.inet().server_addrs[0].to_string();
    let url = format!("http://{server}:{}/", lab.inet().http_port);
    let started = Instant::now();
    let curl = lab
        .exec(
            &host.ns,
            &[
                "curl",
                "-sS",
                "--connect-timeout",
                "10",
                "-o",
                "/dev/null",
                &url,
            ],
        )
        .unwrap();
    let took = started.elapsed();
    assert!(!curl.status.success(), "curl cannot succeed with no uplink");
    assert!(
        took < Duration::from_secs(3),
        "curl failed after {took:?}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let (output, unreachable) = ping(&lab, &server, 1, "1");
    assert_eq!(unreachable, 1, "{output}");

    // The rate limit: after a quiet time that refills the bucket, a burst of 40 echo requests (each a
    // new flow attempt) draws the burst plus the rate over the burst's duration, no more.
    std::thread::sleep(Duration::from_millis(BURST * 1000 / PER_S + 500));
    let started = Instant::now();
    let (output, unreachable) = ping(&lab, &server, 40, "0.02");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(output.contains("40 packets transmitted"), "{output}");
    let most = BURST + (PER_S as f64 * elapsed).ceil() as u64;
    assert!(
        (BURST..=most).contains(&unreachable),
        "{unreachable} net unreachable for 40 new flows in {elapsed:.2} s (allowed {BURST}..={most}): {output}"
    );

    // flowpin still runs, counted every refused flow, and nothing left by any uplink.
    let status = flowpin_status(&lab);
    assert!(
        status_drops(&status, "no_uplink") >= 42,
        "every refused new flow counted: {status:#}"
    );
    assert!(
        status["flows"].as_u64().unwrap() <= flows_at_outage,
        "no flow was created: {status:#}"
    );
    let counters = lab.isp_counters().unwrap();
    assert_no_leak_or_wrong_uplink(&lab, &counters);
    for (now, then) in counters.iter().zip(&counters_at_outage) {
        assert_eq!(
            now.since(then).total(),
            0,
            "an ISP saw traffic during the outage"
        );
    }

    // Recovery: links up, gateways re-resolved, new connections work again.
    for uplink in lab.uplinks() {
        lab.exec_ok(&router, &["ip", "link", "set", &uplink.router_iface, "up"])
            .unwrap();
    }
    wait_for_status(&lab, Duration::from_secs(15), |s| {
        all_uplinks(s, "up")
            && s["uplinks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["eligible"] == true)
    })
    .unwrap_or_else(|s| panic!("both uplinks not up and eligible within 15 s: {s:#}"));
    let start = Instant::now();
    loop {
        let after = traffic::http_get(&lab, host, 4).expect("curl runs");
        if after.ok == 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "service not restored: {after:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
