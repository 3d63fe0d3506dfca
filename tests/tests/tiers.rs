//! Ordered tiers on a three-ISP lab: isp1 and isp2 in tier 1, isp3 in tier 2, probed at far targets.
//! New flows (new connections, one source port each) split over tier 1 and never use isp3; with
//! both tier-1 ISPs black-holed isp3 takes every new flow; when tier 1 answers again, new flows
//! return to it once its uplinks are up again (after the `up_after` hysteresis), and isp3 gets none.
//! Which ISP carried a new flow is counted by the ISPs themselves (flowpin's translated packets).
//! A hook records every state change with the uplink's tier and the tier new flows use after it.

use std::time::Duration;

use flowpin_lab::{Fault, Lab, LabSpec, RouterKind, traffic};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_metrics, flowpin_status,
    health_section, lab_up, reload_with, uplink_state, wait_for_probes_answered, wait_for_status,
    with_uplink_keys,
};

const INTERVAL_MS: u64 = 300;
const DOWN_AFTER: u64 = 3;
const UP_AFTER: u64 = 4;
/// New connections per phase.
const REQUESTS: usize = 30;

/// Translated packets each ISP carried while `requests` new HTTP connections were made.
fn new_flows_per_isp(lab: &Lab) -> Vec<u64> {
    let before: Vec<u64> = (0..3)
        .map(|i| lab.fault_counters(i).unwrap().translated)
        .collect();
    let report = traffic::http_get(lab, &lab.lan_hosts()[0], REQUESTS).expect("curl runs");
    assert_eq!(
        report.ok, REQUESTS,
        "every new connection works: {report:?}"
    );
    (0..3)
        .map(|i| lab.fault_counters(i).unwrap().translated - before[i])
        .collect()
}

fn all_up(s: &serde_json::Value) -> bool {
    (0..3).all(|i| uplink_state(s, i) == "up")
}

/// A hooks directory whose one hook appends `UPLINK NEW_STATE TIER TIER_IN_USE` to `record`.
fn recording_hooks(lab: &Lab, record: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = lab.dir().join("hooks.d");
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("10-record");
    let body = format!(
        "#!/bin/sh\necho \"$FLOWPIN_UPLINK $FLOWPIN_NEW_STATE $FLOWPIN_TIER $FLOWPIN_TIER_IN_USE\" >> {}\n",
        record.display()
    );
    std::fs::write(&hook, body).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// State changes of every uplink since start.
fn state_changes(s: &serde_json::Value) -> u64 {
    (0..3)
        .map(|i| s["uplinks"][i]["state_changes"].as_u64().unwrap())
        .sum()
}

/// The recorded changes, once each change since `before` (changes counted before the hooks were
/// configured) has run its hook.
fn recorded_changes(lab: &Lab, record: &std::path::Path, before: u64) -> Vec<[String; 4]> {
    wait_for_status(lab, Duration::from_secs(10), |s| {
        let since = state_changes(s) - before;
        s["hooks"]["events"] == since
            && s["hooks"]["succeeded"] == since
            && s["hooks"]["waiting"] == 0
    })
    .unwrap_or_else(|s| panic!("hooks did not run once per change: {s:#}"));
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
            fields
                .try_into()
                .unwrap_or_else(|f| panic!("hook line {f:?}"))
        })
        .collect()
}

