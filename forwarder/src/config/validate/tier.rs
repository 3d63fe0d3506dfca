//! `tier` of an uplink or a policy group member: 1 (best) or above.

use std::ops::Range;

use super::Checker;

impl Checker<'_> {
    /// Is `tier` a tier (1-255; 0 is not one)?
    pub(super) fn check_tier(&mut self, tier: u8, span: Range<usize>, field: &str) {
        if tier == 0 {
            self.fail(span, field, "0 is not a tier: tiers start at 1 (the best)");
        }
    }
}
