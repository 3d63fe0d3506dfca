//! Junk must not hold the flow table: one LAN host floods bare ACKs and FIN+ACKs (no SYN) to
//! 196,608 tuples nobody answers, twelve times a 16,384-flow table. Once 75 % of the table is in use
//! the flooder is held to its fair share of it: each junk flow beyond replaces one of its own
//! unconfirmed flows, so the table never fills. Then the other host's new connections all succeed
//! at once, and so do the flooder's own (its junk gives way to them). The test asserts that no ISP
//! saw a private (leaked) or another uplink's source address.

use flowpin_lab::traffic;
use flowpin_lab::{Lab, LabSpec, LanHost, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, mausezahn_burst,
    status_drops,
};

/// The lab's flow table: small, so a short flood fills it many times over.
const FLOW_CAPACITY: u64 = 16_384;
/// `[datapath] flow_share_pressure_percent`'s default: the table is under pressure from here.
const PRESSURE: u64 = FLOW_CAPACITY * 3 / 4;

/// Segments with `flags` from each of the 8,192 source ports 1024–9215 (well inside the NAT
/// ports' pools, which stay far from pressure) to each destination port of `ports`.
fn flood(lab: &Lab, host: &LanHost, flags: &str, ports: &str) {
    let src = host.addr.to_string();
    let spec = format!("sp=1024-9215,dp={ports},flags={flags}");
    mausezahn_burst(lab, host, &src, "tcp", &spec, None)
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

#[test]
fn a_bare_ack_and_fin_flood_does_not_lock_anyone_out() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        flow_capacity: FLOW_CAPACITY as u32,
        ..LabSpec::with_weights(&[1, 1])
    });
    let hosts = lab.lan_hosts();
    let (flooder, neighbour) = (&hosts[0], &hosts[1]);
    // 12 × 8,192 bare ACKs and 12 × 8,192 FIN+ACKs: even with three quarters of the flood lost
    // at the receive ring (AF_XDP's fill ring runs dry at this rate), more junk flows than the
    // table holds.
    flood(&lab, flooder, "ack", "1000-1011");
    flood(&lab, flooder, "fin|ack", "2000-2011");
    let status = flowpin_status(&lab);
    let flows = status["flows"].as_u64().expect("flows");
    assert_eq!(status["flow_capacity"].as_u64(), Some(FLOW_CAPACITY));
    assert_eq!(status["flow_share_pressure"].as_u64(), Some(PRESSURE));
    assert!(
        flows <= PRESSURE,
        "the flooder took the table beyond its pressure mark: {flows} flows; {status}"
    );
    assert!(
        status["flows_early_dropped"].as_u64().expect("early drops") > 0,
        "the flooder's junk gave way to its own new junk: {status}"
    );
    assert_eq!(
        status_drops(&status, "flow_table_full"),
        0,
        "the table never filled: {status}"
    );
    twenty_requests_succeed(&lab, neighbour, "the neighbour");
    twenty_requests_succeed(&lab, flooder, "the flooder itself");
    let status = flowpin_status(&lab);
    assert_eq!(status_drops(&status, "flow_table_full"), 0, "{status}");
    assert_eq!(status_drops(&status, "flow_host_table_full"), 0, "{status}");
    let counters = lab.isp_counters().expect("reading the ISP counters");
    assert_no_leak_or_wrong_uplink(&lab, &counters);
    down_and_assert_clean(lab);
}
