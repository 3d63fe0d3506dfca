//! Per-uplink loss thresholds: both ISPs lose exactly 30 % of the router's probes, spread evenly
//! (`Fault::EvenProbeLoss`: an nft `numgen inc mod 100` set, so any 10 probes in a row lose 3 and
//! never two in a row). isp1's own `[uplink.health]` allows 50 % loss and stays up; isp2's allows
//! 20 % and goes down, and stays down while the loss lasts. Each round probes two targets, so a
//! round always has an answer and only the window's loss decides. isp1 also probes at its own
//! interval (twice `[health]`'s), so it sends about half as many probes as isp2. The per-uplink
//! tables are applied by a reload.

use std::time::{Duration, Instant};

use flowpin_lab::{Fault, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, reload_with,
    uplink_state, wait_for_probes_answered, wait_for_status, with_uplink_keys,
};

const INTERVAL_MS: u64 = 300;
/// isp1's own probe interval.
const ISP1_INTERVAL_MS: u64 = 2 * INTERVAL_MS;
/// Rounds in the loss window: 20 probes, of which exactly 6 are lost once the window is full.
const WINDOW: u64 = 10;
/// How long isp1 is watched under the loss: two of its full windows after isp2 went down.
const WATCH: Duration = Duration::from_millis(2 * WINDOW * ISP1_INTERVAL_MS);

fn health(down_loss: u8, interval_ms: u64) -> String {
    format!(
        "[uplink.health]\ninterval_ms = {interval_ms}\ndown_loss_percent = {down_loss}\n\
         up_loss_percent = 10\n"
    )
}

#[test]
fn thirty_percent_loss_keeps_a_50_percent_uplink_up_and_takes_a_20_percent_one_down() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let files = lab.flowpin_files().unwrap();
    let config = std::fs::read_to_string(&files.config).unwrap();
    let config = with_uplink_keys(&config, "isp1", &health(50, ISP1_INTERVAL_MS));
    let config = with_uplink_keys(&config, "isp2", &health(20, INTERVAL_MS));
    let config = format!(
        "{config}\n[health]\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 250\ndown_after = 3\n\
         up_after = 3\nwindow = {WINDOW}\nmin_answers = 1\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.11\"\n"
    );
    let (applied, said) = reload_with(&lab, &config);
    assert!(applied, "{said}\n{config}");
    wait_for_probes_answered(&lab);
    let changes_before = flowpin_status(&lab)["uplinks"][0]["state_changes"]
        .as_u64()
        .unwrap();

    for uplink in 0..2 {
        lab.inject_fault(uplink, Fault::EvenProbeLoss { percent: 30 })
            .unwrap();
    }
    // isp2: the window's loss reaches 20 % after about 4 lost probes, then 3 bad rounds.
    let took = wait_for_status(&lab, Duration::from_secs(15), |s| {
        uplink_state(s, 1) == "down"
    })
    .unwrap_or_else(|s| panic!("isp2 (20 % limit) not down under 30 % loss: {s:#}"));
    eprintln!("isp2 down after {took:?}");
    let start = Instant::now();
    let mut isp1_losses = Vec::new();
    while start.elapsed() < WATCH {
        let status = flowpin_status(&lab);
        assert_eq!(
            uplink_state(&status, 0),
            "up",
            "isp1 (50 % limit) left up under 30 % loss: {status:#}"
        );
        assert_eq!(uplink_state(&status, 1), "down", "{status:#}");
        isp1_losses.push(status["uplinks"][0]["probe_loss_percent"].as_f64().unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = flowpin_status(&lab);
    assert_eq!(
        status["uplinks"][0]["state_changes"].as_u64().unwrap(),
        changes_before,
        "isp1 changed state"
    );
    // The loss the router measured is the ISP's: at least the 30 % dropped (a late answer on a
    // loaded machine adds to it), well below 50 %.
    let last = *isp1_losses.last().unwrap();
    eprintln!("isp1 loss while watched: {isp1_losses:?}");
    assert!((30.0..50.0).contains(&last), "isp1 loss {isp1_losses:?}");
    // Each ISP dropped exactly its share (the pattern's count up to the probes it saw, give or
    // take the one in progress), and isp1, at twice the interval, saw about half of isp2's probes.
    let seen: Vec<_> = (0..2).map(|i| lab.fault_counters(i).unwrap()).collect();
    for (uplink, seen) in seen.iter().enumerate() {
        eprintln!(
            "isp{}: {} of {} probes dropped",
            uplink + 1,
            seen.probes_dropped,
            seen.probes_seen
        );
        let exact = 0.3 * seen.probes_seen as f64;
        assert!(
            seen.probes_seen >= 30 && (seen.probes_dropped as f64 - exact).abs() <= 1.0,
            "isp{} dropped {} of {} probes",
            uplink + 1,
            seen.probes_dropped,
            seen.probes_seen
        );
    }
    assert!(
        (seen[0].probes_seen as f64) < 0.75 * seen[1].probes_seen as f64,
        "isp1 probes at its own, longer interval: {seen:?}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
