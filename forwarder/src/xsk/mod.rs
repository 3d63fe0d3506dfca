//! AF_XDP: sockets, UMEM and rings — the only module of the forwarder with `unsafe` code.
//!
//! A [`XskWorker`] owns one UMEM and one socket per (interface, queue) it serves ("ports"), all
//! sharing the UMEM (`XDP_SHARED_UMEM`), so a frame received on the LAN is transmitted on an
//! uplink by moving its descriptor — never copied in userspace. Each port has its own fill and
//! completion rings (the kernel requires one pair per (device, queue)); completions of every port
//! return to one free pool that refills every fill ring.
//!
//! The worker loop the datapath runs:
//! ```text
//! loop {
//!     worker.receive(BATCH, &mut batch);          // frames tagged with their port
//!     for frame in batch.drain(..) {               // read/rewrite with data()/data_mut()
//!         match verdict { Tx(port) => worker.transmit(frame, port)?, Drop => worker.recycle(frame) }
//!     }
//!     worker.flush();                              // TX rings, sendto() kicks, completions
//!     if idle { worker.wait(timeout)?; }           // or busy-poll
//! }
//! ```
//!
//! Invariants:
//! - Frame accounting is exact: `free + fill + rx + in_flight + tx + completion == total`
//!   ([`FrameAccounting`]), checked by a debug assertion after every receive and flush.
//! - A [`Frame`] is exclusive ownership of one chunk; it can only be used with its own worker.
//! - No allocation, lock or logging per packet; syscalls only for wakeups (`sendto`, `recvfrom`,
//!   `poll`).
//! - Ring layer: xdpilone 1.3 (EUPL-1.2), wrapped here. Its `fill()`/`transmit()` may grant fewer
//!   slots than are free (we loop, committing what we get), and its `insert()` must be given at
//!   most `capacity()` items (it consumes one extra item otherwise), so we give exactly that many.
//! - Every `unsafe` block carries a `// SAFETY:` comment.

mod accounting;
mod config;
mod counters;
mod error;
mod frame;
mod kernel_stats;
mod port;
mod sys;
mod umem_area;
mod worker;

pub use accounting::{FrameAccounting, FrameGauges};
pub use config::{XskConfig, XskMode};
pub use counters::{PortCounters, WorkerCounters};
pub use error::XskError;
pub use frame::{Frame, PortId};
pub use kernel_stats::{KernelSocketStats, KernelStatsGauges};
pub use sys::interface_index;
pub use worker::{ALLOC_HEADROOM, PortInfo, TxRefused, XskWaker, XskWorker};
