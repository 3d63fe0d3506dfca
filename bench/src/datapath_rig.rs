//! An in-memory router for the datapath benches: a real [`Snapshot`] built from a real configuration
//! (two uplinks, resolved gateways), the real shared flow table and NAT pools, and frames built by
//! `flowpin-nat`'s frame builder from the [`FlowSet`].
//!
//! Invariants:
//! - every frame a rig hands out is a complete Ethernet/IPv4/UDP frame of the requested size with correct
//!   checksums, as a NIC would deliver it;
//! - [`DatapathRig::establish`] creates flows through the pipeline's own miss path (policy, uplink
//!   choice, port allocation, insert), never by writing the table directly, and learns each flow's
//!   external endpoint from the translated frame, so the reply templates are what a server would send;
//! - [`FrameBatch::run`] restores each frame from its template before processing it (the pipeline
//!   rewrites in place), so a batch can be replayed forever; the restore copy is part of what is timed,
//!   like the kernel's copy into the UMEM in copy mode. It reports every verdict it saw as a
//!   [`BatchOutcome`], so a bench can insist that what it timed was forwarding, not dropping;
//! - the rig's clock only moves when told ([`DatapathRig::advance_clock`]): released NAT ports stay
//!   quarantined (RFC 6888 REQ-8, 120 s by default) until the clock passes their deadline, exactly as in
//!   the daemon, so a bench that recycles flows must advance the clock past the quarantine.

use std::cell::Cell;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail, ensure};
use flowpin::control::snapshot::{SnapshotBuilder, UplinkFacts};
use flowpin::datapath::{
    DatapathCounters, DropReason, Flows, LanView, Mac, Pipeline, PortId, Snapshot, Verdict,
};
use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use flowpin_nat::parse_frame;

use crate::flow_set::{FlowSet, LAN_PREFIX, SyntheticFlow};

/// The router's LAN MAC in the rig.
pub const LAN_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 1];
/// The LAN hosts' MAC in the rig.
pub const HOST_MAC: Mac = [0x02, 0x11, 0, 0, 0, 1];
const WAN_MAC: [Mac; 2] = [[0x02, 0xbb, 0, 0, 0, 1], [0x02, 0xbb, 0, 0, 0, 2]];
const GATEWAY_MAC: [Mac; 2] = [[0x02, 0xcc, 0, 0, 0, 1], [0x02, 0xcc, 0, 0, 0, 2]];
const WAN_ADDRESS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(198, 51, 100, 10),
];
/// Ethernet + IPv4 + UDP header bytes.
const UDP_HEADERS: usize = 14 + 20 + 8;
/// Records visited per sweep call in [`DatapathRig::remove_all_flows`].
const SWEEP_RUN: usize = 4096;
/// Bytes of every frame buffer (a UMEM chunk).
pub const FRAME_BUFFER: usize = 2048;

