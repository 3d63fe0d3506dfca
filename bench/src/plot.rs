//! The report's PNG plot: forwarded packets/s at ≤ 0.5 % loss against the number of established flows,
//! one line per configuration, for the 64-byte established-flow workloads, with each point's min–max
//! range over the runs drawn as a vertical bar.
//!
//! Invariants: every plotted value is a [`Report::summary`] of the report's own measurements (the same
//! figures as the Markdown table); a configuration without data for a flow count has no point there
//! (no made-up zero); text is drawn with a TrueType font read from the system at run time (DejaVu Sans,
//! Debian's fonts-dejavu-core), so the crate needs neither fontconfig nor Python.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::Report;
use crate::router_config::Config;
use crate::workload::WORKLOADS;

/// Where the plot's font is looked for, first found wins.
pub const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";
/// Frame length of the plotted workloads.
const PLOTTED_FRAME_LEN: usize = 60;

/// One configuration's points: (flows, median, min, max) in packets/s.
pub type Series = Vec<(u32, f64, f64, f64)>;

/// The plotted data: for every configuration with data, its points in increasing flow count.
pub fn series(report: &Report) -> Vec<(Config, Series)> {
    let workloads: Vec<_> = WORKLOADS
        .iter()
        .filter(|w| w.frame_len == PLOTTED_FRAME_LEN && !w.new_flow_per_packet())
        .collect();
    Config::ALL
        .iter()
        .filter_map(|&config| {
            let mut points: Series = workloads
                .iter()
                .filter_map(|w| {
                    report
                        .summary(w.name, config, |m| Some(m.forwarded_pps_at_limit))
                        .map(|s| (w.flows, s.median, s.min, s.max))
                })
                .collect();
            points.sort_by_key(|p| p.0);
            (!points.is_empty()).then_some((config, points))
        })
        .collect()
}

/// Registers the system's DejaVu Sans as plotters' `sans-serif` family (once per process).
///
/// With plotters' `ab_glyph` feature (which this crate turns on), plotters draws text only in
/// registered fonts, and feature unification turns it on for every crate built together with this
/// one — criterion's own plots included: a criterion bench built alongside this crate must call this
/// first (as `benches/datapath.rs` does) or run with `--noplot`.
pub fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = FONT_CANDIDATES
                .iter()
                .find(|p| Path::new(p).exists())
                .ok_or_else(|| {
                    format!(
                        "missing prerequisite: a DejaVu Sans font for the plot (apt-get install \
                         fonts-dejavu-core); looked in {FONT_CANDIDATES:?}"
                    )
                })?;
            let bytes = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
            // Registered once for the whole process; the font lives as long as the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            for style in [FontStyle::Normal, FontStyle::Bold] {
                plotters::style::register_font(FAMILY, style, bytes)
                    .map_err(|_| format!("{path} is not a usable TrueType font"))?;
            }
            Ok(())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

fn colour(config: Config) -> RGBColor {
    match config {
        Config::GeneratorOnly => RGBColor(120, 120, 120),
        Config::XdpRedirect => RGBColor(31, 119, 180),
        Config::KernelForwarding => RGBColor(255, 127, 14),
        Config::KernelNat => RGBColor(214, 39, 40),
        Config::Flowpin => RGBColor(44, 160, 44),
    }
}

/// Draws the plot of `report` into the PNG file `path`.
pub fn write_png(report: &Report, path: &Path) -> Result<()> {
    let data = series(report);
    if data.is_empty() {
        bail!("nothing to plot: no 64-byte established-flow results in the report");
    }
    register_font()?;
    let max_flows = data
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .max()
        .unwrap_or(1);
    let max_mpps = data
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.3))
        .fold(0.0f64, f64::max)
        / 1e6;
    let x_range = 500f64..(f64::from(max_flows) * 2.0).max(2000.0);
    let y_range = 0f64..(max_mpps * 1.15).max(0.1);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Forwarded 64-byte packets at <= 0.5 % loss vs established flows",
                (FAMILY, 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x_range.log_scale(), y_range)?;
        chart
            .configure_mesh()
            .x_desc("established flows (log scale)")
            .y_desc("Mpps (median of runs; bar = min-max)")
            .label_style((FAMILY, 14))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        for (config, points) in &data {
            let colour = colour(*config);
            let style = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (f64::from(p.0), p.1 / 1e6)),
                    style,
                ))?
                .label(format!("{config}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((f64::from(p.0), p.1 / 1e6), 4, colour.filled())),
            )?;
            chart.draw_series(points.iter().map(|p| {
                PathElement::new(
                    vec![(f64::from(p.0), p.2 / 1e6), (f64::from(p.0), p.3 / 1e6)],
                    colour.stroke_width(1),
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    std::fs::metadata(path).with_context(|| format!("{} was not written", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Measurement;

    fn m(workload: &str, config: Config, run: usize, fwd: f64) -> Measurement {
        Measurement {
            workload: workload.into(),
            config,
            run,
            generator_pps: 1e6,
            max_forwarded_pps: fwd,
            max_loss: 0.0,
            forwarded_pps_at_limit: fwd,
            cpu_s_per_mpkt: 1.0,
            latency_p50_us: None,
            latency_p99_us: None,
            table_entries: None,
            table_capacity: None,
        }
    }

    fn report() -> Report {
        Report::new(
            vec![
                m("64B 1k flows", Config::KernelNat, 0, 600e3),
                m("64B 1k flows", Config::KernelNat, 1, 620e3),
                m("64B 100k flows", Config::KernelNat, 0, 500e3),
                m("64B 1k flows", Config::Flowpin, 0, 900e3),
                m("1518B 1k flows", Config::Flowpin, 0, 400e3),
            ],
            "box".into(),
            false,
            None,
        )
    }

    #[test]
    fn series_take_64_byte_established_workloads_in_flow_order() {
        let data = series(&report());
        assert_eq!(data.len(), 2);
        let (config, k1) = &data[0];
        assert_eq!(*config, Config::KernelNat);
        assert_eq!(k1.len(), 2);
        assert_eq!(k1[0], (1_000, 610e3, 600e3, 620e3));
        assert_eq!(k1[1].0, 100_000);
        let (config, o) = &data[1];
        assert_eq!(*config, Config::Flowpin);
        assert_eq!(
            o,
            &vec![(1_000, 900e3, 900e3, 900e3)],
            "1518 B is not plotted"
        );
    }

    #[test]
    fn writes_a_png() {
        let dir = std::env::temp_dir().join(format!("fpb-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.png");
        write_png(&report(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(
            bytes.len() > 5_000,
            "a plot with text and lines, not an empty image"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
