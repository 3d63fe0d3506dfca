//! `[datapath] fragment_*`: the bounds of each worker's IPv4 fragment state, each within its range
//! (the memory they fix is allocated at start: `fragment_held` × 4 KiB plus `fragment_datagrams` ×
//! 48 bytes per worker).

use super::super::model::Datapath;
use super::super::raw::{RawDatapath, S};
use super::Checker;

/// `fragment_datagrams`: at least one set of the tracker, at most 1 Mi datagrams (48 MiB).
pub const FRAGMENT_DATAGRAMS_RANGE: (u32, u32) = (4, 1 << 20);
/// `fragment_held`: 0 (hold nothing: a fragment before its first is dropped) to 65,536 (256 MiB).
pub const FRAGMENT_HELD_RANGE: (u32, u32) = (0, 1 << 16);
/// `fragment_timeout` in seconds: RFC 791 suggests 15 s for reassembly; fragments of one datagram
/// travel back to back, so a few seconds suffice and 60 s is plenty.
pub const FRAGMENT_TIMEOUT_RANGE: (u32, u32) = (1, 60);

impl Checker<'_> {
    /// Which fragment bounds does `[datapath]` ask for? Absent keys keep `datapath`'s defaults.
    pub(super) fn fragments(&mut self, raw: &mut RawDatapath, datapath: &mut Datapath) {
        for (value, field, range, out) in [
            (
                raw.fragment_datagrams.take(),
                "datapath.fragment_datagrams",
                FRAGMENT_DATAGRAMS_RANGE,
                &mut datapath.fragment_datagrams,
            ),
            (
                raw.fragment_held.take(),
                "datapath.fragment_held",
                FRAGMENT_HELD_RANGE,
                &mut datapath.fragment_held,
            ),
            (
                raw.fragment_timeout.take(),
                "datapath.fragment_timeout",
                FRAGMENT_TIMEOUT_RANGE,
                &mut datapath.fragment_timeout,
            ),
        ] {
            if let Some(value) = value {
                *out = self.fragment_bound(value, field, range);
            }
        }
    }

    fn fragment_bound(&mut self, value: S<u32>, field: &str, (low, high): (u32, u32)) -> u32 {
        let number = *value.get_ref();
        if !(low..=high).contains(&number) {
            self.fail(
                value.span(),
                field,
                format!("{number}: must be {low}-{high}"),
            );
        }
        number
    }
}
