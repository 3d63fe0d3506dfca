//! A datapath worker: one thread serving one queue through one AF_XDP worker (one UMEM shared by its
//! LAN and uplink sockets), and the pool of the running workers.
//!
//! Owns the worker loop ([`run`]), the translation between datapath and AF_XDP ports ([`PortMap`]),
//! the workers of one I/O generation ([`WorkerPool`]), the time base they share ([`Clock`]) and what
//! each publishes for the control plane ([`WorkerGauges`]).
//!
//! One iteration of the loop: receive a batch; read `now` and load the control plane's snapshot once;
//! parse the batch and look all its flows up at once; run the pipeline on every frame; queue each frame
//! on its egress port or recycle it; flush the rings once. With nothing received it sleeps in `poll()`
//! (idle = poll) or spins (idle = busy-poll).
//!
//! Invariants:
//! - no allocation, lock, log or syscall per packet (the rings' wakeups aside);
//! - the datapath names an egress by uplink slot ([`PortId`] `1 + slot`, stable for an uplink's
//!   life), a worker's sockets are the interfaces configured now (one per interface, however many
//!   uplinks share it): [`PortMap`] translates, and a frame for a slot with no socket is dropped as
//!   `UplinkGone`;
//! - stopping a pool sets the stop flag, then wakes every worker ([`crate::xsk::XskWaker`]) so none
//!   sleeps out its poll timeout, and hands the AF_XDP workers back for the next generation;
//! - a worker publishes its frame states ([`crate::xsk::FrameAccounting`]) and its sockets' kernel
//!   counters ([`crate::xsk::KernelSocketStats`]) every [`PUBLISH_EVERY_BATCHES`] batches and when it
//!   goes idle with batches unpublished: an idle worker's figures are current, a busy one's at most
//!   that many batches old; a publication is relaxed stores and one `getsockopt` per port.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use flowpin_nat::FragmentLimits;

use crate::config::{Datapath, IdleStrategy};
use crate::datapath::{
    BATCH, DatapathCounters, DropReason, Flows, Fragments, Pipeline, PortId, PreparedBatch,
    SnapshotCell, Verdict,
};
use crate::xsk::{
    self, FrameAccounting, FrameGauges, KernelSocketStats, KernelStatsGauges, TxRefused, XskWorker,
};

/// How long an idle worker sleeps in `poll()` before looking at the stop flag again.
const IDLE_POLL_MS: i32 = 100;

/// A busy worker publishes its frame states once per this many batches.
pub const PUBLISH_EVERY_BATCHES: u32 = 64;

/// When a worker publishes its frame states: after every [`PUBLISH_EVERY_BATCHES`]-th batch, and
/// when it goes idle with batches processed since the last publication.
#[derive(Debug, Default)]
struct PublishCadence {
    unpublished_batches: u32,
}

impl PublishCadence {
    /// A batch was processed: whether to publish now.
    #[inline]
    fn batch_done(&mut self) -> bool {
        self.unpublished_batches += 1;
        self.take(self.unpublished_batches >= PUBLISH_EVERY_BATCHES)
    }

    /// No frame arrived: whether to publish now.
    #[inline]
    fn idle(&mut self) -> bool {
        self.take(self.unpublished_batches > 0)
    }

    #[inline]
    fn take(&mut self, publish: bool) -> bool {
        if publish {
            self.unpublished_batches = 0;
        }
        publish
    }
}

/// What a worker publishes for the control plane: where its frames are and its sockets' kernel
/// counters.
#[derive(Debug)]
pub struct WorkerGauges {
    /// Its UMEM frames by state.
    pub frames: FrameGauges,
    /// By AF_XDP port: the kernel's counters of that socket.
    pub kernel: KernelStatsGauges,
}

impl WorkerGauges {
    /// Gauges for `xsk`'s ports, nothing published yet.
    pub fn for_worker(xsk: &XskWorker) -> Self {
        Self {
            frames: FrameGauges::default(),
            kernel: KernelStatsGauges::new(xsk.port_count()),
        }
    }

