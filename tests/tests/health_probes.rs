//! Probes that check what answers, per-target statistics and state-change hooks, on the lab through
//! `flowpin run`: an HTTP server that answers 503 to one uplink, an HTTPS server whose CA is or is
//! not the configured one, a DNS server that answers SERVFAIL to one uplink, and a hook directory
//! with a recording hook and a hanging one; and an uplink whose own `[uplink.health]` probes HTTP
//! beside one that probes its gateway by default. The servers answer per client address, so one uplink's
//! view of a service breaks while the other's works. Every test asserts that no ISP saw a leaked or
//! wrong-uplink source.

use std::time::Duration;

use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::probe_servers::{
    ADDRESS, DNS_PORT, HTTP_PORT, HTTPS_PORT, OK_BODY, ProbeServers, TLS_NAME,
};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean,
    flowpin_metrics, flowpin_status, lab_up, reload_with, uplink_state, wait_for_probes_answered,
    wait_for_status, with_uplink_keys,
};

const INTERVAL_MS: u64 = 300;
const UP_AFTER: u64 = 3;

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

/// `[health]` with one target (`target`, the body of its `[[health.target]]`) and `extra` keys.
fn health(extra: &str, target: &str) -> String {
    format!(
        "[health]\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 250\ndown_after = 3\n\
         up_after = {UP_AFTER}\nwindow = 10\n{extra}\n[[health.target]]\n{target}\n"
    )
}

fn http_target() -> String {
    format!(
        "kind = \"http\"\nurl = \"http://{ADDRESS}:{HTTP_PORT}/health\"\nexpect_body = \"{OK_BODY}\""
    )
}

fn dns_target() -> String {
    format!("kind = \"dns\"\naddress = \"{ADDRESS}\"\nport = {DNS_PORT}\nquery = \"{TLS_NAME}\"")
}

fn ping_ok(lab: &Lab) -> bool {
    lab.exec(
        &lab.lan_hosts()[0].ns,
        &["ping", "-c", "1", "-W", "1", "203.0.113.10"],
    )
    .is_ok_and(|o| o.status.success())
}

/// Uplink `index`'s only probe target in a status report.
fn target_of(status: &serde_json::Value, index: usize) -> &serde_json::Value {
    let targets = status["uplinks"][index]["probe_targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no probe_targets: {status:#}"));
    assert_eq!(targets.len(), 1, "{status:#}");
    &targets[0]
}

/// Waits until uplink `index` is `state`; panics with the status after `limit`.
fn wait_state(lab: &Lab, index: usize, state: &str, limit: Duration) -> Duration {
    wait_for_status(lab, limit, |s| uplink_state(s, index) == state)
        .unwrap_or_else(|s| panic!("uplink {index} not {state} within {limit:?}: {s:#}"))
}

/// New flows from the LAN get through (on the uplink still up), and no ISP saw a leaked or
/// wrong-uplink source.
fn assert_traffic_clean(lab: &Lab) {
    for _ in 0..5 {
        assert!(ping_ok(lab), "new flows take the healthy uplink");
    }
    assert_no_leak_or_wrong_uplink(lab, &lab.isp_counters().unwrap());
}

#[test]
fn an_http_503_takes_only_that_uplink_down_and_200_brings_it_back_after_the_hysteresis() {
    let lab = flowpin_lab();
    let servers = ProbeServers::start(&lab);
    append_config_and_reload(&lab, &health("", &http_target()));
    wait_for_probes_answered(&lab);
    let isp2 = lab.uplinks()[1].router_addr;
    servers.set("http-status", Some(isp2), "503");
    let took = wait_state(&lab, 1, "down", Duration::from_secs(10));
    eprintln!("503 acted on after {took:?}");
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 0), "up", "isp1 still gets 200");
    let (healthy, broken) = (target_of(&status, 0), target_of(&status, 1));
    let url = format!("http://{ADDRESS}:{HTTP_PORT}/health");
    assert_eq!(broken["target"], url.as_str());
    assert_eq!(broken["last_failure"], "HTTP status 503", "{status:#}");
    assert!(broken["loss_percent"].as_f64().unwrap() > 0.0, "{status:#}");
    assert_eq!(healthy["loss_percent"], 0.0, "{status:#}");
    assert!(healthy["rtt_ms"].as_f64().unwrap() > 0.0, "{status:#}");
    assert!(healthy["jitter_ms"].is_number(), "{status:#}");
    let metrics = flowpin_metrics(&lab);
    let loss = |uplink: &str| {
        metrics
            .value(
                "flowpin_probe_target_loss_ratio",
                &[("uplink", uplink), ("target", &url)],
            )
            .unwrap_or_else(|| panic!("no loss sample for {uplink}"))
    };
    assert_eq!(loss("isp1"), 0.0);
    assert!(loss("isp2") > 0.0);
    assert_traffic_clean(&lab);

    servers.set("http-status", Some(isp2), "200");
    let took = wait_state(&lab, 1, "up", Duration::from_secs(20));
    assert!(
        took >= Duration::from_millis((UP_AFTER - 1) * INTERVAL_MS),
        "back up after {took:?}: faster than up_after rounds allow"
    );
    down_and_assert_clean(lab);
}

