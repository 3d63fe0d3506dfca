//! One configuration's lab for the benchmark: its routers, sinks and legitimate traffic, and one
//! trial through it.
//!
//! Invariants: the generator runs pinned to CPU 0 in LAN host 1 and the router's work on CPU 1 in
//! every configuration; sinks count only frames to [`SINK_DESTINATION`], where they leave the router
//! (the router's `lan0` for G); a trial's sink, legitimate-traffic and CPU readings cover the same
//! window; new-flow trials continue one flow sequence per lab, so no flow repeats.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind, Topology};

use crate::core_split::{self, GENERATOR_CPU, ROUTER_CPU};
use crate::cpu_time;
use crate::generator::{GenProtocol, GeneratorReport, GeneratorTool};
use crate::legit_traffic::{ESTABLISHED_PORT, LegitReading};
use crate::report::FloodMeasurement;
use crate::router_config::Config;
use crate::router_tables;
use crate::service::Service;
use crate::stats::histogram_quantile;
use crate::workload::Workload;
use crate::xdp_programs::SinkReading;

/// Where generated traffic goes (TEST-NET-3, routed by every router; no server has it).
pub const SINK_DESTINATION: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);
/// First generated source address (LAN hosts 100..=199 do not exist; the router does not care).
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// The name of flowpin's (only) datapath worker thread in the lab.
const FLOWPIN_WORKER_THREAD: &str = "flowpin-w0";
/// The lab's flowpin flow capacity (the table of every workload that does not size its own).
pub const LAB_FLOW_CAPACITY: u32 = 262_144;
/// Datagrams per second of the established flow beside the SYN flood (a moderate rate).
pub const ESTABLISHED_RATE_PPS: u32 = 2000;

/// One configuration's lab and its sinks.
pub(crate) struct Rig {
    config: Config,
    /// The flow the next new-flow trial starts with: every trial continues the sequence, so "new flow
    /// per packet" stays new across the trials of a run (and across runs) on one lab.
    next_new_flow: u32,
    lab: Lab,
    sinks: Vec<Service>,
    _redirect: Option<Service>,
    /// O's forwarder (restarted when a workload sizes its table).
    flowpin: Option<LabProcess>,
    /// O's flow capacity now.
    flow_capacity: u32,
    /// The established flow and fresh connections from LAN host 2 (SYN-flood workload).
    legit: Option<Service>,
    /// The established flow's reflector in the internet namespace.
    reflector: Option<Service>,
}

fn run_in(ns: &str, argv: &[&str]) -> Result<String> {
    flowpin_lab::command::run_in(ns, argv)
}

/// Which router the lab of `config` starts.
fn router_kind(config: Config) -> RouterKind {
    match config {
        Config::KernelNat => RouterKind::Kernel,
        Config::Flowpin => RouterKind::Flowpin,
        Config::GeneratorOnly | Config::XdpRedirect | Config::KernelForwarding => RouterKind::None,
    }
}

/// What does the router namespace of `config` need beside the lab's router? K0: the ECMP default
/// route with L4 hashing; X: the redirect program (returned: it runs while the rig lives).
fn prepare_router_namespace(config: Config, t: &Topology) -> Result<Option<Service>> {
    let rns = &t.router.ns;
    match config {
        Config::KernelForwarding => {
            let route = flowpin_lab::kernel_router::default_route_args(t);
            let mut argv = vec!["ip", "route", "replace"];
            argv.extend(route.iter().map(String::as_str));
            run_in(rns, &argv)?;
            run_in(
                rns,
                &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
            )?;
            Ok(None)
        }
        Config::XdpRedirect => {
            let u = &t.uplinks[0];
            Ok(Some(Service::start(
                rns,
                &[
                    "redirect".into(),
                    "--from".into(),
                    t.router.lan_iface.clone(),
                    "--to".into(),
                    u.router_iface.clone(),
                    "--destination-mac".into(),
                    u.gateway_mac.to_string(),
                    "--source-mac".into(),
                    u.router_mac.to_string(),
                ],
            )?))
        }
        _ => Ok(None),
    }
}

