//! The `flowpin-lab` command: `up` leaves a lab that `status` reads and `down` removes; SIGINT
//! during `demo` tears the lab down; the flowpin demo black-holes isp1, shows flowpin failing it over
//! and ends with `flowpin status` and `flowpin explain`; a non-root user is refused with the missing prerequisite named.
//! These need root (they build real labs); without it they fail saying so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flowpin_lab::traffic;
use flowpin_lab::{Footprint, Lab, name};

const CLI: &str = env!("CARGO_BIN_EXE_flowpin-lab");

fn cli(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .output()
        .expect("running flowpin-lab")
}

fn assert_success(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn up_persists_a_lab_that_status_reads_and_down_removes() {
    let lab_name = name::generate_prefix();
    let up = cli(&[
        "up",
        "--name",
        &lab_name,
        "--hosts",
        "1",
        "--uplinks",
        "2,1",
    ]);
    let stdout = assert_success(&up, "up");
    assert!(
        stdout.contains(&format!("lab {lab_name} is up")),
        "{stdout}"
    );

    let lab = Lab::attach(&lab_name).expect("the lab outlives the command");
    let footprint = Footprint::of(&lab).expect("footprint");
    let http = traffic::http_get(&lab, &lab.lan_hosts()[0], 20).expect("curl runs");
    assert_eq!(http.ok, 20, "{:?}", http.failed_codes);
    drop(lab);
    assert!(
        Lab::attach(&lab_name).is_ok(),
        "dropping an attached lab must not destroy it"
    );

    let status = assert_success(&cli(&["status", "--name", &lab_name]), "status");
    let rows: Vec<Vec<&str>> = status
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.first().is_some_and(|f| f.starts_with("wan")))
        .collect();
    assert_eq!(rows.len(), 2, "{status}");
    assert_eq!((rows[0][1], rows[1][1]), ("2", "1"), "weights: {status}");
    let good: u64 = rows
        .iter()
        .map(|row| row[2].parse::<u64>().expect("good column"))
        .sum();
    assert!(
        good >= 20,
        "status shows {good} good packets after 20 requests: {status}"
    );
    assert!(
        rows.iter().all(|row| row[3] == "0" && row[4] == "0"),
        "{status}"
    );

    let down = assert_success(&cli(&["down", "--name", &lab_name]), "down");
    assert!(down.contains(&format!("lab {lab_name} is down")), "{down}");
    let leftovers = footprint.leftovers().expect("inspecting the host");
    assert!(
        leftovers.is_empty(),
        "left behind after down: {leftovers:#?}"
    );
    assert!(Lab::attach(&lab_name).is_err());
}

#[test]
fn sigint_during_the_demo_tears_its_lab_down() {
    let lab_name = name::generate_prefix();
    let mut demo = Command::new(CLI)
        .args([
            "demo",
            "--name",
            &lab_name,
            "--hosts",
            "1",
            "--seconds",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the demo");
    let stdout = demo.stdout.take().expect("piped stdout");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first table row means the lab is up and traffic flows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.trim_start().starts_with("1s"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ignored = demo.kill();
                panic!("demo printed no table row in 30 s: {seen:#?}");
            }
        }
    }
    let lab = Lab::attach(&lab_name).expect("the demo's lab is up");
    let footprint = Footprint::of(&lab).expect("footprint");
    let status = Command::new("kill")
        .args(["-s", "INT", &demo.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = demo.try_wait().expect("polling the demo") {
            break exit;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(15),
            "demo ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(130), "demo exit after SIGINT");
    let leftovers = footprint.leftovers().expect("inspecting the host");
    assert!(
        leftovers.is_empty(),
        "left behind after SIGINT: {leftovers:#?}"
    );
}

#[test]
fn a_non_root_user_is_refused_with_the_missing_prerequisite_named() {
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            CLI,
            "up",
        ])
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing prerequisite: root"), "{stderr}");
}

#[test]
fn the_flowpin_demo_fails_isp1_over_and_ends_with_status_and_explain() {
    let lab_name = name::generate_prefix();
    let demo = cli(&[
        "demo",
        "--router",
        "flowpin",
        "--name",
        &lab_name,
        "--hosts",
        "1",
        "--seconds",
        "30",
    ]);
    let out = assert_success(&demo, "demo");
    let lines: Vec<&str> = out.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing from the demo's output:\n{out}"))
    };
    let probes = at("health probes on:");
    let blackhole = at(">>> 15s: black-holing isp1:");
    let down = at("flowpin: uplink health changed uplink=isp1 state=\"down\"");
    let failover = at("flowpin: flows failed over uplink=isp1");
    let back = at("isp1 is back:");
    let status = at("$ flowpin status");
    let explain = at("$ flowpin explain ");
    assert!(
        probes < blackhole && blackhole < down && down < back && failover < back,
        "the failover comes between the announcements:\n{out}"
    );
    assert!(back < status && status < explain, "{out}");
    // While isp1 is down its table rows say so and isp2 takes the new flows.
    let down_rows: Vec<&&str> = lines[down..back]
        .iter()
        .filter(|l| l.contains("isp1") && l.contains(" down "))
        .collect();
    assert!(!down_rows.is_empty(), "no table row with isp1 down:\n{out}");
    assert!(
        out.contains("verdict: no leak, no wrong-uplink packet"),
        "{out}"
    );
    assert!(
        Lab::attach(&lab_name).is_err(),
        "the demo tore its lab down"
    );
}
