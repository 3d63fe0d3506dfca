//! The gateway is watched by default: a lab flowpin runs with no `[health]` section, so each uplink
//! probes its own gateway (ICMP echo through the uplink, every `interval_ms` = 1 s, down after
//! `down_after` = 3 bad rounds). When isp1's namespace drops everything (its gateway stops answering,
//! as a dead modem would), isp1 goes down within the documented bound and its flows fail over per
//! class: TCP reset, UDP moved to isp2; isp2's flows are untouched.

use std::time::Duration;

use flowpin_lab::{Fault, Lab, LabSpec, RouterKind};
use flowpin_tests::long_flows::{LongFlowClient, epoch_seconds, start_held_echo};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, uplink_state,
    wait_for_status,
};

/// The documented detection time with the defaults: `down_after` (3) rounds of `interval_ms`
/// (1000 ms) after the first round the fault catches, plus that round's `timeout_ms` (800 ms).
const DOCUMENTED_MS: u64 = 3 * 1000 + 800;
/// Slack for polling `flowpin status` on a loaded 2-core machine running other lab tests.
const POLL_SLACK_MS: u64 = 1_500;

fn address(lab: &Lab, uplink: usize) -> std::net::Ipv4Addr {
    lab.uplinks()[uplink].router_addr
}

#[test]
fn a_dead_gateway_takes_its_uplink_down_without_any_health_section() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let config = std::fs::read_to_string(lab.flowpin_files().unwrap().config).unwrap();
    assert!(!config.contains("[health]"), "{config}");
    // The gateways answer: both uplinks up with their probe loss measured.
    wait_for_status(&lab, Duration::from_secs(10), |s| {
        (0..2).all(|i| {
            uplink_state(s, i) == "up" && s["uplinks"][i]["probe_rtt_ms"].as_f64().is_some()
        })
    })
    .unwrap_or_else(|s| panic!("gateway probes not answered: {s:#}"));
    start_held_echo(&lab);
    for uplink in 0..2 {
        lab.inject_fault(uplink, Fault::None).unwrap();
    }
    let uplinks = [address(&lab, 0), address(&lab, 1)];
    let long = LongFlowClient::start(
        &lab,
        &lab.lan_hosts()[0],
        lab.inet().server_addrs[1],
        &uplinks,
        2,
        200,
        14,
    );

    lab.inject_fault(0, Fault::Blackhole).unwrap();
    let in_force = epoch_seconds();
    let bound = Duration::from_millis(DOCUMENTED_MS + POLL_SLACK_MS);
    wait_for_status(&lab, bound, |s| uplink_state(s, 0) == "down")
        .unwrap_or_else(|s| panic!("isp1 not down within {bound:?}: {s:#}"));
    let detected = epoch_seconds();
    eprintln!(
        "dead gateway detected after {:.2} s (documented {DOCUMENTED_MS} ms)",
        detected - in_force
    );
    let status = flowpin_status(&lab);
    assert_eq!(uplink_state(&status, 1), "up", "{status:#}");
    assert_eq!(status["uplinks"][0]["eligible"], false);
    std::thread::sleep(Duration::from_secs(1));
    let translated_after = lab.fault_counters(0).unwrap().translated;

    let flows = long.finish();
    assert_eq!(
        lab.fault_counters(0).unwrap().translated,
        translated_after,
        "flowpin sent translated packets out of isp1 after it was declared down"
    );
    let mut checked = [0usize; 4];
    for flow in &flows {
        let on_isp1 = *flow.seen_at_start.ip() == uplinks[0];
        match (flow.proto.as_str(), on_isp1) {
            ("tcp" | "tcp-idle", true) => {
                let (at, why) = flow.end.clone().unwrap_or_else(|| {
                    panic!("TCP flow on the dead isp1 was never reset: {flow:?}")
                });
                assert_eq!(why, "reset", "{flow:?}");
                assert!(at - detected < 2.0, "reset {:.2} s late", at - detected);
                checked[0] += 1;
            }
            (_, true) => {
                let after: Vec<_> = flow
                    .replies
                    .iter()
                    .filter(|(t, _)| *t > detected + 0.5)
                    .collect();
                assert!(!after.is_empty(), "moved UDP flow never answered: {flow:?}");
                for (_, seen) in &after {
                    assert_eq!(seen.map(|s| *s.ip()), Some(uplinks[1]), "{flow:?}");
                }
                checked[1] += 1;
            }
            ("tcp" | "tcp-idle", false) => {
                assert_eq!(flow.end, None, "a TCP flow on isp2 ended: {flow:?}");
                checked[2] += 1;
            }
            (_, false) => {
                assert!(
                    flow.replies
                        .iter()
                        .all(|(_, seen)| seen.is_none_or(|s| *s.ip() == uplinks[1])),
                    "{flow:?}"
                );
                checked[3] += 1;
            }
        }
    }
    assert!(
        checked.iter().all(|&n| n >= 2),
        "flows per class: {checked:?}"
    );
    let status = flowpin_status(&lab);
    assert!(status["uplinks"][0]["flows_failed_over"].as_u64().unwrap() >= 4);
    assert_eq!(status["uplinks"][1]["flows_failed_over"], 0);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());

    // The gateway answers again: isp1 comes back through probing, within the documented
    // `window × (1 − up_loss_percent) + up_after − 1` rounds (20 s with the defaults, once the lost
    // rounds filled the window) plus slack for a loaded machine.
    lab.inject_fault(0, Fault::None).unwrap();
    let took = wait_for_status(&lab, Duration::from_secs(30), |s| {
        uplink_state(s, 0) == "up"
    })
    .unwrap_or_else(|s| panic!("isp1 did not come back: {s:#}"));
    eprintln!("isp1 back up {took:?} after its gateway answered again");
    down_and_assert_clean(lab);
}
