//! The flowpin lab: a LAN, a router, one ISP per uplink and an internet with servers, built from
//! network namespaces and veth pairs, with the kernel reference router
//! or an empty router namespace for flowpin.
//!
//! ```text
//! lan1..lanN ──eth0── br0 (sw) ──rtr── lan0 [rtr] wan1 ── to-rtr [isp1] to-inet ── isp1 ┐
//!                                                 wan2 ── to-rtr [isp2] to-inet ── isp2 ┴ [inet] servers
//! ```
//!
//! [`Lab::up`] builds a lab from a [`LabSpec`]; [`Lab::down`] (also run on drop, so on panic, and
//! on SIGINT / SIGTERM by the [`interrupt`] watcher) destroys it. Invariants:
//! - every namespace is `<prefix>-<role>` with a prefix unique per lab, every interface lives only
//!   inside namespaces, so labs run in parallel without clashing;
//! - teardown kills every process in the lab's namespaces, then deletes them; it is idempotent and
//!   works from the prefix alone ([`destroy_lab`]), e.g. from another process;
//! - [`Lab::up`] either returns a lab whose servers all listen, or an error after removing what it
//!   built; a missing prerequisite (root, a tool) is an error naming it.
#![deny(unsafe_code)]

pub mod command;
pub mod faults;
pub mod flowpin_router;
pub mod footprint;
mod interrupt;
pub mod isp_counters;
pub mod kernel_forwards;
pub mod kernel_router;
pub mod name;
pub mod plan;
pub mod process;
pub mod servers;
pub mod spec;
pub mod state;
pub mod teardown;
pub mod traffic;
pub mod tun_relay;
pub mod wiring;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};

pub use faults::{Fault, FaultCounters};
pub use footprint::Footprint;
pub use isp_counters::IspCounters;
pub use plan::{InetNode, LanHost, MacAddr, RouterNode, SegmentNode, Topology, Uplink};
pub use process::{LabProcess, ProcessOutput};
pub use spec::{LabSpec, RouterKind, UplinkSpec, UplinkWiring};
pub use teardown::{destroy_lab, list_labs};

/// Page served by the HTTP server.
pub const HTTP_PAGE: &str = "flowpin lab\n";

/// A running lab (see the crate documentation).
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    topology: Topology,
    processes: Mutex<Vec<LabProcess>>,
    process_sequence: AtomicUsize,
    /// Whether dropping this value tears the lab down (false once persisted, or when attached).
    owns_lab: AtomicBool,
    torn_down: AtomicBool,
}

impl Lab {
    /// Builds the lab described by `spec` and waits until its servers listen.
    pub fn up(spec: LabSpec) -> Result<Lab> {
        spec.validate()?;
        command::check_prerequisites()?;
        let prefix = match &spec.name {
            Some(name) => name.clone(),
            None => name::generate_prefix(),
        };
        let spec = LabSpec {
            name: Some(prefix.clone()),
            ..spec
        };
        interrupt::arm()?;
        interrupt::register(&prefix);
        let lab = Lab::from_spec(spec, true);
        // From here on, an error drops `lab`, which destroys whatever was built (and unregisters it).
        lab.build()
            .with_context(|| format!("bringing up lab {prefix}"))?;
        Ok(lab)
    }

    /// A handle on a lab that another process brought up (found by its prefix). Dropping it does
    /// not tear the lab down; [`Lab::down`] does. Its processes were started elsewhere, so
    /// [`Lab::processes`] is empty, but teardown still kills them (by namespace).
    pub fn attach(prefix: &str) -> Result<Lab> {
        name::validate_prefix(prefix)?;
        let spec = state::load_spec(prefix)?;
        Ok(Lab::from_spec(spec, false))
    }

    fn from_spec(spec: LabSpec, owns_lab: bool) -> Lab {
        let prefix = spec.name.clone().unwrap_or_default();
        Lab {
            topology: Topology::plan(&prefix, &spec),
            spec,
            processes: Mutex::new(Vec::new()),
            process_sequence: AtomicUsize::new(0),
            owns_lab: AtomicBool::new(owns_lab),
            torn_down: AtomicBool::new(false),
        }
    }

    fn build(&self) -> Result<()> {
        let prefix = self.prefix();
        let dir = state::lab_dir(prefix);
        if dir.exists() {
            // Do not let our drop destroy a lab we did not create.
            self.owns_lab.store(false, Ordering::SeqCst);
            anyhow::bail!("lab {prefix} already exists ({} is present)", dir.display());
        }
        std::fs::create_dir_all(dir.join("www"))
            .with_context(|| format!("creating {}", dir.display()))?;
        state::save_spec(prefix, &self.spec)?;
        std::fs::write(dir.join("www").join("index.html"), HTTP_PAGE)?;
        if let Err(error) = wiring::create_namespaces(&self.topology) {
            if error.to_string().contains("already exists") {
                self.owns_lab.store(false, Ordering::SeqCst);
                // Only the directory is ours; remove it, leave the other lab alone.
                let _ignored = std::fs::remove_dir_all(&dir);
            }
            return Err(error);
        }
        wiring::wire_lan(&self.topology)?;
        wiring::wire_uplinks(&self.topology)?;
        for (index, uplink) in self.topology.uplinks.iter().enumerate() {
            if uplink.tun {
                self.start_tun_relay(index)?;
            }
        }
        wiring::prepare_router(&self.topology)?;
        if self.spec.router == RouterKind::Kernel {
            kernel_router::configure(&self.topology)?;
        }
        self.start_servers()?;
        if self.spec.router == RouterKind::Flowpin {
            self.start_flowpin()?;
        }
        Ok(())
    }

