//! The loaded XDP program: interfaces, attachments, the router's addresses and XSK sockets.
//!
//! The local-address map (`flowpin_local`) is derived from two sources and kept equal to their union:
//! the uplinks' NAT addresses (entered with their port range, for return and hairpin traffic) and the
//! router's host addresses (every other address of its namespace, given as a whole set by the control
//! plane). An address that is both is a NAT entry; an entry is removed only when neither source
//! holds its address any more.
//!
//! Invariants:
//! - an uplink interface carries one or more uplinks, each with its own NAT address; a NAT entry
//!   names its interface's ifindex, so the program redirects return traffic arriving there by
//!   destination address, whichever uplink of the interface it is for;
//! - the interface (its slot, its attachment) lives while one of its uplinks does.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::maps::{HashMap, Map, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode, xdp::XdpLinkId};
use aya::{Ebpf, EbpfLoader};
use flowpin_bpf::{
    Counter, Decision, IfaceConfig, LocalAddr, MAP_COUNTERS, MAP_IFACES, MAP_LOCAL_ADDRS, MAP_XSKS,
    MAX_IFACES, PROGRAM_NAME, Role, xsk_key,
};

use super::attachment::{Attachment, keep_pinned, take_over};
use super::{AttachMode, AttachedMode, DecisionCounters, PinDir, XdpError};
use crate::link_kind::LinkKind;
use crate::xsk::{XskWorker, hardware_type, interface_index};

/// A configured interface, and its attachment if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Interface name.
    pub name: String,
    /// Interface index in the process's network namespace.
    pub ifindex: u32,
    /// LAN or uplink.
    pub role: Role,
    /// Slot selecting the interface's XSKMAP keys.
    pub slot: u32,
    /// The mode it is attached in, if attached.
    pub attached: Option<AttachedMode>,
}

#[derive(Debug)]
struct Interface {
    info: InterfaceInfo,
    link: Option<Attachment>,
    /// The uplinks on this interface, each with its NAT address and port range (entered into the
    /// local-address map for return and hairpin traffic).
    nat: Vec<UplinkNat>,
}

/// One uplink's NAT address and port range on its interface.
#[derive(Clone, Debug)]
struct UplinkNat {
    uplink: String,
    address: Ipv4Addr,
    ports: RangeInclusive<u16>,
}

/// What [`XdpProgram::set_host_addresses`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAddressChange {
    /// Addresses that were not host addresses before.
    pub added: Vec<Ipv4Addr>,
    /// Host addresses that are gone.
    pub removed: Vec<Ipv4Addr>,
}

impl HostAddressChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The XDP program loaded into the kernel, with its maps. Dropping it detaches every link it owns;
/// pinned links (see [`XdpProgram::pin_links`]) stay attached.
#[derive(Debug)]
pub struct XdpProgram {
    pub(super) ebpf: Ebpf,
    /// Where attachments are pinned (`None`: links are owned by the process).
    pins: Option<PinDir>,
    interfaces: Vec<Interface>,
    /// The router's host addresses, as last set (see the module documentation).
    host_addresses: BTreeSet<Ipv4Addr>,
    /// The forwarded ports, as last set, and the map keys written for them.
    pub(super) forward_state: super::forward_ports::ForwardState,
}

impl XdpProgram {
    /// Loads `flowpin-bpf`'s object: creates the maps and verifies the program. Nothing is
    /// attached yet.
    pub fn load() -> Result<Self, XdpError> {
        let mut ebpf = EbpfLoader::new().load(flowpin_bpf::program_object())?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(|source| XdpError::Program {
                interface: "-".to_owned(),
                source,
            })?;
        Ok(Self {
            ebpf,
            pins: None,
            interfaces: Vec::new(),
            host_addresses: BTreeSet::new(),
            forward_state: Default::default(),
        })
    }

    /// Configures `name` as the LAN interface: its IPv4 TCP/UDP/ICMP transit goes to AF_XDP,
    /// other transit protocols are dropped. Returns its slot.
    pub fn configure_lan(&mut self, name: &str) -> Result<u32, XdpError> {
        self.configure(name, Role::Lan)
    }

