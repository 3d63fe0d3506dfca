//! The flowpin router kind: `flowpin run` in the router namespace, configured for the lab's topology.
//!
//! The router namespace is prepared as for [`RouterKind::None`](crate::RouterKind::None) but without
//! permanent neighbour entries, so flowpin resolves the gateways' MACs through the kernel as it would on a
//! real router. [`start`] writes the configuration into the lab's directory, starts the forwarder and
//! waits until it serves its control socket with every uplink up; [`FlowpinRouter`] names the files.
//! [`config_for`] and [`start_with_uplinks`] configure only some of the lab's uplinks, with chosen
//! weights (the reload tests add and remove the others at run time). flowpin runs one worker per
//! queue of the lab's veths ([`LabSpec::queues`](crate::LabSpec::queues)).

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::plan::Topology;
use crate::process::LabProcess;
use crate::spec::UplinkWiring;

/// Environment variable naming the `flowpin` binary to run (default: the workspace's release build).
pub const FLOWPIN_BIN_ENV: &str = "FLOWPIN_BIN";

/// The NAT port range the lab configures (below the router's own ephemeral ports, 32768-60999).
pub const NAT_PORT_RANGE: (u16, u16) = (10000, 32767);

/// Where a lab's forwarder keeps its files.
#[derive(Debug, Clone)]
pub struct FlowpinRouter {
    /// The configuration file.
    pub config: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The binary.
    pub binary: PathBuf,
}

impl FlowpinRouter {
    /// The files of the forwarder of a lab whose directory is `dir`.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        Ok(Self {
            config: dir.join("flowpin.toml"),
            socket: dir.join("flowpin.sock"),
            binary: binary()?,
        })
    }
}

/// The `flowpin` binary: `$FLOWPIN_BIN`, else the release build of this workspace.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(FLOWPIN_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("release/flowpin");
    if !path.exists() {
        bail!(
            "missing prerequisite: the flowpin binary {} (build it with `cargo build --release -p flowpin`, or set {FLOWPIN_BIN_ENV})",
            path.display()
        );
    }
    Ok(path)
}

/// The flowpin configuration for `topology`, with the lab's weights.
pub fn config_text(topology: &Topology, socket: &Path) -> String {
    let uplinks: Vec<(usize, u32)> = topology
        .uplinks
        .iter()
        .enumerate()
        .map(|(index, u)| (index, u.weight))
        .collect();
    config_for(topology, socket, &uplinks)
}

/// The flowpin configuration for `topology` with only the uplinks `(index, weight)` of `uplinks`
/// (indices into `topology.uplinks`; named `isp<number>` as always), in that order.
pub fn config_for(topology: &Topology, socket: &Path, uplinks: &[(usize, u32)]) -> String {
    let r = &topology.router;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by flowpin-lab for lab {}.\n[lan]\ninterface = \"{}\"\nprefixes = [\"{}/{}\"]\n",
        topology.prefix,
        r.lan_iface,
        network(r.lan_addr, r.lan_prefix_len),
        r.lan_prefix_len
    );
    for &(index, weight) in uplinks {
        let u = &topology.uplinks[index];
        // Uplinks sharing an interface are told apart by their addresses.
        let address = match topology.wiring {
            UplinkWiring::Shared => format!("address = \"{}\"\n", u.router_addr),
            UplinkWiring::Separate | UplinkWiring::Macvlan => String::new(),
        };
        let _ = writeln!(
            text,
            "[[uplink]]\nname = \"isp{}\"\ninterface = \"{}\"\ngateway = \"{}\"\nweight = {}\n{address}",
            u.number, u.router_iface, u.gateway, weight
        );
    }
    let _ = writeln!(
        text,
        "[nat]\nport_range = \"{}-{}\"\n\n[datapath]\nworkers = {}\nmode = \"copy\"\nidle = \"poll\"\nflow_capacity = {}\npin_name = \"{}\"\n\n[control]\nsocket = \"{}\"",
        NAT_PORT_RANGE.0,
        NAT_PORT_RANGE.1,
        r.queues,
        r.flow_capacity,
        crate::state::pin_name(&topology.prefix),
        socket.display()
    );
    text
}

fn network(addr: std::net::Ipv4Addr, len: u8) -> std::net::Ipv4Addr {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    std::net::Ipv4Addr::from(addr.to_bits() & mask)
}

/// Starts the forwarder in the router namespace (through `spawn`, so the lab tracks it) and waits
/// until its control socket answers with every uplink up.
pub fn start(
    topology: &Topology,
    files: &FlowpinRouter,
    spawn: impl FnOnce(&str, &[&str]) -> Result<LabProcess>,
) -> Result<LabProcess> {
    let all: Vec<usize> = (0..topology.uplinks.len()).collect();
    start_with_uplinks(topology, files, spawn, &all)
}

