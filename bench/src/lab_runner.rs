//! The lab runner: one topology per configuration (built once, [`crate::lab_rig`]), one generator,
//! alternating configurations inside every round (A B C D A B C D ...) to cancel drift.
//!
//! Configurations ([`Config`]): G = generator → sink on the router's `lan0` (the generator's ceiling);
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

use std::path::PathBuf;

use anyhow::Result;

use crate::core_split;
use crate::generator::{GenProtocol, GeneratorTool};
#[cfg(doc)]
use crate::lab_rig::SINK_DESTINATION;
use crate::lab_rig::{LAB_FLOW_CAPACITY, Rig, Trial};
use crate::rate_search::RateSearch;
use crate::report::{self, FloodMeasurement, Measurement, Report};
use crate::router_config::Config;
use crate::router_tables::{self, ConntrackMax};
#[cfg(doc)]
use crate::workload::{NEW_FLOW_TABLE, SYN_FLOOD_TABLE};
use crate::workload::{SYN_FLOOD, WORKLOADS, Workload, WorkloadKind};

/// Loss allowed at the reported rate.
pub const LOSS_LIMIT: f64 = 0.005;

/// The workloads of the quick (CI smoke) run.
static QUICK_WORKLOADS: [Workload; 2] = [WORKLOADS[0], SYN_FLOOD];

/// The workloads of `--syn-flood-only`.
static SYN_FLOOD_ONLY: [Workload; 1] = [SYN_FLOOD];

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
    /// Configurations to run (default: all), by name or by their report label in lower case (g, x,
    /// k0, k1, o).
    #[arg(long, value_delimiter = ',')]
    pub configs: Vec<Config>,
    /// Runs only the SYN-flood workload (with `--configs k1,o`: the flood row alone, both routers
    /// in the same run); `--runs` and `--trial-seconds` apply as in a full run.
    #[arg(long, conflicts_with = "quick")]
    pub syn_flood_only: bool,
}

/// What one invocation runs: configurations, workloads, runs and trial lengths.
#[derive(Debug)]
struct Plan {
    configs: Vec<Config>,
    workloads: &'static [Workload],
    runs: usize,
    /// Seconds per rate-search or latency trial.
    seconds: f64,
    /// Seconds per SYN-flood trial: longer, so the flood dominates its window.
    flood_seconds: f64,
    /// Rate-search steps per measurement.
    steps: usize,
    generator: GeneratorTool,
}