#[test]
fn new_flows_use_the_best_tier_with_an_eligible_uplink() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1, 1])
    });
    let files = lab.flowpin_files().unwrap();
    let config = std::fs::read_to_string(&files.config).unwrap();
    let config = with_uplink_keys(&config, "isp3", "tier = 2\n");
    let record = lab.dir().join("hook-record");
    let hooks = recording_hooks(&lab, &record);
    let health = health_section(INTERVAL_MS, DOWN_AFTER, UP_AFTER, 5).replacen(
        "[health]\n",
        &format!("[health]\nhooks_dir = \"{}\"\n", hooks.display()),
        1,
    );
    let config = format!("{config}\n{health}");
    let (applied, said) = reload_with(&lab, &config);
    assert!(applied, "{said}");
    wait_for_probes_answered(&lab);
    for uplink in 0..3 {
        lab.inject_fault(uplink, Fault::None).unwrap();
    }
    let status = flowpin_status(&lab);
    assert_eq!(status["hooks"]["events"], 0, "{status:#}");
    let changes_before_hooks = state_changes(&status);
    let tiers: Vec<u64> = (0..3)
        .map(|i| status["uplinks"][i]["tier"].as_u64().unwrap())
        .collect();
    assert_eq!(tiers, [1, 1, 2], "{status:#}");
    assert_eq!(status["tier_in_use"], 1, "{status:#}");
    let metrics = flowpin_metrics(&lab);
    assert_eq!(
        metrics.value("flowpin_uplink_tier", &[("uplink", "isp3")]),
        Some(2.0)
    );

    // 1. All up: tier 1 takes every new flow, split over both; isp3 none.
    let split = new_flows_per_isp(&lab);
    eprintln!("all up: translated packets per ISP {split:?}");
    assert!(split[0] > 0 && split[1] > 0, "tier 1 split: {split:?}");
    assert_eq!(split[2], 0, "tier 2 took new flows while tier 1 was up");

    // 2. Both tier-1 ISPs black-holed: isp3 takes the new flows.
    lab.inject_fault(0, Fault::Blackhole).unwrap();
    lab.inject_fault(1, Fault::Blackhole).unwrap();
    wait_for_status(&lab, Duration::from_secs(10), |s| {
        uplink_state(s, 0) == "down" && uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("tier 1 not down: {s:#}"));
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 2), "up");
    assert_eq!(status["tier_in_use"], 2, "{status:#}");
    assert_eq!(
        flowpin_metrics(&lab).value("flowpin_tier_in_use", &[]),
        Some(2.0)
    );
    let fallback = new_flows_per_isp(&lab);
    eprintln!("tier 1 black-holed: translated packets per ISP {fallback:?}");
    assert_eq!(&fallback[..2], [0, 0], "new flows into the black holes");
    assert!(fallback[2] > 0, "tier 2 took no new flows: {fallback:?}");

    // 3. Tier 1 answers again: back to it after the hysteresis, isp3 gets no new flows.
    lab.inject_fault(0, Fault::None).unwrap();
    lab.inject_fault(1, Fault::None).unwrap();
    let took = wait_for_status(&lab, Duration::from_secs(20), all_up)
        .unwrap_or_else(|s| panic!("tier 1 did not come back: {s:#}"));
    assert!(
        took >= Duration::from_millis((UP_AFTER - 1) * INTERVAL_MS),
        "tier 1 back after {took:?}: faster than its hysteresis"
    );
    assert_eq!(flowpin_status(&lab)["tier_in_use"], 1);
    let back = new_flows_per_isp(&lab);
    eprintln!("tier 1 back after {took:?}: translated packets per ISP {back:?}");
    assert!(back[0] > 0 && back[1] > 0, "tier 1 split again: {back:?}");
    assert_eq!(back[2], 0, "tier 2 kept taking new flows");

    // 4. The hooks ran once per change, told the tier in use: 2 once both tier-1 uplinks were
    // down, 1 again once one was back.
    let changes = recorded_changes(&lab, &record, changes_before_hooks);
    eprintln!("hook runs: {changes:?}");
    assert!(
        changes
            .iter()
            .all(|[uplink, _, tier, _]| uplink != "isp3" && tier == "1"),
        "{changes:?}"
    );
    let downs: Vec<&str> = changes
        .iter()
        .filter(|[_, state, _, _]| state == "down")
        .map(|[_, _, _, in_use]| in_use.as_str())
        .collect();
    assert_eq!(
        downs,
        ["1", "2"],
        "tier in use after each down: {changes:?}"
    );
    let first_up = changes.iter().position(|[_, state, _, _]| state == "up");
    let first_up = &changes[first_up.expect("an up change")];
    assert_eq!(first_up[3], "1", "{changes:?}");
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