    /// Publishes `xsk`'s frame states and reads its sockets' kernel counters (one `getsockopt` per
    /// port; a failed read keeps the port's previous reading).
    fn publish(&self, xsk: &XskWorker) {
        self.frames.publish(&xsk.accounting());
        for port in xsk.ports().map(|info| info.port) {
            if let Ok(stats) = xsk.kernel_stats(port) {
                self.kernel.publish(port, &stats);
            }
        }
    }
}

/// The time base every worker and the control plane share: milliseconds of the kernel's
/// `CLOCK_MONOTONIC` (since boot), so the times a stopped daemon saved in its state file (UDP
/// refresh stamps, quarantine deadlines) mean the same to the next process of the same boot.
/// Read once per batch (a vDSO call, as `Instant::now` is).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    _private: (),
}

impl Clock {
    /// The shared clock.
    pub fn start() -> Self {
        Self { _private: () }
    }

    /// Milliseconds since boot (never 0, so 0 can mean "never").
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        now.tv_sec as u64 * 1_000 + now.tv_nsec as u64 / 1_000_000 + 1
    }
}

/// What a worker shares with the others and the control plane.
#[derive(Debug, Clone)]
pub struct WorkerShared {
    /// The current snapshot.
    pub snapshot: Arc<SnapshotCell>,
    /// The flow table.
    pub flows: Arc<Flows>,
    /// Set to stop every worker.
    pub stop: Arc<AtomicBool>,
    /// The common time base.
    pub clock: Clock,
    /// The bounds of each worker's IPv4 fragment state (`[datapath] fragment_*`).
    pub fragment_limits: FragmentLimits,
}

/// Translation between datapath ports (0 = LAN, `1 + slot` = uplink slot) and a worker's AF_XDP ports.
///
/// Several uplinks on one interface share its AF_XDP port: each transmits through it, and a frame
/// received on it is named by the first of them (the datapath finds the uplink a frame is for from
/// its flow or its destination address, not from this name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// By datapath port: the AF_XDP port serving it (`None`: no socket, e.g. a retired slot).
    to_xsk: Box<[Option<xsk::PortId>]>,
    /// By AF_XDP port: the datapath port its received frames are named by.
    to_datapath: Box<[PortId]>,
}

impl PortMap {
    /// The map of a worker whose AF_XDP port `i` serves the datapath ports `served[i]` (at least
    /// one each; received frames are named `served[i][0]`).
    ///
    /// # Panics
    /// When a datapath port appears twice, or an AF_XDP port serves none.
    pub fn new(served: &[Vec<PortId>]) -> Self {
        let len = (served.iter().flatten())
            .map(|p| usize::from(p.0) + 1)
            .max()
            .unwrap_or(0);
        let mut to_xsk = vec![None; len];
        for (index, ports) in served.iter().enumerate() {
            for port in ports {
                let slot = &mut to_xsk[usize::from(port.0)];
                assert!(slot.is_none(), "datapath port {} served twice", port.0);
                *slot = Some(xsk::PortId(index as u16));
            }
        }
        let to_datapath = (served.iter())
            .map(|ports| {
                *ports
                    .first()
                    .expect("an AF_XDP port serves a datapath port")
            })
            .collect();
        Self {
            to_xsk: to_xsk.into(),
            to_datapath,
        }
    }

    /// The AF_XDP port that transmits for datapath port `port`, if any.
    #[inline]
    pub fn xsk_port(&self, port: PortId) -> Option<xsk::PortId> {
        self.to_xsk.get(usize::from(port.0)).copied().flatten()
    }

    /// The datapath port of a frame received on AF_XDP port `port`.
    #[inline]
    pub fn datapath_port(&self, port: xsk::PortId) -> PortId {
        self.to_datapath[usize::from(port.0)]
    }
}

/// The running workers of one I/O generation.
#[derive(Debug)]
pub struct WorkerPool {
    stop: Arc<AtomicBool>,
    wakers: Vec<xsk::XskWaker>,
    threads: Vec<JoinHandle<XskWorker>>,
    /// By worker: what it published.
    gauges: Vec<Arc<WorkerGauges>>,
    /// By worker: its port map (to name the ports of its kernel counters).
    port_maps: Vec<PortMap>,
}

