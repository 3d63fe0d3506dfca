//! The benchmark report: per-trial measurements → per (workload, configuration) medians and spreads,
//! ratios O/K1, O/K0, O/X, the generator's ceiling beside every figure; written as Markdown and JSON.
//!
//! Invariants: every figure in the Markdown comes from the measurements in the same JSON file; a
//! missing figure is printed as "—", never as 0; the generator ceiling shown for a workload is the
//! median offered rate of that workload's trials.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::generator::GeneratorTool;
use crate::lab_runner::Config;
use crate::stats::{Summary, ratio, summarize};

/// The "fixed moderate load" of the latency trials (packets per second).
pub const LATENCY_LOAD_PPS: u64 = 100_000;

/// One configuration, one workload, one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Workload name.
    pub workload: String,
    /// Configuration.
    pub config: Config,
    /// Run number (0-based).
    pub run: usize,
    /// What the generator offered, unthrottled (its ceiling in this run).
    pub generator_pps: f64,
    /// Forwarded at the unthrottled rate.
    pub max_forwarded_pps: f64,
    /// Loss at the unthrottled rate.
    pub max_loss: f64,
    /// Forwarded at the highest rate with ≤ 0.5 % loss (0: no rate passed).
    pub forwarded_pps_at_limit: f64,
    /// Busy CPU seconds (all cores) per million forwarded packets.
    pub cpu_s_per_mpkt: f64,
    /// One-way latency p50 at [`LATENCY_LOAD_PPS`] (µs, 1 µs buckets).
    pub latency_p50_us: Option<f64>,
    /// One-way latency p99 at [`LATENCY_LOAD_PPS`].
    pub latency_p99_us: Option<f64>,
    /// Entries in the router's connection table at the end of the run (workloads that size it).
    #[serde(default)]
    pub table_entries: Option<u64>,
    /// The table's capacity (flowpin's flow capacity, K1's `nf_conntrack_max`).
    #[serde(default)]
    pub table_capacity: Option<u64>,
}

/// One SYN-flood trial of one configuration: the flood and what survived beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodMeasurement {
    /// Configuration (O or K1).
    pub config: Config,
    /// Run number (0-based).
    pub run: usize,
    /// SYNs per second the generator offered (unthrottled).
    pub flood_offered_pps: f64,
    /// SYNs per second forwarded (at the sinks).
    pub flood_forwarded_pps: f64,
    /// Datagrams of the established flow sent during the trial.
    pub established_sent: u64,
    /// Of them, counted at the sinks behind the router.
    pub established_delivered: u64,
    /// Of them, answered back through the router to the sender.
    pub established_replies: u64,
    /// Fresh TCP connections attempted during the trial.
    pub probes_tried: u64,
    /// Of them, completed within the probe timeout.
    pub probes_connected: u64,
    /// Entries in the router's table after the trial.
    pub table_entries: Option<u64>,
    /// The table's capacity.
    pub table_capacity: Option<u64>,
}

impl FloodMeasurement {
    /// The established flow's delivered fraction (0..=1; `None` when nothing was sent).
    pub fn delivered_fraction(&self) -> Option<f64> {
        fraction(self.established_delivered, self.established_sent)
    }

    /// The established flow's answered (round-trip) fraction.
    pub fn replied_fraction(&self) -> Option<f64> {
        fraction(self.established_replies, self.established_sent)
    }

    /// The fraction of fresh connections that got through.
    pub fn connected_fraction(&self) -> Option<f64> {
        fraction(self.probes_connected, self.probes_tried)
    }
}

fn fraction(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part.min(whole)) as f64 / whole as f64)
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `uname -srvm`, CPU model, core count, load average at the start.
    pub machine: String,
    /// Quick (smoke) mode.
    pub quick: bool,
    /// Why kernel pktgen was not used, if it was not available.
    pub pktgen_unavailable: Option<String>,
    /// The generator of the throughput trials (`afxdp` or `trafgen`).
    #[serde(default = "default_generator")]
    pub generator: String,
    /// Every trial.
    pub measurements: Vec<Measurement>,
    /// Every SYN-flood trial.
    #[serde(default)]
    pub floods: Vec<FloodMeasurement>,
    /// Seconds of flood per SYN-flood trial.
    #[serde(default)]
    pub flood_seconds: f64,
}