/// Where are the sinks of `config`? On the router's `lan0` for G, else on every ISP's router-facing
/// interface.
fn start_sinks(config: Config, t: &Topology) -> Result<Vec<Service>> {
    let sink_at = |ns: &str, iface: &str| {
        Service::start(
            ns,
            &[
                "sink".into(),
                "--interface".into(),
                iface.to_owned(),
                "--destination".into(),
                SINK_DESTINATION.to_string(),
                "--watch-port".into(),
                ESTABLISHED_PORT.to_string(),
            ],
        )
    };
    if config == Config::GeneratorOnly {
        Ok(vec![sink_at(&t.router.ns, &t.router.lan_iface)?])
    } else {
        t.uplinks
            .iter()
            .map(|u| sink_at(&u.isp_ns, &u.isp_router_iface))
            .collect()
    }
}

impl Rig {
    /// Builds `config`'s lab: its router (or none), what the router namespace needs, the sinks and
    /// the core split.
    pub(crate) fn up(config: Config) -> Result<Rig> {
        let lab = Lab::up(LabSpec {
            lan_hosts: 2,
            router: router_kind(config),
            ..LabSpec::default()
        })
        .with_context(|| format!("lab for {config}"))?;
        let redirect = prepare_router_namespace(config, lab.topology())?;
        let sinks = start_sinks(config, lab.topology())?;
        let flowpin = if config == Config::Flowpin {
            Some(router_tables::lab_flowpin(&lab)?)
        } else {
            None
        };
        let rig = Rig {
            config,
            next_new_flow: 0,
            lab,
            sinks,
            _redirect: redirect,
            flowpin,
            flow_capacity: LAB_FLOW_CAPACITY,
            legit: None,
            reflector: None,
        };
        rig.split_cores()?;
        Ok(rig)
    }

    /// The configuration this lab runs.
    pub(crate) fn config(&self) -> Config {
        self.config
    }

    /// O's flow capacity now.
    pub(crate) fn flow_capacity(&self) -> u32 {
        self.flow_capacity
    }

    /// The same core split for every configuration (see `core_split`): generator on CPU 0, the
    /// router's work on CPU 1. XDP programs are attached by now, so their ports have NAPI.
    fn split_cores(&self) -> Result<()> {
        let config = self.config;
        let rns = &self.lab.router().ns;
        let lan = &self.lab.router().lan_iface;
        let split = match config {
            Config::KernelForwarding | Config::KernelNat => {
                core_split::steer_rps(rns, lan, ROUTER_CPU)?;
                format!("RPS on {lan} → CPU {ROUTER_CPU}")
            }
            Config::GeneratorOnly | Config::XdpRedirect | Config::Flowpin => {
                let napi = core_split::thread_napi(rns, lan, ROUTER_CPU)?;
                let mut text =
                    format!("NAPI threads {napi:?} of {lan} → CPU {ROUTER_CPU} (SCHED_FIFO)");
                if config == Config::Flowpin {
                    let workers = core_split::pin_threads(rns, FLOWPIN_WORKER_THREAD, ROUTER_CPU)?;
                    text += &format!(", {workers} × {FLOWPIN_WORKER_THREAD} → CPU {ROUTER_CPU}");
                }
                text
            }
        };
        eprintln!(
            "[flowpin-bench]   core split of {config}: {split}; generator on CPU {GENERATOR_CPU}"
        );
        Ok(())
    }

    /// Empties this router's connection table, sized `capacity` flows (flowpin restarts with that
    /// capacity; for K1 the machine-wide `nf_conntrack_max` is the caller's [`ConntrackMax`]).
    pub(crate) fn empty_table(&mut self, capacity: u32) -> Result<()> {
        match self.config {
            Config::Flowpin => {
                let running = self.flowpin.take().context("O has no forwarder")?;
                self.flowpin = Some(router_tables::restart_flowpin(
                    &self.lab, &running, capacity,
                )?);
                self.flow_capacity = capacity;
                self.split_cores()
            }
            Config::KernelNat => router_tables::flush_conntrack(&self.lab.router().ns),
            Config::GeneratorOnly | Config::XdpRedirect | Config::KernelForwarding => Ok(()),
        }
    }