impl WorkerPool {
    /// Starts one thread per AF_XDP worker; worker `i` counts into `counters[i]` and is pinned to
    /// `cores[i % len]` when `cores` is not empty; `settings` gives the idle strategy and the bounds of
    /// each worker's fragment state.
    ///
    /// # Panics
    /// When `counters` has fewer entries than `workers`.
    pub fn start(
        workers: Vec<(XskWorker, PortMap)>,
        snapshot: &Arc<SnapshotCell>,
        flows: &Arc<Flows>,
        clock: Clock,
        counters: &[Arc<DatapathCounters>],
        settings: &Datapath,
        cores: &[core_affinity::CoreId],
    ) -> std::io::Result<Self> {
        let idle = settings.idle;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = WorkerShared {
            snapshot: snapshot.clone(),
            flows: flows.clone(),
            stop: stop.clone(),
            clock,
            fragment_limits: settings.fragment_limits(),
        };
        let mut pool = Self {
            stop,
            wakers: Vec::new(),
            threads: Vec::new(),
            gauges: Vec::new(),
            port_maps: Vec::new(),
        };
        for (index, (xsk, ports)) in workers.into_iter().enumerate() {
            pool.wakers.push(xsk.waker());
            let gauges = Arc::new(WorkerGauges::for_worker(&xsk));
            pool.gauges.push(gauges.clone());
            pool.port_maps.push(ports.clone());
            let shared = shared.clone();
            let counters = counters[index].clone();
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let spawned = std::thread::Builder::new()
                .name(format!("flowpin-w{index}"))
                .spawn(move || {
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        tracing::warn!(
                            worker = index,
                            cpu = core.id,
                            "could not pin the worker to its CPU"
                        );
                    }
                    run(xsk, ports, shared, counters, &gauges, idle)
                });
            match spawned {
                Ok(thread) => pool.threads.push(thread),
                Err(error) => {
                    let _ = pool.stop();
                    return Err(error);
                }
            }
        }
        Ok(pool)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether the pool has no worker.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// By worker: where its UMEM frames were at its last publication (`None` before its first).
    pub fn frame_states(&self) -> Vec<Option<FrameAccounting>> {
        self.gauges.iter().map(|g| g.frames.read()).collect()
    }

    /// By worker: each of its ports' datapath port and kernel counters at its last publication
    /// (ports with no reading yet are left out).
    pub fn kernel_stats(&self) -> Vec<Vec<(PortId, KernelSocketStats)>> {
        self.gauges
            .iter()
            .zip(&self.port_maps)
            .map(|(gauges, ports)| {
                gauges
                    .kernel
                    .read()
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, stats)| {
                        Some((ports.datapath_port(xsk::PortId(index as u16)), stats?))
                    })
                    .collect()
            })
            .collect()
    }

    /// Stops every worker (each finishes its batch and flushes) and returns their AF_XDP workers.
    ///
    /// # Errors
    /// When a worker thread panicked (the others are still joined).
    pub fn stop(self) -> anyhow::Result<Vec<XskWorker>> {
        self.stop.store(true, Ordering::Relaxed);
        for waker in &self.wakers {
            waker.wake();
        }
        let mut workers = Vec::with_capacity(self.threads.len());
        let mut panicked = false;
        for thread in self.threads {
            match thread.join() {
                Ok(xsk) => workers.push(xsk),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            anyhow::bail!("a worker panicked");
        }
        Ok(workers)
    }
}

