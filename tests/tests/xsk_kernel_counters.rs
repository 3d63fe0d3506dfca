//! The kernel's per-socket AF_XDP counters (`XDP_STATISTICS`) reach `flowpin status --json` and the
//! metrics endpoint, per worker and per port (the LAN and each uplink by name), after real traffic —
//! the only place frames lost between the XDP redirect and the worker (RX ring full, fill ring
//! empty) are visible. Also the early-drop counter of the flow table.

use std::collections::BTreeSet;

use flowpin_lab::traffic;
use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{
    down_and_assert_clean, flowpin_metrics, flowpin_status, lab_up, wait_for_status,
};

const COUNTERS: [&str; 6] = [
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
];

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

#[test]
fn status_and_metrics_carry_each_sockets_kernel_counters_per_port() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    assert_eq!(traffic::http_get(&lab, host, 20).expect("curl runs").ok, 20);
    // The worker publishes when it goes idle, so the reading after the traffic settles is current.
    let status = wait_for_status(&lab, std::time::Duration::from_secs(3), |s| {
        s["workers"].as_array().is_some_and(|w| {
            !w.is_empty()
                && w.iter()
                    .all(|w| w["sockets"].as_array().is_some_and(|s| !s.is_empty()))
        })
    })
    .map(|_| flowpin_status(&lab))
    .unwrap_or_else(|s| panic!("no worker published its sockets' kernel counters: {s:#}"));

    let expected_ports: BTreeSet<String> = std::iter::once("lan".to_owned())
        .chain(
            status["uplinks"]
                .as_array()
                .expect("uplinks")
                .iter()
                .map(|u| u["name"].as_str().expect("uplink name").to_owned()),
        )
        .collect();
    assert_eq!(expected_ports.len(), 3, "the LAN and two uplinks");
    let metrics = flowpin_metrics(&lab);
    let workers = status["workers"].as_array().expect("workers");
    for worker in workers {
        let index = worker["index"].as_u64().expect("worker index").to_string();
        let sockets = worker["sockets"].as_array().expect("sockets");
        let ports: BTreeSet<String> = sockets
            .iter()
            .map(|s| s["port"].as_str().expect("port name").to_owned())
            .collect();
        assert_eq!(ports, expected_ports, "worker {index}: one socket per port");
        for socket in sockets {
            let port = socket["port"].as_str().unwrap();
            for counter in COUNTERS {
                let value = socket[counter]
                    .as_u64()
                    .unwrap_or_else(|| panic!("worker {index} {port}: no {counter} in {socket}"));
                let family = format!("flowpin_xsk_{counter}_total");
                let exported = metrics
                    .value(&family, &[("worker", &index), ("port", port)])
                    .unwrap_or_else(|| panic!("no {family} for {index}/{port}"));
                // Idle since the traffic: status and metrics read the same publication, or a later
                // one of counters that only grow.
                assert!(
                    exported >= value as f64,
                    "worker {index} {port} {counter}: metrics {exported} < status {value}"
                );
            }
            // The worker never hands the kernel a bad descriptor, and 20 requests fit the rings.
            for counter in ["rx_invalid_descs", "tx_invalid_descs", "rx_dropped"] {
                assert_eq!(
                    socket[counter], 0,
                    "worker {index} {port}: {counter} in {socket}"
                );
            }
        }
    }
    assert_eq!(
        status["flows_early_dropped"], 0,
        "a table far from full early-drops nothing"
    );
    assert_eq!(
        metrics.value("flowpin_flows_early_dropped_total", &[]),
        Some(0.0)
    );
    down_and_assert_clean(lab);
}
