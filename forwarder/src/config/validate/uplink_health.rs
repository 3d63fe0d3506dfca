//! `[uplink.health]`: an uplink's own health settings, each key written over `[health]`, checked
//! by the same rules as `[health]` and named `uplink[i].health.<key>` in errors. The hook keys are
//! global ([`Health::GLOBAL_ONLY_KEYS`]) and refused here: one hooks directory runs for every
//! uplink, and each run is told which uplink changed.

use super::super::model::Uplink;
use super::super::raw::{RawHealth, S};
use super::super::resilience::Health;
use super::Checker;

impl Checker<'_> {
    /// Which uplinks have their own health settings, and are they sound over `global`?
    pub(super) fn uplink_health(
        &mut self,
        uplinks: &mut [Uplink],
        tables: Vec<Option<RawHealth>>,
        global: &Health,
    ) {
        for (index, (uplink, table)) in uplinks.iter_mut().zip(tables).enumerate() {
            let Some(mut table) = table else { continue };
            let name = format!("uplink[{index}].health");
            self.refuse_uplink_hooks(&mut table, &name);
            uplink.health = Some(self.health_table(table, global, &name));
        }
    }

    /// Does the uplink's table leave the global hook keys to `[health]`?
    fn refuse_uplink_hooks(&mut self, table: &mut RawHealth, name: &str) {
        let spans = [
            ("hooks_dir", table.hooks_dir.take().as_ref().map(S::span)),
            (
                "hook_timeout_ms",
                table.hook_timeout_ms.take().as_ref().map(S::span),
            ),
        ];
        debug_assert!(
            spans
                .iter()
                .map(|(key, _)| *key)
                .eq(Health::GLOBAL_ONLY_KEYS)
        );
        for (key, span) in spans {
            if let Some(span) = span {
                let message = format!(
                    "hooks are global: set {key} in [health]; its hooks run for every uplink and \
                     are told which one changed (FLOWPIN_UPLINK)"
                );
                self.fail(span, &format!("{name}.{key}"), message);
            }
        }
    }
}