fn default_generator() -> String {
    GeneratorTool::Afxdp.name().into()
}

/// The 1-minute load average now (`?` if unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Describes the machine (call it before the run: it records the load average at the start).
pub fn machine() -> String {
    let uname = std::process::Command::new("uname")
        .arg("-srvm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    // The load before the run says how much of the machine others were using (a shared VM).
    format!(
        "{uname}; {model}; {cores} cores; 1-minute load average at the start {}",
        load_average()
    )
}

impl Report {
    /// A report over `measurements`.
    pub fn new(
        measurements: Vec<Measurement>,
        machine: String,
        quick: bool,
        pktgen_unavailable: Option<String>,
    ) -> Self {
        Self {
            machine,
            quick,
            pktgen_unavailable,
            generator: default_generator(),
            measurements,
            floods: Vec::new(),
            flood_seconds: 0.0,
        }
    }

    /// The same report with the SYN-flood trials (`seconds` of flood each).
    pub fn with_floods(self, floods: Vec<FloodMeasurement>, seconds: f64) -> Self {
        Self {
            floods,
            flood_seconds: seconds,
            ..self
        }
    }

    /// The same report, its throughput trials made by `tool`.
    pub fn with_generator(self, tool: GeneratorTool) -> Self {
        Self {
            generator: tool.name().into(),
            ..self
        }
    }

    fn workloads(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for m in &self.measurements {
            if !names.contains(&m.workload) {
                names.push(m.workload.clone());
            }
        }
        names
    }

    /// The summary of `field` over the runs of (`workload`, `config`).
    pub fn summary(
        &self,
        workload: &str,
        config: Config,
        field: impl Fn(&Measurement) -> Option<f64>,
    ) -> Option<Summary> {
        let values: Vec<f64> = self
            .measurements
            .iter()
            .filter(|m| m.workload == workload && m.config == config)
            .filter_map(field)
            .collect();
        summarize(&values)
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        self.markdown_with_plot(None)
    }

    /// The Markdown report, showing the PNG plot `plot` (a path relative to the Markdown file).
    pub fn markdown_with_plot(&self, plot: Option<&str>) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# flowpin benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `flowpin-bench run{}` (bench/). Machine: {}.\n",
            if self.quick { " --quick" } else { "" },
            self.machine
        );
        let generator = if self.generator == GeneratorTool::Trafgen.name() {
            "netsniff-ng trafgen (`-P 1`, CPU 0, `--no-sock-mem`)"
        } else {
            "flowpin's AF_XDP generator (copy mode, CPU 0)"
        };
        let _ = writeln!(
            md,
            "Generator of the throughput trials: {generator}; latency trials: the AF_XDP generator \
             (send timestamps).{}\n",
            self.pktgen_unavailable
                .as_ref()
                .map_or(String::new(), |why| format!(" Kernel pktgen: {why}."))
        );
        if let Some(plot) = plot {
            let _ = writeln!(
                md,
                "![forwarded 64-byte packets/s at ≤ 0.5 % loss vs established flows]({plot})\n"
            );
        }
        let _ = writeln!(
            md,
            "Configurations (the generator always runs on CPU 0; every router gets CPU 1):\n"
        );
        for c in Config::ALL {
            let _ = writeln!(md, "- **{c:?}**: {}; {}", c.describe(), c.core_split());
        }
        let _ = writeln!(
            md,
            "\nForwarded packets/s at ≤ 0.5 % loss measured at the XDP sinks behind the router; median \
             over runs, spread = (max − min) / median; CPU = busy seconds of all cores per million \
             forwarded packets; latency = one-way p50/p99 at {LATENCY_LOAD_PPS} pps (1 µs buckets).\n"
        );
        for workload in self.workloads() {
            let _ = writeln!(md, "## {workload}\n");
            let generator = self
                .summary(&workload, Config::G, |m| Some(m.generator_pps))
                .or_else(|| {
                    let all: Vec<f64> = self
                        .measurements
                        .iter()
                        .filter(|m| m.workload == workload)
                        .map(|m| m.generator_pps)
                        .collect();
                    summarize(&all)
                });
            let _ = writeln!(
                md,
                "Generator ceiling (offered, unthrottled): {}\n",
                fmt_pps(generator)
            );
            let _ = writeln!(
                md,
                "| config | fwd pps @ ≤0.5 % loss | fwd pps unthrottled (loss) | CPU s / Mpkt | p50 / p99 µs | generator pps |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for c in Config::ALL {
                let Some(limit) = self.summary(&workload, c, |m| Some(m.forwarded_pps_at_limit))
                else {
                    continue;
                };
                let max = self.summary(&workload, c, |m| Some(m.max_forwarded_pps));
                let loss = self.summary(&workload, c, |m| Some(m.max_loss * 100.0));
                let cpu = self.summary(&workload, c, |m| Some(m.cpu_s_per_mpkt));
                let p50 = self.summary(&workload, c, |m| m.latency_p50_us);
                let p99 = self.summary(&workload, c, |m| m.latency_p99_us);
                let offered = self.summary(&workload, c, |m| Some(m.generator_pps));
                let _ = writeln!(
                    md,
                    "| {c:?} | {} | {} ({}) | {} | {} / {} | {} |",
                    fmt_pps(Some(limit)),
                    fmt_pps(max),
                    loss.map_or("—".into(), |l| format!("{:.2} %", l.median)),
                    cpu.map_or("—".into(), |s| format!("{:.3}", s.median)),
                    p50.map_or("—".into(), |s| format!("{:.0}", s.median)),
                    p99.map_or("—".into(), |s| format!("{:.0}", s.median)),
                    fmt_pps(offered),
                );
            }
            let _ = writeln!(md);
            for (label, base) in [
                ("O/K1", Config::K1),
                ("O/K0", Config::K0),
                ("O/X", Config::X),
            ] {
                let o = self.summary(&workload, Config::O, |m| Some(m.forwarded_pps_at_limit));
                let b = self.summary(&workload, base, |m| Some(m.forwarded_pps_at_limit));
                let text = match (o, b) {
                    (Some(o), Some(b)) => ratio(&o, &b).map_or("—".into(), |r| {
                        format!("{:.2} (range {:.2}–{:.2})", r.median, r.min, r.max)
                    }),
                    _ => "—".into(),
                };
                let _ = writeln!(md, "- {label}: {text}");
            }
            self.table_note(&mut md, &workload);
            let _ = writeln!(md);
        }
        self.flood_section(&mut md);
        md
    }

    /// For workloads that sized the routers' tables: how full each got by the end of a run.
    fn table_note(&self, md: &mut String, workload: &str) {
        for c in [Config::K1, Config::O] {
            let rows: Vec<&Measurement> = self
                .measurements
                .iter()
                .filter(|m| m.workload == workload && m.config == c)
                .collect();
            let used: Vec<u64> = rows.iter().filter_map(|m| m.table_entries).collect();
            let Some(capacity) = rows.iter().find_map(|m| m.table_capacity) else {
                continue;
            };
            let peak = used.iter().copied().max().unwrap_or(0);
            let table = if c == Config::O {
                "flowpin flow_capacity"
            } else {
                "nf_conntrack_max"
            };
            let _ = writeln!(
                md,
                "- {c:?} table ({table} = {capacity}, emptied before every run): at most {peak} entries \
                 ({:.1} %) at the end of a run{}",
                peak as f64 * 100.0 / capacity.max(1) as f64,
                if peak >= capacity {
                    " — it filled, so this figure is bounded by the table, not by flow setup"
                } else {
                    " — it never filled: the figure is the flow setup rate"
                }
            );
        }
    }

    /// The SYN-flood table: the flood and what survived beside it, per configuration.
    fn flood_section(&self, md: &mut String) {
        if self.floods.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "## TCP SYN flood against a small table, beside an established flow\n"
        );
        let capacity = self.floods.iter().find_map(|f| f.table_capacity);
        let _ = writeln!(
            md,
            "Both tables sized alike ({} entries: flowpin's `[datapath] flow_capacity`, K1's \
             `nf_conntrack_max`), emptied once before the first trial. Both early-drop never-answered \
             entries from a full table to make room for new ones: conntrack always, flowpin because \
             the benchmark runs it with `[nat] early_drop_unanswered = true` (its default, `false`, \
             refuses new flows on a full table and evicts nothing). Per trial: 64-byte TCP SYNs, a \
             new flow (source address/port) on every packet, unthrottled for {:.1} s, while one \
             established UDP flow (LAN host 2 → a reflector in the internet namespace, answered before \
             the flood) runs at {} pps and fresh TCP connections are tried one at a time, 100 ms apart \
             (each succeeds only if its first SYN gets through: 500 ms timeout, below the 1 s SYN \
             retransmission). \
             Delivered = counted at the sinks behind the router (the sinks count the established \
             flow's port apart and pass it on); answered = the reflector's reply came back through \
             the router. Medians over trials, ±half the range.\n",
            capacity.map_or("—".into(), |c| c.to_string()),
            self.flood_seconds,
            crate::lab_runner::ESTABLISHED_RATE_PPS,
        );
        let _ = writeln!(
            md,
            "| config | trials | flood offered | flood forwarded | established delivered | established answered | fresh connections through | table after trial |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for c in Config::ALL {
            let rows: Vec<&FloodMeasurement> =
                self.floods.iter().filter(|f| f.config == c).collect();
            if rows.is_empty() {
                continue;
            }
            let pps = |f: fn(&FloodMeasurement) -> f64| {
                fmt_pps(summarize(&rows.iter().map(|m| f(m)).collect::<Vec<_>>()))
            };
            let percent = |f: fn(&FloodMeasurement) -> Option<f64>| {
                fmt_percent(summarize(
                    &rows.iter().filter_map(|m| f(m)).collect::<Vec<_>>(),
                ))
            };
            let tried: u64 = rows.iter().map(|m| m.probes_tried).sum();
            let connected: u64 = rows.iter().map(|m| m.probes_connected).sum();
            let table = rows
                .iter()
                .filter_map(|m| Some((m.table_entries?, m.table_capacity?)))
                .max()
                .map_or("—".into(), |(used, capacity)| {
                    format!("{used} / {capacity}")
                });
            let _ = writeln!(
                md,
                "| {c:?} | {} | {} | {} | {} | {} | {} ({connected} / {tried}) | {table} |",
                rows.len(),
                pps(|m| m.flood_offered_pps),
                pps(|m| m.flood_forwarded_pps),
                percent(FloodMeasurement::delivered_fraction),
                percent(FloodMeasurement::replied_fraction),
                percent(FloodMeasurement::connected_fraction),
            );
        }
        let _ = writeln!(md);
    }
}