/// The rig's configuration: two equal uplinks, the default NAT port range.
fn config_text() -> String {
    format!(
        r#"
[lan]
interface = "lan0"
prefixes = ["{LAN_PREFIX}"]

[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"

[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
"#
    )
}

/// A UDP frame of `frame_len` bytes (without FCS; 60 is the minimum, "64-byte" frame).
pub fn udp_frame(
    flow: &SyntheticFlow,
    frame_len: usize,
    source_mac: Mac,
    destination_mac: Mac,
) -> Vec<u8> {
    let payload = vec![0x5a; frame_len.max(60).saturating_sub(UDP_HEADERS)];
    let mut spec = FrameSpec::new(
        flow.source.octets(),
        flow.destination.octets(),
        L4Spec::Udp {
            ports: (flow.source_port, flow.destination_port),
            payload: &payload,
        },
    );
    spec.source_mac = source_mac;
    spec.destination_mac = destination_mac;
    build_frame(&spec)
}

/// A router's datapath state without any I/O.
#[derive(Debug)]
pub struct DatapathRig {
    snapshot: Snapshot,
    flows: Flows,
    counters: DatapathCounters,
    fragments: std::cell::RefCell<flowpin::datapath::Fragments>,
    now_ms: Cell<u64>,
}

impl DatapathRig {
    /// A rig whose flow table holds `flow_capacity` flows.
    pub fn new(flow_capacity: usize) -> Result<Self> {
        let config = flowpin::config::parse(&config_text(), "bench.toml", None)
            .map_err(|e| anyhow::anyhow!("bench configuration: {e}"))?;
        let mut builder = SnapshotBuilder::new(0x5eed, Default::default());
        let facts: Vec<_> = (0..2)
            .map(|i| {
                Some(UplinkFacts {
                    address: WAN_ADDRESS[i],
                    mac: WAN_MAC[i],
                    gateway_mac: Some(GATEWAY_MAC[i]),
                    mtu: 1500,
                    eligible: true,
                })
            })
            .collect();
        let lan = LanView {
            mac: LAN_MAC,
            address: Ipv4Addr::new(10, 0, 0, 1),
            mtu: 1500,
            prefixes: config.lan.prefixes.clone(),
        };
        let snapshot = builder.build(&config, lan, &facts, Vec::new());
        let flows = Flows::with_capacity(flow_capacity).context("flow table")?;
        Ok(Self {
            snapshot,
            flows,
            counters: DatapathCounters::default(),
            fragments: std::cell::RefCell::default(),
            now_ms: Cell::new(1_000_000),
        })
    }

    /// The pipeline over this rig's state at the rig's current `now`.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            now_ms: self.now_ms.get(),
            snapshot: &self.snapshot,
            flows: &self.flows,
            counters: &self.counters,
            fragments: &self.fragments,
        }
    }

    /// Frames forwarded so far (all directions).
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.get()
    }

    /// The rig's `now` in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// Moves the rig's clock forward by `ms`.
    pub fn advance_clock(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// The longest port quarantine of any uplink's pools: after [`DatapathRig::remove_all_flows`],
    /// advancing the clock by this plus one makes every released port allocatable again.
    pub fn quarantine_ms(&self) -> u64 {
        (0..=u8::MAX)
            .map_while(|slot| self.snapshot.uplink(slot))
            .flat_map(|uplink| [&uplink.nat.tcp, &uplink.nat.udp, &uplink.nat.icmp])
            .map(|pool| pool.config().quarantine_ms)
            .max()
            .unwrap_or(0)
    }

    /// How many frames were dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.counters.drops[reason.index()].get()
    }

    /// Every non-zero drop counter as `name=count`, for failure messages.
    pub fn drop_summary(&self) -> String {
        let drops: Vec<String> = self
            .counters
            .nonzero_drops()
            .map(|(name, count)| format!("{name}={count}"))
            .collect();
        if drops.is_empty() {
            "no drops".into()
        } else {
            drops.join(", ")
        }
    }

    /// Removes every flow and gives its external port back, as the daemon's sweeper does when flows
    /// expire; returns how many were removed. Not a per-packet operation (it walks the whole table).
    pub fn remove_all_flows(&self) -> usize {
        let now_ms = self.now_ms.get();
        let mut removed = 0;
        for _ in 0..self.flows.table.capacity().div_ceil(SWEEP_RUN) {
            removed += self
                .flows
                .sweep(
                    now_ms,
                    SWEEP_RUN,
                    |_, _, _| true,
                    |value| {
                        if let Some(uplink) = self.snapshot.uplink(value.uplink) {
                            let (address, port) = value.internal_endpoint();
                            let (_, external) = value.external_endpoint();
                            let _ = uplink
                                .nat
                                .pool(value.protocol())
                                .release(external, address, port, now_ms);
                        }
                    },
                )
                .removed;
        }
        removed
    }

    /// Creates flows `0..flows.len()` of `flows` by sending each one's first packet from the LAN, and
    /// returns replayable batches for `sample` of them spread evenly over the set: their next LAN-side
    /// packet and the server's reply to it.
    pub fn establish(
        &self,
        flows: FlowSet,
        sample: usize,
        frame_len: usize,
    ) -> Result<EstablishedBatches> {
        let stride = (flows.len() as usize / sample.max(1)).max(1);
        let mut outbound = Vec::with_capacity(sample);
        let mut inbound = Vec::with_capacity(sample);
        let mut buffer = vec![0u8; FRAME_BUFFER];
        for index in 0..flows.len() {
            let flow = flows.flow(index);
            let template = udp_frame(&flow, frame_len, HOST_MAC, LAN_MAC);
            buffer[..template.len()].copy_from_slice(&template);
            let verdict = self
                .pipeline()
                .process(PortId::LAN, &mut buffer, template.len());
            let Verdict::Transmit { port, len } = verdict else {
                bail!("flow {index} ({flow:?}) was not forwarded: {verdict:?}");
            };
            if (index as usize).is_multiple_of(stride) && outbound.len() < sample {
                let slot = port
                    .uplink_slot()
                    .context("LAN flow went back to the LAN")?;
                let translated = parse_frame(&buffer[..len]).context("translated frame parses")?;
                let reply = SyntheticFlow {
                    source: translated.key.destination,
                    source_port: translated.key.destination_port,
                    destination: translated.key.source,
                    destination_port: translated.key.source_port,
                };
                let slot = usize::from(slot);
                inbound.push((
                    port,
                    udp_frame(&reply, frame_len, GATEWAY_MAC[slot], WAN_MAC[slot]),
                ));
                outbound.push((PortId::LAN, template));
            }
        }
        ensure!(
            self.forwarded() >= u64::from(flows.len()),
            "only {} of {} flows established",
            self.forwarded(),
            flows.len()
        );
        Ok(EstablishedBatches {
            outbound: FrameBatch::new(outbound),
            inbound: FrameBatch::new(inbound),
        })
    }
}

