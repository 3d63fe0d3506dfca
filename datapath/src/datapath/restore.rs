//! Putting a flow a stopped daemon saved back into a fresh flow table.
//!
//! - Control plane only, before the workers start: one insert per saved flow, no per-packet code.
//! - The flow is counted against its host like any other (without the fair-share check: it existed),
//!   inserted under both keys, and gets its saved protocol-state word and TCP sequence words; its
//!   last-seen time is the restore's `now`, its counters start at 0.
//! - A flow whose LAN key or uplink key is already taken is refused, never merged: the caller
//!   gives back the port reference it restored for it.
//! - Nothing here checks the value against the configuration: the caller (the forwarder's state
//!   loader) decides which saved flows are still valid.

use std::sync::atomic::Ordering;

use flowpin_flowtable::{FlowHandle, InsertError, Insertion};
use flowpin_nat::{IpProtocol, TcpTracker};

use super::flows::{Flows, host_of};
use super::record::FlowValue;

/// One flow as saved: its immutable value and the words its packets had changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedFlow {
    /// The flow's value (both rewrites, uplink slot under the *new* configuration, MACs).
    pub value: FlowValue,
    /// The table's protocol-state word (TCP phase, or UDP/ICMP outbound stamp and bits).
    pub protocol_state: u64,
    /// The TCP tracker's words (TCP only; zero otherwise).
    pub tcp: TcpTracker,
}

/// Why a saved flow was not put back (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowRestoreError {
    /// The per-host table has no room for the flow's host.
    #[error("host table full")]
    HostTableFull,
    /// The flow table is full.
    #[error("flow table full")]
    TableFull,
    /// Another flow holds one of its keys.
    #[error("a key is already taken")]
    KeyTaken,
}

impl Flows {
    /// Inserts `saved` as a live flow.
    ///
    /// # Errors
    /// [`FlowRestoreError`]; nothing changes on error.
    pub fn restore(&self, saved: &SavedFlow, now_ms: u64) -> Result<FlowHandle, FlowRestoreError> {
        let value = saved.value;
        let host = host_of(&value);
        self.hosts
            .take_in_place(host)
            .map_err(|_| FlowRestoreError::HostTableFull)?;
        let inserted =
            self.table
                .insert_if_absent(value.lan_key(), value.uplink_key(), value, now_ms);
        let handle = match inserted {
            Ok(Insertion::Inserted(handle)) => handle,
            Ok(Insertion::Existing(_)) | Err(InsertError::KeyClash) => {
                self.hosts.give(host);
                return Err(FlowRestoreError::KeyTaken);
            }
            Err(InsertError::Full) => {
                self.hosts.give(host);
                return Err(FlowRestoreError::TableFull);
            }
        };
        let _ = self
            .table
            .compare_exchange_protocol_state(handle, 0, saved.protocol_state);
        if value.protocol() == IpProtocol::Tcp
            && let Some(tracker) = self.tracker(handle)
        {
            tracker.inside.store(saved.tcp.inside, Ordering::Relaxed);
            tracker.outside.store(saved.tcp.outside, Ordering::Relaxed);
            tracker
                .phase_word
                .store(saved.tcp.phase_word, Ordering::Release);
        }
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use flowpin_nat::{FlowKey, Rewrite};

    use super::*;
    use crate::datapath::record::FlowKind;

    fn saved(source_port: u16) -> SavedFlow {
        let from = FlowKey {
            protocol: IpProtocol::Udp,
            source: Ipv4Addr::new(10, 0, 0, 2),
            destination: Ipv4Addr::new(203, 0, 113, 1),
            source_port,
            destination_port: 53,
        };
        let to = FlowKey {
            source: Ipv4Addr::new(198, 51, 100, 1),
            source_port: 40_000,
            ..from
        };
        let rewrite = Rewrite::new(from, to).expect("rewrite");
        SavedFlow {
            value: FlowValue::new(rewrite, [2; 6], 0, 0, FlowKind::Outbound, 1),
            protocol_state: 5_000 | super::super::flows::SENT,
            tcp: TcpTracker::default(),
        }
    }

    #[test]
    fn a_restored_flow_is_found_under_both_keys_with_its_state_word() {
        let flows = Flows::with_capacity(64).expect("table");
        let flow = saved(1_000);
        let handle = flows.restore(&flow, 9_000).expect("restored");
        let found = flows.table.lookup(&flow.value.uplink_key()).expect("found");
        assert_eq!(found.value, flow.value);
        assert_eq!(
            flows.table.protocol_state(handle),
            Some(flow.protocol_state)
        );
        assert_eq!(flows.hosts.held(Ipv4Addr::new(10, 0, 0, 2)), 1);
    }

    #[test]
    fn a_taken_key_is_refused_and_the_host_count_given_back() {
        let flows = Flows::with_capacity(64).expect("table");
        flows.restore(&saved(1_000), 9_000).expect("restored");
        // Same uplink key (same external endpoint and remote), other LAN key.
        assert_eq!(
            flows.restore(&saved(1_001), 9_000),
            Err(FlowRestoreError::KeyTaken)
        );
        assert_eq!(flows.hosts.held(Ipv4Addr::new(10, 0, 0, 2)), 1);
    }
}
