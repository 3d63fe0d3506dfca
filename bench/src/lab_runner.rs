//! The lab runner: one topology per configuration (built once), one generator, alternating
//! configurations inside every round (A B C D A B C D ...) to cancel drift.
//!
//! Configurations (issue 7 §2): G = generator → sink on the router's `lan0` (the generator's ceiling);
//! X = XDP redirect `lan0` → `wan1` (the plumbing ceiling); K0 = kernel ECMP forwarding; K1 = kernel
//! ECMP + conntrack + nft masquerade (the lab's kernel router), RPS on `lan0` so it may use the second
//! core; O = flowpin (`flowpin run` in the router namespace, one worker, copy-mode AF_XDP).
//!
//! Measurement: the generator runs pinned to CPU 0 in LAN host 1; XDP sinks on every ISP's router-
//! facing interface count (and drop) the frames addressed to [`SINK_DESTINATION`], so forwarding is
//! measured where it leaves the router. Per trial: offered = generator completions, forwarded = sink
//! delta, loss = 1 − forwarded / offered, CPU = busy seconds of all cores (/proc/stat) per million
//! forwarded packets. The ≤ 0.5 % loss rate is found by [`RateSearch`] starting at the generator's
//! ceiling. Latency is measured at a fixed moderate rate with timestamped frames.
//!
//! Connection tables (see [`router_tables`]): the new-flow workload sizes flowpin's flow capacity and
//! K1's `nf_conntrack_max` alike at [`NEW_FLOW_TABLE`] and empties both before every run, so neither
//! fills during a run (the table use at the end of each run is recorded): the figure is the flow
//! setup rate. The SYN-flood workload sizes both at [`SYN_FLOOD_TABLE`] so the flood fills them, and
//! measures what survives beside it (O and K1 only): an established flow's delivered fraction (the
//! sinks count its destination port apart), the flood's forwarded rate, and whether fresh TCP
//! connections still get through (see [`crate::legit_traffic`]).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind};
use serde::{Deserialize, Serialize};

use crate::core_split::{self, GENERATOR_CPU, ROUTER_CPU};
use crate::cpu_time;
use crate::generator::{GenProtocol, GeneratorReport, GeneratorTool};
use crate::legit_traffic::{ESTABLISHED_PORT, LegitReading};
use crate::rate_search::RateSearch;
use crate::report::{self, FloodMeasurement, Measurement, Report};
use crate::router_tables::{self, ConntrackMax};
use crate::service::Service;
use crate::stats::histogram_quantile;

/// Where generated traffic goes (TEST-NET-3, routed by every router; no server has it).
pub const SINK_DESTINATION: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);
/// First generated source address (LAN hosts 100..=199 do not exist; the router does not care).
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// The name of flowpin's (only) datapath worker thread in the lab.
const FLOWPIN_WORKER_THREAD: &str = "flowpin-w0";
/// Loss allowed at the reported rate.
pub const LOSS_LIMIT: f64 = 0.005;
/// The lab's flowpin flow capacity (the table of every workload that does not size its own).
pub const LAB_FLOW_CAPACITY: u32 = 262_144;
/// Both routers' table size in the new-flow workload: more than a run of it creates (at most 7 trials
/// of ≤ 1.5 s at the generator's ceiling, < 0.5 Mpps here), so neither table fills.
pub const NEW_FLOW_TABLE: u32 = 4 << 20;
/// Both routers' table size in the SYN-flood workload: small, so the flood fills it at once.
pub const SYN_FLOOD_TABLE: u32 = 8192;
/// Datagrams per second of the established flow beside the SYN flood (a moderate rate).
pub const ESTABLISHED_RATE_PPS: u32 = 2000;

/// Command-line options of `flowpin-bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// CI smoke mode: one workload, one run, short trials (< 3 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Runs per configuration and workload (full mode).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds per trial.
    #[arg(long)]
    pub trial_seconds: Option<f64>,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub report: PathBuf,
    /// JSON results to write.
    #[arg(long, default_value = "docs/benchmarks.json")]
    pub json: PathBuf,
    /// The generator of every throughput trial (latency trials need send timestamps, which only the
    /// AF_XDP generator writes).
    #[arg(long, value_enum, default_value_t = GeneratorTool::Afxdp)]
    pub generator: GeneratorTool,
    /// Configurations to run (default: all).
    #[arg(long, value_delimiter = ',')]
    pub configs: Vec<Config>,
}