    /// Configures uplink `uplink` on interface `name`, translating to `address` with NAT ports /
    /// ICMP identifiers `ports`: return traffic to that address on that interface inside the range
    /// goes to AF_XDP, the rest to the kernel. Other uplinks may share the interface, each with its
    /// own address. The address is also a local NAT address, so LAN hairpin traffic to it inside the
    /// range goes to AF_XDP. Reconfiguring keeps the slot; a new address (a DHCP renewal) replaces
    /// the previous one (the previous stays a host address if it still is one). Returns the
    /// interface's slot.
    pub fn configure_uplink(
        &mut self,
        name: &str,
        uplink: &str,
        address: Ipv4Addr,
        ports: RangeInclusive<u16>,
    ) -> Result<u32, XdpError> {
        if ports.is_empty() {
            return Err(XdpError::EmptyPortRange {
                min: *ports.start(),
                max: *ports.end(),
            });
        }
        let slot = self.configure(name, Role::Uplink)?;
        let nat = UplinkNat {
            uplink: uplink.to_owned(),
            address,
            ports,
        };
        let interface = self.interface_mut(name)?;
        let previous = match interface.nat.iter_mut().find(|n| n.uplink == uplink) {
            Some(entry) => Some(std::mem::replace(entry, nat).address),
            None => {
                interface.nat.push(nat);
                None
            }
        };
        self.sync_local_address(address)?;
        if let Some(previous) = previous.filter(|&previous| previous != address) {
            self.sync_local_address(previous)?;
            self.sync_forwards()?;
        } else if previous.is_none() {
            self.sync_forwards()?;
        }
        Ok(slot)
    }

    /// The NAT address uplink `uplink` is configured with, if it is a configured uplink.
    pub fn uplink_address(&self, uplink: &str) -> Option<Ipv4Addr> {
        self.interfaces
            .iter()
            .flat_map(|interface| &interface.nat)
            .find(|nat| nat.uplink == uplink)
            .map(|nat| nat.address)
    }

    /// Forgets uplink `uplink` (live removal): its NAT address leaves the local-address map, and
    /// when it was the last uplink of its interface the interface goes too
    /// ([`Self::remove_interface`]). Unknown uplink: no-op.
    pub fn remove_uplink(&mut self, uplink: &str) -> Result<(), XdpError> {
        let Some(index) = self
            .interfaces
            .iter()
            .position(|i| i.nat.iter().any(|n| n.uplink == uplink))
        else {
            return Ok(());
        };
        let interface = &mut self.interfaces[index];
        let position = interface.nat.iter().position(|n| n.uplink == uplink);
        let removed = position.map(|p| interface.nat.remove(p));
        if interface.nat.is_empty() {
            let name = interface.info.name.clone();
            self.remove_interface(&name)?;
        }
        match removed {
            Some(nat) => {
                self.sync_local_address(nat.address)?;
                self.sync_forwards()
            }
            None => Ok(()),
        }
    }

    /// Declares one of the router's own addresses (LAN gateway, management, ...): packets to it
    /// go to the kernel. Uplink NAT addresses are entered by [`Self::configure_uplink`].
    pub fn add_local_address(&mut self, address: Ipv4Addr) -> Result<(), XdpError> {
        self.host_addresses.insert(address);
        self.sync_local_address(address)
    }

    /// Removes a host address entered by [`Self::add_local_address`] or
    /// [`Self::set_host_addresses`] (absent: no error). An uplink's NAT address stays.
    pub fn remove_local_address(&mut self, address: Ipv4Addr) -> Result<(), XdpError> {
        self.host_addresses.remove(&address);
        self.sync_local_address(address)
    }

    /// Makes `addresses` the router's host addresses: every one not yet entered is added, every
    /// earlier one not in `addresses` removed (NAT addresses stay whatever this set says). Returns
    /// what changed; on a map error (e.g. more than `MAX_LOCAL_ADDRS` addresses) the first error,
    /// after trying every address.
    pub fn set_host_addresses(
        &mut self,
        addresses: &BTreeSet<Ipv4Addr>,
    ) -> Result<HostAddressChange, XdpError> {
        let change = HostAddressChange {
            added: addresses
                .difference(&self.host_addresses)
                .copied()
                .collect(),
            removed: self.host_addresses.difference(addresses).copied().collect(),
        };
        self.host_addresses.clone_from(addresses);
        let mut first_error = None;
        for &address in change.removed.iter().chain(&change.added) {
            if let Err(error) = self.sync_local_address(address) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(change), Err)
    }

