//! The benchmark report as Markdown: the machine and the generator, the configurations, per workload
//! a table of medians and spreads with the ratios O/K1, O/K0, O/X and the tables' use, and the
//! SYN-flood table.
//!
//! Invariants: every figure comes from the report's measurements; a missing figure is printed as "—",
//! never as 0; a configuration without data has no row; configurations are named by their labels
//! (`G`, `X`, `K0`, `K1`, `O`).

use std::fmt::Write as _;

use crate::generator::GeneratorTool;
use crate::report::{FloodMeasurement, LATENCY_LOAD_PPS, Measurement, Report};
use crate::router_config::Config;
use crate::stats::{Summary, ratio, summarize};

impl Report {
    /// The Markdown report.
    pub fn markdown(&self) -> String {
        self.markdown_with_plot(None)
    }

    /// The Markdown report, showing the PNG plot `plot` (a path relative to the Markdown file).
    pub fn markdown_with_plot(&self, plot: Option<&str>) -> String {
        let mut md = String::new();
        self.introduction(&mut md, plot);
        for workload in self.workloads() {
            self.workload_section(&mut md, &workload);
        }
        self.flood_section(&mut md);
        md
    }

    /// The title, the machine, the generator, the plot and the configurations.
    fn introduction(&self, md: &mut String, plot: Option<&str>) {
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
            let _ = writeln!(md, "- **{c}**: {}; {}", c.describe(), c.core_split());
        }
        let _ = writeln!(
            md,
            "\nForwarded packets/s at ≤ 0.5 % loss measured at the XDP sinks behind the router; median \
             over runs, spread = (max − min) / median; CPU = busy seconds of all cores per million \
             forwarded packets; latency = one-way p50/p99 at {LATENCY_LOAD_PPS} pps (1 µs buckets).\n"
        );
    }

    /// One workload: the generator's ceiling, a row per configuration, the ratios and the tables' use.
    fn workload_section(&self, md: &mut String, workload: &str) {
        let _ = writeln!(md, "## {workload}\n");
        let generator = self
            .summary(workload, Config::GeneratorOnly, |m| Some(m.generator_pps))
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
            self.rate_row(md, workload, c);
        }
        let _ = writeln!(md);
        self.ratios(md, workload);
        self.table_note(md, workload);
        let _ = writeln!(md);
    }

    /// The row of configuration `c` in `workload`'s table (none without data).
    fn rate_row(&self, md: &mut String, workload: &str, c: Config) {
        let Some(limit) = self.summary(workload, c, |m| Some(m.forwarded_pps_at_limit)) else {
            return;
        };
        let max = self.summary(workload, c, |m| Some(m.max_forwarded_pps));
        let loss = self.summary(workload, c, |m| Some(m.max_loss * 100.0));
        let cpu = self.summary(workload, c, |m| Some(m.cpu_s_per_mpkt));
        let p50 = self.summary(workload, c, |m| m.latency_p50_us);
        let p99 = self.summary(workload, c, |m| m.latency_p99_us);
        let offered = self.summary(workload, c, |m| Some(m.generator_pps));
        let _ = writeln!(
            md,
            "| {c} | {} | {} ({}) | {} | {} / {} | {} |",
            fmt_pps(Some(limit)),
            fmt_pps(max),
            loss.map_or("—".into(), |l| format!("{:.2} %", l.median)),
            cpu.map_or("—".into(), |s| format!("{:.3}", s.median)),
            p50.map_or("—".into(), |s| format!("{:.0}", s.median)),
            p99.map_or("—".into(), |s| format!("{:.0}", s.median)),
            fmt_pps(offered),
        );
    }

    /// flowpin's rate at the loss limit against K1's, K0's and X's.
    fn ratios(&self, md: &mut String, workload: &str) {
        for (label, base) in [
            ("O/K1", Config::KernelNat),
            ("O/K0", Config::KernelForwarding),
            ("O/X", Config::XdpRedirect),
        ] {
            let o = self.summary(workload, Config::Flowpin, |m| {
                Some(m.forwarded_pps_at_limit)
            });
            let b = self.summary(workload, base, |m| Some(m.forwarded_pps_at_limit));
            let text = match (o, b) {
                (Some(o), Some(b)) => ratio(&o, &b).map_or("—".into(), |r| {
                    format!("{:.2} (range {:.2}–{:.2})", r.median, r.min, r.max)
                }),
                _ => "—".into(),
            };
            let _ = writeln!(md, "- {label}: {text}");
        }
    }

    /// For workloads that sized the routers' tables: how full each got by the end of a run.
    fn table_note(&self, md: &mut String, workload: &str) {
        for c in [Config::KernelNat, Config::Flowpin] {
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
            let table = if c == Config::Flowpin {
                "flowpin flow_capacity"
            } else {
                "nf_conntrack_max"
            };
            let _ = writeln!(
                md,
                "- {c} table ({table} = {capacity}, emptied before every run): at most {peak} entries \
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
             entries from a full table to make room for new ones (conntrack's unassured entries, \
             flowpin's unconfirmed flows), and flowpin frees their ports at once (`[nat] \
             early_drop_unanswered = true`, its default). Per trial: 64-byte TCP SYNs, a \
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
            crate::lab_rig::ESTABLISHED_RATE_PPS,
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
                "| {c} | {} | {} | {} | {} | {} | {} ({connected} / {tried}) | {table} |",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{flood, m};

    #[test]
    fn flood_section_has_fractions_per_configuration() {
        let report = Report::new(vec![], "box".into(), false, None).with_floods(
            vec![
                flood(Config::KernelNat, 0, 900, 10),
                flood(Config::KernelNat, 1, 1000, 8),
                flood(Config::KernelNat, 2, 950, 9),
                flood(Config::Flowpin, 0, 1000, 0),
                flood(Config::Flowpin, 1, 1000, 0),
                flood(Config::Flowpin, 2, 1000, 0),
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
            md.contains("early_drop_unanswered = true`, its default"),
            "the flood section says how flowpin's early drop treats ports: {md}"
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
        let mut k1 = m(Config::KernelNat, 0, 1.0);
        k1.workload = "new".into();
        k1.table_entries = Some(100);
        k1.table_capacity = Some(1000);
        let mut o = m(Config::Flowpin, 0, 1.0);
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
                m(Config::KernelNat, 0, 500_000.0),
                m(Config::KernelNat, 1, 600_000.0),
                m(Config::KernelNat, 2, 550_000.0),
                m(Config::Flowpin, 0, 900_000.0),
                m(Config::Flowpin, 1, 1_000_000.0),
                m(Config::Flowpin, 2, 1_100_000.0),
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
}