/// Runs a worker until `shared.stop` is set. `ports` maps its AF_XDP ports to datapath ports; its
/// frame states and kernel counters are published into `gauges` (at start, every
/// [`PUBLISH_EVERY_BATCHES`] batches, on going idle, and at the end).
pub fn run(
    mut xsk: XskWorker,
    ports: PortMap,
    shared: WorkerShared,
    counters: Arc<DatapathCounters>,
    gauges: &WorkerGauges,
    idle: IdleStrategy,
) -> XskWorker {
    let mut batch = Vec::with_capacity(BATCH);
    let mut prepared = PreparedBatch::new();
    let fragments = RefCell::new(Fragments::new(shared.fragment_limits));
    let mut cadence = PublishCadence::default();
    gauges.publish(&xsk);
    while !shared.stop.load(Ordering::Relaxed) {
        let received = xsk.receive(BATCH, &mut batch);
        if received == 0 {
            xsk.flush();
            expire_fragments_while_idle(&shared, &counters, &fragments);
            if cadence.idle() {
                gauges.publish(&xsk);
            }
            match idle {
                IdleStrategy::Poll if !xsk.tx_outstanding() => {
                    let _ = xsk.wait(IDLE_POLL_MS);
                }
                _ => std::hint::spin_loop(),
            }
            continue;
        }
        let snapshot = shared.snapshot.load();
        let pipeline = Pipeline {
            now_ms: shared.clock.now_ms(),
            snapshot: &snapshot,
            flows: &shared.flows,
            counters: &counters,
            fragments: &fragments,
        };
        counters.batches.add(1);
        pipeline.expire_fragments();
        prepared.clear();
        for frame in &batch {
            prepared.push(xsk.data(frame));
        }
        pipeline.look_up(&mut prepared);
        for (index, mut frame) in batch.drain(..).enumerate() {
            let Some(rx) = frame.rx_port() else {
                xsk.recycle(frame);
                continue;
            };
            let ingress = ports.datapath_port(rx);
            let start = frame.start() as usize;
            let len = frame.len() as usize;
            let verdict = {
                let chunk = xsk.chunk_mut(&mut frame);
                pipeline.process_prepared(&prepared, index, ingress, &mut chunk[start..], len)
            };
            if let Some(reason) = dispatch(&mut xsk, &ports, frame, verdict) {
                counters.count_tx_refused(reason);
            }
            pipeline.release_held_fragments(|held, translate| {
                send_released(&mut xsk, &ports, &counters, held, translate);
            });
        }
        xsk.flush();
        if cadence.batch_done() {
            gauges.publish(&xsk);
        }
    }
    gauges.publish(&xsk);
    xsk
}

/// Where does `frame` go for `verdict`? Queued on its egress socket or recycled; the drop reason when
/// a transmit verdict could not be honoured.
#[inline]
fn dispatch(
    xsk: &mut XskWorker,
    ports: &PortMap,
    mut frame: xsk::Frame,
    verdict: Verdict,
) -> Option<DropReason> {
    match verdict {
        Verdict::Transmit { port, len } => match ports.xsk_port(port) {
            Some(egress) if frame.set_len(len as u32) => {
                xsk.transmit(frame, egress).err().map(tx_refused_reason)
            }
            Some(_) => {
                xsk.recycle(frame);
                Some(DropReason::TxBeyondFrame)
            }
            None => {
                xsk.recycle(frame);
                Some(DropReason::UplinkGone)
            }
        },
        Verdict::Drop(_) | Verdict::Held => {
            xsk.recycle(frame);
            None
        }
    }
}

/// Frees the held fragments that timed out while no frame arrives (a batch does it otherwise), so
/// that they are counted within their timeout.
fn expire_fragments_while_idle(
    shared: &WorkerShared,
    counters: &DatapathCounters,
    fragments: &RefCell<Fragments>,
) {
    if fragments.borrow().held_now() == 0 {
        return;
    }
    let snapshot = shared.snapshot.load();
    Pipeline {
        now_ms: shared.clock.now_ms(),
        snapshot: &snapshot,
        flows: &shared.flows,
        counters,
        fragments,
    }
    .expire_fragments();
}

