//! A worker's AF_XDP I/O: one UMEM shared by one socket per (interface, queue).
//!
//! A frame received on one port is transmitted on another by moving its descriptor: the bytes
//! stay where the kernel wrote them. Frame flow:
//!
//! ```text
//! free pool ─refill─► fill ring(p) ─kernel─► RX ring(p) ─receive─► datapath (in flight)
//!     ▲                                                               │ transmit(q) / recycle
//!     └──── reap ◄── completion ring(q) ◄─kernel─ TX ring(q) ◄─flush── staged(q)
//! ```
//!
//! Completions of any port return to the shared free pool, which refills every port's fill ring:
//! the uplinks' completions feed the LAN's fill ring and vice versa. The accounting invariant
//! (see [`FrameAccounting`]) is checked by a debug assertion after every receive and flush.
//!
//! Per-packet work does no allocation (the batch and staging buffers are sized at setup), no
//! locking, no logging; the only syscalls are the wakeups: `sendto()` in [`XskWorker::flush`]
//! when a TX ring has work (copy mode only transmits inside it), `recvfrom()` when a fill ring
//! flags `need_wakeup`, and `poll()` in [`XskWorker::wait`].

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use xdpilone::xdp::XdpDesc;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

use super::accounting::FrameLedger;
use super::port::Port;
use super::umem_area::UmemArea;
use super::{
    Frame, FrameAccounting, KernelSocketStats, PortCounters, PortId, WorkerCounters, XskConfig,
    XskError, XskMode, sys,
};

/// Smallest frame the worker transmits: an Ethernet header.
const MIN_TX_LEN: u32 = 14;

/// Why [`XskWorker::transmit`] refused a frame (it was counted and recycled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxRefused {
    /// The packet is shorter than an Ethernet header.
    RuntFrame,
    /// The port's TX queue had no room.
    QueueFull,
}
/// Where an allocated frame's packet starts: the headroom the kernel leaves on RX.
pub const ALLOC_HEADROOM: u32 = 256;

/// Source of worker identities, so a [`Frame`] can only be used with the worker that made it.
static NEXT_WORKER_ID: AtomicU64 = AtomicU64::new(1);

/// One port of a worker as seen from outside (for XSKMAP registration and status).
#[derive(Debug, Clone, Copy)]
pub struct PortInfo<'a> {
    /// Index in the worker.
    pub port: PortId,
    /// Interface name.
    pub interface: &'a str,
    /// Interface index.
    pub ifindex: u32,
    /// Queue the socket is bound to.
    pub queue: u32,
    /// The socket, to insert into the XSKMAP.
    pub socket: BorrowedFd<'a>,
    /// Whether the socket runs zero-copy.
    pub zerocopy: bool,
    /// Frames one `sendto()` may transmit (32 unless raised).
    pub tx_budget: u32,
    /// Whether the device has no link layer: frames leave without their Ethernet header.
    pub layer3: bool,
}

/// Wakes a worker sleeping in [`XskWorker::wait`] from another thread (an eventfd polled beside the
/// sockets), so a stop request is seen at once instead of after the poll timeout.
#[derive(Debug, Clone)]
pub struct XskWaker(Arc<OwnedFd>);

impl XskWaker {
    /// Makes the worker's current or next `wait` return immediately.
    pub fn wake(&self) {
        sys::eventfd_signal(self.0.as_raw_fd());
    }
}

/// A worker's AF_XDP sockets over one shared UMEM. Not `Sync`: one thread drives it.
pub struct XskWorker {
    // Field order is drop order: sockets close before the UMEM registration, the mapping last.
    ports: Vec<Port>,
    umem: Umem,
    free: Vec<u64>,
    ledger: FrameLedger,
    counters: WorkerCounters,
    /// One per port, then the waker's eventfd.
    pollfds: Vec<libc::pollfd>,
    waker: Arc<OwnedFd>,
    fill_target: u32,
    alloc_reserve: u32,
    frame_size: u32,
    need_wakeup: bool,
    id: u64,
    next_rx_port: usize,
    area: UmemArea,
}