    /// Pins every later attachment in `pins`, and takes over the links an earlier flowpin left
    /// pinned there (see [`Self::attach`]).
    pub fn pin_links(&mut self, pins: PinDir) {
        self.pins = Some(pins);
    }

    /// Attaches the program to a configured interface. `Auto` tries native mode and falls back to
    /// generic mode with a warning. With a pin directory (see [`Self::pin_links`]): a link an earlier
    /// flowpin left pinned for the interface gets this program in its place, atomically, keeping its
    /// mode ([`AttachedMode::Inherited`]); otherwise the new link is pinned. Attaching an attached
    /// interface is a no-op returning its mode.
    pub fn attach(&mut self, name: &str, mode: AttachMode) -> Result<AttachedMode, XdpError> {
        let index = self.position(name)?;
        if let Some(mode) = self.interfaces[index].info.attached {
            return Ok(mode);
        }
        let pin = self.pins.as_ref().map(|pins| pins.link(name));
        let (link, attached) = match pin
            .as_deref()
            .and_then(|pin| take_over(program_mut(&mut self.ebpf).ok()?, name, pin))
        {
            Some(link) => (link, AttachedMode::Inherited),
            None => self.attach_new(name, mode)?,
        };
        let link = match pin {
            Some(path) => keep_pinned(program_mut(&mut self.ebpf)?, name, link, path, attached)?,
            None => Attachment::Owned(link),
        };
        let interface = &mut self.interfaces[index];
        interface.link = Some(link);
        interface.info.attached = Some(attached);
        Ok(attached)
    }

    /// Removes the pins of interfaces this program is not attached to (an earlier flowpin's, for
    /// an interface no longer configured): their links detach, since no process holds them.
    /// Returns those interfaces.
    pub fn unpin_unattached(&self) -> Vec<String> {
        let Some(pins) = &self.pins else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for (interface, pin) in pins.pinned() {
            let attached = self
                .interfaces
                .iter()
                .any(|i| i.info.name == interface && i.link.is_some());
            if !attached {
                match std::fs::remove_file(&pin) {
                    Ok(()) => removed.push(interface),
                    Err(error) => {
                        tracing::error!(%interface, pin = %pin.display(), %error, "cannot remove a stale pinned XDP link")
                    }
                }
            }
        }
        removed
    }

    /// A new link of the program on `name`, in `mode`.
    fn attach_new(
        &mut self,
        name: &str,
        mode: AttachMode,
    ) -> Result<(XdpLinkId, AttachedMode), XdpError> {
        let ifindex = self.interfaces[self.position(name)?].info.ifindex;
        let program = program_mut(&mut self.ebpf)?;
        let attempt = |program: &mut Xdp, mode: XdpMode| {
            program
                .attach_to_if_index(ifindex, mode)
                .map_err(|source| XdpError::Program {
                    interface: name.to_owned(),
                    source,
                })
        };
        Ok(match mode {
            AttachMode::Native => (attempt(program, XdpMode::Driver)?, AttachedMode::Native),
            AttachMode::Generic => (attempt(program, XdpMode::Skb)?, AttachedMode::Generic),
            AttachMode::Auto => match attempt(program, XdpMode::Driver) {
                Ok(link) => (link, AttachedMode::Native),
                Err(native_error) => {
                    tracing::warn!(
                        interface = name,
                        error = %native_error,
                        "native XDP unavailable, attaching in generic (skb) mode: slower, copy-mode AF_XDP"
                    );
                    (attempt(program, XdpMode::Skb)?, AttachedMode::Generic)
                }
            },
        })
    }

