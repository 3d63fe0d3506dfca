//! The XDP program's admission budgets and the LAN prefixes it guards on the uplinks.
//!
//! Both are written once at start, before any interface is attached: a program attached without
//! them admits every SYN (budgets off) and drops no uplink transit (no prefix), which is the
//! behaviour of a program that predates them, never a stricter one.

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData};
use flowpin_bpf::{Admission, MAP_ADMISSION, MAP_LAN_PREFIXES, lan_prefix_key};

use super::program::map_mut;
use super::{XdpError, XdpProgram};
use crate::config::Ipv4Prefix;

type AdmissionBytes = [u8; flowpin_bpf::c_layout::ADMISSION_SIZE];

impl XdpProgram {
    /// Sets the budgets a TCP SYN without ACK passes before it reaches an AF_XDP ring.
    pub fn set_admission(&mut self, admission: &Admission) -> Result<(), XdpError> {
        let map = map_mut(&mut self.ebpf, MAP_ADMISSION)?;
        let mut array = Array::<&mut MapData, AdmissionBytes>::try_from(map).map_err(map_error)?;
        array
            .set(0, admission.to_bytes(), 0)
            .map_err(|source| XdpError::Map {
                map: MAP_ADMISSION,
                source,
            })
    }

    /// Enters the LAN's prefixes: a packet arriving on an uplink addressed to one of them (and not
    /// to a router address) is dropped.
    pub fn set_lan_prefixes(&mut self, prefixes: &[Ipv4Prefix]) -> Result<(), XdpError> {
        let map = map_mut(&mut self.ebpf, MAP_LAN_PREFIXES)?;
        let mut trie =
            LpmTrie::<&mut MapData, u32, u32>::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_LAN_PREFIXES,
                source,
            })?;
        for prefix in prefixes {
            let key = Key::new(
                u32::from(prefix.prefix_len()),
                lan_prefix_key(prefix.network()),
            );
            trie.insert(&key, 1, 0).map_err(|source| XdpError::Map {
                map: MAP_LAN_PREFIXES,
                source,
            })?;
        }
        Ok(())
    }
}

fn map_error(source: aya::maps::MapError) -> XdpError {
    XdpError::Map {
        map: MAP_ADMISSION,
        source,
    }
}