/// A router configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Config {
    /// Generator → sink, no router.
    G,
    /// XDP redirect only.
    X,
    /// Kernel plain ECMP forwarding.
    K0,
    /// Kernel ECMP + conntrack + masquerade, RPS.
    K1,
    /// flowpin.
    O,
}

impl Config {
    /// All, in alternation order.
    pub const ALL: [Config; 5] = [Config::G, Config::X, Config::K0, Config::K1, Config::O];

    /// Short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Config::G => "generator → XDP sink on lan0 (no router): the generator's ceiling",
            Config::X => "XDP redirect lan0 → wan1 only: the plumbing ceiling",
            Config::K0 => "kernel: ip_forward + ECMP multipath (L4 hash)",
            Config::K1 => "kernel: ECMP + conntrack + nft masquerade per uplink",
            Config::O => {
                "flowpin: XDP → AF_XDP (copy mode), 1 worker sleeping in poll(), SNAT per uplink"
            }
        }
    }

    /// Where this configuration's work runs (the generator always runs on CPU 0).
    pub fn core_split(self) -> &'static str {
        match self {
            Config::G => "sink's NAPI thread (threaded NAPI on lan0) pinned to CPU 1, SCHED_FIFO",
            Config::X => {
                "redirect's NAPI thread (threaded NAPI on lan0) pinned to CPU 1, SCHED_FIFO"
            }
            Config::K0 | Config::K1 => {
                "RPS on lan0 → CPU 1 (softirq: IP stack, forwarding, transmit into the uplink veth)"
            }
            Config::O => {
                "lan0's NAPI thread (XDP + copy into the AF_XDP ring) and the flowpin worker both \
                 pinned to CPU 1, SCHED_FIFO"
            }
        }
    }
}

/// What a workload measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// Forwarding of `flows` established flows (rate search for ≤ 0.5 % loss, latency).
    Established,
    /// A new flow on every packet: the flow setup rate (rate search), tables sized not to fill.
    NewFlows,
    /// An unthrottled flood of new flows against small tables while an established flow and fresh
    /// connections run beside it (O and K1 only).
    SynFlood,
}

/// A traffic pattern.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Name in reports.
    pub name: &'static str,
    /// Frame length without FCS.
    pub frame_len: usize,
    /// Established flows (ignored for new-flow workloads).
    pub flows: u32,
    /// What it measures.
    pub kind: WorkloadKind,
    /// UDP or TCP SYN.
    pub protocol: GenProtocol,
    /// Flows in flowpin's table and in K1's conntrack (`nf_conntrack_max`); `None`: the lab's flowpin
    /// capacity and the machine's conntrack limit.
    pub table: Option<u32>,
}

impl Workload {
    /// Whether every packet starts a new flow.
    pub fn new_flow_per_packet(&self) -> bool {
        self.kind != WorkloadKind::Established
    }
}

/// The workloads of the full run (the SYN flood last: it leaves both tables full).
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "64B 1k flows",
        frame_len: 60,
        flows: 1_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "64B 100k flows",
        frame_len: 60,
        flows: 100_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "1518B 1k flows",
        frame_len: 1514,
        flows: 1_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "64B new flow per packet",
        frame_len: 60,
        flows: 0,
        kind: WorkloadKind::NewFlows,
        protocol: GenProtocol::Udp,
        table: Some(NEW_FLOW_TABLE),
    },
    SYN_FLOOD,
];

/// The SYN flood beside an established flow.
pub const SYN_FLOOD: Workload = Workload {
    name: "64B TCP SYN flood beside an established flow",
    frame_len: 60,
    flows: 0,
    kind: WorkloadKind::SynFlood,
    protocol: GenProtocol::TcpSyn,
    table: Some(SYN_FLOOD_TABLE),
};

