//! Loads `flowpin-bpf`'s XDP program with aya, attaches it, and manages its maps.
//!
//! One [`XdpProgram`] serves the LAN interface and every uplink: one program object, shared maps
//! (layout in `bpf/c/flowpin_maps.h`). The usual order is: [`XdpProgram::load`], configure every
//! interface ([`XdpProgram::configure_lan`], [`XdpProgram::configure_uplink`]) and the router's own
//! addresses ([`XdpProgram::set_host_addresses`]), register the AF_XDP sockets
//! ([`XdpProgram::register_worker`]), then [`XdpProgram::attach`] each interface.
//!
//! Invariants:
//! - An interface is configured (role, slot) before it is attached, so the program never sees a
//!   packet of an attached interface without knowing its role.
//! - Every configured interface has its own slot `< MAX_IFACES`; its queue `q` has the XSKMAP key
//!   `slot * MAX_QUEUES + q`. A queue without a socket drops what the program would redirect.
//! - The local-address map holds exactly the uplinks' NAT addresses (with their ranges) and the host
//!   addresses last set; the control plane re-sets both whenever the kernel's addresses change.
//! - The forwarded-ports map holds exactly the forwards last set under the uplinks' current NAT
//!   addresses ([`XdpProgram::set_forwards`]; re-derived when an uplink's address changes).
//! - Attachments are bpf_links. Pinned in a [`PinDir`] (what `flowpin run` does) they outlive the
//!   process, `kill -9` included: transit then meets an empty XSKMAP and is dropped, and the next
//!   start replaces the program inside the same links, atomically. Not pinned, dropping the
//!   [`XdpProgram`] detaches them. Only [`XdpProgram::detach`] (and removing the pins) detaches a
//!   pinned link.

mod admission;
mod attach_mode;
mod attachment;
mod counters;
mod error;
mod forward_ports;
mod pins;
mod program;

pub use attach_mode::{AttachMode, AttachedMode};
pub use counters::DecisionCounters;
pub use error::XdpError;
pub use forward_ports::ForwardPorts;
pub use pins::{BPFFS, PinDir, PinDirError};
pub use program::{HostAddressChange, InterfaceInfo, XdpProgram};