/// Replayable batches over established flows.
#[derive(Debug)]
pub struct EstablishedBatches {
    /// LAN → uplink packets of established flows.
    pub outbound: FrameBatch,
    /// uplink → LAN replies of the same flows.
    pub inbound: FrameBatch,
}

/// Frames with their ingress ports, replayed through a pipeline.
#[derive(Debug)]
pub struct FrameBatch {
    templates: Vec<(PortId, Vec<u8>)>,
    buffer: Vec<u8>,
}

impl FrameBatch {
    /// A batch of `(ingress, frame)` templates.
    pub fn new(templates: Vec<(PortId, Vec<u8>)>) -> Self {
        Self {
            templates,
            buffer: vec![0; FRAME_BUFFER],
        }
    }

    /// All-new flows: frames of flows `first..first + count` of `flows`, all from the LAN.
    pub fn new_flows(flows: FlowSet, first: u32, count: u32, frame_len: usize) -> Self {
        Self::new(
            (first..first + count)
                .map(|i| {
                    (
                        PortId::LAN,
                        udp_frame(&flows.flow(i), frame_len, HOST_MAC, LAN_MAC),
                    )
                })
                .collect(),
        )
    }

    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether the batch has no frames.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Restores and processes every frame once; returns what the pipeline decided.
    pub fn run(&mut self, pipeline: &Pipeline<'_>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            frames: self.templates.len(),
            ..BatchOutcome::default()
        };
        for (ingress, template) in &self.templates {
            self.buffer[..template.len()].copy_from_slice(template);
            match pipeline.process(*ingress, &mut self.buffer, template.len()) {
                Verdict::Transmit { .. } => outcome.transmitted += 1,
                Verdict::Drop(reason) => {
                    outcome.first_drop.get_or_insert(reason);
                }
                Verdict::Held => {}
            }
        }
        outcome
    }
}

