//! Carrier changes reach flowpin from rtnetlink at once, not at the next periodic re-read of
//! the kernel's tables (every second). Five carrier losses and returns on uplink 2, each seen in
//! `flowpin status` within [`BOUND`]: with the periodic re-read alone the chance of that is 0.3⁵ ≈ 0.2 %.
//! A return counts once the kernel has made the link operational and the gateway answered; the gateway's
//! answer to the first ARP request is often lost while its side of the veth comes up, so this also shows
//! flowpin asking again within a tick instead of waiting for the kernel's one-second retransmit.

use std::time::{Duration, Instant};

use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, daemon_status, down_and_assert_clean, flowpin_status, lab_up,
};

/// How soon a carrier change must show in the status (event, status query and a loaded 2-core box).
const BOUND: Duration = Duration::from_millis(300);

/// Sets the router's `iface` down or up and returns how long until the daemon's status shows uplink 2
/// in `expected` state (asked at the control socket, so no process start is timed).
fn time_until_state(lab: &Lab, iface: &str, action: &str, expected: &str) -> Duration {
    let start = Instant::now();
    lab.exec_ok(&lab.router().ns, &["ip", "link", "set", iface, action])
        .expect("ip link set");
    loop {
        let status = daemon_status(lab);
        if status["uplinks"][1]["state"] == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "uplink 2 not {expected} 5 s after `ip link set {iface} {action}`: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn carrier_loss_and_return_are_acted_on_within_milliseconds() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let wan2 = lab.uplinks()[1].router_iface.clone();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let down = time_until_state(&lab, &wan2, "down", "down");
        // Let the periodic re-read's phase move on, so the rounds sample it at different offsets.
        std::thread::sleep(Duration::from_millis(370));
        let up = time_until_state(&lab, &wan2, "up", "up");
        std::thread::sleep(Duration::from_millis(370));
        seen.push((down, up));
    }
    println!("carrier change → status (down, up): {seen:?}");
    for (down, up) in &seen {
        assert!(
            *down < BOUND && *up < BOUND,
            "carrier changes must act at once; took (down, up) = {seen:?}"
        );
    }
    // The command an admin runs says the same.
    assert_eq!(flowpin_status(&lab)["uplinks"][1]["state"], "up");
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
