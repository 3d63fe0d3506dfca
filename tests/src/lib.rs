//! Helpers shared by flowpin's end-to-end tests (`tests/tests/*.rs`). The tests build real labs
//! (network namespaces, veths, real clients and servers, see `flowpin-lab`), so they need root and
//! the lab's tools; when a prerequisite is missing they fail with a message naming it — they never
//! skip.
#![forbid(unsafe_code)]

use flowpin_lab::{Footprint, IspCounters, Lab, LabSpec, LanHost};

/// Brings up a lab or fails the test with the full error chain (which names any missing
/// prerequisite, e.g. root or a tool).
pub fn lab_up(spec: LabSpec) -> Lab {
    Lab::up(spec).unwrap_or_else(|error| panic!("cannot bring up the lab: {error:#}"))
}

/// Tears `lab` down twice (teardown must be idempotent) and asserts that nothing of it is left:
/// no namespace, no process in its namespaces or started by it, no veth, no state directory.
pub fn down_and_assert_clean(lab: Lab) {
    let footprint = Footprint::of(&lab).expect("recording the lab's footprint");
    assert!(
        footprint.process_count() > 0,
        "the lab should have started its servers"
    );
    lab.down().expect("first teardown");
    lab.down().expect("second teardown (idempotent)");
    drop(lab);
    let leftovers = footprint.leftovers().expect("inspecting the host");
    assert!(
        leftovers.is_empty(),
        "left behind after teardown: {leftovers:#?}"
    );
}

/// Asserts that no ISP saw a private (leaked) or foreign (wrong uplink) source address.
pub fn assert_no_leak_or_wrong_uplink(lab: &Lab, counters: &[IspCounters]) {
    for (uplink, counter) in lab.uplinks().iter().zip(counters) {
        assert_eq!(
            counter.leak, 0,
            "{} saw {} leaked packets",
            uplink.isp_ns, counter.leak
        );
        assert_eq!(
            counter.wrong_uplink, 0,
            "{} saw {} packets with another uplink's source",
            uplink.isp_ns, counter.wrong_uplink
        );
    }
}

/// `flowpin status --json` of a lab whose router is flowpin.
pub fn flowpin_status(lab: &Lab) -> serde_json::Value {
    flowpin_query(lab, &["status", "--json"])
}

/// `flowpin flows --json` of a lab whose router is flowpin.
pub fn flowpin_flows(lab: &Lab) -> serde_json::Value {
    flowpin_query(lab, &["flows", "--json"])
}

fn flowpin_query(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let files = lab.flowpin_files().expect("the flowpin binary");
    let binary = files.binary.to_string_lossy().into_owned();
    let socket = files.socket.to_string_lossy().into_owned();
    let mut argv = vec![binary.as_str()];
    argv.extend_from_slice(args);
    argv.extend(["--socket", socket.as_str()]);
    let out = lab
        .exec_ok(&lab.router().ns, &argv)
        .unwrap_or_else(|e| panic!("flowpin {args:?}: {e:#}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("flowpin {args:?} printed {out:?}: {e}"))
}

/// Runs `phase` for every LAN host at once and waits for all of them (panics propagate).
pub fn on_every_host_at_once(lab: &Lab, phase: impl Fn(usize, &LanHost) + Sync) {
    std::thread::scope(|scope| {
        for (index, host) in lab.lan_hosts().iter().enumerate() {
            let phase = &phase;
            scope.spawn(move || phase(index, host));
        }
    });
}
