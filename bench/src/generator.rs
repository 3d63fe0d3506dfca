//! flowpin's own packet generator: AF_XDP transmit with pktgen's knobs (frame size, rate or as fast
//! as possible, flow count varying source address and port, duration, a new flow on every packet,
//! UDP or TCP SYN), reusing the forwarder's [`XskWorker`] (one socket, its own UMEM).
//!
//! Invariants:
//! - the packet loop allocates nothing and logs nothing: every frame is a copy of one template with
//!   the flow's addresses/ports written in and the checksums fixed (IPv4 header always; TCP in SYN
//!   mode; UDP frames carry checksum 0, "none", so a timestamp can be written without touching it);
//! - the rate limiter never sends ahead of `rate × elapsed` (it may fall behind when the generator
//!   cannot keep up; the report then shows the achieved rate, never the asked one);
//! - with `timestamps`, every UDP payload starts with [`STAMP_MAGIC`] and the CLOCK_MONOTONIC send
//!   time, which the XDP sink turns into a one-way latency histogram.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use flowpin::xsk::{PortId, XskConfig, XskMode, XskWorker};
use flowpin_nat::checksum::{internet_checksum, ipv4_pseudo_header_sum};
use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use serde::{Deserialize, Serialize};

use crate::flow_set::{Addressing, FlowSet, SyntheticFlow};
use crate::xdp_programs::STAMP_MAGIC;

/// Frames handed to the kernel per flush.
const BATCH: usize = 64;
/// TCP SYN flag.
const TCP_SYN: u8 = 0x02;
/// Offsets in an untagged Ethernet/IPv4 frame without options.
pub(crate) const IP: usize = 14;
pub(crate) const L4: usize = IP + 20;

/// Transport of generated frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum GenProtocol {
    /// UDP datagrams (checksum 0).
    Udp,
    /// TCP SYNs (a flood when combined with new flows).
    TcpSyn,
}

/// Which program generates the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum GeneratorTool {
    /// flowpin's own AF_XDP generator ([`run`]).
    Afxdp,
    /// netsniff-ng's trafgen ([`crate::trafgen::run`]).
    Trafgen,
}

impl GeneratorTool {
    /// Sends `spec`'s traffic with this tool.
    pub fn run(self, spec: &GeneratorSpec) -> Result<GeneratorReport> {
        match self {
            GeneratorTool::Afxdp => run(spec),
            GeneratorTool::Trafgen => crate::trafgen::run(spec),
        }
    }

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorTool::Afxdp => "afxdp",
            GeneratorTool::Trafgen => "trafgen",
        }
    }
}

/// What to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorSpec {
    /// Interface to transmit on (queue 0).
    pub interface: String,
    /// Frame length without FCS (60 = the "64-byte" frame, 1514 = the "1518-byte" frame).
    pub frame_len: usize,
    /// Packets per second; `None`: as fast as possible.
    pub rate_pps: Option<u64>,
    /// Flows to cycle through (ignored with `new_flow_per_packet`).
    pub flows: u32,
    /// Sources and destinations of the flows.
    pub addressing: Addressing,
    /// How long to send.
    pub duration: Duration,
    /// Every packet starts a flow never seen before (flow setup rate).
    pub new_flow_per_packet: bool,
    /// The flow of the first packet (a run continues where the previous one stopped, so that new-flow
    /// runs stay new across trials).
    #[serde(default)]
    pub first_flow: u32,
    /// UDP or TCP SYN.
    pub protocol: GenProtocol,
    /// Write a send timestamp into every UDP payload.
    pub timestamps: bool,
    /// Source MAC of the frames.
    pub source_mac: [u8; 6],
    /// Destination MAC (the router's LAN port).
    pub destination_mac: [u8; 6],
    /// AF_XDP mode.
    pub copy_mode: bool,
}

/// What was sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorReport {
    /// Frames accepted by the kernel's TX path (completed).
    pub sent: u64,
    /// Seconds from the first to the last frame.
    pub seconds: f64,
    /// `sent / seconds`.
    pub pps: f64,
    /// Frames the TX ring refused (the generator retried them).
    pub ring_full: u64,
}

/// Frame template and per-packet writer (shared with the trafgen configuration writer).
#[derive(Debug)]
pub(crate) struct FrameWriter {
    template: Vec<u8>,
    protocol: GenProtocol,
    timestamps: bool,
}