/// What the pipeline decided for one pass over a [`FrameBatch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Frames processed.
    pub frames: usize,
    /// Frames with a transmit verdict.
    pub transmitted: usize,
    /// The reason of the first dropped frame, if any frame was dropped.
    pub first_drop: Option<DropReason>,
}

impl BatchOutcome {
    /// Whether every frame was transmitted.
    pub fn all_transmitted(&self) -> bool {
        self.transmitted == self.frames
    }

    /// Panics, naming the first drop reason, unless every frame was transmitted. Benches call this
    /// after every timed pass, so a figure can never come from a pipeline that was dropping.
    #[track_caller]
    pub fn assert_all_transmitted(&self, what: &str) {
        assert!(
            self.all_transmitted(),
            "{what}: {} of {} frames transmitted; first drop: {:?}",
            self.transmitted,
            self.frames,
            self.first_drop
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_batches_forward_both_ways() {
        let rig = DatapathRig::new(4096).unwrap();
        let mut batches = rig.establish(FlowSet::new(1000), 100, 60).unwrap();
        assert_eq!(batches.outbound.len(), 100);
        assert_eq!(batches.inbound.len(), 100);
        let pipeline = rig.pipeline();
        for _ in 0..3 {
            batches
                .outbound
                .run(&pipeline)
                .assert_all_transmitted("outbound");
            batches
                .inbound
                .run(&pipeline)
                .assert_all_transmitted("inbound");
        }
        assert_eq!(rig.forwarded(), 1000 + 600);
    }

    #[test]
    fn new_flow_batches_create_flows_once() {
        let rig = DatapathRig::new(4096).unwrap();
        let mut batch = FrameBatch::new_flows(FlowSet::new(1000), 0, 500, 1514);
        batch.run(&rig.pipeline()).assert_all_transmitted("new");
        // Replayed, they are hits now, still forwarded.
        batch
            .run(&rig.pipeline())
            .assert_all_transmitted("replayed");
        assert_eq!(rig.remove_all_flows(), 500);
        assert_eq!(rig.remove_all_flows(), 0);
        // Removed, they are new flows again; once the quarantine has passed, the released ports are
        // available again, however often the batch is recycled.
        for _ in 0..50 {
            rig.advance_clock(rig.quarantine_ms() + 1);
            batch
                .run(&rig.pipeline())
                .assert_all_transmitted("recycled");
            assert_eq!(rig.remove_all_flows(), 500);
        }
    }

    #[test]
    fn recycling_flows_without_waiting_out_the_quarantine_exhausts_the_pools() {
        // The failure the miss bench once hit: a fixed clock keeps every released port quarantined.
        let rig = DatapathRig::new(8192).unwrap();
        assert_eq!(rig.quarantine_ms(), 120_000, "RFC 6888 REQ-8 default");
        let mut batch = FrameBatch::new_flows(FlowSet::new(4096), 0, 4096, 60);
        let mut first_failure = None;
        for round in 0..200 {
            let outcome = batch.run(&rig.pipeline());
            rig.remove_all_flows();
            if !outcome.all_transmitted() {
                first_failure = Some((round, outcome));
                break;
            }
        }
        let (round, outcome) = first_failure.expect("pools ran dry with a fixed clock");
        assert!(round > 0, "the first round has fresh pools");
        assert!(
            matches!(outcome.first_drop, Some(DropReason::NatAllocation(_))),
            "{outcome:?}"
        );
        assert!(rig.drop_summary().contains('='), "{}", rig.drop_summary());
    }

    #[test]
    fn frames_have_the_requested_size() {
        let flow = FlowSet::new(1).flow(0);
        assert_eq!(udp_frame(&flow, 60, HOST_MAC, LAN_MAC).len(), 60);
        assert_eq!(udp_frame(&flow, 1514, HOST_MAC, LAN_MAC).len(), 1514);
        assert_eq!(udp_frame(&flow, 10, HOST_MAC, LAN_MAC).len(), 60);
    }
}
