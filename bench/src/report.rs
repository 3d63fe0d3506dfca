//! The benchmark report: per-trial measurements → per (workload, configuration) medians and spreads,
//! ratios O/K1, O/K0, O/X, the generator's ceiling beside every figure; written as Markdown ([`crate::report_markdown`])
//! and JSON.
//!
//! Invariants: every figure in the Markdown comes from the measurements in the same JSON file; a
//! missing figure is printed as "—", never as 0; the generator ceiling shown for a workload is the
//! median offered rate of that workload's trials.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::generator::GeneratorTool;
use crate::router_config::Config;
use crate::stats::{Summary, summarize};

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

    pub(crate) fn workloads(&self) -> Vec<String> {
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn m(config: Config, run: usize, fwd: f64) -> Measurement {
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

    pub(crate) fn flood(
        config: Config,
        run: usize,
        delivered: u64,
        connected: u64,
    ) -> FloodMeasurement {
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
    fn json_round_trips() {
        let report = Report::new(
            vec![m(Config::XdpRedirect, 0, 1.0)],
            "box".into(),
            true,
            None,
        );
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.measurements, report.measurements);
    }
}