// SAFETY: the worker exclusively owns its UMEM mapping and sockets; the raw pointers inside
// (`UmemArea`, xdpilone's `Umem` and rings) refer to that memory and to kernel-shared ring
// mappings, which are not tied to a thread. All access goes through `&mut self` (or `&self` plus
// an exclusive `&mut Frame`), so moving the whole worker to another thread is sound. It is
// deliberately not `Sync`.
unsafe impl Send for XskWorker {}

impl std::fmt::Debug for XskWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskWorker")
            .field("id", &self.id)
            .field("ports", &self.ports)
            .field("free", &self.free.len())
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl XskWorker {
    /// Creates the UMEM and binds one socket per `(interface, queue)` of `ports` to it (the first
    /// socket owns the UMEM; the others share it, bound with flags 0 as the kernel requires, and
    /// inherit its copy/zero-copy and need-wakeup settings). Fills every fill ring. The sockets
    /// receive nothing until registered in the XDP program's XSKMAP
    /// (`crate::xdp::XdpProgram::register_worker`).
    pub fn new(config: &XskConfig, ports: &[(&str, u32)]) -> Result<Self, XskError> {
        config.validate(ports.len()).map_err(XskError::Config)?;
        let area_len = config.frame_count as usize * config.frame_size as usize;
        let area = UmemArea::new(area_len).map_err(|e| XskError::os("mmap UMEM", "-", 0, e))?;
        let umem_config = UmemConfig {
            fill_size: config.ring_size,
            complete_size: config.ring_size,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is a page-aligned private mapping of `area_len` bytes that outlives the
        // `Umem` (it is the worker's last field, dropped after `umem` and the sockets).
        let umem = unsafe { Umem::new(umem_config, area.as_slice_ptr()) }
            .map_err(|e| XskError::errno("UMEM registration", "-", 0, e))?;

        let mut first_bind_flags = match config.mode {
            XskMode::Auto => 0,
            XskMode::Copy => SocketConfig::XDP_BIND_COPY,
            XskMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
        };
        if config.need_wakeup {
            first_bind_flags |= SocketConfig::XDP_BIND_NEED_WAKEUP;
        }
        let mut bound = Vec::with_capacity(ports.len());
        for (index, &(name, queue)) in ports.iter().enumerate() {
            let bind_flags = if index == 0 { first_bind_flags } else { 0 };
            bound.push(bind_port(
                &umem,
                config,
                name,
                queue,
                index == 0,
                bind_flags,
            )?);
        }

        let free = (0..u64::from(config.frame_count))
            .map(|frame| frame * u64::from(config.frame_size))
            .rev()
            .collect();
        let waker = Arc::new(sys::eventfd().map_err(|e| XskError::os("eventfd", "-", 0, e))?);
        let pollfds = bound
            .iter()
            .map(|port| port.fd)
            .chain([waker.as_raw_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut worker = Self {
            ports: bound,
            umem,
            free,
            ledger: FrameLedger {
                total: u64::from(config.frame_count),
                ..FrameLedger::default()
            },
            counters: WorkerCounters::default(),
            pollfds,
            waker,
            fill_target: config.effective_fill_target(ports.len()),
            alloc_reserve: config.alloc_reserve,
            frame_size: config.frame_size,
            need_wakeup: config.need_wakeup,
            id: NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed),
            next_rx_port: 0,
            area,
        };
        worker.refill();
        worker.debug_check_accounting();
        Ok(worker)
    }

    /// The worker's ports, in the order given to [`Self::new`].
    pub fn ports(&self) -> impl Iterator<Item = PortInfo<'_>> {
        self.ports.iter().enumerate().map(|(index, port)| PortInfo {
            port: PortId(index as u16),
            interface: &port.name,
            ifindex: port.ifindex,
            queue: port.queue,
            // SAFETY: `port.fd` is the socket owned by `port` (via its rings), open for as long as
            // `self` is borrowed.
            socket: unsafe { BorrowedFd::borrow_raw(port.fd) },
            zerocopy: port.zerocopy,
            tx_budget: port.tx_budget,
            layer3: port.link_header_skip != 0,
        })
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The port bound to `(interface, queue)`, if any.
    pub fn port_of(&self, interface: &str, queue: u32) -> Option<PortId> {
        self.ports
            .iter()
            .position(|port| port.name == interface && port.queue == queue)
            .map(|index| PortId(index as u16))
    }

    /// Moves up to `max` received frames into `batch` (appending; call with a batch whose
    /// capacity covers `max` so this never allocates), tagging each with its port. Ports are
    /// served round-robin. Reaps completions first and tops the fill rings up after. Returns the
    /// number of frames appended.
    pub fn receive(&mut self, max: usize, batch: &mut Vec<Frame>) -> usize {
        debug_assert!(
            batch.capacity() - batch.len() >= max,
            "batch would reallocate"
        );
        self.reap_completions();
        let mut received = 0;
        let port_count = self.ports.len();
        for step in 0..port_count {
            let index = (self.next_rx_port + step) % port_count;
            let budget = (max - received).min(u32::MAX as usize) as u32;
            if budget == 0 {
                break;
            }
            received += self.receive_port(index, budget, batch);
        }
        self.next_rx_port = (self.next_rx_port + 1) % port_count;
        self.refill();
        self.debug_check_accounting();
        received
    }

    /// The packet bytes of a frame (`start..start + len` of its chunk).
    ///
    /// # Panics
    /// If the frame belongs to another worker.
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let chunk = self.chunk_ptr(frame);
        // SAFETY: `chunk_ptr` checked the frame is this worker's, so it names a chunk of
        // `frame_size` bytes inside our mapping that the kernel does not touch while a `Frame`
        // owns it; `start + len <= capacity == frame_size` is a `Frame` invariant.
        unsafe { std::slice::from_raw_parts(chunk.add(frame.start as usize), frame.len as usize) }
    }

    /// The packet bytes of a frame, writable in place.
    ///
    /// # Panics
    /// If the frame belongs to another worker.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let chunk = self.chunk_ptr(frame);
        // SAFETY: as in `data`; additionally `&mut Frame` is exclusive and no two live frames name
        // the same chunk, so this is the only reference to these bytes.
        unsafe {
            std::slice::from_raw_parts_mut(chunk.add(frame.start as usize), frame.len as usize)
        }
    }

    /// The whole chunk of a frame (headroom, packet and tailroom), to build a packet in; set the
    /// packet's bounds afterwards with [`Frame::set_bounds`].
    ///
    /// # Panics
    /// If the frame belongs to another worker.
    pub fn chunk_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let chunk = self.chunk_ptr(frame);
        // SAFETY: as in `data_mut`, for the whole chunk of `capacity == frame_size` bytes.
        unsafe { std::slice::from_raw_parts_mut(chunk, frame.capacity as usize) }
    }

    /// Verdict "transmit on `port`": queues the frame's packet for that port's TX ring (written
    /// to the ring by [`Self::flush`]). A full TX queue or a packet shorter than an Ethernet
    /// header drops the frame (counted) and recycles it, and says which.
    ///
    /// # Errors
    /// Why the frame was not queued.
    ///
    /// # Panics
    /// If the frame belongs to another worker or `port` does not exist.
    pub fn transmit(&mut self, frame: Frame, port: PortId) -> Result<(), TxRefused> {
        self.check_owner(&frame);
        let target = &mut self.ports[port.index()];
        // On an L3 device the packet starts after the frame's (synthetic) Ethernet header.
        let skip = target.link_header_skip;
        if frame.len < MIN_TX_LEN || frame.len <= skip {
            target.counters.tx_dropped_invalid += 1;
            self.return_to_pool(frame);
            return Err(TxRefused::RuntFrame);
        }
        if target.staged.len() == target.staged.capacity() {
            target.counters.tx_dropped_ring_full += 1;
            self.return_to_pool(frame);
            return Err(TxRefused::QueueFull);
        }
        target.staged.push_back(XdpDesc {
            addr: frame.umem_addr() + u64::from(skip),
            len: frame.len - skip,
            options: 0,
        });
        target.counters.tx_packets += 1;
        target.counters.tx_bytes += u64::from(frame.len - skip);
        self.ledger.in_flight -= 1;
        self.ledger.kernel_tx += 1;
        Ok(())
    }

    /// Verdict "drop": the frame goes back to the free pool.
    ///
    /// # Panics
    /// If the frame belongs to another worker.
    pub fn recycle(&mut self, frame: Frame) {
        self.check_owner(&frame);
        self.counters.recycled += 1;
        self.return_to_pool(frame);
    }

    /// A fresh frame for a packet the datapath originates (ICMP error, TCP RST), with
    /// [`ALLOC_HEADROOM`] bytes of headroom and length 0; `None` if the free pool is empty.
    pub fn alloc_frame(&mut self) -> Option<Frame> {
        let Some(chunk) = self.free.pop() else {
            self.counters.alloc_failed += 1;
            return None;
        };
        self.ledger.in_flight += 1;
        Some(Frame {
            owner: self.id,
            chunk,
            start: ALLOC_HEADROOM,
            len: 0,
            capacity: self.frame_size,
            rx_port: None,
        })
    }

    /// Pushes the queued transmissions into the TX rings, wakes the kernel where a ring has
    /// work (copy mode only transmits inside `sendto()`), reaps completions and tops the fill
    /// rings up. Call once per batch, after the verdicts.
    pub fn flush(&mut self) {
        for port in &mut self.ports {
            push_staged(port);
            // `pending` = descriptors committed and not yet consumed by the kernel.
            if port.tx.pending() > 0 && (!self.need_wakeup || port.tx.needs_wakeup()) {
                port.counters.tx_kicks += 1;
                if sys::kick_tx(port.fd).is_err() {
                    port.counters.tx_kick_errors += 1;
                }
            }
        }
        self.reap_completions();
        self.refill();
        self.debug_check_accounting();
    }

    /// Sleeps in `poll()` until a port has received frames, the [`XskWaker`] is woken, or
    /// `timeout_ms` passes (−1: forever). Returns whether a port is readable or the waker fired.
    /// Flush before waiting so no transmission is left staged.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        for pollfd in &mut self.pollfds {
            pollfd.revents = 0;
        }
        let ready = sys::poll(&mut self.pollfds, timeout_ms)? > 0;
        if self.pollfds.last().is_some_and(|p| p.revents != 0) {
            sys::eventfd_drain(self.waker.as_raw_fd());
        }
        Ok(ready)
    }

    /// A handle that wakes this worker's [`Self::wait`] from another thread.
    pub fn waker(&self) -> XskWaker {
        XskWaker(self.waker.clone())
    }

    /// Whether any transmission is staged or not yet completed.
    pub fn tx_outstanding(&self) -> bool {
        self.ledger.kernel_tx > 0
    }

    /// Where every frame is now.
    pub fn accounting(&self) -> FrameAccounting {
        let rx_ready: u64 = self
            .ports
            .iter()
            .map(|port| u64::from(port.rx.available()))
            .sum();
        let completion_ready: u64 = self
            .ports
            .iter()
            .map(|port| u64::from(port.device.available()))
            .sum();
        self.ledger
            .snapshot(self.free.len() as u64, rx_ready, completion_ready)
    }

    /// Counters of one port.
    pub fn port_counters(&self, port: PortId) -> PortCounters {
        self.ports[port.index()].counters
    }

    /// Worker-wide counters.
    pub fn counters(&self) -> WorkerCounters {
        self.counters
    }

    /// The kernel's counters of a port's socket (one `getsockopt`).
    pub fn kernel_stats(&self, port: PortId) -> io::Result<KernelSocketStats> {
        let stats = self.ports[port.index()]
            .user
            .statistics_v2()
            .map_err(|errno| io::Error::from_raw_os_error(errno.get_raw().abs()))?;
        Ok(KernelSocketStats {
            rx_dropped: stats.rx_dropped,
            rx_invalid_descs: stats.rx_invalid_descs,
            tx_invalid_descs: stats.tx_invalid_descs,
            rx_ring_full: stats.rx_ring_full,
            rx_fill_ring_empty_descs: stats.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: stats.tx_ring_empty_descs,
        })
    }

    /// Size of each frame's chunk.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    fn receive_port(&mut self, index: usize, budget: u32, batch: &mut Vec<Frame>) -> usize {
        let mask = !(u64::from(self.frame_size) - 1);
        let port = &mut self.ports[index];
        let mut read = port.rx.receive(budget);
        let mut count = 0usize;
        let mut bytes = 0u64;
        while let Some(desc) = read.read() {
            let chunk = desc.addr & mask;
            let start = (desc.addr - chunk) as u32;
            let len = desc.len.min(self.frame_size - start);
            bytes += u64::from(len);
            count += 1;
            batch.push(Frame {
                owner: self.id,
                chunk,
                start,
                len,
                capacity: self.frame_size,
                rx_port: Some(PortId(index as u16)),
            });
        }
        read.release();
        drop(read);
        port.kernel_rx -= count as u64;
        port.counters.rx_packets += count as u64;
        port.counters.rx_bytes += bytes;
        self.ledger.kernel_rx -= count as u64;
        self.ledger.in_flight += count as u64;
        count
    }

    /// Moves completed transmissions of every port back to the free pool.
    fn reap_completions(&mut self) {
        let mask = !(u64::from(self.frame_size) - 1);
        for port in &mut self.ports {
            let available = port.device.available();
            if available == 0 {
                continue;
            }
            let mut read = port.device.complete(available);
            let mut count = 0u64;
            while let Some(addr) = read.read() {
                self.free.push(addr & mask);
                count += 1;
            }
            read.release();
            drop(read);
            port.counters.tx_completed += count;
            self.ledger.kernel_tx -= count;
        }
    }

    /// Tops every port's fill ring up to the fill target, keeping `alloc_reserve` frames in the
    /// pool; wakes a port's RX if the kernel asks for it.
    fn refill(&mut self) {
        for port in &mut self.ports {
            let wanted = u64::from(self.fill_target).saturating_sub(port.kernel_rx);
            let spare = (self.free.len() as u64).saturating_sub(u64::from(self.alloc_reserve));
            let mut remaining = wanted.min(spare) as u32;
            if wanted > 0 && remaining == 0 {
                port.counters.fill_starved += 1;
            }
            while remaining > 0 {
                let mut write = port.device.fill(remaining);
                let granted = write.capacity();
                if granted == 0 {
                    break;
                }
                // xdpilone needs exactly `capacity()` items: extra ones would be consumed and lost.
                let start = self.free.len() - granted as usize;
                let inserted = write.insert(self.free.drain(start..));
                debug_assert_eq!(inserted, granted);
                write.commit();
                drop(write);
                port.kernel_rx += u64::from(granted);
                self.ledger.kernel_rx += u64::from(granted);
                remaining -= granted;
            }
            if self.need_wakeup && port.device.needs_wakeup() {
                sys::wake_rx(port.fd);
            }
        }
    }

    fn return_to_pool(&mut self, frame: Frame) {
        self.free.push(frame.chunk);
        self.ledger.in_flight -= 1;
    }

    fn check_owner(&self, frame: &Frame) {
        assert_eq!(
            frame.owner, self.id,
            "frame used with a worker that did not create it"
        );
    }

    fn chunk_ptr(&self, frame: &Frame) -> *mut u8 {
        self.check_owner(frame);
        let end = frame.chunk as usize + self.frame_size as usize;
        assert!(end <= self.area.len(), "frame outside the UMEM");
        // SAFETY: `chunk + frame_size <= len` was just checked, so the offset stays in the mapping.
        unsafe { self.area.base().as_ptr().add(frame.chunk as usize) }
    }

    fn debug_check_accounting(&self) {
        debug_assert!(
            self.ledger.balances(self.free.len() as u64),
            "frame accounting broken: free {} + {:?} != total",
            self.free.len(),
            self.ledger
        );
    }

    /// The UMEM registration (kept alive for the sockets; exposed for diagnostics).
    pub fn umem_frames(&self) -> u32 {
        self.umem.len_frames()
    }
}

