//! The demo's failover act, and what it asks flowpin: health probes switched on by a live reload,
//! isp1 black-holed half-way and brought back three quarters in (once its failover was seen), flowpin's own words about it (its
//! log's state changes and failovers), each uplink's state, flows and new flows per second, and
//! `flowpin status` and one `flowpin explain` at the end.
//!
//! Invariants:
//! - every fault is announced on screen before it is injected, and is injected in isp1's ISP
//!   namespace (the router and flowpin are untouched): flowpin must find it by probing;
//! - with the kernel router the same faults happen (it cannot fail over: that is the comparison), and
//!   nothing is asked of flowpin;
//! - the fault lives in the lab's namespaces, so teardown (at the end or on Ctrl-C) removes it.

use std::time::Duration;

use anyhow::{Context, Result};
use flowpin_lab::faults::Fault;
use flowpin_lab::{Lab, RouterKind};

/// What the demo does at a second of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// isp1's ISP starts dropping everything.
    Blackhole,
    /// isp1's ISP forwards again.
    Restore,
}

/// Seconds isp1 stays black-holed after flowpin reported it down, so the failover is seen.
const SHOW_FAILOVER_S: u64 = 2;

/// When each act happens: the black hole half-way; the return at three quarters, but only once
/// flowpin has shown isp1 down for [`SHOW_FAILOVER_S`] (on a loaded machine detection can take
/// longer than the schedule allows), and at the last second at the latest. Without flowpin (the
/// kernel router) the return keeps to the schedule.
#[derive(Debug)]
pub struct Script {
    blackhole_at: u64,
    restore_at: u64,
    last: u64,
    blackholed: bool,
    restored: bool,
    down_since: Option<u64>,
}

impl Script {
    /// The script of a run of `duration`.
    pub fn new(duration: Duration) -> Self {
        let seconds = duration.as_secs().max(4);
        Self {
            blackhole_at: seconds / 2,
            restore_at: seconds * 3 / 4,
            last: seconds,
            blackholed: false,
            restored: false,
            down_since: None,
        }
    }

    /// The act due at `second`, given isp1's state as flowpin last reported it (`None`: no
    /// flowpin).
    pub fn due(&mut self, second: u64, isp1_state: Option<&str>) -> Option<Act> {
        if !self.blackholed {
            if second >= self.blackhole_at {
                self.blackholed = true;
                return Some(Act::Blackhole);
            }
            return None;
        }
        if self.restored {
            return None;
        }
        if isp1_state == Some("down") && self.down_since.is_none() {
            self.down_since = Some(second);
        }
        let failover_shown = match isp1_state {
            None => true,
            Some(_) => self
                .down_since
                .is_some_and(|since| second >= since + SHOW_FAILOVER_S),
        };
        if (second >= self.restore_at && failover_shown) || second >= self.last {
            self.restored = true;
            return Some(Act::Restore);
        }
        None
    }
}

/// Probes every 500 ms to two far servers (beyond the ISPs), down after 3 bad rounds, up after 4
/// good ones over a window of 4 rounds: a black hole behind the gateway is found in about two
/// seconds, and its end in about three.
const HEALTH: &str = "[health]\ninterval_ms = 500\ntimeout_ms = 300\ndown_after = 3\nup_after = 4\n\
                      window = 4\nmin_answers = 1\n\
                      [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
                      [[health.target]]\nkind = \"tcp\"\naddress = \"203.0.113.12\"\nport = 80\n";

/// Switches flowpin's health probes on by appending [`HEALTH`] to its file and reloading it.
pub fn enable_probes(lab: &Lab) -> Result<()> {
    if lab.router().kind != RouterKind::Flowpin {
        return Ok(());
    }
    let files = lab.flowpin_files()?;
    let mut text = std::fs::read_to_string(&files.config)?;
    text.push('\n');
    text.push_str(HEALTH);
    std::fs::write(&files.config, text)?;
    flowpin(lab, &["reload"]).context("reloading flowpin with health probes")?;
    println!(
        "health probes on: every 500 ms to 203.0.113.10 (ICMP) and 203.0.113.12:80 (TCP) through each uplink; down after 3 bad rounds, up after 4 good ones\n\
         on failover flowpin resets isp1's TCP flows (an RST to the LAN host, so applications reconnect at once: the iperf3 runs there end) and moves its UDP and ICMP flows"
    );
    Ok(())
}

/// Announces `act` and does it.
pub fn perform(lab: &Lab, act: Act, second: u64) -> Result<()> {
    let isp = &lab.uplinks()[0];
    match act {
        Act::Blackhole => {
            println!(
                ">>> {second}s: black-holing isp1: {} now drops every packet, both ways (the link and gateway stay up)",
                isp.isp_ns
            );
            lab.inject_fault(0, Fault::Blackhole)
        }
        Act::Restore => {
            println!(">>> {second}s: isp1 is back: {} forwards again", isp.isp_ns);
            lab.clear_faults(0)
        }
    }
}

