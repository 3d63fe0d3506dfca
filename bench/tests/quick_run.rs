//! Root smoke test of the one command: `flowpin-bench run --quick` builds a lab per configuration, runs
//! the quick workload and writes the report, the JSON and the plot into a temporary directory in under
//! three minutes, including the SYN-flood workload's structure: the established flow beside the flood
//! reaches the sinks through both O and K1, and the small tables are really full. Needs root and the release `flowpin` binary (or `FLOWPIN_BIN`); without them it fails
//! naming the missing prerequisite.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flowpin_bench::report::Report;
use flowpin_bench::router_config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_flowpin-bench");
/// The quick mode's promise.
const QUICK_LIMIT: Duration = Duration::from_secs(180);

/// A directory removed on drop, also on panic.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require_root() {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (network namespaces, XDP, AF_XDP)"
    );
}

fn require_flowpin_binary() {
    let found = match std::env::var_os("FLOWPIN_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("release/flowpin"),
    };
    assert!(
        found.exists(),
        "missing prerequisite: the flowpin binary {} (cargo build --release -p flowpin, or set FLOWPIN_BIN)",
        found.display()
    );
}

#[test]
fn quick_run_reports_every_configuration_with_traffic_through_g_k1_and_o() {
    require_root();
    require_flowpin_binary();
    let dir = TempDir(std::env::temp_dir().join(format!("fpbench-quick-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let markdown = dir.0.join("benchmarks.md");
    let json = dir.0.join("benchmarks.json");

    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("run")
        .arg("--quick")
        .arg("--report")
        .arg(&markdown)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("flowpin-bench runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quick run failed:\n{stderr}");
    assert!(
        elapsed < QUICK_LIMIT,
        "quick mode took {elapsed:?} (limit {QUICK_LIMIT:?})"
    );
    assert!(
        stderr.contains("core split of O") && stderr.contains("flowpin-w0 → CPU 1"),
        "flowpin's worker was not moved to the router core:\n{stderr}"
    );

    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("JSON report");
    assert!(report.quick);
    let text = std::fs::read_to_string(&markdown).unwrap();
    for config in Config::ALL {
        let rows: Vec<_> = report
            .measurements
            .iter()
            .filter(|m| m.config == config)
            .collect();
        assert_eq!(rows.len(), 1, "{config}: one quick measurement");
        assert!(
            text.contains(&format!("| {config} |")),
            "no Markdown row for {config}:\n{text}"
        );
        if matches!(
            config,
            Config::GeneratorOnly | Config::KernelNat | Config::Flowpin
        ) {
            let m = rows[0];
            assert!(
                m.max_forwarded_pps > 0.0 && m.generator_pps > 0.0,
                "{config} forwarded nothing: {m:?}"
            );
        }
    }
    for config in [Config::KernelNat, Config::Flowpin] {
        let floods: Vec<_> = report
            .floods
            .iter()
            .filter(|f| f.config == config)
            .collect();
        assert_eq!(floods.len(), 1, "{config}: one quick SYN-flood trial");
        let f = floods[0];
        assert!(
            f.established_sent > 0 && f.established_delivered > 0,
            "{config}: the established flow did not reach the sinks during the flood: {f:?}"
        );
        assert!(f.flood_offered_pps > 0.0, "{config}: no flood: {f:?}");
        assert!(
            f.probes_tried > 0,
            "{config}: no fresh connection tried: {f:?}"
        );
        assert_eq!(
            f.table_capacity,
            Some(u64::from(flowpin_bench::workload::SYN_FLOOD_TABLE)),
            "{config}: the table was not sized for the flood: {f:?}"
        );
    }
    assert!(
        text.contains("| O | 1 |") && text.contains("| K1 | 1 |"),
        "no SYN-flood rows:\n{text}"
    );
    let png = std::fs::read(markdown.with_extension("png")).expect("the plot was written");
    assert_eq!(&png[1..4], b"PNG");
    assert!(text.contains("](benchmarks.png)"), "{text}");
}
