//! The forwarded-ports map (`flowpin_forwards`): one key per (uplink NAT address, protocol, port)
//! of every `[[forward]]`.
//!
//! Invariants:
//! - the map holds exactly the keys derived from the forwards last set and the uplinks' current
//!   NAT addresses: a new address (DHCP) or a reload re-derives them, and only the difference is
//!   written (added keys inserted, gone keys removed);
//! - an uplink that is not configured (or has no address yet) contributes no key.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use aya::maps::{HashMap, MapData};
use flowpin_bpf::{ForwardKey, ForwardKeyBytes, MAP_FORWARDS, MAX_FORWARD_PORTS};

use super::program::map_mut;
use super::{XdpError, XdpProgram};

/// One forward's ports on one uplink, as the XDP program needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardPorts {
    /// The uplink's name (as configured with [`XdpProgram::configure_uplink`]).
    pub uplink: String,
    /// The IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    /// The external ports.
    pub ports: RangeInclusive<u16>,
}

/// The forwards and the keys written for them.
#[derive(Debug, Default)]
pub(super) struct ForwardState {
    forwards: Vec<ForwardPorts>,
    written: BTreeSet<ForwardKey>,
}

impl XdpProgram {
    /// Makes `forwards` the forwarded ports: their keys under each uplink's current NAT address
    /// replace the previous ones. Errors when they would need more than `MAX_FORWARD_PORTS` keys.
    pub fn set_forwards(&mut self, forwards: Vec<ForwardPorts>) -> Result<(), XdpError> {
        self.forward_state.forwards = forwards;
        self.sync_forwards()
    }

    /// Re-derives the keys from the forwards and the uplinks' addresses and writes the difference.
    pub(super) fn sync_forwards(&mut self) -> Result<(), XdpError> {
        let wanted: BTreeSet<ForwardKey> = (self.forward_state.forwards.iter())
            .filter_map(|f| Some((self.uplink_address(&f.uplink)?, f)))
            .flat_map(|(address, f)| {
                f.ports
                    .clone()
                    .map(move |port| ForwardKey::new(address, f.protocol, port))
            })
            .collect();
        if wanted.len() > MAX_FORWARD_PORTS as usize {
            return Err(XdpError::TooManyForwardPorts {
                wanted: wanted.len(),
                max: MAX_FORWARD_PORTS,
            });
        }
        let gone: Vec<ForwardKey> = (self.forward_state.written.difference(&wanted))
            .copied()
            .collect();
        let added: Vec<ForwardKey> = wanted
            .difference(&self.forward_state.written)
            .copied()
            .collect();
        let mut map = forwards_map(&mut self.ebpf)?;
        let failed = |source| XdpError::Map {
            map: MAP_FORWARDS,
            source,
        };
        for key in gone {
            match map.remove(&key.to_bytes()) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => return Err(failed(source)),
            }
            self.forward_state.written.remove(&key);
        }
        for key in added {
            map.insert(key.to_bytes(), 1, 0).map_err(failed)?;
            self.forward_state.written.insert(key);
        }
        Ok(())
    }
}

fn forwards_map(
    ebpf: &mut aya::Ebpf,
) -> Result<HashMap<&mut MapData, ForwardKeyBytes, u32>, XdpError> {
    HashMap::try_from(map_mut(ebpf, MAP_FORWARDS)?).map_err(|source| XdpError::Map {
        map: MAP_FORWARDS,
        source,
    })
}
