//! Mirror of `struct flowpin_admission`: the budgets of packets that can only open a flow.
//!
//! A budget is a rate and a burst; the program keeps it as GCRA (`interval_ns` per packet, at most
//! `limit_ns = burst * interval_ns` ahead of now). A rate of 0 is no budget: everything passes.

use std::mem::size_of;
use std::net::Ipv4Addr;

use crate::c_layout as c;
use crate::iface_config::put;

const NS_PER_S: u64 = 1_000_000_000;

/// One token bucket: packets per second and how many may pass at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Packets per second; 0: no budget.
    pub per_s: u32,
    /// Packets that may pass at once after an idle time (at least 1 when `per_s > 0`).
    pub burst: u32,
}

impl Budget {
    /// `(interval_ns, limit_ns)` as the program reads them; `(0, 0)` when off.
    pub fn to_gcra(self) -> (u64, u64) {
        if self.per_s == 0 {
            return (0, 0);
        }
        let interval = (NS_PER_S / u64::from(self.per_s)).max(1);
        (interval, interval * u64::from(self.burst.max(1)))
    }
}

/// Value of the `flowpin_admit` array's entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Per LAN sender (source MAC).
    pub host: Budget,
    /// Every LAN sender together.
    pub lan: Budget,
    /// TCP SYNs from the uplinks to their NAT ranges, together.
    pub inbound: Budget,
}

/// The map value as bytes.
pub type AdmissionBytes = [u8; c::ADMISSION_SIZE];

const _: () = {
    assert!(c::BUDGET_SIZE == 2 * size_of::<u64>());
    assert!(c::BUDGET_INTERVAL_NS == 0 && c::BUDGET_LIMIT_NS == 8);
    assert!(c::ADMISSION_SIZE == 3 * c::BUDGET_SIZE);
    assert!(c::PREFIX_KEY_SIZE == 2 * size_of::<u32>());
};

impl Admission {
    /// The value as the program reads it (native endian, C layout).
    pub fn to_bytes(&self) -> AdmissionBytes {
        let mut bytes = [0; c::ADMISSION_SIZE];
        for (offset, budget) in [
            (c::ADMISSION_HOST, self.host),
            (c::ADMISSION_LAN, self.lan),
            (c::ADMISSION_INBOUND, self.inbound),
        ] {
            let (interval, limit) = budget.to_gcra();
            put(
                &mut bytes,
                offset + c::BUDGET_INTERVAL_NS,
                &interval.to_ne_bytes(),
            );
            put(
                &mut bytes,
                offset + c::BUDGET_LIMIT_NS,
                &limit.to_ne_bytes(),
            );
        }
        bytes
    }
}

/// The `flowpin_lan` trie's key data of `address`: its octets in wire order, read as a native
/// `u32` (the prefix length goes beside it, in aya's `lpm_trie::Key`).
pub fn lan_prefix_key(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_become_interval_and_limit() {
        assert_eq!(Budget { per_s: 0, burst: 9 }.to_gcra(), (0, 0));
        assert_eq!(
            Budget {
                per_s: 1000,
                burst: 50
            }
            .to_gcra(),
            (1_000_000, 50_000_000)
        );
        // A burst of 0 still lets one packet through per interval.
        assert_eq!(
            Budget {
                per_s: 10,
                burst: 0
            }
            .to_gcra(),
            (100_000_000, 100_000_000)
        );
    }

    #[test]
    fn admission_encodes_each_budget_at_its_offset() {
        let admission = Admission {
            host: Budget { per_s: 1, burst: 2 },
            lan: Budget { per_s: 0, burst: 0 },
            inbound: Budget {
                per_s: 1_000_000_000,
                burst: 3,
            },
        };
        let bytes = admission.to_bytes();
        let word =
            |offset: usize| u64::from_ne_bytes(bytes[offset..offset + 8].try_into().unwrap());
        assert_eq!(word(c::ADMISSION_HOST + c::BUDGET_INTERVAL_NS), NS_PER_S);
        assert_eq!(word(c::ADMISSION_HOST + c::BUDGET_LIMIT_NS), 2 * NS_PER_S);
        assert_eq!(word(c::ADMISSION_LAN + c::BUDGET_INTERVAL_NS), 0);
        assert_eq!(word(c::ADMISSION_INBOUND + c::BUDGET_INTERVAL_NS), 1);
        assert_eq!(word(c::ADMISSION_INBOUND + c::BUDGET_LIMIT_NS), 3);
    }
}
