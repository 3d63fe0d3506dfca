//! What the admin sees on a live lab: `flowpin status` puts the uplinks first with their state, how
//! long they have been in it and their traffic rates; a drain restarts the state time; `explain --new`
//! names the uplink a new flow would take now (and follows the drain) without creating a flow.

use std::time::{Duration, Instant};

use flowpin_lab::{LabSpec, RouterKind};
use flowpin_tests::{down_and_assert_clean, flowpin_cli, flowpin_status, lab_up};

#[test]
fn status_shows_uplinks_first_with_state_time_and_rates_and_explain_new_follows_a_drain() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let host = lab.lan_hosts()[0].clone();
    let server = lab.inet().server_addrs[0].to_string();

    // 100 echo requests per second for 6 s: one ICMP flow, on one uplink. While it runs, an uplink
    // shows its rate (sampled each second).
    let pinger = lab
        .spawn(
            &host.ns,
            &["ping", "-q", "-i", "0.01", "-c", "600", &server],
        )
        .expect("ping");
    let busy = |s: &serde_json::Value| {
        s["uplinks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["rates"]["tx_pps"].as_f64().unwrap_or(0.0) > 20.0)
    };
    let mut status = flowpin_status(&lab);
    while !busy(&status) {
        assert!(
            pinger.is_running().unwrap_or(false),
            "no uplink showed a packet rate while the ping ran: {status:#}\nping: {}{}",
            pinger.stdout().unwrap_or_default(),
            pinger.stderr().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
        status = flowpin_status(&lab);
    }
    let carrying: Vec<&serde_json::Value> = status["uplinks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["rates"]["tx_pps"].as_f64().unwrap() > 0.0)
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "one ICMP flow, one uplink: {status:#}\nflows: {:#}",
        flowpin_tests::flowpin_flows(&lab)
    );
    assert!(
        carrying[0]["rates"]["rx_pps"].as_f64().unwrap() > 0.0,
        "{status:#}"
    );
    assert!(
        carrying[0]["rates"]["tx_bps"].as_f64().unwrap() > 8.0 * 84.0,
        "{status:#}"
    );

    // The text: a summary line, then the uplinks' table, each uplink with state and rates.
    let out = flowpin_cli(&lab, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("flowpin "), "{text}");
    assert!(
        lines[2].starts_with("uplink") && lines[2].contains("since"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("isp1 ") && lines[3].contains(" up "),
        "{text}"
    );
    assert!(
        lines[4].starts_with("isp2 ") && lines[4].contains(" up "),
        "{text}"
    );
    assert!(text.contains("pps") && text.contains("bit/s"), "{text}");
    assert!(
        !text.contains("worker 0:"),
        "internals only with --verbose: {text}"
    );
    let verbose = flowpin_cli(&lab, &["status", "--verbose"]);
    assert!(String::from_utf8_lossy(&verbose.stdout).contains("worker 0:"));
    pinger
        .wait_success(Duration::from_secs(20))
        .expect("the pings finish");

    // explain --new: both uplinks serve the default group; a drained one is never chosen.
    let explain_new = |port: u16| -> serde_json::Value {
        let internal = format!("{}:{port}", host.addr);
        let remote = format!("{server}:443");
        let out = flowpin_cli(
            &lab,
            &["explain", "--json", "--new", "tcp", &internal, &remote],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("explain --new JSON")
    };
    let flows_before = flowpin_status(&lab)["flows"].clone();
    let picks: Vec<String> = (40_000..40_040)
        .map(|port| {
            let e = explain_new(port);
            assert_eq!(e["verdict"], "outbound", "{e:#}");
            e["uplink"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        picks.iter().any(|p| p == "isp1") && picks.iter().any(|p| p == "isp2"),
        "{picks:?}"
    );
    assert_eq!(
        flowpin_status(&lab)["flows"],
        flows_before,
        "explain --new created nothing"
    );

    let before = flowpin_status(&lab);
    let since_before = before["uplinks"][0]["state_since_unix_s"].as_f64().unwrap();
    assert!(
        before["uplinks"][0]["state_for_s"].as_u64().unwrap() >= 1,
        "{before:#}"
    );
    let drained = Instant::now();
    assert!(
        flowpin_cli(&lab, &["uplink", "drain", "isp1"])
            .status
            .success()
    );
    let after = flowpin_status(&lab);
    assert_eq!(after["uplinks"][0]["state"], "draining", "{after:#}");
    assert!(after["uplinks"][0]["state_since_unix_s"].as_f64().unwrap() > since_before);
    assert!(
        after["uplinks"][0]["state_for_s"].as_u64().unwrap() <= drained.elapsed().as_secs(),
        "{after:#}"
    );
    for port in 40_000..40_040 {
        let e = explain_new(port);
        assert_eq!(e["uplink"], "isp2", "{e:#}");
    }
    down_and_assert_clean(lab);
}