    /// Detaches the program from an interface (not attached: no-op); a pinned link's pin is
    /// removed. Its configuration stays.
    pub fn detach(&mut self, name: &str) -> Result<(), XdpError> {
        let index = self.position(name)?;
        let Some(link) = self.interfaces[index].link.take() else {
            return Ok(());
        };
        self.interfaces[index].info.attached = None;
        match link {
            Attachment::Owned(link) => {
                program_mut(&mut self.ebpf)?
                    .detach(link)
                    .map_err(|source| XdpError::Program {
                        interface: name.to_owned(),
                        source,
                    })
            }
            Attachment::Pinned { link, path } => {
                match std::fs::remove_file(&path) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        tracing::error!(interface = name, pin = %path.display(), %error, "cannot remove the pinned XDP link");
                    }
                    _ => {}
                }
                drop(link);
                Ok(())
            }
        }
    }

    /// Forgets a configured interface (live removal of an uplink): detaches the program, removes it
    /// from the interface map (the program then passes everything it receives there, should it ever be
    /// attached again by someone else) and its NAT address from the local-address map, and frees its
    /// slot. Its sockets must already be closed or removed from the XSKMAP. Unknown name: no-op.
    pub fn remove_interface(&mut self, name: &str) -> Result<(), XdpError> {
        let Ok(index) = self.position(name) else {
            return Ok(());
        };
        self.detach(name)?;
        let ifindex = self.interfaces[index].info.ifindex;
        match ifaces_map(&mut self.ebpf)?.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(XdpError::Map {
                    map: MAP_IFACES,
                    source,
                });
            }
        }
        let nat = self.interfaces.remove(index).nat;
        let had_uplinks = !nat.is_empty();
        for entry in nat {
            self.sync_local_address(entry.address)?;
        }
        if had_uplinks {
            self.sync_forwards()?;
        }
        Ok(())
    }

    /// The configured interfaces.
    pub fn interfaces(&self) -> impl Iterator<Item = &InterfaceInfo> {
        self.interfaces.iter().map(|interface| &interface.info)
    }

    /// Registers `socket` as the receiver of queue `queue` of the configured interface with
    /// index `ifindex`. The socket must be bound to that (interface, queue).
    pub fn insert_socket(
        &mut self,
        ifindex: u32,
        queue: u32,
        socket: BorrowedFd<'_>,
    ) -> Result<(), XdpError> {
        let key = self.xsk_key(ifindex, queue)?;
        xsk_map(&mut self.ebpf)?
            .set(key, socket.as_raw_fd(), 0)
            .map_err(|source| XdpError::Map {
                map: MAP_XSKS,
                source,
            })
    }

    /// Removes the socket of (ifindex, queue): the queue then drops what it would redirect.
    /// (Closing a socket removes it from the map too.)
    pub fn remove_socket(&mut self, ifindex: u32, queue: u32) -> Result<(), XdpError> {
        let key = self.xsk_key(ifindex, queue)?;
        match xsk_map(&mut self.ebpf)?.unset(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(XdpError::Map {
                map: MAP_XSKS,
                source,
            }),
        }
    }

    /// Registers every socket of an AF_XDP worker (each port's interface must be configured).
    pub fn register_worker(&mut self, worker: &XskWorker) -> Result<(), XdpError> {
        for port in worker.ports() {
            self.insert_socket(port.ifindex, port.queue, port.socket)?;
        }
        Ok(())
    }

    /// Removes every socket of an AF_XDP worker from the XSKMAP.
    pub fn unregister_worker(&mut self, worker: &XskWorker) -> Result<(), XdpError> {
        for port in worker.ports() {
            self.remove_socket(port.ifindex, port.queue)?;
        }
        Ok(())
    }

    /// The per-decision counters, summed over CPUs.
    pub fn counters(&self) -> Result<DecisionCounters, XdpError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or(XdpError::Missing(MAP_COUNTERS))?;
        let array =
            PerCpuArray::<&MapData, [u64; 2]>::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_COUNTERS,
                source,
            })?;
        let mut sums = [Counter::default(); Decision::COUNT];
        for decision in Decision::ALL {
            let per_cpu = array
                .get(&decision.index(), 0)
                .map_err(|source| XdpError::Map {
                    map: MAP_COUNTERS,
                    source,
                })?;
            sums[decision.index() as usize] =
                per_cpu.iter().fold(Counter::default(), |sum, words| {
                    sum.plus(Counter::from_words(*words))
                });
        }
        Ok(DecisionCounters::from_counters(sums))
    }

    fn configure(&mut self, name: &str, role: Role) -> Result<u32, XdpError> {
        let ifindex = interface_index(name).map_err(|source| XdpError::Interface {
            interface: name.to_owned(),
            source,
        })?;
        let slot = match self.position(name) {
            Ok(index) => self.interfaces[index].info.slot,
            Err(_) => (0..MAX_IFACES)
                .find(|slot| self.interfaces.iter().all(|i| i.info.slot != *slot))
                .ok_or_else(|| XdpError::NoFreeSlot(name.to_owned()))?,
        };
        let kind = hardware_type(name)
            .map(LinkKind::of_hardware_type)
            .map_err(|source| XdpError::Interface {
                interface: name.to_owned(),
                source,
            })?;
        let config = match (role, kind) {
            (_, None) | (Role::Lan, Some(LinkKind::Layer3)) => {
                return Err(XdpError::LinkLayer {
                    interface: name.to_owned(),
                    role,
                });
            }
            (Role::Lan, Some(LinkKind::Ethernet)) => IfaceConfig::lan(slot),
            (Role::Uplink, Some(kind)) => IfaceConfig::uplink(slot).layer3(kind.is_layer3()),
        };
        ifaces_map(&mut self.ebpf)?
            .insert(ifindex, config.to_bytes(), 0)
            .map_err(|source| XdpError::Map {
                map: MAP_IFACES,
                source,
            })?;
        let info = InterfaceInfo {
            name: name.to_owned(),
            ifindex,
            role,
            slot,
            attached: None,
        };
        match self.position(name) {
            Ok(index) => {
                let interface = &mut self.interfaces[index];
                interface.info.role = role;
                interface.info.ifindex = ifindex;
            }
            Err(_) => self.interfaces.push(Interface {
                info,
                link: None,
                nat: Vec::new(),
            }),
        }
        Ok(slot)
    }

    /// Writes `address`'s entry of the local-address map from the two sources: an uplink's NAT
    /// address (with its range), else a host address, else no entry.
    fn sync_local_address(&mut self, address: Ipv4Addr) -> Result<(), XdpError> {
        let nat = self.interfaces.iter().find_map(|interface| {
            let ifindex = interface.info.ifindex;
            (interface.nat.iter())
                .find(|nat| nat.address == address)
                .map(|nat| LocalAddr::nat(nat.ports.clone(), ifindex))
        });
        let value = nat.or_else(|| self.host_addresses.contains(&address).then(LocalAddr::host));
        let mut map = local_map(&mut self.ebpf)?;
        let key = LocalAddr::key(address);
        let result = match value {
            Some(value) => map.insert(key, value.to_bytes(), 0),
            None => match map.remove(&key) {
                Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                other => other,
            },
        };
        result.map_err(|source| XdpError::Map {
            map: MAP_LOCAL_ADDRS,
            source,
        })
    }

    fn xsk_key(&self, ifindex: u32, queue: u32) -> Result<u32, XdpError> {
        let interface = self
            .interfaces
            .iter()
            .find(|interface| interface.info.ifindex == ifindex)
            .ok_or_else(|| XdpError::NotConfigured(format!("ifindex {ifindex}")))?;
        xsk_key(interface.info.slot, queue).ok_or_else(|| XdpError::QueueOutOfRange {
            interface: interface.info.name.clone(),
            queue,
        })
    }

    fn position(&self, name: &str) -> Result<usize, XdpError> {
        self.interfaces
            .iter()
            .position(|interface| interface.info.name == name)
            .ok_or_else(|| XdpError::NotConfigured(name.to_owned()))
    }

    fn interface_mut(&mut self, name: &str) -> Result<&mut Interface, XdpError> {
        let index = self.position(name)?;
        Ok(&mut self.interfaces[index])
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(XdpError::Missing(PROGRAM_NAME))?
        .try_into()
        .map_err(|source| XdpError::Program {
            interface: "-".to_owned(),
            source,
        })
}

pub(super) fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, XdpError> {
    ebpf.map_mut(name).ok_or(XdpError::Missing(name))
}

type IfaceConfigBytes = [u8; flowpin_bpf::c_layout::IFACE_CONFIG_SIZE];
type LocalAddrBytes = [u8; flowpin_bpf::c_layout::LOCAL_ADDR_SIZE];

fn ifaces_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u32, IfaceConfigBytes>, XdpError> {
    HashMap::try_from(map_mut(ebpf, MAP_IFACES)?).map_err(|source| XdpError::Map {
        map: MAP_IFACES,
        source,
    })
}

fn local_map(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u32, LocalAddrBytes>, XdpError> {
    HashMap::try_from(map_mut(ebpf, MAP_LOCAL_ADDRS)?).map_err(|source| XdpError::Map {
        map: MAP_LOCAL_ADDRS,
        source,
    })
}

fn xsk_map(ebpf: &mut Ebpf) -> Result<XskMap<&mut MapData>, XdpError> {
    XskMap::try_from(map_mut(ebpf, MAP_XSKS)?).map_err(|source| XdpError::Map {
        map: MAP_XSKS,
        source,
    })
}
