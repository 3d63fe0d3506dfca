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
//!   like the kernel's copy into the UMEM in copy mode.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail, ensure};
use flowpin::control::snapshot::{SnapshotBuilder, UplinkFacts};
use flowpin::datapath::{
    DatapathCounters, Flows, LanView, Mac, Pipeline, PortId, Snapshot, Verdict,
};
use flowpin::select::KeyHasher;
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
    now_ms: u64,
}

impl DatapathRig {
    /// A rig whose flow table holds `flow_capacity` flows.
    pub fn new(flow_capacity: usize) -> Result<Self> {
        let config = flowpin::config::parse(&config_text(), "bench.toml", None)
            .map_err(|e| anyhow::anyhow!("bench configuration: {e}"))?;
        let mut builder = SnapshotBuilder::new(KeyHasher::from_seed(0x5eed));
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
            now_ms: 1_000_000,
        })
    }

    /// The pipeline over this rig's state at its fixed `now`.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            now_ms: self.now_ms,
            snapshot: &self.snapshot,
            flows: &self.flows,
            counters: &self.counters,
        }
    }

    /// Frames forwarded so far (all directions).
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.get()
    }

    /// Removes every flow and gives its external port back, as the daemon's sweeper does when flows
    /// expire; returns how many were removed. Not a per-packet operation (it walks the whole table).
    pub fn remove_all_flows(&self) -> usize {
        let table = &self.flows.table;
        let mut removed = 0;
        for _ in 0..table.capacity().div_ceil(SWEEP_RUN) {
            removed += table
                .sweep(
                    self.now_ms,
                    SWEEP_RUN,
                    |_, _, _| true,
                    |value| {
                        if let Some(uplink) = self.snapshot.uplink(value.uplink) {
                            let (address, port) = value.internal_endpoint();
                            let (_, external) = value.external_endpoint();
                            let _ = uplink.nat.pool(value.protocol()).release(
                                external,
                                address,
                                port,
                                self.now_ms,
                            );
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

    /// Restores and processes every frame once; returns how many were transmitted.
    pub fn run(&mut self, pipeline: &Pipeline<'_>) -> usize {
        let mut transmitted = 0;
        for (ingress, template) in &self.templates {
            self.buffer[..template.len()].copy_from_slice(template);
            if let Verdict::Transmit { .. } =
                pipeline.process(*ingress, &mut self.buffer, template.len())
            {
                transmitted += 1;
            }
        }
        transmitted
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
            assert_eq!(batches.outbound.run(&pipeline), 100);
            assert_eq!(batches.inbound.run(&pipeline), 100);
        }
        assert_eq!(rig.forwarded(), 1000 + 600);
    }

    #[test]
    fn new_flow_batches_create_flows_once() {
        let rig = DatapathRig::new(4096).unwrap();
        let mut batch = FrameBatch::new_flows(FlowSet::new(1000), 0, 500, 1514);
        assert_eq!(batch.run(&rig.pipeline()), 500);
        // Replayed, they are hits now, still forwarded.
        assert_eq!(batch.run(&rig.pipeline()), 500);
        assert_eq!(rig.remove_all_flows(), 500);
        assert_eq!(rig.remove_all_flows(), 0);
        // Removed, they are new flows again; the released ports are available again.
        for _ in 0..20 {
            assert_eq!(batch.run(&rig.pipeline()), 500);
            assert_eq!(rig.remove_all_flows(), 500);
        }
    }

    #[test]
    fn frames_have_the_requested_size() {
        let flow = FlowSet::new(1).flow(0);
        assert_eq!(udp_frame(&flow, 60, HOST_MAC, LAN_MAC).len(), 60);
        assert_eq!(udp_frame(&flow, 1514, HOST_MAC, LAN_MAC).len(), 1514);
        assert_eq!(udp_frame(&flow, 10, HOST_MAC, LAN_MAC).len(), 60);
    }
}
