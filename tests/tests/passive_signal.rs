//! The passive health signal on the lab: a failure the probes miss. ISP 1 silently
//! drops the TCP flowpin forwards for the LAN (the router's uplink address with a source port in the
//! NAT range, [`Fault::TranslatedTcpDrop`]) while the router's own probes — ICMP echo and a TCP
//! connect from outside the NAT range — still get their answers, so the probes keep uplink 1 `up`.
//! Only the handshake counters see that the SYNs flowpin sends through it never get a SYN-ACK.
//!
//! With the trigger off (the default) the counters show it and nothing else changes; with
//! `passive_down_after_unanswered = N` a burst of new connections takes uplink 1 down within the
//! answer window plus a control tick, and the next new flows use uplink 2 only. Every test asserts
//! that no ISP saw a leaked or wrong-uplink source.

use std::time::{Duration, Instant};

use flowpin_lab::traffic::{HttpReport, parse_http_codes};
use flowpin_lab::{Fault, Lab, LabSpec, LanHost, RouterKind};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean,
    flowpin_metrics, flowpin_status, health_section, lab_up, uplink_state,
    wait_for_probes_answered, wait_for_status,
};

/// Probe interval and down hysteresis of the probes (they must never fire here: probes answer).
const INTERVAL_MS: u64 = 300;
const DOWN_AFTER: u64 = 3;
/// The faulty uplink (isp1) and the healthy one (isp2).
const FAULTY: usize = 0;
const HEALTHY: usize = 1;
/// New connections per burst: with weights 1:1 and per-endpoint stickiness each lands on either
/// uplink at random, so both get some (all on one side has probability 2⁻³¹).
const BURST: usize = 32;

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

