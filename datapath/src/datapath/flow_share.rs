//! A LAN host's share of the flow table: how many flows each host holds, and the fair share that
//! limits a host while the table is under pressure.
//!
//! # Policy ([`FlowShare`], from the snapshot)
//! - Not under pressure (fewer than `pressure_percent` of the table's records in use): a host may
//!   open flows freely, as many as the table holds.
//! - Under pressure: a host holding its fair share or more gets no new flow of its own making. Its
//!   fair share is the capacity divided by (the hosts holding flows + 1), at least `floor`: room
//!   is kept for one more host, and no host is ever held below `floor` flows.
//! - A host refused for its share first gives way to itself: one of its own unconfirmed flows
//!   found in one bounded early-drop scan is removed, and its new flow takes its place (its count
//!   does not grow). With none found it is refused (`host_over_flow_share`).
//!
//! # Counts ([`FlowHosts`], in [`super::Flows`])
//! - A host's count is the live flows whose internal endpoint is that host. It is taken before a
//!   flow is inserted and given back when the insert does not create the flow (refused, or
//!   another worker's first packet won), and for every removed flow: [`super::Flows`] is the only
//!   path that removes flows (expiry, early drop, failover, reload), and it gives the host back.
//! - A host leaves with its last flow, so spoofed or departed sources hold no entry; a new host
//!   finding the host table full is refused (`flow_host_table_full`).
//! - Lock-free, allocation-free: nat's [`HostTable`], a few atomic words per new flow.

use std::net::Ipv4Addr;

use flowpin_nat::port_alloc::HostTable;
use flowpin_nat::port_alloc::host_table::TakeError;

/// Default percentage of the table in use above which the fair share applies.
pub const DEFAULT_PRESSURE_PERCENT: u8 = 75;
/// Default least fair share of a host (flows), however many hosts hold flows.
pub const DEFAULT_FLOOR: u32 = 256;
/// Most hosts the flow table counts at once (the ports pools' upper bound too).
pub const MAX_FLOW_HOSTS: usize = 65_536;

/// How much of the flow table one host may hold (reloadable; part of the snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowShare {
    /// The table is under pressure once this percentage of its records is in use (1–100).
    pub pressure_percent: u8,
    /// The least fair share of a host, in flows.
    pub floor: u32,
}

impl Default for FlowShare {
    fn default() -> Self {
        Self {
            pressure_percent: DEFAULT_PRESSURE_PERCENT,
            floor: DEFAULT_FLOOR,
        }
    }
}

impl FlowShare {
    /// Flows in use from which the table is under pressure, for a table of `capacity`.
    #[must_use]
    pub fn pressure_threshold(&self, capacity: usize) -> u64 {
        capacity as u64 * u64::from(self.pressure_percent.clamp(1, 100)) / 100
    }

    /// The fair share of one host when `hosts` hold flows in a table of `capacity`.
    #[must_use]
    pub fn fair_share(&self, capacity: usize, hosts: usize) -> u32 {
        let share = capacity as u64 / (hosts as u64 + 1);
        u32::try_from(share).unwrap_or(u32::MAX).max(self.floor)
    }
}

/// Why a host got no count for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRefusal {
    /// The table is under pressure and the host holds its fair share.
    OverShare,
    /// The host is new and the host table is full.
    HostTableFull,
}

/// Flows held per LAN host.
#[derive(Debug)]
pub struct FlowHosts {
    hosts: HostTable,
}

impl FlowHosts {
    /// Counts for a table of `capacity` flows: as many hosts as flows, at most [`MAX_FLOW_HOSTS`].
    #[must_use]
    pub fn for_capacity(capacity: usize) -> Self {
        Self {
            hosts: HostTable::new(capacity.min(MAX_FLOW_HOSTS)),
        }
    }

    /// Flows `host` holds.
    #[must_use]
    pub fn held(&self, host: Ipv4Addr) -> u32 {
        self.hosts.held(host)
    }

    /// Hosts holding at least one flow.
    #[must_use]
    pub fn live(&self) -> usize {
        self.hosts.live()
    }

