//! A host's share of a pool: its count in the pool's [`HostTable`], the fair share under pressure
//! and the opt-in hard quota (see the allocator's module docs).

use std::net::Ipv4Addr;

use super::host_table::{HostTable, TakeError};
use super::{AllocError, PortAllocator};

impl PortAllocator {
    /// Mappings held by internal `address`.
    #[must_use]
    pub fn host_mappings(&self, address: Ipv4Addr) -> u32 {
        self.hosts.held(address)
    }

    /// The per-host counts (hosts holding mappings, their sum, the table's size).
    #[must_use]
    pub const fn hosts(&self) -> &HostTable {
        &self.hosts
    }

    /// The most mappings a host may hold now: while the pool is under pressure, its fair share with
    /// room kept for one more host (the range divided by the hosts holding mappings plus one), else
    /// no limit (see the module docs).
    fn fair_share(&self) -> u32 {
        let range = self.config.range.len() as u64;
        let pressure = range * u64::from(self.config.pressure_percent) / 100;
        if self.hosts.total() < pressure {
            return u32::MAX;
        }
        let hosts = self.hosts.live() as u64 + 1;
        u32::try_from(range / hosts).unwrap_or(u32::MAX).max(1)
    }

    pub(super) fn take_quota(&self, address: Ipv4Addr) -> Result<(), AllocError> {
        let hard = self.config.per_host_quota;
        let allowed = |held: u32| held < hard && held < self.fair_share();
        self.hosts
            .take(address, allowed)
            .map_err(|error| match error {
                TakeError::Full => AllocError::HostTableFull,
                TakeError::Refused if self.hosts.held(address) >= hard => AllocError::QuotaExceeded,
                TakeError::Refused => AllocError::FairShareExceeded,
            })
    }

    pub(super) fn give_quota(&self, address: Ipv4Addr) {
        self.hosts.give(address);
    }
}