#[test]
fn an_https_probe_trusts_the_configured_ca_and_fails_with_another() {
    let lab = flowpin_lab();
    let servers = ProbeServers::start(&lab);
    let files = lab.flowpin_files().unwrap();
    let base = std::fs::read_to_string(&files.config).unwrap();
    let with_ca = |ca: &std::path::Path| {
        let target = format!(
            "kind = \"https\"\nurl = \"https://{TLS_NAME}:{HTTPS_PORT}/health\"\n\
             address = \"{ADDRESS}\"\nexpect_body = \"{OK_BODY}\"\nca_file = \"{}\"",
            ca.display()
        );
        format!("{base}\n{}", health("", &target))
    };
    let (applied, said) = reload_with(&lab, &with_ca(&servers.ca));
    assert!(applied, "{said}");
    wait_for_probes_answered(&lab);
    let status = flowpin_status(&lab);
    for index in 0..2 {
        let target = target_of(&status, index);
        assert_eq!(target["loss_percent"], 0.0, "{status:#}");
        assert!(target["last_failure"].is_null(), "{status:#}");
    }

    let (applied, said) = reload_with(&lab, &with_ca(&servers.other_ca));
    assert!(applied, "{said}");
    for index in 0..2 {
        wait_state(&lab, index, "down", Duration::from_secs(10));
    }
    let status = flowpin_status(&lab);
    let failure = target_of(&status, 0)["last_failure"]
        .as_str()
        .unwrap_or_default();
    assert!(
        failure == "TLS: invalid peer certificate: UnknownIssuer",
        "{status:#}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());

    let (applied, said) = reload_with(&lab, &with_ca(&servers.ca));
    assert!(applied, "{said}");
    for index in 0..2 {
        wait_state(&lab, index, "up", Duration::from_secs(20));
    }
    down_and_assert_clean(lab);
}

#[test]
fn an_uplinks_own_http_target_takes_only_it_down_while_the_other_probes_its_gateway() {
    let lab = flowpin_lab();
    let servers = ProbeServers::start(&lab);
    let files = lab.flowpin_files().unwrap();
    let config = std::fs::read_to_string(&files.config).unwrap();
    let own = format!(
        "[uplink.health]\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 250\ndown_after = 3\n\
         up_after = {UP_AFTER}\nwindow = 10\n[[uplink.health.target]]\n{}\n",
        http_target()
    );
    let config = format!(
        "{}\n[health]\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 250\n",
        with_uplink_keys(&config, "isp2", &own)
    );
    let (applied, said) = reload_with(&lab, &config);
    assert!(applied, "{said}");
    let url = format!("http://{ADDRESS}:{HTTP_PORT}/health");
    let gateway = format!("icmp {}", lab.uplinks()[0].gateway);
    // Until isp2's first round with its own settings, its figures are its gateway probe's.
    wait_for_status(&lab, Duration::from_secs(5), |s| {
        target_of(s, 1)["target"] == url.as_str() && target_of(s, 1)["loss_percent"] == 0.0
    })
    .unwrap_or_else(|s| panic!("isp2 does not probe its own target: {s:#}"));
    wait_for_probes_answered(&lab);
    let status = flowpin_status(&lab);
    assert_eq!(
        target_of(&status, 0)["target"],
        gateway.as_str(),
        "{status:#}"
    );

    let isp2 = lab.uplinks()[1].router_addr;
    servers.set("http-status", Some(isp2), "503");
    let took = wait_state(&lab, 1, "down", Duration::from_secs(10));
    eprintln!("isp2's own 503 acted on after {took:?}");
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 0), "up", "isp1's gateway answers");
    let (gateway_probe, own) = (target_of(&status, 0), target_of(&status, 1));
    assert_eq!(own["last_failure"], "HTTP status 503", "{status:#}");
    assert!(own["loss_percent"].as_f64().unwrap() > 0.0, "{status:#}");
    assert_eq!(gateway_probe["loss_percent"], 0.0, "{status:#}");
    assert!(
        gateway_probe["rtt_ms"].as_f64().unwrap() > 0.0,
        "{status:#}"
    );
    assert_traffic_clean(&lab);

    servers.set("http-status", Some(isp2), "200");
    wait_state(&lab, 1, "up", Duration::from_secs(20));
    down_and_assert_clean(lab);
}