/// One configuration's lab and its sinks.
struct Rig {
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

impl Rig {
    fn up(config: Config) -> Result<Rig> {
        let router = match config {
            Config::K1 => RouterKind::Kernel,
            Config::O => RouterKind::Flowpin,
            Config::G | Config::X | Config::K0 => RouterKind::None,
        };
        let lab = Lab::up(LabSpec {
            lan_hosts: 2,
            router,
            ..LabSpec::default()
        })
        .with_context(|| format!("lab for {config:?}"))?;
        let t = lab.topology().clone();
        let rns = &t.router.ns;
        let mut redirect = None;
        match config {
            Config::K0 => {
                let route = flowpin_lab::kernel_router::default_route_args(&t);
                let mut argv = vec!["ip", "route", "replace"];
                argv.extend(route.iter().map(String::as_str));
                run_in(rns, &argv)?;
                run_in(
                    rns,
                    &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
                )?;
            }
            Config::X => {
                let u = &t.uplinks[0];
                redirect = Some(Service::start(
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
                )?);
            }
            _ => {}
        }
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
        let sinks = if config == Config::G {
            vec![sink_at(rns, &t.router.lan_iface)?]
        } else {
            t.uplinks
                .iter()
                .map(|u| sink_at(&u.isp_ns, &u.isp_router_iface))
                .collect::<Result<_>>()?
        };
        let flowpin = if config == Config::O {
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

    /// The same core split for every configuration (see `core_split`): generator on CPU 0, the
    /// router's work on CPU 1. XDP programs are attached by now, so their ports have NAPI.
    fn split_cores(&self) -> Result<()> {
        let config = self.config;
        let rns = &self.lab.router().ns;
        let lan = &self.lab.router().lan_iface;
        let split = match config {
            Config::K0 | Config::K1 => {
                core_split::steer_rps(rns, lan, ROUTER_CPU)?;
                format!("RPS on {lan} → CPU {ROUTER_CPU}")
            }
            Config::G | Config::X | Config::O => {
                let napi = core_split::thread_napi(rns, lan, ROUTER_CPU)?;
                let mut text =
                    format!("NAPI threads {napi:?} of {lan} → CPU {ROUTER_CPU} (SCHED_FIFO)");
                if config == Config::O {
                    let workers = core_split::pin_threads(rns, FLOWPIN_WORKER_THREAD, ROUTER_CPU)?;
                    text += &format!(", {workers} × {FLOWPIN_WORKER_THREAD} → CPU {ROUTER_CPU}");
                }
                text
            }
        };
        eprintln!(
            "[flowpin-bench]   core split of {config:?}: {split}; generator on CPU {GENERATOR_CPU}"
        );
        Ok(())
    }

    /// Empties this router's connection table, sized `capacity` flows (flowpin restarts with that
    /// capacity; for K1 the machine-wide `nf_conntrack_max` is the caller's [`ConntrackMax`]).
    fn empty_table(&mut self, capacity: u32) -> Result<()> {
        match self.config {
            Config::O => {
                let running = self.flowpin.take().context("O has no forwarder")?;
                self.flowpin = Some(router_tables::restart_flowpin(
                    &self.lab, &running, capacity,
                )?);
                self.flow_capacity = capacity;
                self.split_cores()
            }
            Config::K1 => router_tables::flush_conntrack(&self.lab.router().ns),
            Config::G | Config::X | Config::K0 => Ok(()),
        }
    }

    /// Entries in this router's connection table and its capacity (`None`: it has none).
    fn table_use(&self) -> Result<Option<(u64, u64)>> {
        match self.config {
            Config::O => router_tables::flowpin_table(&self.lab).map(Some),
            Config::K1 => Ok(Some((
                router_tables::conntrack_count(&self.lab.router().ns)?,
                router_tables::read_conntrack_max()?,
            ))),
            Config::G | Config::X | Config::K0 => Ok(None),
        }
    }

    /// Starts the established flow (from LAN host 2 to a reflector in the internet namespace) and the
    /// fresh connections; returns once the flow has been answered for the warm-up time.
    fn start_legit(&mut self) -> Result<()> {
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

    /// One SYN-flood trial: the flood unthrottled for `seconds` beside the legitimate traffic.
    fn flood_trial(
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
    fn reading(&mut self) -> Result<crate::xdp_programs::SinkReading> {
        let mut total = crate::xdp_programs::SinkReading::default();
        for sink in &mut self.sinks {
            total.add(&sink.read()?);
        }
        Ok(total)
    }

    fn legit_reading(&mut self) -> Result<Option<LegitReading>> {
        self.legit.as_mut().map(Service::read).transpose()
    }

    /// One trial: `rate` (None = as fast as possible) for `seconds`.
    fn trial(
        &mut self,
        tool: GeneratorTool,
        workload: &Workload,
        rate: Option<u64>,
        seconds: f64,
        timestamps: bool,
    ) -> Result<Trial> {
        let t = self.lab.topology().clone();
        let host = &t.lan_hosts[0];
        let exe = std::env::current_exe()?;
        let before = self.reading()?;
        // The legitimate traffic (if running) is read right after the sinks, so both windows match.
        let legit_before = self.legit_reading()?;
        let cpu_before = cpu_time::read()?;
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
        let generated: GeneratorReport =
            serde_json::from_slice(&output.stdout).context("generator report")?;
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
        Ok(Trial {
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
                cpu_time::busy_seconds(cpu_before, cpu_after) / (delta.packets as f64 / 1e6)
            },
            latency_p50_us: histogram_quantile(&delta.latency_us, 0.5).map(|b| b as f64),
            latency_p99_us: histogram_quantile(&delta.latency_us, 0.99).map(|b| b as f64),
            watched: delta.watched,
            legit,
        })
    }
}

/// What one trial measured.
#[derive(Debug, Clone, Copy)]
struct Trial {
    offered_pps: f64,
    forwarded_pps: f64,
    loss: f64,
    cpu_s_per_mpkt: f64,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    /// Frames of the watched (established) flow the sinks counted.
    watched: u64,
    /// What the legitimate traffic saw over the same window (when it runs).
    legit: Option<LegitReading>,
}

/// Runs the benchmark and writes the report.
pub fn run(options: &RunOptions) -> Result<()> {
    anyhow::ensure!(
        flowpin_lab::command::running_as_root()?,
        "flowpin-bench run needs root (network namespaces, XDP)"
    );
    core_split::available()?;
    if options.generator == GeneratorTool::Trafgen {
        crate::trafgen::available()?;
    }
    let pktgen = crate::kernel_pktgen::availability(std::path::Path::new("/proc/net/pktgen"));
    let configs: Vec<Config> = if options.configs.is_empty() {
        Config::ALL.to_vec()
    } else {
        options.configs.clone()
    };
    const QUICK_WORKLOADS: [Workload; 2] = [WORKLOADS[0], SYN_FLOOD];
    let (workloads, runs, seconds, steps): (&[Workload], usize, f64, usize) = if options.quick {
        (&QUICK_WORKLOADS, 1, options.trial_seconds.unwrap_or(0.5), 3)
    } else {
        (
            &WORKLOADS[..],
            options.runs.max(3),
            options.trial_seconds.unwrap_or(1.0),
            7,
        )
    };
    // A flood trial is longer than a rate-search trial, so the flood dominates its window.
    let flood_seconds = seconds * 3.0;
    let progress = |text: &str| eprintln!("[flowpin-bench] {text}");
    progress(&match &pktgen {
        Ok(()) => format!(
            "kernel pktgen present (not driven by this runner); generator: {}",
            options.generator.name()
        ),
        Err(why) => format!(
            "kernel pktgen unavailable: {why}; generator: {}",
            options.generator.name()
        ),
    });
    let mut rigs = Vec::new();
    for &config in &configs {
        progress(&format!(
            "building the lab for {config:?}: {}",
            config.describe()
        ));
        rigs.push(Rig::up(config)?);
    }
    let conntrack_default = router_tables::read_conntrack_max()?;
    let machine = report::machine();
    let mut measurements = Vec::new();
    let mut floods = Vec::new();
    for workload in workloads {
        // K1's table limit is machine-wide: set only while this workload runs, restored on drop.
        let _conntrack_max = match workload.table {
            Some(entries) if configs.contains(&Config::K1) => {
                progress(&format!(
                    "{}: nf_conntrack_max = {entries} (machine-wide, was {conntrack_default}) and \
                     flowpin's flow_capacity = {entries}",
                    workload.name
                ));
                Some(ConntrackMax::set(entries.into())?)
            }
            _ => None,
        };
        let capacity = workload.table.unwrap_or(LAB_FLOW_CAPACITY);
        if workload.kind == WorkloadKind::SynFlood {
            let mut flood_rigs: Vec<&mut Rig> = rigs
                .iter_mut()
                .filter(|r| matches!(r.config, Config::O | Config::K1))
                .collect();
            for rig in flood_rigs.iter_mut() {
                progress(&format!(
                    "{}: {:?}: empty table of {capacity}, established flow warming up",
                    workload.name, rig.config
                ));
                rig.empty_table(capacity)?;
                rig.start_legit()?;
            }
            for run in 0..runs {
                let count = flood_rigs.len();
                for i in 0..count {
                    let rig = &mut flood_rigs[(i + run) % count];
                    progress(&format!(
                        "{}: run {}/{runs}: {:?}",
                        workload.name,
                        run + 1,
                        rig.config
                    ));
                    let m = rig.flood_trial(options.generator, workload, flood_seconds, run)?;
                    progress(&format!(
                        "  flood offered {:.0} pps, forwarded {:.0} pps; established flow \
                         {}/{} delivered, {} answered; fresh connections {}/{}; table {:?}/{:?}",
                        m.flood_offered_pps,
                        m.flood_forwarded_pps,
                        m.established_delivered,
                        m.established_sent,
                        m.established_replies,
                        m.probes_connected,
                        m.probes_tried,
                        m.table_entries,
                        m.table_capacity
                    ));
                    floods.push(m);
                }
            }
            for rig in flood_rigs {
                rig.legit = None;
            }
            continue;
        }
        for run in 0..runs {
            // Alternate the configurations within each run, rotating the start to cancel order effects.
            let count = rigs.len();
            for i in 0..count {
                let rig = &mut rigs[(i + run) % count];
                let config = rig.config;
                progress(&format!(
                    "{}: run {}/{runs}: {config:?}",
                    workload.name,
                    run + 1
                ));
                // New-flow runs start from empty tables of the workload's size; other workloads
                // run on the lab's table.
                if workload.kind == WorkloadKind::NewFlows
                    || (config == Config::O && rig.flow_capacity != capacity)
                {
                    rig.empty_table(capacity)?;
                }
                let max = rig.trial(options.generator, workload, None, seconds, false)?;
                let ceiling = max.offered_pps as u64;
                let mut search = RateSearch::new(ceiling, LOSS_LIMIT, 0.02, steps);
                let mut at_limit = None;
                while let Some(rate) = search.next_rate() {
                    let trial = if rate == ceiling {
                        max
                    } else {
                        rig.trial(options.generator, workload, Some(rate), seconds, false)?
                    };
                    search.record(rate, trial.loss);
                    if trial.loss <= LOSS_LIMIT {
                        at_limit = Some(trial);
                    }
                }
                let latency = if workload.protocol == GenProtocol::Udp
                    && workload.kind == WorkloadKind::Established
                {
                    Some(rig.trial(
                        GeneratorTool::Afxdp,
                        workload,
                        Some(report::LATENCY_LOAD_PPS),
                        seconds,
                        true,
                    )?)
                } else {
                    None
                };
                let table = if workload.kind == WorkloadKind::NewFlows {
                    rig.table_use()?
                } else {
                    None
                };
                let m = Measurement {
                    workload: workload.name.to_owned(),
                    config,
                    run,
                    generator_pps: max.offered_pps,
                    max_forwarded_pps: max.forwarded_pps,
                    max_loss: max.loss,
                    forwarded_pps_at_limit: at_limit.map_or(0.0, |t| t.forwarded_pps),
                    cpu_s_per_mpkt: at_limit.map_or(max.cpu_s_per_mpkt, |t| t.cpu_s_per_mpkt),
                    latency_p50_us: latency.and_then(|t| t.latency_p50_us),
                    latency_p99_us: latency.and_then(|t| t.latency_p99_us),
                    table_entries: table.map(|(used, _)| used),
                    table_capacity: table.map(|(_, capacity)| capacity),
                };
                progress(&format!(
                    "  offered {:.0} pps, forwarded at max {:.0} pps (loss {:.2} %), at <= 0.5 % loss {:.0} pps{}",
                    m.generator_pps,
                    m.max_forwarded_pps,
                    m.max_loss * 100.0,
                    m.forwarded_pps_at_limit,
                    table.map_or(String::new(), |(used, capacity)| format!(
                        "; table {used}/{capacity} at the end of the run"
                    ))
                ));
                measurements.push(m);
            }
        }
    }
    drop(rigs);
    let machine = format!("{machine}, at the end {}", report::load_average());
    let report = Report::new(measurements, machine, options.quick, pktgen.err())
        .with_generator(options.generator)
        .with_floods(floods, flood_seconds);
    report::write(&report, &options.report, &options.json)?;
    progress(&format!(
        "wrote {} and {}",
        options.report.display(),
        options.json.display()
    ));
    Ok(())
}
