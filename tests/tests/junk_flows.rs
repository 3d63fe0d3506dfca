//! Junk must not hold the flow table: one LAN host flooding bare ACKs and FINs to 1,290,240 tuples
//! nobody answers (no SYN) fills the table with unconfirmed flows; then the other host's new
//! connections all succeed at once, and the flooder's own succeed once its junk is gone (unconfirmed
//! TCP expires after the transitory timeout, 240 s, and the flooder is back under its fair share of
//! ports). Every test asserts that no ISP saw a private (leaked) or another uplink's source address.

use std::time::{Duration, Instant};

use flowpin_lab::traffic;
use flowpin_lab::{Lab, LabSpec, LanHost, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up,
};

/// Segments with `flags` from every source port 1024–65535 to each destination port of `ports`.
fn flood(lab: &Lab, host: &LanHost, flags: &str, ports: &str) {
    let router_mac = lab.router().lan_mac.to_string();
    let src = host.addr.to_string();
    let spec = format!("sp=1024-65535,dp={ports},flags={flags}");
    lab.exec_ok(
        &host.ns,
        &[
            "mausezahn",
            "eth0",
            "-q",
            "-b",
            &router_mac,
            "-A",
            &src,
            "-B",
            "203.0.113.10",
            "-t",
            "tcp",
            &spec,
        ],
    )
    .unwrap_or_else(|e| panic!("mausezahn {spec}: {e:#}"));
}

fn twenty_requests_succeed(lab: &Lab, host: &LanHost, who: &str) {
    let http = traffic::http_get(lab, host, 20).expect("curl runs");
    assert_eq!(
        http.ok,
        20,
        "{who} ({}): failed requests {:?}; flowpin: {}",
        host.ns,
        http.failed_codes,
        flowpin_status(lab)
    );
}

/// Waits until the table holds fewer than 1,000 flows: the junk's transitory timeout (240 s) and
/// the sweep. Fails after 420 s (the timeout, a full sweep of the table, and a wide margin).
fn wait_for_the_junk_to_expire(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let flows = flowpin_status(lab)["flows"].as_u64().expect("flows");
        if flows < 1000 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{flows} flows still in the table 420 s after the flood"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[test]
fn a_bare_ack_and_fin_flood_does_not_lock_anyone_out() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let hosts = lab.lan_hosts();
    let (flooder, neighbour) = (&hosts[0], &hosts[1]);
    // 10 × 64,512 bare ACKs and 10 × 64,512 FIN+ACKs. The flooder's fair share of ports (75 % of
    // each uplink's range while it is alone) lets about 34,000 of its source ports through, each
    // with a flow per destination port: even with half the flood lost at the receive ring, more
    // flows than the 262,144-entry table holds.
    flood(&lab, flooder, "ack", "1000-1009");
    flood(&lab, flooder, "fin|ack", "2000-2009");
    let status = flowpin_status(&lab);
    let capacity = status["flow_capacity"].as_u64().expect("flow_capacity");
    let early_dropped = status["flows_early_dropped"].as_u64().expect("early drops");
    assert!(
        early_dropped > 0,
        "the junk filled the {capacity}-flow table and gave way to itself: {status}"
    );
    twenty_requests_succeed(&lab, neighbour, "the neighbour");
    wait_for_the_junk_to_expire(&lab);
    twenty_requests_succeed(&lab, flooder, "the flooder itself");
    let counters = lab.isp_counters().expect("reading the ISP counters");
    assert_no_leak_or_wrong_uplink(&lab, &counters);
    down_and_assert_clean(lab);
}
