//! `flowpin flows kill`: held TCP connections are reset on both ends when killed — the LAN host and
//! the server each see ECONNRESET, not an EOF or a silence — and every other flow is untouched (it
//! still echoes afterwards, from the same external endpoint).
//!
//! A python server in inet greets each connection with the client's address as it saw it (the
//! uplink), echoes what it receives and prints how each connection ended. A python client on a LAN
//! host opens connections until at least two sit on each uplink, stays idle (so each side's
//! acknowledged sequence number is the exact one an RST needs), prints every connection that ends
//! and, when the test touches a file, sends a line on each open connection and prints those echoed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowpin_lab::servers::{Listener, wait_until_listening};
use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind};
use flowpin_tests::{down_and_assert_clean, flowpin_cli, flowpin_metrics, flowpin_status, lab_up};

const PORT: u16 = 7791;

const SERVER: &str = r#"
import select, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(64)
names = {}
while True:
    ready, _, _ = select.select([srv] + list(names), [], [])
    for s in ready:
        if s is srv:
            c, peer = srv.accept()
            names[c] = None
            continue
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            print(f"{names.pop(s)} reset", flush=True)
            s.close()
            continue
        if not data:
            print(f"{names.pop(s)} eof", flush=True)
            s.close()
            continue
        if names[s] is None:
            names[s] = data.decode().strip()
            ip, port = s.getpeername()
            s.sendall(f"{ip}:{port}\n".encode())
        else:
            s.sendall(data)
"#;

const CLIENT: &str = r#"
import json, os, select, socket, sys, time
server, port, uplinks, trigger = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
conns = {}
def count(u):
    return sum(1 for c in conns.values() if c["seen"].split(":")[0] == u)
n = 0
while any(count(u) < 2 for u in uplinks) and n < 40:
    n += 1
    s = socket.create_connection((server, port), 5)
    s.sendall(f"c{n}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            raise SystemExit("server closed before greeting")
        line += chunk
    conns[f"c{n}"] = {"sock": s, "port": s.getsockname()[1], "seen": line.decode().strip()}
print(json.dumps({"ready": [{"name": k, "local_port": c["port"], "seen": c["seen"]} for k, c in conns.items()]}), flush=True)
def watch(deadline, echoes):
    while time.time() < deadline and conns:
        ready, _, _ = select.select([c["sock"] for c in conns.values()], [], [], 0.05)
        for name in [k for k, c in conns.items() if c["sock"] in ready]:
            s = conns[name]["sock"]
            try:
                data = s.recv(100)
            except ConnectionResetError:
                print(f"{name} reset", flush=True)
                del conns[name]
                continue
            if not data:
                print(f"{name} eof", flush=True)
                del conns[name]
            elif echoes is not None:
                echoes.add(name)
                print(f"{name} echoed", flush=True)
        if echoes is None and os.path.exists(trigger):
            return
        if echoes is not None and len(echoes) == len(conns):
            return
end = time.time() + 60
while time.time() < end:
    watch(end, None)
    if not os.path.exists(trigger):
        break
    os.unlink(trigger)
    for c in conns.values():
        c["sock"].sendall(b"ping\n")
    watch(time.time() + 5, set())
    print("checked", flush=True)
"#;

/// One held connection: its name, the client's port and the external endpoint the server saw.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    local_port: u16,
    seen: String,
}

struct Client {
    process: LabProcess,
    held: Vec<Held>,
    trigger: PathBuf,
}

fn start_server(lab: &Lab) -> LabProcess {
    let inet = lab.inet().ns.clone();
    let server = lab
        .spawn(&inet, &["python3", "-c", SERVER, &PORT.to_string()])
        .expect("starting the server");
    wait_until_listening(
        &inet,
        &[Listener {
            netid: "tcp",
            addr: None,
            port: PORT,
        }],
        std::slice::from_ref(&server),
    )
    .expect("the server listens");
    server
}

