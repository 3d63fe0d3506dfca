//! `flowpin-lab demo`: a lab with live traffic from every LAN host — a curl loop, iperf3 TCP
//! (4 streams) and UDP, and the echo — and a per-uplink table printed every second (flowpin's state,
//! flows and new flows per uplink; packets per second and totals per ISP, with the leak and
//! wrong-uplink counters); health probes on, isp1 black-holed half-way and brought back (see
//! [`crate::demo_failover`]); then a summary, `flowpin status`, one `flowpin explain`, and teardown.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{IspCounters, Lab, LabSpec, RouterKind};

use crate::demo_failover;

/// Totals the traffic threads report.
#[derive(Debug, Default)]
struct Tally {
    http_ok: AtomicUsize,
    http_failed: AtomicUsize,
    echo_ok: AtomicUsize,
    echo_failed: AtomicUsize,
    seen_as: Mutex<std::collections::BTreeSet<std::net::Ipv4Addr>>,
    notes: Mutex<Vec<String>>,
}

impl Tally {
    fn note(&self, line: String) {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

/// Runs the demo on a lab of shape `spec` for `duration`.
pub fn run(spec: &LabSpec, duration: Duration) -> Result<()> {
    if spec.router == RouterKind::None {
        eprintln!(
            "note: with --router none nothing forwards in the router namespace; expect failures"
        );
    }
    let lab = Lab::up(spec.clone())?;
    crate::print_topology(&lab);
    let outcome = demo_failover::enable_probes(&lab).and_then(|()| drive(&lab, duration));
    let teardown = lab.down();
    outcome.and(teardown)
}

fn drive(lab: &Lab, duration: Duration) -> Result<()> {
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let seconds = u32::try_from(duration.as_secs().saturating_sub(1).max(1)).unwrap_or(u32::MAX);
    let before = lab.isp_counters()?;
    std::thread::scope(|scope| -> Result<()> {
        for (index, host) in lab.lan_hosts().iter().enumerate() {
            let (stop, tally) = (&stop, &tally);
            scope.spawn(move || curl_loop(lab, host, stop, tally));
            scope.spawn(move || echo_loop(lab, host, stop, tally));
            // Host 1 runs iperf3 TCP, host 2 UDP (host 1 both when alone), on distinct servers.
            let servers = &lab.inet().iperf_servers;
            let udp = IperfMode::Udp {
                bits_per_second: 50_000_000,
            };
            let tcp = IperfMode::Tcp { streams: 4 };
            let runs: &[(IperfMode, usize)] = match (index, lab.lan_hosts().len()) {
                (0, 1) => &[(tcp, 0), (udp, 1)],
                (0, _) => &[(tcp, 0)],
                (1, _) => &[(udp, 1)],
                _ => &[],
            };
            for &(mode, server) in runs {
                let server = servers[server];
                scope.spawn(move || iperf_once(lab, host, server, mode, seconds, tally));
            }
        }
        let result = print_live_table(lab, &before, duration);
        stop.store(true, Ordering::SeqCst);
        result
    })?;
    print_summary(lab, &before, &tally)?;
    demo_failover::print_final_report(lab)
}

fn curl_loop(lab: &Lab, host: &flowpin_lab::LanHost, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::SeqCst) {
        match traffic::http_get(lab, host, 10) {
            Ok(report) => {
                tally.http_ok.fetch_add(report.ok, Ordering::Relaxed);
                tally
                    .http_failed
                    .fetch_add(report.failed_codes.len(), Ordering::Relaxed);
            }
            Err(error) => {
                tally.note(format!("curl on {}: {error:#}", host.ns));
                return;
            }
        }
    }
}

fn echo_loop(lab: &Lab, host: &flowpin_lab::LanHost, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::SeqCst) {
        for protocol in [EchoProtocol::Udp, EchoProtocol::Tcp] {
            match traffic::echo(lab, host, protocol, &lab.inet().server_addrs) {
                Ok(replies) => {
                    for reply in replies {
                        if let Some(seen) = reply.seen_as {
                            tally.echo_ok.fetch_add(1, Ordering::Relaxed);
                            tally
                                .seen_as
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(*seen.ip());
                        } else {
                            tally.echo_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(error) => {
                    tally.note(format!("echo on {}: {error:#}", host.ns));
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `TCP x4` or `UDP 50 Mbit/s`.
fn describe(mode: IperfMode) -> String {
    match mode {
        IperfMode::Tcp { streams } => format!("TCP x{streams}"),
        IperfMode::Udp { bits_per_second } => format!("UDP {} Mbit/s", bits_per_second / 1_000_000),
    }
}

fn iperf_once(
    lab: &Lab,
    host: &flowpin_lab::LanHost,
    server: std::net::SocketAddrV4,
    mode: IperfMode,
    seconds: u32,
    tally: &Tally,
) {
    let line = match traffic::iperf3(lab, host, server, mode, seconds) {
        Ok(report) => {
            let loss = report
                .udp_packets
                .map(|(packets, lost)| format!(", {lost} of {packets} datagrams lost"))
                .unwrap_or_default();
            format!(
                "iperf3 {} {} → {server}: {:.1} Mbit/s received{loss}",
                describe(mode),
                host.ns,
                report.received_bits_per_second / 1e6
            )
        }
        Err(error) => format!(
            "iperf3 {} {} → {server}: FAILED {error:#}",
            describe(mode),
            host.ns
        ),
    };
    tally.note(line);
}

fn print_live_table(lab: &Lab, before: &[IspCounters], duration: Duration) -> Result<()> {
    let start = Instant::now();
    let mut previous = before.to_vec();
    let mut previous_views = demo_failover::uplink_views(lab);
    let mut script = demo_failover::Script::new(duration);
    let mut log_seen = 0;
    let _ = demo_failover::new_events(lab, &mut log_seen);
    println!();
    println!(
        "{:>4}  {:<6} {:>3}  {:<8} {:>6} {:>6}  {:>9} {:>9} {:>11} {:>6} {:>6}",
        "time",
        "uplink",
        "w",
        "state",
        "flows",
        "new/s",
        "pkt/s",
        "Mbit/s",
        "good pkts",
        "leak",
        "wrong"
    );
    for second in 1..=duration.as_secs() {
        let due = start + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let isp1_state = previous_views
            .as_ref()
            .and_then(|views| views.first())
            .map(|view| view.state.as_str());
        if let Some(act) = script.due(second, isp1_state) {
            demo_failover::perform(lab, act, second)?;
        }
        for event in demo_failover::new_events(lab, &mut log_seen) {
            println!("{event}");
        }
        let now = lab.isp_counters()?;
        let views = demo_failover::uplink_views(lab);
        for (index, (uplink, counters)) in lab.uplinks().iter().zip(&now).enumerate() {
            let last_second = counters.since(&previous[index]);
            let total = counters.since(&before[index]);
            let time = if index == 0 {
                format!("{second}s")
            } else {
                String::new()
            };
            let (state, flows, new) = match (&views, &previous_views) {
                (Some(views), Some(earlier)) => {
                    let view = &views[index];
                    let new = view.created.saturating_sub(earlier[index].created);
                    (view.state.clone(), view.flows.to_string(), new.to_string())
                }
                _ => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            };
            println!(
                "{time:>4}  {:<6} {:>3}  {state:<8} {flows:>6} {new:>6}  {:>9} {:>9.1} {:>11} {:>6} {:>6}",
                format!("isp{}", uplink.number),
                uplink.weight,
                last_second.total(),
                last_second.good_bytes as f64 * 8.0 / 1e6,
                total.good,
                total.leak,
                total.wrong_uplink
            );
        }
        previous = now;
        if views.is_some() {
            previous_views = views;
        }
    }
    Ok(())
}

fn print_summary(lab: &Lab, before: &[IspCounters], tally: &Tally) -> Result<()> {
    let after = lab.isp_counters()?;
    println!();
    println!(
        "summary of lab {} ({:?} router):",
        lab.prefix(),
        lab.router().kind
    );
    println!(
        "  HTTP requests: {} ok, {} failed",
        tally.http_ok.load(Ordering::Relaxed),
        tally.http_failed.load(Ordering::Relaxed)
    );
    let seen: Vec<String> = tally
        .seen_as
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "  echo exchanges: {} answered, {} unanswered; servers saw the LAN as {}",
        tally.echo_ok.load(Ordering::Relaxed),
        tally.echo_failed.load(Ordering::Relaxed),
        seen.join(", ")
    );
    for note in tally
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        println!("  {note}");
    }
    let mut leaks = 0;
    let mut wrong = 0;
    for (uplink, (now, then)) in lab.uplinks().iter().zip(after.iter().zip(before)) {
        let total = now.since(then);
        leaks += total.leak;
        wrong += total.wrong_uplink;
        println!(
            "  {} (weight {}): {} good packets ({:.1} MB), {} leaked, {} wrong-uplink",
            uplink.router_iface,
            uplink.weight,
            total.good,
            total.good_bytes as f64 / 1e6,
            total.leak,
            total.wrong_uplink
        );
    }
    let verdict = if leaks == 0 && wrong == 0 {
        "no leak, no wrong-uplink packet"
    } else {
        "LEAKS OR WRONG-UPLINK PACKETS SEEN"
    };
    println!("  verdict: {verdict}");
    Ok(())
}
