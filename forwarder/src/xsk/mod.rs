//! AF_XDP: sockets, UMEM and rings — the only module of the forwarder with `unsafe` code.
//!
//! Owns, per [`XskWorker`]: one UMEM; one socket per (interface, queue) it serves (a *port*), all
//! bound to that UMEM (`XDP_SHARED_UMEM`); per port a fill, RX, TX and completion ring (the kernel
//! wants one fill/completion pair per (device, queue)); one free pool that every completion returns
//! to and that refills every fill ring.
//!
//! Invariants:
//! - a frame crosses ports by moving its descriptor, never by copying its bytes in userspace;
//! - frame accounting is exact: `free + fill + rx + in_flight + tx + completion == total`
//!   ([`FrameAccounting`]), checked by a debug assertion after every receive and flush;
//! - a [`Frame`] is exclusive ownership of one chunk, usable only with the worker that gave it;
//! - no allocation, lock or logging per packet; syscalls only for wakeups (`sendto`, `recvfrom`,
//!   `poll`);
//! - xdpilone 1.3 (EUPL-1.2) is the ring layer, wrapped here: its `fill()`/`transmit()` may grant
//!   fewer slots than are free (we loop, committing what we get) and its `insert()` is given at most
//!   `capacity()` items (it consumes one extra item otherwise);
//! - every `unsafe` block carries a `// SAFETY:` comment.
//!
//! A worker's loop (the datapath's is [`crate::worker::run`]):
//! ```no_run
//! use flowpin::datapath::{self, Verdict};
//! use flowpin::xsk::{Frame, PortId, XskWorker};
//!
//! /// Serves `worker` forever: `decide` reads or rewrites a packet and says where it goes, `egress`
//! /// names the port of a datapath port.
//! fn serve(
//!     worker: &mut XskWorker,
//!     mut decide: impl FnMut(PortId, &mut [u8]) -> Verdict,
//!     egress: impl Fn(datapath::PortId) -> PortId,
//! ) -> std::io::Result<()> {
//!     let mut batch: Vec<Frame> = Vec::with_capacity(64);
//!     loop {
//!         if worker.receive(64, &mut batch) == 0 {
//!             worker.flush(); // completions of earlier transmissions
//!             worker.wait(100)?; // or busy-poll
//!             continue;
//!         }
//!         for mut frame in batch.drain(..) {
//!             let ingress = frame.rx_port().expect("a received frame has a port");
//!             match decide(ingress, worker.data_mut(&mut frame)) {
//!                 Verdict::Transmit { port, len } if frame.set_len(len as u32) => {
//!                     // A refused frame was counted and recycled by the worker.
//!                     let _refused = worker.transmit(frame, egress(port));
//!                 }
//!                 _ => worker.recycle(frame),
//!             }
//!         }
//!         worker.flush(); // TX rings, sendto() kicks, completions
//!     }
//! }
//! ```

mod accounting;
mod config;
mod counters;
mod error;
mod frame;
mod kernel_stats;
mod port;
#[allow(unsafe_code)] // rings and UMEM: the forwarder's only unsafe code
mod sys;
#[allow(unsafe_code)] // rings and UMEM: the forwarder's only unsafe code
mod umem_area;
#[allow(unsafe_code)] // rings and UMEM: the forwarder's only unsafe code
mod worker;

pub use accounting::{FrameAccounting, FrameGauges};
pub use config::{XskConfig, XskConfigError, XskMode};
pub use counters::{PortCounters, WorkerCounters};
pub use error::XskError;
pub use frame::{Frame, PortId};
pub use kernel_stats::{KernelSocketStats, KernelStatsGauges};
pub use sys::{hardware_type, interface_index};
pub use worker::{ALLOC_HEADROOM, PortInfo, TxRefused, XskWaker, XskWorker};