    /// Entries in this router's connection table and its capacity (`None`: it has none).
    pub(crate) fn table_use(&self) -> Result<Option<(u64, u64)>> {
        match self.config {
            Config::Flowpin => router_tables::flowpin_table(&self.lab).map(Some),
            Config::KernelNat => Ok(Some((
                router_tables::conntrack_count(&self.lab.router().ns)?,
                router_tables::read_conntrack_max()?,
            ))),
            Config::GeneratorOnly | Config::XdpRedirect | Config::KernelForwarding => Ok(None),
        }
    }

    /// Starts the established flow (from LAN host 2 to a reflector in the internet namespace) and the
    /// fresh connections; returns once the flow has been answered for the warm-up time.
    pub(crate) fn start_legit(&mut self) -> Result<()> {
        let t = self.lab.topology().clone();
        let server = t.inet.server_addrs[0];
        self.legit = None;
        if self.reflector.is_none() {
            self.reflector = Some(Service::start(
                &t.inet.ns,
                &[
                    "reflect".into(),
                    "--address".into(),
                    format!("{server}:{ESTABLISHED_PORT}"),
                ],
            )?);
        }
        self.legit = Some(Service::start(
            &t.lan_hosts[1].ns,
            &[
                "legit".into(),
                "--established".into(),
                format!("{server}:{ESTABLISHED_PORT}"),
                "--rate".into(),
                ESTABLISHED_RATE_PPS.to_string(),
                "--probe".into(),
                format!("{server}:{}", t.inet.echo_port),
            ],
        )?);
        Ok(())
    }

    /// Stops the established flow and the fresh connections (the reflector stays for the next start).
    pub(crate) fn stop_legit(&mut self) {
        self.legit = None;
    }

    /// One SYN-flood trial: the flood unthrottled for `seconds` beside the legitimate traffic.
    pub(crate) fn flood_trial(
        &mut self,
        tool: GeneratorTool,
        workload: &Workload,
        seconds: f64,
        run: usize,
    ) -> Result<FloodMeasurement> {
        anyhow::ensure!(self.legit.is_some(), "no legit traffic");
        let trial = self.trial(tool, workload, None, seconds, false)?;
        let legit = trial.legit.unwrap_or_default();
        let table = self.table_use()?;
        Ok(FloodMeasurement {
            config: self.config,
            run,
            flood_offered_pps: trial.offered_pps,
            flood_forwarded_pps: trial.forwarded_pps,
            established_sent: legit.established_sent,
            established_delivered: trial.watched,
            established_replies: legit.established_replies,
            probes_tried: legit.probes_tried,
            probes_connected: legit.probes_connected,
            table_entries: table.map(|(used, _)| used),
            table_capacity: table.map(|(_, capacity)| capacity),
        })
    }
}

impl Rig {
    fn reading(&mut self) -> Result<SinkReading> {
        let mut total = SinkReading::default();
        for sink in &mut self.sinks {
            total.add(&sink.read()?);
        }
        Ok(total)
    }

    fn legit_reading(&mut self) -> Result<Option<LegitReading>> {
        self.legit.as_mut().map(Service::read).transpose()
    }

