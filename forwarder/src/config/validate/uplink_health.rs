//! `[uplink.health]`: an uplink's own health settings, each key written over `[health]`, checked
//! by the same rules as `[health]` and named `uplink[i].health.<key>` in errors.

use super::super::model::Uplink;
use super::super::raw::RawHealth;
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
            let Some(table) = table else { continue };
            let name = format!("uplink[{index}].health");
            uplink.health = Some(self.health_table(table, global, &name));
        }
    }
}