/// Writes as many staged descriptors as the TX ring takes (it may grant fewer than free).
fn push_staged(port: &mut Port) {
    while !port.staged.is_empty() {
        let mut write = port
            .tx
            .transmit(port.staged.len().min(u32::MAX as usize) as u32);
        let granted = write.capacity() as usize;
        if granted == 0 {
            break;
        }
        let inserted = write.insert(port.staged.drain(..granted));
        debug_assert_eq!(inserted as usize, granted);
        write.commit();
    }
}

/// Creates, configures and binds one port's socket.
fn bind_port(
    umem: &Umem,
    config: &XskConfig,
    name: &str,
    queue: u32,
    owns_umem: bool,
    bind_flags: u16,
) -> Result<Port, XskError> {
    let c_name = CString::new(name).map_err(|_| {
        XskError::os(
            "interface name",
            name,
            queue,
            io::ErrorKind::InvalidInput.into(),
        )
    })?;
    let mut info = IfInfo::invalid();
    info.from_name(&c_name)
        .map_err(|e| XskError::errno("interface lookup", name, queue, e))?;
    info.set_queue(queue);
    let socket = if owns_umem {
        Socket::with_shared(&info, umem)
    } else {
        Socket::new(&info)
    }
    .map_err(|e| XskError::errno("socket", name, queue, e))?;
    let device = umem
        .fq_cq(&socket)
        .map_err(|e| XskError::errno("fill/completion rings", name, queue, e))?;
    let ring = NonZeroU32::new(config.ring_size);
    let user = umem
        .rx_tx(
            &socket,
            &SocketConfig {
                rx_size: ring,
                tx_size: ring,
                bind_flags,
            },
        )
        .map_err(|e| XskError::errno("rx/tx rings", name, queue, e))?;
    let rx = user
        .map_rx()
        .map_err(|e| XskError::errno("mmap rx ring", name, queue, e))?;
    let tx = user
        .map_tx()
        .map_err(|e| XskError::errno("mmap tx ring", name, queue, e))?;
    umem.bind(&user)
        .map_err(|e| XskError::errno("bind", name, queue, e))?;
    let fd = user.as_raw_fd();
    let requested_budget = config.effective_tx_budget();
    let tx_budget = match sys::set_tx_budget(fd, requested_budget) {
        Ok(()) => requested_budget,
        Err(_) => 32, // kernel without XDP_MAX_TX_SKB_BUDGET: its fixed default
    };
    let zerocopy = sys::is_zerocopy(fd).map_err(|e| XskError::os("XDP_OPTIONS", name, queue, e))?;
    Ok(Port {
        name: name.to_owned(),
        ifindex: info.ifindex(),
        queue,
        fd,
        zerocopy,
        tx_budget,
        device,
        rx,
        tx,
        user,
        staged: VecDeque::with_capacity(config.ring_size as usize),
        kernel_rx: 0,
        counters: PortCounters::default(),
        link_header_skip: link_header_skip(name)?,
    })
}

/// Bytes of a frame's head that are not sent on device `name`: its synthetic Ethernet header on a
/// device without a link layer (tun, PPP, raw-IP; the XDP program pushed it on receive and the
/// datapath wrote it as for any uplink), nothing on Ethernet.
fn link_header_skip(name: &str) -> Result<u32, XskError> {
    let arphrd = sys::hardware_type(name)
        .map_err(|e| XskError::os("reading the hardware type (SIOCGIFHWADDR)", name, 0, e))?;
    Ok(match crate::link_kind::LinkKind::of_hardware_type(arphrd) {
        Some(crate::link_kind::LinkKind::Layer3) => MIN_TX_LEN,
        _ => 0,
    })
}
