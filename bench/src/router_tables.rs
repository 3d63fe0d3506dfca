//! Sizing the routers' connection tables identically per workload: flowpin's `[datapath]
//! flow_capacity` and kernel conntrack's `nf_conntrack_max`, and reading how full they are.
//!
//! - flowpin's capacity is fixed at start, so [`restart_flowpin`] stops the lab's forwarder and starts
//!   it again with the same lab configuration but another capacity (an empty table) and with `[nat]
//!   early_drop_unanswered = true`: like conntrack's early drop, which K1 has, so a full table under
//!   the SYN flood makes room for new flows instead of refusing them (flowpin's default is strict);
//! - `nf_conntrack_max` is read-only inside a network namespace on this kernel: it is the machine-wide
//!   limit, enforced per namespace (each namespace counts its own entries). [`ConntrackMax`] sets it and
//!   puts the previous value back when dropped (also on panic), so the change lasts only as long as the
//!   workload that needs it; [`flush_conntrack`] empties one namespace's table.
//!
//! Invariants: every function acts only on the namespace it is given, except [`ConntrackMax`], which
//! changes one machine-wide sysctl and always restores it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use flowpin_lab::{Lab, LabProcess};

/// The machine-wide conntrack limit.
const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
/// How long a restarted forwarder may take to serve with every uplink up.
const FLOWPIN_READY_LIMIT: Duration = Duration::from_secs(30);

/// `nf_conntrack_max`, set for as long as this value lives.
#[derive(Debug)]
pub struct ConntrackMax {
    previous: u64,
}

impl ConntrackMax {
    /// Sets `nf_conntrack_max` to `entries`; the value before comes back on drop.
    pub fn set(entries: u64) -> Result<Self> {
        let previous = read_conntrack_max()?;
        write_conntrack_max(entries)?;
        Ok(Self { previous })
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        if let Err(error) = write_conntrack_max(self.previous) {
            eprintln!(
                "[flowpin-bench] could not restore nf_conntrack_max to {}: {error:#}",
                self.previous
            );
        }
    }
}

/// The machine-wide `nf_conntrack_max`.
pub fn read_conntrack_max() -> Result<u64> {
    let text = std::fs::read_to_string(CONNTRACK_MAX)
        .with_context(|| format!("reading {CONNTRACK_MAX} (is nf_conntrack loaded?)"))?;
    text.trim().parse().context("nf_conntrack_max")
}

fn write_conntrack_max(entries: u64) -> Result<()> {
    std::fs::write(CONNTRACK_MAX, entries.to_string())
        .with_context(|| format!("writing {entries} to {CONNTRACK_MAX}"))
}

/// Entries in namespace `ns`'s conntrack table.
pub fn conntrack_count(ns: &str) -> Result<u64> {
    let text =
        flowpin_lab::command::run_in(ns, &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])?;
    text.trim().parse().context("nf_conntrack_count")
}

/// Empties namespace `ns`'s conntrack table.
pub fn flush_conntrack(ns: &str) -> Result<()> {
    flowpin_lab::command::run_in(ns, &["conntrack", "-F"])
        .with_context(|| format!("flushing conntrack in {ns}"))?;
    Ok(())
}

/// The lab's flowpin configuration with `[datapath] flow_capacity = capacity` and `[nat]
/// early_drop_unanswered = true` (the benchmark compares against conntrack, which early-drops
/// unassured entries from a full table).
pub fn config_with_capacity(lab_config: &str, capacity: u32) -> Result<String> {
    let mut replaced = false;
    let mut nat = false;
    let mut text = Vec::new();
    for line in lab_config.lines() {
        if line.trim_start().starts_with("flow_capacity") {
            replaced = true;
            text.push(format!("flow_capacity = {capacity}"));
            continue;
        }
        if line.trim_start().starts_with("early_drop_unanswered") {
            continue;
        }
        text.push(line.to_owned());
        if line.trim() == "[nat]" {
            nat = true;
            text.push("early_drop_unanswered = true".to_owned());
        }
    }
    if !replaced {
        bail!("the lab's flowpin configuration has no flow_capacity line");
    }
    if !nat {
        bail!("the lab's flowpin configuration has no [nat] table");
    }
    Ok(text.join("\n") + "\n")
}