/// `count` GETs from `host` at once, each on a new TCP connection (curl `--parallel`, no reuse),
/// cycling over the inet servers; `connect_timeout_s` bounds a connection nobody answers.
fn burst_argv(lab: &Lab, count: usize, connect_timeout_s: u32) -> Vec<String> {
    let inet = lab.inet();
    let mut argv: Vec<String> = [
        "curl",
        "-s",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        &count.to_string(),
        "-H",
        "Connection: close",
        "--connect-timeout",
        &connect_timeout_s.to_string(),
        "--max-time",
        &(connect_timeout_s + 3).to_string(),
        "-w",
        "%{http_code}\\n",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for i in 0..count {
        let server = inet.server_addrs[i % inet.server_addrs.len()];
        argv.extend(["-o".to_owned(), "/dev/null".to_owned()]);
        argv.push(format!("http://{server}:{}/", inet.http_port));
    }
    argv
}

/// Runs a burst to completion and reports its HTTP codes.
fn burst(lab: &Lab, host: &LanHost, count: usize, connect_timeout_s: u32) -> HttpReport {
    let argv = burst_argv(lab, count, connect_timeout_s);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = lab.exec(&host.ns, &argv).expect("curl runs");
    parse_http_codes(&String::from_utf8_lossy(&output.stdout), count)
}

fn uplink_u64(status: &serde_json::Value, uplink: usize, field: &str) -> u64 {
    status["uplinks"][uplink][field]
        .as_u64()
        .unwrap_or_else(|| panic!("uplink {uplink} has no {field}: {status:#}"))
}

/// Enables probing (every target answers through both uplinks) with `passive` lines added to
/// `[health]`, and waits until the probes have answered.
fn enable_probing(lab: &Lab, up_after: u64, passive: &str) {
    let section = health_section(INTERVAL_MS, DOWN_AFTER, up_after, 20).replacen(
        "[health]\n",
        &format!("[health]\n{passive}"),
        1,
    );
    append_config_and_reload(lab, &section);
    wait_for_probes_answered(lab);
}

/// Trigger off (the default): the handshakes flowpin sent into the silent drop are counted exactly
/// (every failed connection is one unanswered handshake on isp1, every successful one an answered
/// handshake on isp2), the streak reaches them once the default 3 s window has passed, and the
/// uplink stays `up` with its probes all answered — the probes miss this failure.
#[test]
fn with_the_trigger_off_unanswered_handshakes_are_counted_and_the_uplink_stays_up() {
    let lab = flowpin_lab();
    enable_probing(&lab, 3, "");
    lab.inject_fault(FAULTY, Fault::TranslatedTcpDrop).unwrap();
    let changes_before = uplink_u64(&flowpin_status(&lab), FAULTY, "state_changes");
    let host = &lab.lan_hosts()[0];

    let http = burst(&lab, host, BURST, 2);
    let failed = http.failed_codes.len() as u64;
    let ok = http.ok as u64;
    eprintln!("trigger off: {ok} of {BURST} connections answered, {failed} silently dropped");
    assert_eq!(ok + failed, BURST as u64, "{http:?}");
    assert!(
        failed > 0 && ok > 0,
        "the burst should use both uplinks: {http:?}"
    );
    let dropped = lab.fault_counters(FAULTY).unwrap().translated;
    assert!(
        dropped >= failed,
        "isp1 saw {dropped} translated packets for {failed} failed connections"
    );

    // The counters match the clients' view exactly, and the streak covers every failed connection
    // once its window (3 s by default) has passed. The uplink never leaves `up` meanwhile.
    let expected = |s: &serde_json::Value| {
        assert_eq!(
            uplink_state(s, FAULTY),
            "up",
            "the trigger is off, yet isp1 left up: {s:#}"
        );
        uplink_u64(s, FAULTY, "tcp_handshakes_started") == failed
            && uplink_u64(s, FAULTY, "tcp_handshakes_answered") == 0
            && uplink_u64(s, FAULTY, "tcp_handshakes_unanswered_in_a_row") == failed
            && uplink_u64(s, HEALTHY, "tcp_handshakes_started") == ok
            && uplink_u64(s, HEALTHY, "tcp_handshakes_answered") == ok
            && uplink_u64(s, HEALTHY, "tcp_handshakes_unanswered_in_a_row") == 0
    };
    let took = wait_for_status(&lab, Duration::from_secs(6), expected).unwrap_or_else(|s| {
        panic!("handshake counters never matched {ok} ok / {failed} failed: {s:#}")
    });
    eprintln!("streak of {failed} shown {took:?} after the burst ended");

    // Stays up for two more windows: no passive down, no state change, probes all answered.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(6) {
        let status = flowpin_status(&lab);
        assert_eq!(uplink_state(&status, FAULTY), "up", "{status:#}");
        assert_eq!(status["uplinks"][FAULTY]["eligible"], true);
        assert_eq!(uplink_u64(&status, FAULTY, "passive_downs"), 0);
        assert_eq!(uplink_u64(&status, FAULTY, "state_changes"), changes_before);
        // One target of three is TCP: were its probes hit by the fault, loss would be >= 33 %. A probe
        // timing out on a loaded box costs less than that.
        let loss = status["uplinks"][FAULTY]["probe_loss_percent"]
            .as_f64()
            .expect("probe loss");
        assert!(
            loss < 33.0,
            "the probes must not see this failure: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The metrics endpoint carries the same counts.
    let exposition = flowpin_metrics(&lab);
    for (uplink, started, answered) in [("isp1", failed, 0), ("isp2", ok, ok)] {
        let labels = [("uplink", uplink)];
        assert_eq!(
            exposition.value("flowpin_uplink_tcp_handshakes_started_total", &labels),
            Some(started as f64),
            "{uplink}"
        );
        assert_eq!(
            exposition.value("flowpin_uplink_tcp_handshakes_answered_total", &labels),
            Some(answered as f64),
            "{uplink}"
        );
    }
    assert_eq!(
        exposition.value(
            "flowpin_uplink_tcp_handshakes_unanswered_in_a_row",
            &[("uplink", "isp1")]
        ),
        Some(failed as f64)
    );
    assert_eq!(
        exposition.value("flowpin_uplink_passive_downs_total", &[("uplink", "isp1")]),
        Some(0.0)
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

/// Trigger settings of the second test: down after this many unanswered handshakes in a row, each
/// judged after this window.
const DOWN_AFTER_UNANSWERED: u64 = 6;
const ANSWER_WINDOW_MS: u64 = 1000;
/// Good probe rounds before the uplink takes new flows again: long enough (≥ 15 s) that the test
/// sees it out of service while it checks where new flows go.
const UP_AFTER: u64 = 50;

/// Trigger on: a burst of new connections takes isp1 down no sooner than one answer window after
/// the first SYN and within the window plus two control ticks and slack; the connections hanging on
/// isp1 fail at that moment (reset), not at their timeout; new flows then all succeed through isp2
/// and not a packet of them reaches isp1; the probes bring isp1 back once the fault is lifted.
#[test]
fn with_the_trigger_on_a_burst_of_unanswered_connections_takes_the_uplink_down() {
    let lab = flowpin_lab();
    enable_probing(
        &lab,
        UP_AFTER,
        &format!(
            "passive_down_after_unanswered = {DOWN_AFTER_UNANSWERED}\npassive_answer_window_ms = {ANSWER_WINDOW_MS}\n"
        ),
    );
    lab.inject_fault(FAULTY, Fault::TranslatedTcpDrop).unwrap();
    let host = &lab.lan_hosts()[0];

    // 1. The burst, in the background: the connections through isp1 hang until flowpin acts.
    let argv = burst_argv(&lab, BURST, 8);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let start = Instant::now();
    let clients = lab.spawn(&host.ns, &argv).expect("curl starts");
    // The control plane samples the handshake counters once a second: the first sample after a SYN
    // sees it, and the one a whole window later (one more second if the tick's jitter makes it a few
    // ms early) judges it; the rest is slack for a loaded machine.
    let bound = Duration::from_millis(ANSWER_WINDOW_MS + 3000);
    let took = loop {
        let status = flowpin_status(&lab);
        let elapsed = start.elapsed();
        if uplink_u64(&status, FAULTY, "passive_downs") > 0 {
            break elapsed;
        }
        assert_eq!(uplink_state(&status, FAULTY), "up", "{status:#}");
        assert!(
            elapsed < bound,
            "isp1 not taken down by the passive trigger within {bound:?}: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("passive down {took:?} after the burst started (window {ANSWER_WINDOW_MS} ms)");
    assert!(
        took >= Duration::from_millis(ANSWER_WINDOW_MS),
        "down after {took:?}: before any SYN could have waited a whole window"
    );
    let status = flowpin_status(&lab);
    assert_eq!(
        uplink_u64(&status, FAULTY, "passive_downs"),
        1,
        "{status:#}"
    );
    assert_eq!(status["uplinks"][FAULTY]["eligible"], false, "{status:#}");
    assert_ne!(uplink_state(&status, FAULTY), "up");
    assert_eq!(uplink_state(&status, HEALTHY), "up");
    assert_eq!(uplink_u64(&status, HEALTHY, "passive_downs"), 0);
    assert!(
        uplink_u64(&status, FAULTY, "tcp_handshakes_started") >= DOWN_AFTER_UNANSWERED,
        "{status:#}"
    );
    assert_eq!(uplink_u64(&status, FAULTY, "tcp_handshakes_answered"), 0);
    let burst_output = clients
        .wait_output(Duration::from_secs(20))
        .expect("the burst ends");
    let burst_took = start.elapsed();
    let first = parse_http_codes(&burst_output.stdout, BURST);
    eprintln!(
        "burst: {} of {BURST} answered, {} failed, all done {burst_took:?} after its start",
        first.ok,
        first.failed_codes.len(),
    );
    // The connections hanging on isp1 failed when it went down (failover resets TCP: the host's
    // connect fails at once), not after curl's 8 s connect timeout; every other one was answered.
    let on_faulty = uplink_u64(&flowpin_status(&lab), FAULTY, "tcp_handshakes_started");
    assert_eq!(
        first.failed_codes.len() as u64,
        on_faulty,
        "the failed connections are exactly those pinned to isp1: {first:?}"
    );
    assert!(
        burst_took < took + Duration::from_secs(2),
        "the hanging connections ended {burst_took:?} after the start, the uplink went down at {took:?}"
    );

    // 2. New flows go to isp2 only, and all of them work.
    std::thread::sleep(Duration::from_millis(200));
    let fault_before = lab.fault_counters(FAULTY).unwrap();
    let isp_before = lab.isp_counters().unwrap();
    let status_before = flowpin_status(&lab);
    let second = burst(&lab, host, BURST, 3);
    assert_eq!(
        second.ok, BURST,
        "new flows after the passive down: {second:?}"
    );
    let status = flowpin_status(&lab);
    assert_eq!(
        status["uplinks"][FAULTY]["eligible"], false,
        "isp1 came back during the check; raise UP_AFTER: {status:#}"
    );
    let fault_after = lab.fault_counters(FAULTY).unwrap();
    let isp_after = lab.isp_counters().unwrap();
    assert_eq!(
        fault_after.translated, fault_before.translated,
        "translated packets reached isp1 after it went down"
    );
    assert!(
        isp_after[HEALTHY].since(&isp_before[HEALTHY]).good >= BURST as u64 * 3,
        "isp2 carried the new flows"
    );
    for (uplink, delta) in [(FAULTY, 0), (HEALTHY, BURST as u64)] {
        let grew = |field: &str| {
            uplink_u64(&status, uplink, field) - uplink_u64(&status_before, uplink, field)
        };
        assert_eq!(grew("tcp_handshakes_started"), delta, "uplink {uplink}");
        assert_eq!(grew("tcp_handshakes_answered"), delta, "uplink {uplink}");
    }
    assert_no_leak_or_wrong_uplink(&lab, &isp_after);

    // 3. The fault lifted, the probes (not the passive signal) bring isp1 back after UP_AFTER good
    // rounds, and it takes new flows again.
    lab.inject_fault(FAULTY, Fault::None).unwrap();
    let back = wait_for_status(&lab, Duration::from_secs(40), |s| {
        uplink_state(s, FAULTY) == "up"
    })
    .unwrap_or_else(|s| panic!("isp1 did not come back: {s:#}"));
    eprintln!("isp1 up again {back:?} after the fault was lifted");
    let fault_before = lab.fault_counters(FAULTY).unwrap();
    let third = burst(&lab, host, BURST, 3);
    assert_eq!(third.ok, BURST, "{third:?}");
    assert!(
        lab.fault_counters(FAULTY).unwrap().translated > fault_before.translated,
        "isp1 takes new flows again"
    );
    let status = flowpin_status(&lab);
    assert_eq!(
        uplink_u64(&status, FAULTY, "passive_downs"),
        1,
        "{status:#}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
