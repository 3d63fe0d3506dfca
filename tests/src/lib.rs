//! Helpers shared by flowpin's end-to-end tests (`tests/tests/*.rs`). The tests build real labs
//! (network namespaces, veths, real clients and servers, see `flowpin-lab`), so they need root and
//! the lab's tools; when a prerequisite is missing they fail with a message naming it — they never
//! skip.
#![deny(unsafe_code)]

use std::net::Ipv4Addr;

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

/// The daemon's status report, asked over its control socket directly (the request `flowpin status`
/// sends), without starting a process: for tests that time how soon the daemon shows a change, where
/// two process starts per poll on a loaded machine would be most of what they measure.
pub fn daemon_status(lab: &Lab) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let files = lab.flowpin_files().expect("the flowpin files");
    let mut conn = std::os::unix::net::UnixStream::connect(&files.socket)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", files.socket.display()));
    conn.write_all(b"{\"cmd\":\"status\"}\n")
        .expect("sending the status request");
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .expect("reading the status answer");
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("not a JSON answer: {e}: {answer}"));
    assert_eq!(answer["result"], "status", "{answer}");
    answer
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

/// Sends a `mausezahn` burst from `host` through the router to the internet's 203.0.113.10:
/// `sources` is mausezahn's `-A` (one address or a range), `proto` its `-t`, `fields` its field
/// list (ports, flags), `gap` its `-d` between packets (`None`: as fast as it can).
pub fn mausezahn_burst(
    lab: &Lab,
    host: &LanHost,
    sources: &str,
    proto: &str,
    fields: &str,
    gap: Option<&str>,
) -> anyhow::Result<String> {
    let router_mac = lab.router().lan_mac.to_string();
    let mut argv = vec![
        "mausezahn",
        "eth0",
        "-q",
        "-b",
        &router_mac,
        "-A",
        sources,
        "-B",
        "203.0.113.10",
        "-t",
        proto,
        fields,
    ];
    if let Some(gap) = gap {
        argv.extend(["-d", gap]);
    }
    lab.exec_ok(&host.ns, &argv)
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
pub mod probe_servers;
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

/// Writes `text` as the daemon's configuration and runs `flowpin reload`: (success, stdout + stderr).
pub fn reload_with(lab: &Lab, text: &str) -> (bool, String) {
    let files = lab.flowpin_files().expect("flowpin files");
    std::fs::write(&files.config, text).expect("writing the config");
    let out = flowpin_cli(lab, &["reload"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
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
    status_count(status, "drops", reason)
}

/// The count `name` of the status object `field` (`drops`, `xdp`, `icmp_suppressed`: objects keyed
/// by name), 0 when absent.
pub fn status_count(status: &serde_json::Value, field: &str, name: &str) -> u64 {
    let counts = status[field]
        .as_object()
        .unwrap_or_else(|| panic!("{field} in the status is an object keyed by name: {status}"));
    counts.get(name).map_or(0, |n| n.as_u64().expect("a count"))
}

/// Steers every new flow to the uplink named `uplink` (`isp1`, ...): appends a catch-all policy whose
/// group is that uplink alone and reloads. Flows already pinned keep their uplink.
pub fn pin_new_flows_to(lab: &Lab, uplink: &str) {
    append_config_and_reload(
        lab,
        &format!("[[policy]]\nname = \"only-{uplink}\"\nuplinks = [\"{uplink}\"]\n"),
    );
}

/// The echo client of [`unanswered_echo_ids`]: `target id...`; one raw ICMP echo request per
/// identifier (so the identifiers are exactly these), then prints the identifiers no echo reply came
/// back for within 2 s of the last request.
const ECHO_IDS_CLIENT: &str = r#"
import socket, struct, sys, time
target, ids = sys.argv[1], [int(i) for i in sys.argv[2:]]
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for ident in ids:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"flowpin-echo-id!"
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    sock.sendto(body, (target, 0))
    time.sleep(0.002)
waiting, deadline = set(ids), time.time() + 2
while waiting and time.time() < deadline:
    sock.settimeout(max(0.01, deadline - time.time()))
    try:
        packet, peer = sock.recvfrom(2048)
    except socket.timeout:
        break
    icmp = packet[(packet[0] & 15) * 4:]
    if peer[0] == target and len(icmp) >= 8 and icmp[0] == 0:
        waiting.discard(struct.unpack("!H", icmp[4:6])[0])
print(" ".join(str(i) for i in sorted(waiting)))
"#;

/// Sends one ICMP echo request per identifier in `ids` from namespace `ns` to `target` and returns
/// the identifiers that got no echo reply within 2 s.
pub fn unanswered_echo_ids(lab: &Lab, ns: &str, target: Ipv4Addr, ids: &[u16]) -> Vec<u16> {
    let target = target.to_string();
    let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
    let mut argv = vec!["python3", "-c", ECHO_IDS_CLIENT, target.as_str()];
    argv.extend(ids.iter().map(String::as_str));
    let out = lab
        .exec_ok(ns, &argv)
        .unwrap_or_else(|e| panic!("echo client in {ns}: {e:#}"));
    out.split_whitespace()
        .map(|id| id.parse().expect("the client prints identifiers"))
        .collect()
}

/// Gives uplink `index`'s router interface the address `address` (same prefix length) instead of
/// its own, the way a DHCP client applies a renewal that brought another address: the old address is
/// deleted (the kernel then flushes the interface's routes and neighbours) and the new one added, and
/// the router's default route via uplink 1 is put back. The uplink's ISP then counts packets from
/// `address` as `good` (its counters restart at 0).
pub fn renumber_uplink(lab: &Lab, index: usize, address: Ipv4Addr) {
    let uplink = &lab.uplinks()[index];
    let router = &lab.router().ns;
    let old = format!("{}/{}", uplink.router_addr, uplink.prefix_len);
    let new = format!("{address}/{}", uplink.prefix_len);
    for argv in [
        [
            "ip",
            "addr",
            "del",
            old.as_str(),
            "dev",
            uplink.router_iface.as_str(),
        ],
        [
            "ip",
            "addr",
            "add",
            new.as_str(),
            "dev",
            uplink.router_iface.as_str(),
        ],
    ] {
        lab.exec_ok(router, &argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
    }
    let first_gateway = lab.uplinks()[0].gateway.to_string();
    lab.exec_ok(
        router,
        &["ip", "route", "replace", "default", "via", &first_gateway],
    )
    .expect("restoring the router's default route");
    let table = flowpin_lab::isp_counters::COUNTER_TABLE;
    lab.exec_ok(&uplink.isp_ns, &["nft", "delete", "table", "ip", table])
        .expect("removing the ISP counters");
    let rules = flowpin_lab::isp_counters::counter_ruleset(&uplink.isp_router_iface, address);
    flowpin_lab::command::run_with_input(
        &["ip", "netns", "exec", &uplink.isp_ns, "nft", "-f", "-"],
        &rules,
    )
    .expect("ISP counters for the new address");
}

/// `config` (a lab's flowpin configuration) with `keys` (whole lines: keys of the uplink, then any
/// of its sub-tables such as `[uplink.health]`) added at the end of uplink `name`'s `[[uplink]]`
/// table.
pub fn with_uplink_keys(config: &str, name: &str, keys: &str) -> String {
    let start = config
        .find(&format!("name = \"{name}\"\n"))
        .unwrap_or_else(|| panic!("no uplink {name} in:\n{config}"));
    let end = config[start..]
        .find("\n\n")
        .map_or(config.len(), |at| start + at + 1);
    format!("{}{keys}{}", &config[..end], &config[end..])
}