    /// One trial: `rate` (None = as fast as possible) for `seconds`.
    pub(crate) fn trial(
        &mut self,
        tool: GeneratorTool,
        workload: &Workload,
        rate: Option<u64>,
        seconds: f64,
        timestamps: bool,
    ) -> Result<Trial> {
        let before = self.reading()?;
        // The legitimate traffic (if running) is read right after the sinks, so both windows match.
        let legit_before = self.legit_reading()?;
        let cpu_before = cpu_time::read()?;
        let generated = self.generate(tool, workload, rate, seconds, timestamps)?;
        if workload.new_flow_per_packet() {
            self.next_new_flow = self.next_new_flow.wrapping_add(generated.sent as u32);
        }
        // Frames still in flight through the router.
        std::thread::sleep(Duration::from_millis(100));
        let cpu_after = cpu_time::read()?;
        let delta = self.reading()?.since(&before);
        let legit = match (self.legit_reading()?, legit_before) {
            (Some(after), Some(before)) => Some(after.since(&before)),
            _ => None,
        };
        Ok(Trial::measured(
            &generated,
            &delta,
            cpu_time::busy_seconds(cpu_before, cpu_after),
            legit,
        ))
    }

    /// Runs the generator in LAN host 1, pinned to the generator's CPU, and returns its report.
    fn generate(
        &self,
        tool: GeneratorTool,
        workload: &Workload,
        rate: Option<u64>,
        seconds: f64,
        timestamps: bool,
    ) -> Result<GeneratorReport> {
        let t = self.lab.topology();
        let host = &t.lan_hosts[0];
        let exe = std::env::current_exe()?;
        let generator_cpu = GENERATOR_CPU.to_string();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &host.ns, "taskset", "-c", &generator_cpu])
            .arg(&exe)
            .args([
                "gen",
                "--tool",
                tool.name(),
                "--interface",
                &host.iface,
                "--frame-len",
                &workload.frame_len.to_string(),
                "--flows",
                &workload.flows.max(1).to_string(),
                "--duration",
                &seconds.to_string(),
                "--first-source",
                &FIRST_SOURCE.to_string(),
                "--destination",
                &SINK_DESTINATION.to_string(),
                "--source-mac",
                &host.mac.to_string(),
                "--destination-mac",
                &t.router.lan_mac.to_string(),
                "--protocol",
                match workload.protocol {
                    GenProtocol::Udp => "udp",
                    GenProtocol::TcpSyn => "tcp-syn",
                },
            ]);
        if let Some(rate) = rate {
            command.args(["--rate", &rate.to_string()]);
        }
        if workload.new_flow_per_packet() {
            command.args([
                "--new-flow-per-packet",
                "--first-flow",
                &self.next_new_flow.to_string(),
            ]);
        }
        if timestamps {
            command.arg("--timestamps");
        }
        let output = command.output().context("running the generator")?;
        if !output.status.success() {
            bail!(
                "generator failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_slice(&output.stdout).context("generator report")
    }
}

/// What one trial measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trial {
    pub offered_pps: f64,
    pub forwarded_pps: f64,
    pub loss: f64,
    pub cpu_s_per_mpkt: f64,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    /// Frames of the watched (established) flow the sinks counted.
    pub watched: u64,
    /// What the legitimate traffic saw over the same window (when it runs).
    pub legit: Option<LegitReading>,
}

impl Trial {
    /// The figures of a trial in which the generator reported `generated`, the sinks counted `delta`
    /// and all cores were busy `busy_seconds`.
    fn measured(
        generated: &GeneratorReport,
        delta: &SinkReading,
        busy_seconds: f64,
        legit: Option<LegitReading>,
    ) -> Trial {
        Trial {
            offered_pps: generated.pps,
            forwarded_pps: delta.packets as f64 / generated.seconds.max(1e-9),
            loss: if generated.sent == 0 {
                1.0
            } else {
                1.0 - delta.packets.min(generated.sent) as f64 / generated.sent as f64
            },
            cpu_s_per_mpkt: if delta.packets == 0 {
                f64::NAN
            } else {
                busy_seconds / (delta.packets as f64 / 1e6)
            },
            latency_p50_us: histogram_quantile(&delta.latency_us, 0.5).map(|b| b as f64),
            latency_p99_us: histogram_quantile(&delta.latency_us, 0.99).map(|b| b as f64),
            watched: delta.watched,
            legit,
        }
    }
}