/// Sends a held fragment whose first fragment came: copied into a fresh frame, translated there and
/// dispatched (no free frame: counted as `fragment_release_no_frame`).
fn send_released(
    xsk: &mut XskWorker,
    ports: &PortMap,
    counters: &DatapathCounters,
    held: &[u8],
    translate: &mut dyn FnMut(&mut [u8]) -> Verdict,
) {
    let Some(mut frame) = xsk.alloc_frame() else {
        counters.count_drop(DropReason::FragmentReleaseNoFrame);
        return;
    };
    let start = frame.start() as usize;
    let verdict = {
        let chunk = xsk.chunk_mut(&mut frame);
        match chunk.get_mut(start..start + held.len()) {
            Some(copy) => {
                copy.copy_from_slice(held);
                translate(copy)
            }
            None => Verdict::Drop(DropReason::TxBeyondFrame),
        }
    };
    if let Verdict::Drop(DropReason::TxBeyondFrame) = verdict {
        counters.count_drop(DropReason::TxBeyondFrame);
    }
    if let Some(reason) = dispatch(xsk, ports, frame, verdict) {
        counters.count_tx_refused(reason);
    }
}

/// The drop reason of a frame the AF_XDP worker refused to transmit.
fn tx_refused_reason(refused: TxRefused) -> DropReason {
    match refused {
        TxRefused::RuntFrame => DropReason::TxRuntFrame,
        TxRefused::QueueFull => DropReason::TxRingFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tx_refusal_has_its_own_drop_reason() {
        assert_eq!(
            tx_refused_reason(TxRefused::RuntFrame),
            DropReason::TxRuntFrame
        );
        assert_eq!(
            tx_refused_reason(TxRefused::QueueFull),
            DropReason::TxRingFull
        );
    }

    #[test]
    fn a_port_map_skips_retired_slots_both_ways() {
        // LAN, uplink slot 0 and slot 2 (slot 1 retired).
        let map = PortMap::new(&[vec![PortId(0)], vec![PortId(1)], vec![PortId(3)]]);
        assert_eq!(map.xsk_port(PortId(0)), Some(xsk::PortId(0)));
        assert_eq!(map.xsk_port(PortId(1)), Some(xsk::PortId(1)));
        assert_eq!(map.xsk_port(PortId(2)), None);
        assert_eq!(map.xsk_port(PortId(3)), Some(xsk::PortId(2)));
        assert_eq!(map.xsk_port(PortId(9)), None);
        assert_eq!(map.datapath_port(xsk::PortId(2)), PortId(3));
    }

    #[test]
    #[should_panic(expected = "served twice")]
    fn a_port_map_refuses_a_port_served_twice() {
        let _ = PortMap::new(&[vec![PortId(0)], vec![PortId(0)]]);
    }

    #[test]
    fn uplinks_sharing_an_interface_transmit_through_its_one_port() {
        // LAN; uplink slots 0 and 2 on one interface, slot 1 on another.
        let map = PortMap::new(&[vec![PortId(0)], vec![PortId(1), PortId(3)], vec![PortId(2)]]);
        assert_eq!(map.xsk_port(PortId(1)), Some(xsk::PortId(1)));
        assert_eq!(map.xsk_port(PortId(3)), Some(xsk::PortId(1)));
        assert_eq!(map.xsk_port(PortId(2)), Some(xsk::PortId(2)));
        assert_eq!(map.datapath_port(xsk::PortId(1)), PortId(1));
        assert_eq!(map.datapath_port(xsk::PortId(2)), PortId(2));
    }

    #[test]
    fn a_busy_worker_publishes_every_nth_batch_and_an_idle_one_once() {
        let mut cadence = PublishCadence::default();
        assert!(!cadence.idle(), "nothing to publish before a batch");
        for _ in 1..PUBLISH_EVERY_BATCHES {
            assert!(!cadence.batch_done());
        }
        assert!(cadence.batch_done(), "the Nth batch publishes");
        assert!(!cadence.idle(), "just published");
        assert!(!cadence.batch_done());
        assert!(cadence.idle(), "going idle publishes the unpublished batch");
        assert!(!cadence.idle(), "and only once while idle");
    }

    #[test]
    fn the_clock_never_reads_zero_and_never_goes_back() {
        let c = Clock::start();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(a >= 1 && b >= a);
    }
}
