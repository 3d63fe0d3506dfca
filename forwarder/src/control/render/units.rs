//! Figures in the units an admin reads at a glance: SI prefixes for rates, compact durations.
//!
//! Invariants: at most three significant digits before the unit; a prefix is chosen so the number
//! stays below 1000 (k, M, G, T); durations show the two largest non-zero units.

/// `value` with an SI prefix (`1.23 k`, `456`, `12.3 M`) followed by `unit`.
pub fn si(value: f64, unit: &str) -> String {
    const PREFIXES: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut v = value.max(0.0);
    let mut prefix = 0;
    while v >= 999.5 && prefix + 1 < PREFIXES.len() {
        v /= 1000.0;
        prefix += 1;
    }
    let number = if prefix == 0 || v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{number} {}{unit}", PREFIXES[prefix])
}

/// `seconds` as `45s`, `3m12s`, `5h07m`, `2d04h`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_the_prefix_that_keeps_them_below_a_thousand() {
        assert_eq!(si(0.0, "bit/s"), "0 bit/s");
        assert_eq!(si(999.0, "pps"), "999 pps");
        assert_eq!(si(1_234.0, "pps"), "1.23 kpps");
        assert_eq!(si(12_340.0, "pps"), "12.3 kpps");
        assert_eq!(si(123_400_000.0, "bit/s"), "123 Mbit/s");
        assert_eq!(si(9_999_999_999.0, "bit/s"), "10.0 Gbit/s");
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(5 * 3600 + 7 * 60 + 9), "5h07m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 1), "2d04h");
    }
}
