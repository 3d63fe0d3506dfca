//! CPU time from `/proc/stat`: busy (non-idle, non-iowait) jiffies of all cores between two readings.

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on Linux).
pub const USER_HZ: f64 = 100.0;

/// Busy and total jiffies of the `cpu` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// Parses the aggregate `cpu ` line of `/proc/stat` text.
pub fn parse(stat: &str) -> Result<CpuTicks> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(v.len() >= 8, "short cpu line {line:?}");
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok(CpuTicks {
        busy,
        total: busy + v[3] + v[4],
    })
}

/// Reads `/proc/stat` now.
pub fn read() -> Result<CpuTicks> {
    parse(&std::fs::read_to_string("/proc/stat")?)
}

/// CPU seconds spent busy between `before` and `after`.
pub fn busy_seconds(before: CpuTicks, after: CpuTicks) -> f64 {
    after.busy.saturating_sub(before.busy) as f64 / USER_HZ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_busy_and_idle() {
        let a = parse("cpu  100 5 50 1000 10 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n").unwrap();
        assert_eq!(
            a,
            CpuTicks {
                busy: 161,
                total: 1171
            }
        );
        let b = parse("cpu  200 5 60 1100 10 3 2 1 0 0\n").unwrap();
        assert!((busy_seconds(a, b) - 1.1).abs() < 1e-9);
        assert!(parse("intr 1 2").is_err());
    }
}