fn start_client(lab: &Lab) -> Client {
    let host = &lab.lan_hosts()[0];
    let trigger = lab.dir().join("flows-kill-check");
    let _ = std::fs::remove_file(&trigger);
    let uplinks: Vec<String> = lab
        .uplinks()
        .iter()
        .map(|u| u.router_addr.to_string())
        .collect();
    let server = lab.inet().server_addrs[0].to_string();
    let process = lab
        .spawn(
            &host.ns,
            &[
                "python3",
                "-c",
                CLIENT,
                &server,
                &PORT.to_string(),
                &uplinks.join(","),
                &trigger.to_string_lossy(),
            ],
        )
        .expect("starting the client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = process.stdout().unwrap_or_default();
        if let Some(line) = out.lines().next() {
            let ready: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let held = ready["ready"]
                .as_array()
                .expect("ready list")
                .iter()
                .map(|c| Held {
                    name: c["name"].as_str().unwrap().to_owned(),
                    local_port: c["local_port"].as_u64().unwrap() as u16,
                    seen: c["seen"].as_str().unwrap().to_owned(),
                })
                .collect();
            return Client {
                process,
                held,
                trigger,
            };
        }
        assert!(
            process.is_running().unwrap_or(false) && Instant::now() < deadline,
            "the client did not open its connections: {}",
            process.stderr().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connections `process` reported as ending with `how` (`reset`, `eof`) or `echoed`.
fn reported(process: &LabProcess, how: &str) -> BTreeSet<String> {
    process
        .stdout()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_suffix(&format!(" {how}")).map(str::to_owned))
        .collect()
}

/// Waits until both ends reported `names` reset; panics with what they did report after 5 s.
fn wait_for_resets(client: &Client, server: &LabProcess, names: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if reported(&client.process, "reset") == *names && reported(server, "reset") == *names {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "expected exactly {names:?} reset on both ends; client said:\n{}\nserver said:\n{}",
        client.process.stdout().unwrap_or_default(),
        server.stdout().unwrap_or_default()
    );
}

/// Asks the client to send a line on every connection still open; returns those that echoed.
fn echo_check(client: &Client) -> BTreeSet<String> {
    let before = client
        .process
        .stdout()
        .unwrap_or_default()
        .matches("checked")
        .count();
    std::fs::write(&client.trigger, b"").expect("touching the trigger");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .process
        .stdout()
        .unwrap_or_default()
        .matches("checked")
        .count()
        == before
    {
        assert!(Instant::now() < deadline, "the client did not check");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only this check's echoes: the lines after the previous checks.
    let out = client.process.stdout().unwrap_or_default();
    let mut checks = 0;
    let mut echoed = BTreeSet::new();
    for line in out.lines() {
        if line == "checked" {
            checks += 1;
        } else if checks == before
            && let Some(name) = line.strip_suffix(" echoed")
        {
            echoed.insert(name.to_owned());
        }
    }
    echoed
}

fn kill(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["flows", "kill", "--json"];
    argv.extend_from_slice(args);
    let out = flowpin_cli(lab, &argv);
    assert!(
        out.status.success(),
        "flowpin flows kill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kill JSON")
}

#[test]
fn killed_tcp_flows_are_reset_on_both_ends_and_the_others_stay() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let server = start_server(&lab);
    let client = start_client(&lab);
    let isp1 = lab.uplinks()[0].router_addr.to_string();
    let on_isp1: BTreeSet<String> = client
        .held
        .iter()
        .filter(|h| h.seen.starts_with(&format!("{isp1}:")))
        .map(|h| h.name.clone())
        .collect();
    let others: Vec<Held> = client
        .held
        .iter()
        .filter(|h| !on_isp1.contains(&h.name))
        .cloned()
        .collect();
    assert!(on_isp1.len() >= 2 && others.len() >= 2, "{:?}", client.held);

    // A kill must name something: never the whole table by accident.
    let refused = flowpin_cli(&lab, &["flows", "kill"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("name an uplink, a host or a flow"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let unknown = flowpin_cli(&lab, &["flows", "kill", "--uplink", "isp9"]);
    assert!(!unknown.status.success());

    // 1. By uplink: every isp1 connection, reset on both ends.
    let n = on_isp1.len() as u64;
    let report = kill(&lab, &["--uplink", "isp1"]);
    assert_eq!(report["killed"], n, "{report}");
    assert_eq!(report["tcp_reset"], n, "{report}");
    assert_eq!(report["resets_to_hosts"], n, "{report}");
    assert_eq!(report["resets_to_remotes"], n, "{report}");
    wait_for_resets(&client, &server, &on_isp1);
    assert!(reported(&client.process, "eof").is_empty());
    assert!(reported(&server, "eof").is_empty());
    // The others still carry data.
    let other_names: BTreeSet<String> = others.iter().map(|h| h.name.clone()).collect();
    assert_eq!(echo_check(&client), other_names);
    let flows = flowpin_tests::flowpin_flows(&lab);
    let listed: Vec<&serde_json::Value> = flows["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["remote"].as_str().unwrap().ends_with(&format!(":{PORT}")))
        .collect();
    assert_eq!(listed.len(), others.len(), "{flows:#}");
    assert!(listed.iter().all(|f| f["uplink"] != "isp1"), "{flows:#}");

    // 2. By flow (the LAN-side 5-tuple): exactly that connection.
    let target = &others[0];
    let host = lab.lan_hosts()[0].addr;
    let internal = format!("{host}:{}", target.local_port);
    let remote = format!("{}:{PORT}", lab.inet().server_addrs[0]);
    let report = kill(&lab, &["tcp", &internal, &remote]);
    assert_eq!(report["killed"], 1, "{report}");
    assert_eq!(report["resets_to_hosts"], 1, "{report}");
    assert_eq!(report["resets_to_remotes"], 1, "{report}");
    let mut reset = on_isp1.clone();
    reset.insert(target.name.clone());
    wait_for_resets(&client, &server, &reset);
    let remaining: BTreeSet<String> = others[1..].iter().map(|h| h.name.clone()).collect();
    let echoed = echo_check(&client);
    assert!(remaining.is_subset(&echoed), "{echoed:?} ⊉ {remaining:?}");
    assert!(!echoed.contains(&target.name));

    // Counted in status and metrics: each killed flow, two resets each.
    let status = flowpin_status(&lab);
    assert_eq!(status["flows_killed"], n + 1, "{status:#}");
    assert_eq!(status["kill_resets_sent"], 2 * (n + 1), "{status:#}");
    let metrics = flowpin_metrics(&lab);
    assert_eq!(
        metrics.value("flowpin_flows_killed_total", &[]),
        Some((n + 1) as f64)
    );
    client.process.kill().expect("stopping the client");
    down_and_assert_clean(lab);
}
