//! Medians, spreads and latency percentiles over trial results.
//!
//! Invariants: the median of an even count is the mean of the two middle values; the spread is
//! (max − min) / median, reported as a fraction (0.05 = ±5 % range); empty inputs give `None`, never a
//! made-up zero.

use serde::{Deserialize, Serialize};

/// The summary of ≥ 1 repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Middle value.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// (max − min) / median (0 when the median is 0).
    pub spread: f64,
    /// How many values.
    pub runs: usize,
}

/// Summarises `values` (NaNs ignored); `None` when there is nothing to summarise.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let (min, max) = (sorted[0], sorted[n - 1]);
    Some(Summary {
        median,
        min,
        max,
        spread: if median == 0.0 {
            0.0
        } else {
            (max - min) / median
        },
        runs: n,
    })
}

/// The `quantile` (0..=1) of a histogram with one bucket per unit: the smallest bucket index whose
/// cumulative count reaches `quantile` of the total; `None` for an empty histogram.
pub fn histogram_quantile(buckets: &[u64], quantile: f64) -> Option<usize> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let target = ((total as f64) * quantile.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= target {
            return Some(index);
        }
    }
    Some(buckets.len() - 1)
}

/// `numerator / denominator` as a ratio summary: the ratio of the medians, with the range of ratios
/// over the extremes (min/max and max/min) as its spread.
pub fn ratio(numerator: &Summary, denominator: &Summary) -> Option<Summary> {
    if denominator.median <= 0.0 || denominator.min <= 0.0 {
        return None;
    }
    let median = numerator.median / denominator.median;
    let min = numerator.min / denominator.max;
    let max = numerator.max / denominator.min;
    Some(Summary {
        median,
        min,
        max,
        spread: if median == 0.0 {
            0.0
        } else {
            (max - min) / median
        },
        runs: numerator.runs.min(denominator.runs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert!((s.spread - 1.0).abs() < 1e-12);
        let even = summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
        assert_eq!(summarize(&[0.0, 0.0]).unwrap().spread, 0.0);
    }

    #[test]
    fn quantiles_of_a_histogram() {
        // 10 samples at 1 µs, 89 at 5 µs, 1 at 40 µs.
        let mut h = vec![0u64; 64];
        h[1] = 10;
        h[5] = 89;
        h[40] = 1;
        assert_eq!(histogram_quantile(&h, 0.05), Some(1));
        assert_eq!(histogram_quantile(&h, 0.5), Some(5));
        assert_eq!(histogram_quantile(&h, 0.99), Some(5));
        assert_eq!(histogram_quantile(&h, 1.0), Some(40));
        assert_eq!(histogram_quantile(&[0, 0], 0.5), None);
    }

    #[test]
    fn ratios_carry_the_extremes() {
        let a = summarize(&[2.0, 2.2, 1.8]).unwrap();
        let b = summarize(&[1.0, 1.0, 1.0]).unwrap();
        let r = ratio(&a, &b).unwrap();
        assert!((r.median - 2.0).abs() < 1e-12);
        assert!((r.min - 1.8).abs() < 1e-12 && (r.max - 2.2).abs() < 1e-12);
        let zero = summarize(&[0.0]).unwrap();
        assert!(ratio(&a, &zero).is_none());
    }
}