#[test]
fn a_dns_servfail_takes_only_that_uplink_down_although_the_resolver_answers() {
    let lab = flowpin_lab();
    let servers = ProbeServers::start(&lab);
    append_config_and_reload(&lab, &health("", &dns_target()));
    wait_for_probes_answered(&lab);
    let isp2 = lab.uplinks()[1].router_addr;
    servers.set("dns-rcode", Some(isp2), "2");
    let took = wait_state(&lab, 1, "down", Duration::from_secs(10));
    eprintln!("SERVFAIL acted on after {took:?}");
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 0), "up", "{status:#}");
    assert_eq!(
        target_of(&status, 1)["last_failure"],
        "DNS answered SERVFAIL",
        "{status:#}"
    );
    // An answer, not a timeout: the resolver is reached through isp2; only its answer is wrong.
    assert_traffic_clean(&lab);

    servers.set("dns-rcode", Some(isp2), "5");
    std::thread::sleep(Duration::from_millis(4 * INTERVAL_MS));
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 1), "down", "REFUSED keeps it down");
    assert_eq!(
        target_of(&status, 1)["last_failure"],
        "DNS answered REFUSED"
    );

    servers.set("dns-rcode", Some(isp2), "0");
    wait_state(&lab, 1, "up", Duration::from_secs(20));
    down_and_assert_clean(lab);
}

#[test]
fn hooks_run_once_per_change_with_the_documented_environment_and_a_hanging_one_is_killed() {
    let lab = flowpin_lab();
    let servers = ProbeServers::start(&lab);
    let hooks = lab.dir().join("hooks.d");
    let record = lab.dir().join("hook-record");
    let hang_pids = lab.dir().join("hook-hang-pids");
    std::fs::create_dir_all(&hooks).unwrap();
    write_hook(
        &hooks.join("10-record"),
        &format!(
            "printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$FLOWPIN_EVENT_SEQUENCE\" \"$FLOWPIN_UPLINK\" \
             \"$FLOWPIN_INTERFACE\" \"$FLOWPIN_OLD_STATE\" \"$FLOWPIN_NEW_STATE\" \"$FLOWPIN_ACTION\" \
             \"$FLOWPIN_TIME\" \"$FLOWPIN_TIMESTAMP\" \"$FLOWPIN_REASON\" >> {}",
            record.display()
        ),
    );
    write_hook(
        &hooks.join("20-hang"),
        &format!(
            "echo $$ >> {pids}\nsleep 300 &\necho $! >> {pids}\nwait",
            pids = hang_pids.display()
        ),
    );
    let extra = format!("hooks_dir = \"{}\"\nhook_timeout_ms = 500", hooks.display());
    append_config_and_reload(&lab, &health(&extra, &dns_target()));
    wait_for_probes_answered(&lab);
    let isp2 = lab.uplinks()[1].router_addr;
    servers.set("dns-rcode", Some(isp2), "2");
    wait_state(&lab, 1, "down", Duration::from_secs(10));
    // The next change comes while the first change's hanging hook still runs: it is queued.
    servers.set("dns-rcode", Some(isp2), "0");
    wait_state(&lab, 1, "up", Duration::from_secs(20));
    let hooks_done = wait_for_status(&lab, Duration::from_secs(10), |s| {
        s["hooks"]["events"] == 3 && s["hooks"]["waiting"] == 0 && s["hooks"]["timed_out"] == 3
    })
    .unwrap_or_else(|s| panic!("hooks did not run for 3 changes: {s:#}"));
    eprintln!("hooks done {hooks_done:?} after the last change");
    let status = flowpin_status(&lab);
    assert_eq!(status["uplinks"][1]["state_changes"], 3, "{status:#}");
    assert_eq!(status["uplinks"][0]["state_changes"], 0, "{status:#}");
    assert_eq!(status["hooks"]["succeeded"], 3, "{status:#}");
    assert_eq!(status["hooks"]["failed"], 0, "{status:#}");
    assert_eq!(status["hooks"]["dropped"], 0, "{status:#}");

    let lines: Vec<Vec<String>> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| l.splitn(9, '|').map(str::to_owned).collect())
        .collect();
    let wan2 = lab.uplinks()[1].router_iface.clone();
    let expected = [
        ("1", "up", "down", "disconnected"),
        ("2", "down", "probing", "probing"),
        ("3", "probing", "up", "connected"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, (sequence, old, new, action)) in lines.iter().zip(expected) {
        assert_eq!(
            line[..6],
            [sequence, "isp2", wan2.as_str(), old, new, action],
            "{lines:#?}"
        );
        let time = &line[6];
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
        assert!(line[7].parse::<u64>().unwrap() > 1_700_000_000);
    }
    assert!(lines[0][8].contains("DNS answered SERVFAIL"), "{lines:#?}");
    // Every hanging hook was killed at its timeout.
    let pids = std::fs::read_to_string(&hang_pids).unwrap();
    assert_eq!(
        pids.lines().count(),
        6,
        "a shell and its sleep per change: {pids}"
    );
    for pid in pids.lines() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z "),
            "process {pid} of a hanging hook still runs: {state}"
        );
    }
    let metrics = flowpin_metrics(&lab);
    assert_eq!(
        metrics.value("flowpin_hook_runs_total", &[("result", "timed_out")]),
        Some(3.0)
    );
    assert_eq!(
        metrics.value("flowpin_hook_runs_total", &[("result", "succeeded")]),
        Some(3.0)
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}

fn write_hook(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
