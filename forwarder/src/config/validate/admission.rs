//! `[datapath]` admission budgets: each a rate (0 switches it off) and a burst of at least one
//! packet, both within [`ADMISSION_MAX`].

use super::super::model::Datapath;
use super::super::raw::{RawDatapath, S};
use super::Checker;

/// The highest rate or burst of an admission budget (packets per second, packets).
pub const ADMISSION_MAX: u32 = 100_000_000;

impl Checker<'_> {
    /// Which SYN budgets does `[datapath]` ask for? Absent keys keep `datapath`'s defaults.
    pub(super) fn admission(&mut self, raw: &mut RawDatapath, datapath: &mut Datapath) {
        for (per_s, burst, rate_field, burst_field, rate_out, burst_out) in [
            (
                raw.syn_per_host_per_s.take(),
                raw.syn_per_host_burst.take(),
                "datapath.syn_per_host_per_s",
                "datapath.syn_per_host_burst",
                &mut datapath.syn_per_host_per_s,
                &mut datapath.syn_per_host_burst,
            ),
            (
                raw.syn_per_s.take(),
                raw.syn_burst.take(),
                "datapath.syn_per_s",
                "datapath.syn_burst",
                &mut datapath.syn_per_s,
                &mut datapath.syn_burst,
            ),
            (
                raw.inbound_syn_per_s.take(),
                raw.inbound_syn_burst.take(),
                "datapath.inbound_syn_per_s",
                "datapath.inbound_syn_burst",
                &mut datapath.inbound_syn_per_s,
                &mut datapath.inbound_syn_burst,
            ),
        ] {
            if let Some(per_s) = per_s {
                *rate_out = self.budget_value(per_s, rate_field, 0);
            }
            if let Some(burst) = burst {
                *burst_out = self.budget_value(burst, burst_field, 1);
            }
        }
    }

    /// One rate or burst: `min..=ADMISSION_MAX`.
    fn budget_value(&mut self, value: S<u32>, field: &str, min: u32) -> u32 {
        let number = *value.get_ref();
        if !(min..=ADMISSION_MAX).contains(&number) {
            let message = format!("{number}: must be {min}-{ADMISSION_MAX}");
            self.fail(value.span(), field, message);
        }
        number
    }
}