/// Stops `running` (the lab's forwarder) and starts it again with `capacity` flows; returns the new
/// process. The caller re-pins its threads.
pub fn restart_flowpin(lab: &Lab, running: &LabProcess, capacity: u32) -> Result<LabProcess> {
    running.signal("TERM")?;
    if running.wait(Duration::from_secs(10)).is_err() {
        running.kill()?;
    }
    let files = lab.flowpin_files()?;
    let lab_config = flowpin_lab::flowpin_router::config_text(lab.topology(), &files.socket);
    let config = lab.dir().join(format!("flowpin-{capacity}.toml"));
    std::fs::write(&config, config_with_capacity(&lab_config, capacity)?)
        .with_context(|| format!("writing {}", config.display()))?;
    let binary = files.binary.to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let process = lab.spawn(&lab.router().ns, &[&binary, "run", "-c", &config])?;
    flowpin_lab::flowpin_router::wait_ready(lab.topology(), &files, &process, FLOWPIN_READY_LIMIT)?;
    Ok(process)
}

/// The forwarder the lab started (the one running `flowpin run`).
pub fn lab_flowpin(lab: &Lab) -> Result<LabProcess> {
    lab.processes()
        .into_iter()
        .rev()
        .find(|p| p.description().contains(" run -c ") && p.is_running().unwrap_or(false))
        .context("no running flowpin in the lab")
}

/// Flows in a running flowpin's table and its capacity (from `flowpin status --json`).
pub fn flowpin_table(lab: &Lab) -> Result<(u64, u64)> {
    let files = lab.flowpin_files()?;
    let status = flowpin_lab::command::run_in(
        &lab.router().ns,
        &[
            &files.binary.to_string_lossy(),
            "status",
            "--json",
            "--socket",
            &files.socket.to_string_lossy(),
        ],
    )?;
    let status: serde_json::Value = serde_json::from_str(&status).context("flowpin status")?;
    let veth = flowpin_lab::command::run_in(
        &lab.router().ns,
        &["ethtool", "-S", &lab.router().lan_iface],
    )
    .unwrap_or_default();
    let veth_drops: Vec<&str> = veth
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("drops") && !line.ends_with(": 0"))
        .collect();
    eprintln!(
        "[flowpin-bench]   flowpin losses so far: {}; lan veth [{}]",
        losses(&status),
        veth_drops.join(" ")
    );
    let field = |name: &str| {
        status[name]
            .as_u64()
            .with_context(|| format!("flowpin status has no {name}"))
    };
    Ok((field("flows")?, field("flow_capacity")?))
}

/// Where flowpin lost packets, cumulative: its XDP drop decisions, the AF_XDP sockets' non-zero
/// kernel counters other than `tx_ring_empty_descs`, and the datapath's drop reasons.
fn losses(status: &serde_json::Value) -> String {
    let pairs = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect()
    };
    let xdp: Vec<String> = pairs(&status["xdp"])
        .into_iter()
        .filter(|pair| pair.starts_with("drop_"))
        .collect();
    let mut sockets = Vec::new();
    for socket in status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|worker| worker["sockets"].as_array().into_iter().flatten())
    {
        for (name, value) in socket.as_object().into_iter().flatten() {
            let n = value.as_u64().unwrap_or(0);
            if n > 0 && name != "tx_ring_empty_descs" {
                sockets.push(format!(
                    "{}.{name}={n}",
                    socket["port"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    format!(
        "xdp [{}]; sockets [{}]; datapath [{}]",
        xdp.join(" "),
        sockets.join(" "),
        pairs(&status["drops"]).join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_replaces_the_lab_value_and_early_drop_is_switched_on() {
        let lab = "[nat]\nport_range = \"20000-29999\"\n\n[datapath]\nworkers = 1\nflow_capacity = 262144\n\n[control]\nsocket = \"/x\"";
        let text = config_with_capacity(lab, 8192).unwrap();
        assert!(text.contains("flow_capacity = 8192\n"), "{text}");
        assert!(!text.contains("262144"), "{text}");
        assert!(
            text.starts_with("[nat]\nearly_drop_unanswered = true\nport_range"),
            "{text}"
        );
        assert!(text.contains("workers = 1\n") && text.contains("socket = \"/x\""));
        assert_eq!(
            config_with_capacity(&text, 8192).unwrap(),
            text,
            "applying it twice changes nothing"
        );
        assert!(config_with_capacity("[datapath]\nflow_capacity = 1\n", 8192).is_err());
        assert!(config_with_capacity("[nat]\n", 8192).is_err());
    }

    #[test]
    fn the_benchmark_config_of_the_real_lab_parses_with_early_drop_on() {
        let topology = flowpin_lab::Topology::plan("fpb", &flowpin_lab::spec::LabSpec::default());
        let lab_config = flowpin_lab::flowpin_router::config_text(
            &topology,
            std::path::Path::new("/run/x.sock"),
        );
        let text = config_with_capacity(&lab_config, 8192).unwrap();
        let config = flowpin::config::parse(&text, "bench.toml", None).expect("valid");
        assert!(config.nat.early_drop_unanswered);
        assert_eq!(config.datapath.flow_capacity, 8192);
    }
}
