//! Root test: the AF_XDP generator sends into a veth pair inside a network namespace this test creates,
//! the XDP sink on the peer counts what arrives (and its latency), and everything is removed afterwards.
//! Without root it fails naming the prerequisite.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flowpin-bench");

/// Deletes the namespace (and with it the veth pair) on drop, also on panic.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?} failed");
}

#[test]
fn generated_packets_arrive_at_the_sink() {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (network namespaces, AF_XDP, XDP)"
    );
    let ns = Netns(format!("fpbench-gen-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "-n", &ns.0, "link", "add", "gen0", "type", "veth", "peer", "name", "sink0",
    ]);
    ip(&["-n", &ns.0, "link", "set", "gen0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "sink0", "up"]);

    let mut sink = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            BIN,
            "sink",
            "--interface",
            "sink0",
            "--destination",
            "203.0.113.200",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sink starts");
    let mut sink_in = sink.stdin.take().unwrap();
    let mut sink_out = BufReader::new(sink.stdout.take().unwrap());
    let mut line = String::new();
    sink_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "sink did not attach");

    let generated = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            BIN,
            "gen",
            "--interface",
            "gen0",
            "--rate",
            "50000",
            "--duration",
            "0.5",
            "--flows",
            "1000",
            "--destination-mac",
            "02:00:00:00:00:02",
            "--timestamps",
        ])
        .output()
        .expect("generator runs");
    assert!(
        generated.status.success(),
        "generator: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    let sent = report["sent"].as_u64().unwrap();
    assert!(
        sent >= 15_000,
        "a 50 kpps generator sent only {sent} in 0.5 s"
    );
    assert!(
        report["pps"].as_f64().unwrap() <= 55_000.0,
        "rate limit exceeded: {report}"
    );

    std::thread::sleep(std::time::Duration::from_millis(100));
    writeln!(sink_in).unwrap();
    line.clear();
    sink_out.read_line(&mut line).unwrap();
    let reading: serde_json::Value = serde_json::from_str(&line).unwrap();
    let received = reading["packets"].as_u64().unwrap();
    assert!(received <= sent, "sink counted {received} > sent {sent}");
    assert!(
        received as f64 >= sent as f64 * 0.99,
        "sink counted {received} of {sent}"
    );
    assert_eq!(
        reading["stamped"].as_u64().unwrap(),
        received,
        "every frame carried a timestamp"
    );
    let histogram: Vec<u64> = serde_json::from_value(reading["latency_us"].clone()).unwrap();
    assert_eq!(histogram.iter().sum::<u64>(), received);
    assert_eq!(reading["bytes"].as_u64().unwrap(), received * 60);

    drop(sink_in);
    assert!(sink.wait().unwrap().success());
}