    /// Starts (or restarts) the forwarder of a [`RouterKind::Flowpin`] lab and waits until it forwards.
    pub fn start_flowpin(&self) -> Result<LabProcess> {
        let files = flowpin_router::FlowpinRouter::in_dir(&self.dir())?;
        flowpin_router::start(&self.topology, &files, |ns, argv| self.spawn(ns, argv))
    }

    /// The files of this lab's forwarder (configuration, control socket, binary).
    pub fn flowpin_files(&self) -> Result<flowpin_router::FlowpinRouter> {
        flowpin_router::FlowpinRouter::in_dir(&self.dir())
    }

    fn start_servers(&self) -> Result<()> {
        let http_root = state::lab_dir(self.prefix()).join("www");
        let http_root = http_root.to_string_lossy();
        let echo_script = self.dir().join("echo-peer.sh");
        std::fs::write(&echo_script, servers::ECHO_SCRIPT)?;
        std::fs::set_permissions(
            &echo_script,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let echo_script = echo_script.to_string_lossy();
        let (commands, listeners) =
            servers::server_commands(&self.topology, &http_root, &echo_script);
        let inet = &self.topology.inet.ns;
        let mut started = Vec::new();
        for argv in &commands {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            started.push(self.spawn(inet, &argv)?);
        }
        servers::wait_until_listening(inet, &listeners, &started)
    }

    /// The lab's prefix (every namespace is `<prefix>-<role>`).
    pub fn prefix(&self) -> &str {
        &self.topology.prefix
    }

    /// The spec the lab was built from (its `name` is the prefix).
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// Every name and address of the lab.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The router namespace and its LAN side.
    pub fn router(&self) -> &RouterNode {
        &self.topology.router
    }

    /// The LAN hosts, host 1 first.
    pub fn lan_hosts(&self) -> &[LanHost] {
        &self.topology.lan_hosts
    }

    /// The uplinks, uplink 1 first.
    pub fn uplinks(&self) -> &[Uplink] {
        &self.topology.uplinks
    }

    /// The internet namespace and its servers.
    pub fn inet(&self) -> &InetNode {
        &self.topology.inet
    }

    /// The lab's directory (spec, HTTP root, process output).
    pub fn dir(&self) -> PathBuf {
        state::lab_dir(self.prefix())
    }

    /// Runs `argv` to completion inside namespace `ns` and returns its output, whatever its exit
    /// status (see [`Lab::exec_ok`] for the checked variant).
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        command::in_namespace(ns, argv)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running `{}` in {ns}", command::render(argv)))
    }

    /// Runs `argv` inside namespace `ns`; returns stdout, or an error with stderr if it fails.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> Result<String> {
        command::run_in(ns, argv)
    }

    /// Starts `argv` inside namespace `ns`. The lab tracks the process and kills it at teardown;
    /// its output is captured to files (see [`LabProcess`]).
    pub fn spawn(&self, ns: &str, argv: &[&str]) -> Result<LabProcess> {
        let sequence = self.process_sequence.fetch_add(1, Ordering::Relaxed);
        let program = argv
            .first()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .unwrap_or("empty");
        let stem = self.dir().join(format!("{sequence:03}-{ns}-{program}"));
        let process = LabProcess::start(ns, argv, &stem)?;
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(process.clone());
        Ok(process)
    }

    /// The processes started through [`Lab::spawn`] (including the servers) by this value.
    pub fn processes(&self) -> Vec<LabProcess> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Packet counters of every ISP, uplink 1 first.
    pub fn isp_counters(&self) -> Result<Vec<IspCounters>> {
        self.topology
            .uplinks
            .iter()
            .map(|uplink| {
                let json = command::run_in(
                    &uplink.isp_ns,
                    &[
                        "nft",
                        "-j",
                        "list",
                        "counters",
                        "table",
                        "ip",
                        isp_counters::COUNTER_TABLE,
                    ],
                )?;
                isp_counters::parse_counters(&json)
                    .with_context(|| format!("counters of {}", uplink.isp_ns))
            })
            .collect()
    }

    /// Keeps the lab after this value is dropped (the CLI's `up`); [`Lab::attach`] and
    /// [`destroy_lab`] find it again by prefix.
    pub fn persist(self) -> String {
        self.owns_lab.store(false, Ordering::SeqCst);
        interrupt::unregister(self.prefix());
        self.prefix().to_owned()
    }

    /// Destroys the lab: kills every process in its namespaces, reaps the ones this value started,
    /// deletes the namespaces (and with them every veth) and the lab's directory. Idempotent.
    pub fn down(&self) -> Result<()> {
        let result = destroy_lab(self.prefix());
        for process in self.processes() {
            // Already killed by namespace; this reaps it (or kills it if it escaped the namespaces).
            process.kill()?;
        }
        self.torn_down.store(true, Ordering::SeqCst);
        if self.owns_lab.load(Ordering::SeqCst) {
            interrupt::unregister(self.prefix());
        }
        result
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owns_lab.load(Ordering::SeqCst)
            && !self.torn_down.load(Ordering::SeqCst)
            && let Err(error) = self.down()
        {
            eprintln!(
                "flowpin-lab: teardown of {} failed: {error:#}",
                self.prefix()
            );
        }
    }
}
