//! Per-host limits that serve legitimate heavy hosts: one LAN host opening 8,192 UDP flows (source
//! ports 1024–9215, like the kernel's `router_multipath.sh` weight test) gets every flow through,
//! split by weight, while its neighbour's connections all succeed. Every test asserts that no ISP
//! saw a private (leaked) or another uplink's source address.

use std::time::Duration;

use flowpin_lab::traffic;
use flowpin_lab::{IspCounters, Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up, mausezahn_burst,
    on_every_host_at_once, status_drops,
};

/// Flows the heavy host opens: one datagram from each source port 1024..=9215.
const FLOWS: u64 = 8192;

fn counters(lab: &Lab) -> Vec<IspCounters> {
    lab.isp_counters().expect("reading the ISP counters")
}

/// Host 0 sends one UDP datagram from each of [`FLOWS`] source ports; at the same time host 1 makes
/// 20 HTTP requests, which must all succeed.
fn heavy_host_and_its_neighbour(lab: &Lab) {
    on_every_host_at_once(lab, |index, host| {
        if index == 0 {
            let src = host.addr.to_string();
            mausezahn_burst(
                lab,
                host,
                &src,
                "udp",
                "sp=1024-9215,dp=7777",
                Some("200usec"),
            )
            .expect("mausezahn runs");
        } else {
            let http = traffic::http_get(lab, host, 20).expect("curl runs");
            assert_eq!(
                http.ok, 20,
                "{}: the neighbour's requests failed: {:?}",
                host.ns, http.failed_codes
            );
        }
    });
}

/// The weight test that found the old default quota of 4,096 ports per host: at 2:1 the host got
/// 4,096 + 2,657 flows through instead of 8,192. Now every flow passes, each uplink within 15 % of
/// its weighted share (the kernel's criterion), and no NAT refusal is counted.
#[test]
fn one_host_with_8192_flows_gets_every_flow_through_split_by_weight() {
    for weights in [[2u32, 1], [11, 45]] {
        let lab = lab_up(LabSpec {
            router: RouterKind::Flowpin,
            ..LabSpec::with_weights(&weights)
        });
        let before = counters(&lab);
        heavy_host_and_its_neighbour(&lab);
        std::thread::sleep(Duration::from_millis(500));
        let after = counters(&lab);
        assert_no_leak_or_wrong_uplink(&lab, &after);
        let status = flowpin_status(&lab);
        for reason in [
            "nat_ports_exhausted",
            "nat_host_quota_exceeded",
            "nat_host_over_fair_share",
            "nat_host_table_full",
            "flow_table_full",
            "host_over_flow_share",
            "flow_host_table_full",
        ] {
            assert_eq!(status_drops(&status, reason), 0, "{weights:?}: {reason}");
        }
        let flows = status["flows"].as_u64().expect("status counts flows");
        assert!(flows >= FLOWS, "{weights:?}: {flows} flows in the table");
        let sent: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.good - b.good)
            .collect();
        let total: u64 = sent.iter().sum();
        // The neighbour's HTTP packets reach the ISPs too: at least every flow's datagram.
        assert!(
            total >= FLOWS,
            "{weights:?}: only {total} packets of {FLOWS} flows reached the ISPs ({sent:?})"
        );
        let weight_sum: u32 = weights.iter().sum();
        for (i, (&n, &w)) in sent.iter().zip(&weights).enumerate() {
            let share = n as f64 / total as f64;
            let expected = f64::from(w) / f64::from(weight_sum);
            assert!(
                (share - expected).abs() <= 0.15 * expected,
                "{weights:?}: uplink {} got {:.1} % instead of {:.1} % ({sent:?})",
                i + 1,
                share * 100.0,
                expected * 100.0
            );
        }
        down_and_assert_clean(lab);
    }
}

/// One host spoofing every source of the LAN prefix (the lab's /24: 256 addresses × 40 source
/// ports): the router's LAN address and the prefix's network and broadcast addresses open nothing
/// (`lan_reserved_source`), the rest cannot fill the host tables (sized to the prefix), and the
/// other host's connections succeed at once.
#[test]
fn a_host_spoofing_the_lan_prefix_does_not_keep_another_host_out() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let hosts = lab.lan_hosts();
    let (spoofer, neighbour) = (&hosts[0], &hosts[1]);
    let octets = spoofer.addr.octets();
    let sources = format!(
        "{}.{}.{}.0-{}.{}.{}.255",
        octets[0], octets[1], octets[2], octets[0], octets[1], octets[2]
    );
    mausezahn_burst(&lab, spoofer, &sources, "udp", "sp=1024-1063,dp=7777", None)
        .expect("mausezahn runs");
    let http = traffic::http_get(&lab, neighbour, 20).expect("curl runs");
    assert_eq!(
        http.ok, 20,
        "{}: failed requests {:?}",
        neighbour.ns, http.failed_codes
    );
    let status = flowpin_status(&lab);
    assert!(
        status_drops(&status, "lan_reserved_source") > 0,
        "the router's and the prefix's own addresses were refused: {status}"
    );
    assert_eq!(status_drops(&status, "nat_host_table_full"), 0);
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}