/// Like [`start`], but flowpin is configured with only the uplinks whose indices (into
/// `topology.uplinks`) are in `uplinks`, with the lab's weights; waits until those are up.
pub fn start_with_uplinks(
    topology: &Topology,
    files: &FlowpinRouter,
    spawn: impl FnOnce(&str, &[&str]) -> Result<LabProcess>,
    uplinks: &[usize],
) -> Result<LabProcess> {
    let chosen: Vec<(usize, u32)> = uplinks
        .iter()
        .map(|&index| (index, topology.uplinks[index].weight))
        .collect();
    std::fs::write(&files.config, config_for(topology, &files.socket, &chosen))
        .with_context(|| format!("writing {}", files.config.display()))?;
    let binary = files.binary.to_string_lossy().into_owned();
    let config = files.config.to_string_lossy().into_owned();
    let process = spawn(&topology.router.ns, &[&binary, "run", "-c", &config])?;
    wait_ready_with(
        topology,
        files,
        &process,
        Duration::from_secs(20),
        uplinks.len(),
    )?;
    Ok(process)
}

/// Waits until `flowpin status` answers with every uplink up.
pub fn wait_ready(
    topology: &Topology,
    files: &FlowpinRouter,
    process: &LabProcess,
    timeout: Duration,
) -> Result<()> {
    wait_ready_with(topology, files, process, timeout, topology.uplinks.len())
}

/// Waits until `flowpin status` answers with `uplinks` uplinks, all up.
fn wait_ready_with(
    topology: &Topology,
    files: &FlowpinRouter,
    process: &LabProcess,
    timeout: Duration,
    uplinks: usize,
) -> Result<()> {
    let expected = uplinks;
    let deadline = Instant::now() + timeout;
    let socket = files.socket.to_string_lossy().into_owned();
    let binary = files.binary.to_string_lossy().into_owned();
    loop {
        if !process.is_running()? {
            bail!(
                "flowpin exited during start-up: {}",
                process.stderr().unwrap_or_default()
            );
        }
        let out = crate::command::in_namespace(
            &topology.router.ns,
            &[&binary, "status", "--json", "--socket", &socket],
        )
        .stdin(std::process::Stdio::null())
        .output()?;
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let uplinks = status["uplinks"].as_array().cloned().unwrap_or_default();
            if uplinks.len() == expected && uplinks.iter().all(|u| u["state"] == "up") {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "flowpin did not come up within {timeout:?}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                process.stderr().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LabSpec, RouterKind};

    #[test]
    fn the_config_names_every_uplink_with_its_weight_and_gateway() {
        let spec = LabSpec {
            router: RouterKind::Flowpin,
            ..LabSpec::with_weights(&[11, 45])
        };
        let topology = Topology::plan("fptest01", &spec);
        let text = config_text(&topology, Path::new("/run/x.sock"));
        assert!(text.contains("prefixes = [\"10.77.0.0/24\"]"), "{text}");
        assert!(text.contains("interface = \"wan2\""));
        assert!(text.contains("weight = 45"));
        assert!(text.contains(&format!("gateway = \"{}\"", topology.uplinks[0].gateway)));
        assert!(text.contains("socket = \"/run/x.sock\""));
        assert!(text.contains("workers = 1\n"), "{text}");
        assert!(text.contains("pin_name = \"lab-fptest01\"\n"), "{text}");
    }

    #[test]
    fn flowpin_runs_one_worker_per_queue_of_the_labs_veths() {
        let spec = LabSpec {
            router: RouterKind::Flowpin,
            queues: 4,
            ..LabSpec::default()
        };
        let topology = Topology::plan("fptest03", &spec);
        let text = config_text(&topology, Path::new("/run/x.sock"));
        assert!(text.contains("workers = 4\n"), "{text}");
    }

    #[test]
    fn a_partial_config_names_only_the_chosen_uplinks_with_their_weights() {
        let spec = LabSpec {
            router: RouterKind::Flowpin,
            ..LabSpec::with_weights(&[1, 1])
        };
        let topology = Topology::plan("fptest02", &spec);
        let text = config_for(&topology, Path::new("/run/x.sock"), &[(1, 7)]);
        assert!(text.contains("name = \"isp2\""), "{text}");
        assert!(text.contains("interface = \"wan2\"\ngateway"), "{text}");
        assert!(text.contains("weight = 7"), "{text}");
        assert!(!text.contains("isp1") && !text.contains("wan1"), "{text}");
    }
}
