//! Uplink health and failover on the lab (issue 6 §6), through `flowpin run` in the router namespace.
//! Probing is switched on by a live reload (the lab starts flowpin without probe targets), which also
//! exercises `flowpin reload`. Every test asserts that no ISP saw a leaked or wrong-uplink source.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up,
};

/// Probe interval, timeout and down hysteresis the tests configure.
const INTERVAL_MS: u64 = 300;
const DOWN_AFTER: u64 = 3;

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

fn flowpin(lab: &Lab, args: &[&str]) -> std::process::Output {
    let files = lab.flowpin_files().expect("the flowpin binary");
    let binary = files.binary.to_string_lossy().into_owned();
    let socket = files.socket.to_string_lossy().into_owned();
    // `--socket` belongs to the first subcommand (`uplink --socket S drain NAME`).
    let mut argv = vec![binary.as_str(), args[0], "--socket", socket.as_str()];
    argv.extend_from_slice(&args[1..]);
    lab.exec(&lab.router().ns, &argv).expect("running flowpin")
}

/// Appends probe settings to the lab's configuration and reloads it.
fn enable_probing(lab: &Lab) {
    let files = lab.flowpin_files().unwrap();
    let mut text = std::fs::read_to_string(&files.config).unwrap();
    text.push_str(&format!(
        "\n[health]\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 200\ndown_after = {DOWN_AFTER}\nup_after = 3\nmin_answers = 1\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.11\"\n\
         [[health.target]]\nkind = \"tcp\"\naddress = \"203.0.113.12\"\nport = 80\n"
    ));
    std::fs::write(&files.config, text).unwrap();
    let out = flowpin(lab, &["reload"]);
    assert!(
        out.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Probes answer: loss is measured and both uplinks stay up.
    wait_for(lab, Duration::from_secs(5), |s| {
        s["uplinks"].as_array().unwrap().iter().all(|u| {
            u["state"] == "up"
                && u["probe_loss_percent"].as_f64() == Some(0.0)
                && u["probe_rtt_ms"].is_number()
        })
    })
    .expect("probes answered through both uplinks");
}

fn state(status: &serde_json::Value, uplink: usize) -> String {
    status["uplinks"][uplink]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `flowpin status` until `done` holds; returns how long it took.
fn wait_for(
    lab: &Lab,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<Duration, serde_json::Value> {
    let start = Instant::now();
    loop {
        let status = flowpin_status(lab);
        if done(&status) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ping_ok(lab: &Lab, target: &str) -> bool {
    lab.exec(
        &lab.lan_hosts()[0].ns,
        &["ping", "-c", "1", "-W", "1", target],
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}

#[test]
fn blackholed_isp_is_detected_within_the_bound_and_recovers_after_hysteresis() {
    let lab = flowpin_lab();
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
    let bound = Duration::from_millis((DOWN_AFTER + 1) * INTERVAL_MS + 200 + 500);
    let took = wait_for(&lab, bound, |s| state(s, 1) == "down")
        .unwrap_or_else(|s| panic!("isp2 not down within {bound:?}: {s:#}"));
    eprintln!("blackhole detected after {took:?}");
    let status = flowpin_status(&lab);
    assert_eq!(state(&status, 0), "up", "the healthy uplink stays up");
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
    let took = wait_for(&lab, Duration::from_secs(20), |s| state(s, 1) == "up")
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

#[test]
fn link_down_fails_over_at_once_and_invalid_reloads_are_refused() {
    let lab = flowpin_lab();
    let wan2 = lab.uplinks()[1].router_iface.clone();
    let router = lab.router().ns.clone();
    lab.exec_ok(&router, &["ip", "link", "set", &wan2, "down"])
        .unwrap();
    let took = wait_for(&lab, Duration::from_secs(1), |s| state(s, 1) == "down")
        .unwrap_or_else(|s| panic!("link down not acted on within 1 s: {s:#}"));
    eprintln!("link down acted on after {took:?}");
    for _ in 0..6 {
        assert!(ping_ok(&lab, "203.0.113.11"));
    }
    lab.exec_ok(&router, &["ip", "link", "set", &wan2, "up"])
        .unwrap();
    wait_for(&lab, Duration::from_secs(5), |s| state(s, 1) == "up")
        .unwrap_or_else(|s| panic!("isp2 not back: {s:#}"));

    // An invalid file is refused with file:line:field, and the daemon keeps running its config.
    let files = lab.flowpin_files().unwrap();
    let good = std::fs::read_to_string(&files.config).unwrap();
    std::fs::write(
        &files.config,
        format!("{good}\n[health]\ntimeout_ms = 5000\n"),
    )
    .unwrap();
    let out = flowpin(&lab, &["reload"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("health.timeout_ms"), "{error}");
    std::fs::write(&files.config, &good).unwrap();
    assert!(flowpin(&lab, &["reload"]).status.success());
    let status = flowpin_status(&lab);
    assert_eq!(status["reloads"], 1);
    assert_eq!(status["reloads_failed"], 1);

    // Drain: no new flows on isp1; undrain restores it.
    assert!(flowpin(&lab, &["uplink", "drain", "isp1"]).status.success());
    assert_eq!(state(&flowpin_status(&lab), 0), "draining");
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
        flowpin(&lab, &["uplink", "undrain", "isp1"])
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
