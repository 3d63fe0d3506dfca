//! `[datapath] flow_share_pressure_percent` and `flow_share_floor`: a percentage of the table,
//! and a floor no larger than the table.

use super::super::model::Datapath;
use super::super::raw::S;
use super::Checker;

impl Checker<'_> {
    /// How much of the flow table may one LAN host hold under pressure? Read after
    /// `flow_capacity`, which bounds the floor.
    pub(super) fn flow_share(
        &mut self,
        pressure_percent: Option<S<u8>>,
        floor: Option<S<u32>>,
        datapath: &mut Datapath,
    ) {
        if let Some(percent) = pressure_percent {
            let value = *percent.get_ref();
            if !(1..=100).contains(&value) {
                let message = format!("{value} %: must be 1-100 (a percentage of flow_capacity)");
                self.fail(
                    percent.span(),
                    "datapath.flow_share_pressure_percent",
                    message,
                );
            }
            datapath.flow_share_pressure_percent = value;
        }
        if let Some(floor) = floor {
            let (value, capacity) = (*floor.get_ref(), datapath.flow_capacity);
            if !(1..=capacity).contains(&value) {
                let message = format!("{value} flows: must be 1-{capacity} (flow_capacity)");
                self.fail(floor.span(), "datapath.flow_share_floor", message);
            }
            datapath.flow_share_floor = value;
        }
    }
}