impl Plan {
    /// The plan of `options`: all configurations unless some are named; the quick mode's workloads,
    /// one run and short trials, or the full run's (at least 3 runs).
    fn of(options: &RunOptions) -> Plan {
        let configs = if options.configs.is_empty() {
            Config::ALL.to_vec()
        } else {
            options.configs.clone()
        };
        let (workloads, runs, seconds, steps): (&'static [Workload], usize, f64, usize) =
            if options.quick {
                (&QUICK_WORKLOADS, 1, options.trial_seconds.unwrap_or(0.5), 3)
            } else if options.syn_flood_only {
                (
                    &SYN_FLOOD_ONLY,
                    options.runs.max(3),
                    options.trial_seconds.unwrap_or(1.0),
                    7,
                )
            } else {
                (
                    &WORKLOADS[..],
                    options.runs.max(3),
                    options.trial_seconds.unwrap_or(1.0),
                    7,
                )
            };
        Plan {
            configs,
            workloads,
            runs,
            seconds,
            flood_seconds: seconds * 3.0,
            steps,
            generator: options.generator,
        }
    }
}

/// Prints a progress line.
fn progress(text: &str) {
    eprintln!("[flowpin-bench] {text}");
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
    let plan = Plan::of(options);
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
    let mut rigs = build_rigs(&plan.configs)?;
    let conntrack_default = router_tables::read_conntrack_max()?;
    let machine = report::machine();
    let mut measurements = Vec::new();
    let mut floods = Vec::new();
    for workload in plan.workloads {
        let _conntrack_max = size_conntrack(&plan, workload, conntrack_default)?;
        if workload.kind == WorkloadKind::SynFlood {
            floods.extend(run_flood_workload(&mut rigs, workload, &plan)?);
        } else {
            measurements.extend(run_rate_workload(&mut rigs, workload, &plan)?);
        }
    }
    drop(rigs);
    let machine = format!("{machine}, at the end {}", report::load_average());
    let report = Report::new(measurements, machine, options.quick, pktgen.err())
        .with_generator(options.generator)
        .with_floods(floods, plan.flood_seconds);
    report::write(&report, &options.report, &options.json)?;
    progress(&format!(
        "wrote {} and {}",
        options.report.display(),
        options.json.display()
    ));
    Ok(())
}

/// Builds one lab per configuration, in order.
fn build_rigs(configs: &[Config]) -> Result<Vec<Rig>> {
    configs
        .iter()
        .map(|&config| {
            progress(&format!(
                "building the lab for {config}: {}",
                config.describe()
            ));
            Rig::up(config)
        })
        .collect()
}

/// K1's table limit for `workload`, when it sizes the tables and K1 runs: machine-wide, so set only
/// while the workload runs (restored when the returned guard drops).
fn size_conntrack(
    plan: &Plan,
    workload: &Workload,
    conntrack_default: u64,
) -> Result<Option<ConntrackMax>> {
    match workload.table {
        Some(entries) if plan.configs.contains(&Config::KernelNat) => {
            progress(&format!(
                "{}: nf_conntrack_max = {entries} (machine-wide, was {conntrack_default}) and \
                 flowpin's flow_capacity = {entries}",
                workload.name
            ));
            Ok(Some(ConntrackMax::set(entries.into())?))
        }
        _ => Ok(None),
    }
}

/// The SYN-flood workload on O and K1: empty tables of the workload's size, the legitimate traffic
/// warmed up, then per run one flood trial per router, rotating the start.
fn run_flood_workload(
    rigs: &mut [Rig],
    workload: &Workload,
    plan: &Plan,
) -> Result<Vec<FloodMeasurement>> {
    let capacity = workload.table.unwrap_or(LAB_FLOW_CAPACITY);
    let mut flood_rigs: Vec<&mut Rig> = rigs
        .iter_mut()
        .filter(|r| matches!(r.config(), Config::Flowpin | Config::KernelNat))
        .collect();
    for rig in flood_rigs.iter_mut() {
        progress(&format!(
            "{}: {}: empty table of {capacity}, established flow warming up",
            workload.name,
            rig.config()
        ));
        rig.empty_table(capacity)?;
        rig.start_legit()?;
    }
    let mut floods = Vec::new();
    for run in 0..plan.runs {
        let count = flood_rigs.len();
        for i in 0..count {
            let rig = &mut flood_rigs[(i + run) % count];
            progress(&format!(
                "{}: run {}/{}: {}",
                workload.name,
                run + 1,
                plan.runs,
                rig.config()
            ));
            let m = rig.flood_trial(plan.generator, workload, plan.flood_seconds, run)?;
            report_flood(&m);
            floods.push(m);
        }
    }
    for rig in flood_rigs {
        rig.stop_legit();
    }
    Ok(floods)
}

/// Prints what one flood trial measured.
fn report_flood(m: &FloodMeasurement) {
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
}

/// A rate workload (established or new flows) on every configuration: per run, one measurement per
/// configuration, rotating the start to cancel order effects.
fn run_rate_workload(
    rigs: &mut [Rig],
    workload: &Workload,
    plan: &Plan,
) -> Result<Vec<Measurement>> {
    let mut measurements = Vec::new();
    for run in 0..plan.runs {
        let count = rigs.len();
        for i in 0..count {
            let rig = &mut rigs[(i + run) % count];
            progress(&format!(
                "{}: run {}/{}: {}",
                workload.name,
                run + 1,
                plan.runs,
                rig.config()
            ));
            measurements.push(measure_rate(rig, workload, plan, run)?);
        }
    }
    Ok(measurements)
}

/// One configuration's measurement of a rate workload: the unthrottled trial, the rate search for
/// ≤ 0.5 % loss, latency (UDP established flows) and the table's use (new flows).
fn measure_rate(
    rig: &mut Rig,
    workload: &Workload,
    plan: &Plan,
    run: usize,
) -> Result<Measurement> {
    let capacity = workload.table.unwrap_or(LAB_FLOW_CAPACITY);
    // New-flow runs start from empty tables of the workload's size; other workloads run on the
    // lab's table.
    if workload.kind == WorkloadKind::NewFlows
        || (rig.config() == Config::Flowpin && rig.flow_capacity() != capacity)
    {
        rig.empty_table(capacity)?;
    }
    let max = rig.trial(plan.generator, workload, None, plan.seconds, false)?;
    let at_limit = search_rate(rig, workload, plan, max)?;
    let latency =
        if workload.protocol == GenProtocol::Udp && workload.kind == WorkloadKind::Established {
            Some(rig.trial(
                GeneratorTool::Afxdp,
                workload,
                Some(report::LATENCY_LOAD_PPS),
                plan.seconds,
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
        config: rig.config(),
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
    report_rate(&m, table);
    Ok(m)
}

/// The last trial within [`LOSS_LIMIT`] of a rate search that starts at the unthrottled trial `max`'s
/// offered rate (`None`: no rate passed).
fn search_rate(
    rig: &mut Rig,
    workload: &Workload,
    plan: &Plan,
    max: Trial,
) -> Result<Option<Trial>> {
    let ceiling = max.offered_pps as u64;
    let mut search = RateSearch::new(ceiling, LOSS_LIMIT, 0.02, plan.steps);
    let mut at_limit = None;
    while let Some(rate) = search.next_rate() {
        let trial = if rate == ceiling {
            max
        } else {
            rig.trial(plan.generator, workload, Some(rate), plan.seconds, false)?
        };
        search.record(rate, trial.loss);
        if trial.loss <= LOSS_LIMIT {
            at_limit = Some(trial);
        }
    }
    Ok(at_limit)
}

/// Prints what one rate measurement found.
fn report_rate(m: &Measurement, table: Option<(u64, u64)>) {
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
}
