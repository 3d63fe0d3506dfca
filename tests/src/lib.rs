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

pub mod long_flows;
pub mod prometheus;

/// Runs the `flowpin` CLI against `lab`'s daemon: `args[0]` is the subcommand, which takes
/// `--socket` (`flowpin uplink --socket S drain NAME`).
pub fn flowpin_cli(lab: &Lab, args: &[&str]) -> std::process::Output {
    let files = lab.flowpin_files().expect("the flowpin binary");
    let binary = files.binary.to_string_lossy().into_owned();
    let socket = files.socket.to_string_lossy().into_owned();
    let mut argv = vec![binary.as_str(), args[0], "--socket", socket.as_str()];
    argv.extend_from_slice(&args[1..]);
    lab.exec(&lab.router().ns, &argv).expect("running flowpin")
}

/// Appends `toml` to the lab's flowpin configuration and reloads it; panics unless the reload is
/// applied.
pub fn append_config_and_reload(lab: &Lab, toml: &str) {
    let files = lab.flowpin_files().expect("flowpin files");
    let mut text = std::fs::read_to_string(&files.config).expect("reading the config");
    text.push('\n');
    text.push_str(toml);
    std::fs::write(&files.config, text).expect("writing the config");
    let out = flowpin_cli(lab, &["reload"]);
    assert!(
        out.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `[health]` section the failover tests use: three targets in inet (two ICMP, one TCP), any one
/// answering makes a round good.
pub fn health_section(interval_ms: u64, down_after: u64, up_after: u64, window: u64) -> String {
    format!(
        "[health]\ninterval_ms = {interval_ms}\ntimeout_ms = 200\ndown_after = {down_after}\nup_after = {up_after}\nmin_answers = 1\nwindow = {window}\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.11\"\n\
         [[health.target]]\nkind = \"tcp\"\naddress = \"203.0.113.12\"\nport = 80\n"
    )
}

/// The state (`up`, `down`, `probing`, `draining`) of uplink `index` in a status report.
pub fn uplink_state(status: &serde_json::Value, index: usize) -> String {
    status["uplinks"][index]["state"]
        .as_str()
        .expect("uplink state")
        .to_owned()
}

/// Polls `flowpin status` every 50 ms until `done` holds; returns how long it took, or the last
/// status after `limit`.
pub fn wait_for_status(
    lab: &Lab,
    limit: std::time::Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<std::time::Duration, serde_json::Value> {
    let start = std::time::Instant::now();
    loop {
        let status = flowpin_status(lab);
        if done(&status) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits until every uplink is up with its probes answered (loss measured at 0, an RTT known).
pub fn wait_for_probes_answered(lab: &Lab) {
    wait_for_status(lab, std::time::Duration::from_secs(5), |s| {
        s["uplinks"].as_array().expect("uplinks").iter().all(|u| {
            u["state"] == "up"
                && u["probe_loss_percent"].as_f64() == Some(0.0)
                && u["probe_rtt_ms"].is_number()
        })
    })
    .unwrap_or_else(|s| panic!("probes not answered through every uplink: {s:#}"));
}

/// The lab's flowpin metrics endpoint (`127.0.0.1:9469` in the router namespace), parsed strictly as
/// Prometheus text; panics when it does not answer or does not parse.
pub fn flowpin_metrics(lab: &Lab) -> prometheus::Exposition {
    let text = lab
        .exec_ok(
            &lab.router().ns,
            &["curl", "-sf", "http://127.0.0.1:9469/metrics"],
        )
        .expect("the metrics endpoint answers");
    prometheus::parse(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// How many packets `flowpin status` counts as dropped for `reason` (0 when absent).
pub fn status_drops(status: &serde_json::Value, reason: &str) -> u64 {
    status["drops"]
        .as_array()
        .expect("drops in the status")
        .iter()
        .find(|d| d[0] == reason)
        .map_or(0, |d| d[1].as_u64().unwrap_or(0))
}
