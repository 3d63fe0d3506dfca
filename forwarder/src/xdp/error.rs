//! Errors of the XDP loader.

use std::io;

/// What went wrong loading, configuring or attaching the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The object could not be parsed or its maps created.
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The kernel rejected the program, or an attach/detach failed.
    #[error("XDP program on {interface}: {source}")]
    Program {
        /// The interface concerned ("-" when none).
        interface: String,
        /// The underlying error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The forwards need more keys than the forwarded-ports map holds.
    #[error(
        "the forwards need {wanted} (address, protocol, port) entries; the XDP map holds {max}"
    )]
    TooManyForwardPorts {
        /// Keys needed.
        wanted: usize,
        /// The map's size.
        max: u32,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: aya::maps::MapError,
    },
    /// The object lacks a program or map this loader expects (a build mismatch).
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// The interface's link layer cannot serve its role: the LAN must be Ethernet (the program
    /// budgets new flows per source MAC and the datapath answers LAN hosts by MAC); an uplink must be
    /// Ethernet or a device without a link layer (tun, PPP, raw-IP).
    #[error(
        "interface {interface}: its link layer can not serve as the {role:?} (the LAN must be Ethernet; an uplink Ethernet, tun, PPP or raw-IP)"
    )]
    LinkLayer {
        /// The interface name.
        interface: String,
        /// What it was to be.
        role: flowpin_bpf::Role,
    },
    /// The interface does not exist (in this network namespace).
    #[error("interface {interface}: {source}")]
    Interface {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The interface was not configured before use.
    #[error("interface {0} is not configured (configure_lan/configure_uplink first)")]
    NotConfigured(String),
    /// All `MAX_IFACES` slots are taken.
    #[error("no free interface slot for {0} (at most {max} interfaces)", max = flowpin_bpf::MAX_IFACES)]
    NoFreeSlot(String),
    /// A queue number beyond `MAX_QUEUES`.
    #[error("queue {queue} of {interface} is beyond the {max} queues the program supports", max = flowpin_bpf::MAX_QUEUES)]
    QueueOutOfRange {
        /// The interface name.
        interface: String,
        /// The queue.
        queue: u32,
    },
    /// Reading the CPU count for the per-CPU counters failed.
    #[error("reading the possible CPUs: {0}")]
    Cpus(io::Error),
    /// A port range with its first port after its last.
    #[error("empty NAT port range {min}..={max}")]
    EmptyPortRange {
        /// First port.
        min: u16,
        /// Last port.
        max: u16,
    },
    /// An attachment could not be pinned in bpffs.
    #[error("pinning the XDP link of {interface} at {path}: {reason}")]
    Pin {
        /// The interface name.
        interface: String,
        /// The pin path.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// The pin directory could not be prepared.
    #[error(transparent)]
    PinDir(#[from] super::pins::PinDirError),
}