    /// Counts one more flow of `host` if `share` lets it have one in a table of `capacity` with
    /// `in_use` records in use (see the module docs).
    ///
    /// # Errors
    /// [`ShareRefusal`]; nothing changes on error.
    pub fn take(
        &self,
        host: Ipv4Addr,
        share: &FlowShare,
        capacity: usize,
        in_use: usize,
    ) -> Result<(), ShareRefusal> {
        let limit = if (in_use as u64) < share.pressure_threshold(capacity) {
            u32::MAX
        } else {
            share.fair_share(capacity, self.hosts.live())
        };
        self.hosts.take(host, |held| held < limit).map_err(refusal)
    }

    /// Counts one more flow of `host` whatever its share: it replaces flows of the host just removed.
    ///
    /// # Errors
    /// [`ShareRefusal::HostTableFull`] when the host is new and the table full.
    pub fn take_in_place(&self, host: Ipv4Addr) -> Result<(), ShareRefusal> {
        self.hosts.take(host, |_| true).map_err(refusal)
    }

    /// Counts one flow of `host` less; the host is forgotten with its last flow.
    pub fn give(&self, host: Ipv4Addr) {
        self.hosts.give(host);
    }
}

const fn refusal(error: TakeError) -> ShareRefusal {
    match error {
        TakeError::Refused => ShareRefusal::OverShare,
        TakeError::Full => ShareRefusal::HostTableFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    #[test]
    fn a_host_is_free_below_pressure_and_held_to_its_share_above_it() {
        let hosts = FlowHosts::for_capacity(1000);
        let share = FlowShare {
            pressure_percent: 50,
            floor: 10,
        };
        // Below 500 flows in use: no limit, even far above any share.
        for _ in 0..400 {
            hosts.take(A, &share, 1000, 499).unwrap();
        }
        // Under pressure, alone: share 1000 / 2 = 500; A at 400 may go on, up to 500.
        for _ in 0..100 {
            hosts.take(A, &share, 1000, 500).unwrap();
        }
        assert_eq!(
            hosts.take(A, &share, 1000, 600),
            Err(ShareRefusal::OverShare)
        );
        assert_eq!(hosts.held(A), 500, "a refusal changes nothing");
        // B is new: it holds nothing, far below its share.
        hosts.take(B, &share, 1000, 600).unwrap();
        // Two hosts: share 1000 / 3 = 333.
        assert_eq!(share.fair_share(1000, hosts.live()), 333);
    }

    #[test]
    fn the_floor_holds_however_many_hosts_hold_flows() {
        let share = FlowShare {
            pressure_percent: 75,
            floor: 256,
        };
        assert_eq!(share.fair_share(262_144, 1), 131_072);
        assert_eq!(share.fair_share(262_144, 4095), 256);
        assert_eq!(share.fair_share(262_144, 60_000), 256);
        assert_eq!(share.pressure_threshold(262_144), 196_608);
    }

    #[test]
    fn a_host_replaces_its_own_flows_in_place_and_leaves_with_its_last() {
        let hosts = FlowHosts::for_capacity(16);
        let share = FlowShare {
            pressure_percent: 1,
            floor: 1,
        };
        hosts.take(A, &share, 16, 0).unwrap();
        for _ in 0..7 {
            hosts.take(A, &share, 16, 16).unwrap();
        }
        assert_eq!(hosts.take(A, &share, 16, 16), Err(ShareRefusal::OverShare));
        hosts.give(A);
        hosts.take_in_place(A).unwrap();
        assert_eq!(hosts.held(A), 8);
        for _ in 0..8 {
            hosts.give(A);
        }
        assert_eq!((hosts.held(A), hosts.live()), (0, 0));
    }

    #[test]
    fn a_full_host_table_refuses_a_new_host_until_one_leaves() {
        let hosts = FlowHosts::for_capacity(2);
        let share = FlowShare::default();
        hosts.take(A, &share, 2, 0).unwrap();
        hosts.take(B, &share, 2, 1).unwrap();
        let c = Ipv4Addr::new(10, 0, 0, 4);
        assert_eq!(
            hosts.take(c, &share, 2, 2),
            Err(ShareRefusal::HostTableFull)
        );
        hosts.give(A);
        hosts.take(c, &share, 2, 1).unwrap();
    }
}
