//! The control surfaces under abuse while traffic flows: a 100 MB request line and 1,000 idle
//! connections on the control socket, a slow-loris client on the metrics port. Forwarding goes on,
//! `flowpin status` answers within a second, the oversized line is refused, every refusal is
//! counted, nothing leaks to the ISPs, and the lab cleans up.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flowpin_lab::traffic;
use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_metrics, flowpin_status, lab_up,
};

/// Opens `count` connections to the control socket and holds them idle (raising its own descriptor
/// limit first); prints `open N` once all are connected.
const IDLE_HOLDER: &str = r#"
import resource, socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 64)), hard))
conns = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    conns.append(s)
print("open", len(conns), flush=True)
time.sleep(120)
"#;

/// Keeps `clients` connections to the metrics port sending a request head one byte every half
/// second (never finishing it), reconnecting each one the server closes, for `seconds`.
const SLOW_LORIS: &str = r#"
import socket, sys, time
port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
head = b"GET /metrics HTTP/1.1\r\nHost: flowpin\r\nUser-Agent: slow\r\n\r\n"
conns, sent, reconnects = {}, {}, 0
end = time.time() + seconds
while time.time() < end:
    for i in range(clients):
        if i not in conns:
            try:
                conns[i] = socket.create_connection(("127.0.0.1", port), 1)
                sent[i] = 0
                reconnects += 1
            except OSError:
                continue
        try:
            if sent[i] < len(head) - 1:
                conns[i].send(head[sent[i]:sent[i] + 1])
                sent[i] += 1
        except OSError:
            conns.pop(i).close()
    time.sleep(0.5)
print("connections", reconnects, flush=True)
"#;

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

/// Sends a 100 MB request line; returns the daemon's answer line.
fn send_huge_line(socket: &std::path::Path) -> String {
    let conn = UnixStream::connect(socket).expect("connecting to the control socket");
    let mut writer = conn.try_clone().expect("cloning the stream");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            if writer.write_all(&chunk).is_err() {
                return false;
            }
        }
        true
    });
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .expect("reading the refusal");
    let sent_everything = sender.join().expect("the sender thread");
    assert!(
        !sent_everything,
        "the daemon read 100 MB instead of closing at the limit"
    );
    answer
}

/// The daemon's answer to `flowpin status`'s request (`{"cmd":"status"}`), asked over the socket
/// directly, and how long it took from connecting to the whole answer line.
fn status_round_trip(socket: &std::path::Path) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    let mut conn = UnixStream::connect(socket).expect("connecting to the control socket");
    conn.write_all(b"{\"cmd\":\"status\"}\n")
        .expect("sending the request");
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .expect("reading the answer");
    let took = start.elapsed();
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("not a JSON answer: {e}: {answer}"));
    assert_eq!(answer["result"], "status", "{answer}");
    (answer, took)
}

/// The daemon answers status five times, each within a second (measured at the socket, so the time
/// to start a process on a loaded machine is not counted), and the `flowpin status` command works;
/// the last status.
fn status_answers_within_a_second(lab: &Lab, socket: &std::path::Path) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    for _ in 0..5 {
        let (answer, took) = status_round_trip(socket);
        eprintln!("status answered in {took:?}");
        assert!(took < Duration::from_secs(1), "status took {took:?}");
        status = answer;
    }
    let start = Instant::now();
    let cli = flowpin_status(lab);
    eprintln!(
        "`flowpin status` (process start included) took {:?}",
        start.elapsed()
    );
    assert!(cli["uptime_s"].is_u64(), "{cli}");
    status
}

#[test]
fn abused_control_surfaces_leave_forwarding_and_status_unaffected() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    let socket = lab.flowpin_files().expect("flowpin files").socket;
    let socket_arg = socket.to_string_lossy().into_owned();
    let ns = lab.router().ns.clone();
    assert_eq!(traffic::http_get(&lab, host, 4).expect("curl runs").ok, 4);

    let stop = AtomicBool::new(false);
    let (rounds, requested, answered) = std::thread::scope(|scope| {
        // 1. Steady traffic through flowpin for the whole test.
        let traffic = scope.spawn(|| {
            let (mut rounds, mut requested, mut answered) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                let report = traffic::http_get(&lab, host, 5).expect("curl runs");
                rounds += 1;
                requested += report.requests;
                answered += report.ok;
            }
            (rounds, requested, answered)
        });
        // 2. The slow-loris on the metrics port, 16 clients for 12 s (the endpoint serves 8).
        let loris = lab
            .spawn(&ns, &["python3", "-c", SLOW_LORIS, "9469", "16", "12"])
            .expect("starting the slow-loris client");
        // 3. 1,000 idle connections on the control socket.
        let holder = lab
            .spawn(&ns, &["python3", "-c", IDLE_HOLDER, &socket_arg, "1000"])
            .expect("starting the idle connections");
        let start = Instant::now();
        while !holder.stdout().unwrap_or_default().contains("open 1000") {
            assert!(
                holder.is_running().unwrap_or(false),
                "the idle holder ended: {:?}",
                holder.stdout()
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "1,000 connections not open after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // 4. A 100 MB request line is refused with a clear error.
        let answer = send_huge_line(&socket);
        assert!(
            answer.contains("\"result\":\"error\"")
                && answer.contains("request line longer than 16384 bytes"),
            "{answer}"
        );
        // 5. Status answers within a second, with every refusal counted.
        let status = status_answers_within_a_second(&lab, &socket);
        let surfaces = &status["control_surfaces"];
        assert_eq!(surfaces["api_requests_too_long"], 1, "{surfaces}");
        let displaced = surfaces["api_connections_displaced"].as_u64().unwrap();
        assert!(displaced >= 1000 - 64, "{surfaces}");
        assert!(
            surfaces["api_connections_open"].as_u64().unwrap() <= 64,
            "{surfaces}"
        );
        // 6. The slow-loris ends; its clients were cut at the deadline and the extra ones refused.
        let said = loris
            .wait_success(Duration::from_secs(30))
            .expect("the slow-loris client");
        assert!(said.contains("connections"), "{said}");
        let status = status_answers_within_a_second(&lab, &socket);
        let surfaces = &status["control_surfaces"];
        assert!(
            surfaces["metrics_timeouts"].as_u64().unwrap() >= 8,
            "{surfaces}"
        );
        assert!(
            surfaces["metrics_refused"].as_u64().unwrap() >= 1,
            "{surfaces}"
        );
        // 7. With the slow clients gone the metrics are served again, and count what happened.
        let metrics = flowpin_metrics(&lab);
        let refused = metrics
            .value("flowpin_metrics_requests_total", &[("code", "503")])
            .expect("503s exported");
        assert!(refused >= 1.0, "{refused}");
        holder.kill().expect("ending the idle connections");
        stop.store(true, Ordering::Relaxed);
        traffic.join().expect("the traffic thread")
    });
    assert!(
        rounds >= 3,
        "only {rounds} rounds of traffic during the test"
    );
    assert_eq!(
        answered, requested,
        "forwarding faltered while the control surfaces were abused"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    down_and_assert_clean(lab);
}