fn fmt_percent(summary: Option<Summary>) -> String {
    match summary {
        None => "—".into(),
        Some(s) if s.runs > 1 => format!(
            "{:.1} % ±{:.1} pp",
            s.median * 100.0,
            (s.max - s.min) * 50.0
        ),
        Some(s) => format!("{:.1} %", s.median * 100.0),
    }
}

fn fmt_pps(summary: Option<Summary>) -> String {
    match summary {
        None => "—".into(),
        Some(s) if s.runs > 1 => format!("{:.3} Mpps ±{:.1} %", s.median / 1e6, s.spread * 50.0),
        Some(s) => format!("{:.3} Mpps", s.median / 1e6),
    }
}

/// Writes the Markdown, the JSON and, beside the Markdown (same name, `.png`), the plot. A plot that
/// cannot be drawn is reported in the Markdown instead of failing the whole run.
pub fn write(report: &Report, markdown: &Path, json: &Path) -> Result<()> {
    let png = markdown.with_extension("png");
    let plot = match crate::plot::write_png(report, &png) {
        Ok(()) => png.file_name().map(|n| n.to_string_lossy().into_owned()),
        Err(error) => {
            eprintln!("[flowpin-bench] no plot: {error:#}");
            None
        }
    };
    std::fs::write(markdown, report.markdown_with_plot(plot.as_deref()))
        .with_context(|| format!("writing {}", markdown.display()))?;
    std::fs::write(json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(config: Config, run: usize, fwd: f64) -> Measurement {
        Measurement {
            workload: "64B 1k flows".into(),
            config,
            run,
            generator_pps: 1_000_000.0,
            max_forwarded_pps: fwd,
            max_loss: 0.0,
            forwarded_pps_at_limit: fwd,
            cpu_s_per_mpkt: 1.5,
            latency_p50_us: Some(12.0),
            latency_p99_us: None,
            table_entries: None,
            table_capacity: None,
        }
    }

    fn flood(config: Config, run: usize, delivered: u64, connected: u64) -> FloodMeasurement {
        FloodMeasurement {
            config,
            run,
            flood_offered_pps: 200_000.0,
            flood_forwarded_pps: 100_000.0,
            established_sent: 1000,
            established_delivered: delivered,
            established_replies: delivered,
            probes_tried: 10,
            probes_connected: connected,
            table_entries: Some(8192),
            table_capacity: Some(8192),
        }
    }

    #[test]
    fn flood_section_has_fractions_per_configuration() {
        let report = Report::new(vec![], "box".into(), false, None).with_floods(
            vec![
                flood(Config::K1, 0, 900, 10),
                flood(Config::K1, 1, 1000, 8),
                flood(Config::K1, 2, 950, 9),
                flood(Config::O, 0, 1000, 0),
                flood(Config::O, 1, 1000, 0),
                flood(Config::O, 2, 1000, 0),
            ],
            3.0,
        );
        let md = report.markdown();
        assert!(
            md.contains("## TCP SYN flood against a small table"),
            "{md}"
        );
        assert!(md.contains("(8192 entries"), "{md}");
        assert!(
            md.contains("with `[nat] early_drop_unanswered = true`"),
            "the flood section says flowpin's early drop was switched on: {md}"
        );
        assert!(
            md.contains("| K1 | 3 | 0.200 Mpps ±0.0 % | 0.100 Mpps ±0.0 % | 95.0 % ±5.0 pp | 95.0 % ±5.0 pp | 90.0 % ±10.0 pp (27 / 30) | 8192 / 8192 |"),
            "{md}"
        );
        assert!(md.contains("| O | 3 |"), "{md}");
        assert!(md.contains("0.0 % ±0.0 pp (0 / 30)"), "{md}");
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.floods, report.floods);
    }

    #[test]
    fn table_note_says_whether_the_table_filled() {
        let mut k1 = m(Config::K1, 0, 1.0);
        k1.workload = "new".into();
        k1.table_entries = Some(100);
        k1.table_capacity = Some(1000);
        let mut o = m(Config::O, 0, 1.0);
        o.workload = "new".into();
        o.table_entries = Some(1000);
        o.table_capacity = Some(1000);
        let md = Report::new(vec![k1, o], "box".into(), false, None).markdown();
        assert!(md.contains("- K1 table (nf_conntrack_max = 1000, emptied before every run): at most 100 entries (10.0 %) at the end of a run — it never filled"), "{md}");
        assert!(md.contains("- O table (flowpin flow_capacity = 1000, emptied before every run): at most 1000 entries (100.0 %) at the end of a run — it filled"), "{md}");
    }

    #[test]
    fn markdown_has_medians_ratios_and_dashes_for_missing() {
        let report = Report::new(
            vec![
                m(Config::K1, 0, 500_000.0),
                m(Config::K1, 1, 600_000.0),
                m(Config::K1, 2, 550_000.0),
                m(Config::O, 0, 900_000.0),
                m(Config::O, 1, 1_000_000.0),
                m(Config::O, 2, 1_100_000.0),
            ],
            "test box".into(),
            false,
            Some("no pktgen".into()),
        );
        let md = report.markdown();
        assert!(md.contains("| K1 | 0.550 Mpps ±9.1 % |"), "{md}");
        assert!(md.contains("| O | 1.000 Mpps ±10.0 % |"), "{md}");
        assert!(md.contains("- O/K1: 1.82 (range 1.50–2.20)"), "{md}");
        assert!(md.contains("- O/K0: —"), "{md}");
        assert!(md.contains("12 / —"), "{md}");
        assert!(md.contains("Kernel pktgen: no pktgen."), "{md}");
        assert!(md.contains("AF_XDP generator (copy mode, CPU 0)"), "{md}");
        assert!(!md.contains("!["), "no plot was asked for");
        let with_trafgen = report.clone().with_generator(GeneratorTool::Trafgen);
        let md = with_trafgen.markdown_with_plot(Some("b.png"));
        assert!(md.contains("netsniff-ng trafgen"), "{md}");
        assert!(md.contains("](b.png)"), "{md}");
        assert!(
            !md.contains("| X |"),
            "configurations without data are left out"
        );
    }

    #[test]
    fn json_round_trips() {
        let report = Report::new(vec![m(Config::X, 0, 1.0)], "box".into(), true, None);
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.measurements, report.measurements);
    }
}