impl FrameWriter {
    pub(crate) fn new(spec: &GeneratorSpec) -> Self {
        let first = FlowSet::with_addressing(1, spec.addressing).flow(0);
        let template = match spec.protocol {
            GenProtocol::Udp => {
                let payload = vec![0x5a; spec.frame_len.max(60) - L4 - 8];
                build_frame(&FrameSpec {
                    source_mac: spec.source_mac,
                    destination_mac: spec.destination_mac,
                    ..FrameSpec::new(
                        first.source.octets(),
                        first.destination.octets(),
                        L4Spec::UdpWithoutChecksum {
                            ports: (first.source_port, first.destination_port),
                            payload: &payload,
                        },
                    )
                })
            }
            GenProtocol::TcpSyn => {
                // A bare SYN, padded to the frame size with Ethernet trailer bytes.
                let trailer = vec![0; spec.frame_len.max(60).saturating_sub(L4 + 20)];
                build_frame(&FrameSpec {
                    source_mac: spec.source_mac,
                    destination_mac: spec.destination_mac,
                    trailer: &trailer,
                    ..FrameSpec::new(
                        first.source.octets(),
                        first.destination.octets(),
                        L4Spec::Tcp {
                            ports: (first.source_port, first.destination_port),
                            seq: 1,
                            ack: 0,
                            flags: TCP_SYN,
                            payload: &[],
                        },
                    )
                })
            }
        };
        Self {
            template,
            protocol: spec.protocol,
            timestamps: spec.timestamps && spec.protocol == GenProtocol::Udp,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.template.len()
    }

    /// Writes the frame of `flow` into `out` (at least `len()` bytes).
    pub(crate) fn write(&self, out: &mut [u8], flow: &SyntheticFlow, now_ns: u64) {
        let out = &mut out[..self.template.len()];
        out.copy_from_slice(&self.template);
        out[IP + 12..IP + 16].copy_from_slice(&flow.source.octets());
        out[IP + 16..IP + 20].copy_from_slice(&flow.destination.octets());
        out[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
        let ip_sum = internet_checksum(&out[IP..L4], 0);
        out[IP + 10..IP + 12].copy_from_slice(&ip_sum.to_be_bytes());
        out[L4..L4 + 2].copy_from_slice(&flow.source_port.to_be_bytes());
        out[L4 + 2..L4 + 4].copy_from_slice(&flow.destination_port.to_be_bytes());
        match self.protocol {
            GenProtocol::Udp => {
                if self.timestamps {
                    out[L4 + 8..L4 + 16].copy_from_slice(&STAMP_MAGIC.to_le_bytes());
                    out[L4 + 16..L4 + 24].copy_from_slice(&now_ns.to_le_bytes());
                }
            }
            GenProtocol::TcpSyn => {
                out[L4 + 16..L4 + 18].copy_from_slice(&[0, 0]);
                let pseudo =
                    ipv4_pseudo_header_sum(flow.source.octets(), flow.destination.octets(), 6, 20);
                let sum = internet_checksum(&out[L4..L4 + 20], pseudo);
                out[L4 + 16..L4 + 18].copy_from_slice(&sum.to_be_bytes());
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock `bpf_ktime_get_ns` reads).
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Sends `spec`'s traffic; returns what was sent.
pub fn run(spec: &GeneratorSpec) -> Result<GeneratorReport> {
    ensure!(
        (60..=2048).contains(&spec.frame_len),
        "frame length {} is outside 60..=2048",
        spec.frame_len
    );
    let mut worker = open_worker(spec)?;
    let writer = FrameWriter::new(spec);
    let flows = if spec.new_flow_per_packet {
        FlowSet::with_addressing(u32::MAX, spec.addressing)
    } else {
        FlowSet::with_addressing(spec.flows, spec.addressing)
    };
    let port = PortId(0);
    let start = Instant::now();
    let mut queued: u64 = 0;
    let mut next_flow: u32 = spec.first_flow % flows.len();
    let mut ring_full = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= spec.duration {
            break;
        }
        let budget = match spec.rate_pps {
            Some(rate) => {
                let due = (elapsed.as_secs_f64() * rate as f64) as u64;
                let owed = due.saturating_sub(queued) as usize;
                if owed == 0 {
                    worker.flush();
                    std::hint::spin_loop();
                    continue;
                }
                owed.min(BATCH)
            }
            None => BATCH,
        };
        let now_ns = if writer.timestamps { monotonic_ns() } else { 0 };
        for _ in 0..budget {
            let Some(mut frame) = worker.alloc_frame() else {
                break;
            };
            let flow = flows.flow(next_flow);
            let start = frame.start();
            writer.write(
                &mut worker.chunk_mut(&mut frame)[start as usize..],
                &flow,
                now_ns,
            );
            frame.set_bounds(start, writer.len() as u32);
            if worker.transmit(frame, port).is_ok() {
                queued += 1;
                next_flow = next_flow.wrapping_add(1) % flows.len();
            } else {
                ring_full += 1;
                break;
            }
        }
        worker.flush();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(drain(&mut worker, port, seconds, ring_full))
}

/// The generator's AF_XDP socket on `spec`'s interface, queue 0: one port, nearly all frames free for
/// transmission.
fn open_worker(spec: &GeneratorSpec) -> Result<XskWorker> {
    let config = XskConfig {
        frame_count: 4096,
        frame_size: 2048,
        ring_size: 2048,
        fill_target: 64,
        alloc_reserve: 4096 - 64,
        mode: if spec.copy_mode {
            XskMode::Copy
        } else {
            XskMode::Auto
        },
        need_wakeup: true,
        tx_budget: 0,
    };
    XskWorker::new(&config, &[(spec.interface.as_str(), 0)])
        .with_context(|| format!("AF_XDP socket on {}", spec.interface))
}

/// Lets the last frames complete (at most 200 ms) and reports what was sent in `seconds`.
fn drain(worker: &mut XskWorker, port: PortId, seconds: f64, ring_full: u64) -> GeneratorReport {
    let drain_until = Instant::now() + Duration::from_millis(200);
    while worker.tx_outstanding() && Instant::now() < drain_until {
        worker.flush();
    }
    let counters = worker.port_counters(port);
    GeneratorReport {
        sent: counters.tx_completed,
        seconds,
        pps: counters.tx_completed as f64 / seconds.max(1e-9),
        ring_full: ring_full + counters.tx_dropped_ring_full,
    }
}

/// The lab's generator addressing: `hosts` source addresses from `first_source`, one server.
pub fn lab_addressing(first_source: Ipv4Addr, hosts: u32, server: Ipv4Addr) -> Addressing {
    Addressing {
        first_source,
        source_hosts: hosts,
        first_destination: server,
        destinations: 1,
    }
}

#[cfg(test)]
mod tests {
    use flowpin_nat::parse_frame;
    use flowpin_nat::verify::checksums_valid;

    use super::*;

    fn spec(protocol: GenProtocol, frame_len: usize) -> GeneratorSpec {
        GeneratorSpec {
            interface: "lo".into(),
            frame_len,
            rate_pps: None,
            flows: 1000,
            addressing: Addressing::RIG,
            duration: Duration::from_secs(1),
            new_flow_per_packet: false,
            first_flow: 0,
            protocol,
            timestamps: true,
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            copy_mode: true,
        }
    }

    #[test]
    fn written_frames_parse_with_valid_checksums_and_the_flow_tuple() {
        for (protocol, len) in [
            (GenProtocol::Udp, 60),
            (GenProtocol::Udp, 1514),
            (GenProtocol::TcpSyn, 60),
        ] {
            let writer = FrameWriter::new(&spec(protocol, len));
            assert_eq!(writer.len(), len);
            let flows = FlowSet::new(5000);
            let mut out = vec![0u8; 2048];
            for i in [0, 1, 777, 4999] {
                let flow = flows.flow(i);
                writer.write(&mut out, &flow, 123_456_789);
                let frame = &out[..len];
                let parsed = parse_frame(frame).expect("parses");
                assert_eq!(parsed.key.source, flow.source);
                assert_eq!(parsed.key.source_port, flow.source_port);
                assert_eq!(parsed.key.destination, flow.destination);
                assert_eq!(parsed.key.destination_port, flow.destination_port);
                assert!(
                    checksums_valid(frame, &parsed),
                    "{protocol:?} {len} flow {i}"
                );
                if protocol == GenProtocol::Udp {
                    assert_eq!(&frame[L4 + 8..L4 + 16], b"flowpin!");
                    assert_eq!(
                        u64::from_le_bytes(frame[L4 + 16..L4 + 24].try_into().unwrap()),
                        123_456_789
                    );
                }
            }
        }
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_ns() >= a + 1_000_000);
    }
}