/// Runs `flowpin ARGS --socket LAB_SOCKET` in the router namespace; its stdout.
pub fn flowpin(lab: &Lab, args: &[&str]) -> Result<String> {
    let files = lab.flowpin_files()?;
    let binary = files.binary.to_string_lossy().into_owned();
    let socket = files.socket.to_string_lossy().into_owned();
    let mut argv = vec![binary.as_str()];
    argv.extend_from_slice(args);
    argv.extend(["--socket", socket.as_str()]);
    lab.exec_ok(&lab.router().ns, &argv)
}

/// One uplink as flowpin reports it.
#[derive(Debug, Clone, Default)]
pub struct UplinkView {
    /// `up`, `down`, `probing`, ...
    pub state: String,
    /// Flows pinned to it now.
    pub flows: u64,
    /// Flows it created since flowpin started.
    pub created: u64,
}

/// Each uplink's state and flows, in lab order (`None` without flowpin or when it does not answer).
pub fn uplink_views(lab: &Lab) -> Option<Vec<UplinkView>> {
    if lab.router().kind != RouterKind::Flowpin {
        return None;
    }
    let status: serde_json::Value =
        serde_json::from_str(&flowpin(lab, &["status", "--json"]).ok()?).ok()?;
    let uplinks = status["uplinks"].as_array()?;
    Some(
        lab.uplinks()
            .iter()
            .map(|u| {
                let name = format!("isp{}", u.number);
                uplinks
                    .iter()
                    .find(|s| s["name"] == name.as_str())
                    .map(|s| UplinkView {
                        state: s["state"].as_str().unwrap_or("?").to_owned(),
                        flows: s["flows"].as_u64().unwrap_or(0),
                        created: s["flows_created"].as_u64().unwrap_or(0),
                    })
                    .unwrap_or_default()
            })
            .collect(),
    )
}

/// flowpin's log lines about state changes and failovers, from line `seen` on; `seen` moves past
/// them. What is printed is the message and its fields, without time and module.
pub fn new_events(lab: &Lab, seen: &mut usize) -> Vec<String> {
    let Some(log) = lab
        .processes()
        .iter()
        .find(|p| p.description().contains("flowpin run"))
        .and_then(|p| p.stderr().ok())
    else {
        return Vec::new();
    };
    let lines: Vec<&str> = log.lines().collect();
    let events = lines
        .iter()
        .skip(*seen)
        .filter(|line| {
            [
                "uplink health changed",
                "flows failed over",
                "flows failed back",
            ]
            .iter()
            .any(|needle| line.contains(needle))
        })
        .map(|line| {
            let message = line.split_once(": ").map_or(*line, |(_, message)| message);
            format!("    flowpin: {message}")
        })
        .collect();
    *seen = lines.len();
    events
}

/// `flowpin status`, and `flowpin explain` of one TCP flow (else any flow) still in the table.
pub fn print_final_report(lab: &Lab) -> Result<()> {
    if lab.router().kind != RouterKind::Flowpin {
        return Ok(());
    }
    println!("\n$ flowpin status");
    print!("{}", flowpin(lab, &["status"])?);
    let flows: serde_json::Value = serde_json::from_str(&flowpin(lab, &["flows", "--json"])?)?;
    let list = flows
        .as_array()
        .or_else(|| flows["flows"].as_array())
        .cloned()
        .unwrap_or_default();
    let chosen = list
        .iter()
        .find(|f| f["proto"] == "tcp")
        .or_else(|| list.first());
    if let Some(flow) = chosen {
        let field = |key: &str| flow[key].as_str().unwrap_or_default().to_owned();
        let (proto, internal, remote) = (field("proto"), field("internal"), field("remote"));
        println!("\n$ flowpin explain {proto} {internal} {remote}");
        print!(
            "{}",
            flowpin(lab, &["explain", &proto, &internal, &remote])?
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_black_hole_comes_half_way_and_leaves_at_three_quarters_without_flowpin() {
        let mut script = Script::new(Duration::from_secs(40));
        let acts: Vec<(u64, Act)> = (1..=40)
            .filter_map(|second| script.due(second, None).map(|act| (second, act)))
            .collect();
        assert_eq!(acts, [(20, Act::Blackhole), (30, Act::Restore)]);
    }

    #[test]
    fn with_flowpin_isp1_returns_only_after_its_failover_was_shown() {
        // Detected down at 33 s: back at 35 s, not at the scheduled 30 s.
        let mut script = Script::new(Duration::from_secs(40));
        let acts: Vec<(u64, Act)> = (1..=40)
            .filter_map(|second| {
                let state = if second >= 33 { "down" } else { "up" };
                script.due(second, Some(state)).map(|act| (second, act))
            })
            .collect();
        assert_eq!(acts, [(20, Act::Blackhole), (35, Act::Restore)]);
        // Never detected: back at the last second all the same.
        let mut script = Script::new(Duration::from_secs(40));
        let acts: Vec<(u64, Act)> = (1..=40)
            .filter_map(|second| script.due(second, Some("up")).map(|act| (second, act)))
            .collect();
        assert_eq!(acts, [(20, Act::Blackhole), (40, Act::Restore)]);
    }
}
