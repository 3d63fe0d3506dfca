//! `[health] hooks_dir` and `hook_timeout_ms`: a directory path (absolute, so a hook set does not
//! depend on the daemon's working directory) and a timeout within 100 ms-10 min. The directory
//! need not exist yet: hooks are listed when a change happens, so one can be created later.

use super::super::raw::RawHealth;
use super::super::resilience::Health;
use super::Checker;

/// Bounds of `hook_timeout_ms`.
pub const HOOK_TIMEOUT_RANGE_MS: (u32, u32) = (100, 600_000);

impl Checker<'_> {
    /// Where do the state-change hooks live, and how long may one run?
    pub(super) fn health_hooks(&mut self, raw: &mut RawHealth, health: &mut Health) {
        if let Some(dir) = raw.hooks_dir.take() {
            if !dir.get_ref().is_absolute() {
                let message = format!("{}: must be an absolute path", dir.get_ref().display());
                self.fail(dir.span(), "health.hooks_dir", message);
            }
            health.hooks_dir = Some(dir.into_inner());
        }
        if let Some(timeout) = raw.hook_timeout_ms.take() {
            let (low, high) = HOOK_TIMEOUT_RANGE_MS;
            if !(low..=high).contains(timeout.get_ref()) {
                let message = format!("{}: must be {low}-{high}", timeout.get_ref());
                self.fail(timeout.span(), "health.hook_timeout_ms", message);
            }
            health.hook_timeout_ms = timeout.into_inner();
        }
    }
}
