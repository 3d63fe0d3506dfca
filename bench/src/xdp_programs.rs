//! The benchmark's own XDP programs (`c/bench_xdp.c`), loaded with aya: a counting sink (with a
//! one-way latency histogram for timestamped frames) and the "X" configuration's redirect-everything
//! program. The sink can also watch one destination port: frames to it are counted apart and passed
//! on to the kernel (a real flow keeps running through the sink while it is measured).
//!
//! Invariants: a program stays attached exactly as long as its [`AttachedXdp`] lives (the aya link is
//! owned, so a dying process detaches it); counters are per-CPU and summed on read, so reading never
//! disturbs the datapath; the latency histogram has one bucket per microsecond below
//! [`LATENCY_BUCKETS`]` - 1` and one overflow bucket.

use anyhow::{Context, Result};
use aya::maps::{Array, PerCpuArray, xdp::DevMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

/// Histogram buckets of the sink (must match `LATENCY_BUCKETS` in the C source).
pub const LATENCY_BUCKETS: usize = 4096;
/// The first 8 payload bytes of a timestamped generator frame (`"flowpin!"`), then the send time in
/// CLOCK_MONOTONIC nanoseconds, both little-endian.
pub const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"flowpin!");

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_xdp.o"));

/// Which of the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchProgram {
    /// Count and drop.
    Sink,
    /// Rewrite MACs and redirect everything to one interface.
    Redirect,
}

impl BenchProgram {
    fn section(self) -> &'static str {
        match self {
            BenchProgram::Sink => "bench_sink",
            BenchProgram::Redirect => "bench_redirect",
        }
    }
}

/// What a sink has counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkReading {
    /// Frames seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Frames that carried a generator timestamp.
    pub stamped: u64,
    /// Frames to the watched destination port (counted and passed on, not in `packets`).
    #[serde(default)]
    pub watched: u64,
    /// Timestamped frames per microsecond of one-way latency (last bucket: that or more).
    pub latency_us: Vec<u64>,
}

impl SinkReading {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &SinkReading) -> SinkReading {
        SinkReading {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            stamped: self.stamped.saturating_sub(earlier.stamped),
            watched: self.watched.saturating_sub(earlier.watched),
            latency_us: self
                .latency_us
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.latency_us.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// Adds another sink's counts (several uplinks' sinks make one reading).
    pub fn add(&mut self, other: &SinkReading) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.stamped += other.stamped;
        self.watched += other.watched;
        if self.latency_us.len() < other.latency_us.len() {
            self.latency_us.resize(other.latency_us.len(), 0);
        }
        for (mine, theirs) in self.latency_us.iter_mut().zip(&other.latency_us) {
            *mine += theirs;
        }
    }
}

/// One of the programs attached to one interface (detached on drop).
#[derive(Debug)]
pub struct AttachedXdp {
    ebpf: Ebpf,
    program: BenchProgram,
}

impl AttachedXdp {
    /// Loads `program` and attaches it to `interface` in native (driver) mode.
    pub fn attach(program: BenchProgram, interface: &str) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .context("loading bench_xdp.o")?;
        let xdp: &mut Xdp = ebpf
            .program_mut(program.section())
            .context("program missing from bench_xdp.o")?
            .try_into()
            .context("not an XDP program")?;
        xdp.load()
            .with_context(|| format!("verifying {}", program.section()))?;
        xdp.attach(interface, XdpMode::Driver).with_context(|| {
            format!(
                "attaching {} to {interface} (native mode)",
                program.section()
            )
        })?;
        Ok(Self { ebpf, program })
    }

    /// Makes the sink count and drop only IPv4 frames to `destination` (others pass to the kernel).
    pub fn set_sink_destination(&mut self, destination: std::net::Ipv4Addr) -> Result<()> {
        anyhow::ensure!(self.program == BenchProgram::Sink, "not the sink program");
        let mut matcher: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("bench_sink_match")
                .context("bench_sink_match map")?,
        )?;
        // The program compares with the header's network-order word as loaded on this host.
        matcher.set(0, u32::from_ne_bytes(destination.octets()), 0)?;
        Ok(())
    }

    /// Makes the sink count TCP/UDP frames to destination port `port` apart and pass them on.
    pub fn set_sink_watched_port(&mut self, port: u16) -> Result<()> {
        anyhow::ensure!(self.program == BenchProgram::Sink, "not the sink program");
        let mut watch: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("bench_sink_watch_port")
                .context("bench_sink_watch_port map")?,
        )?;
        // The program compares with the header's network-order half-word as loaded on this host.
        watch.set(0, u32::from(u16::from_ne_bytes(port.to_be_bytes())), 0)?;
        Ok(())
    }

    /// Points the redirect program at `egress`, writing `destination`/`source` MACs into every frame.
    pub fn set_redirect(
        &mut self,
        egress: &str,
        destination: [u8; 6],
        source: [u8; 6],
    ) -> Result<()> {
        anyhow::ensure!(
            self.program == BenchProgram::Redirect,
            "not the redirect program"
        );
        let ifindex =
            flowpin::xsk::interface_index(egress).with_context(|| format!("interface {egress}"))?;
        let mut devmap = DevMap::try_from(
            self.ebpf
                .map_mut("bench_egress")
                .context("bench_egress map")?,
        )?;
        devmap
            .set(0, ifindex, None, 0)
            .context("setting the egress interface")?;
        let mut macs: Array<_, [u8; 12]> = Array::try_from(
            self.ebpf
                .map_mut("bench_egress_macs")
                .context("bench_egress_macs map")?,
        )?;
        let mut value = [0u8; 12];
        value[..6].copy_from_slice(&destination);
        value[6..].copy_from_slice(&source);
        macs.set(0, value, 0).context("setting the egress MACs")?;
        Ok(())
    }

    /// The counters so far (the redirect program fills only `packets`).
    pub fn read(&self) -> Result<SinkReading> {
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("bench_counts").context("bench_counts map")?)?;
        let sum = |slot: u32| -> Result<u64> { Ok(counts.get(&slot, 0)?.iter().sum()) };
        let mut reading = SinkReading {
            packets: sum(0)?,
            bytes: sum(1)?,
            stamped: sum(2)?,
            watched: sum(3)?,
            latency_us: Vec::new(),
        };
        if self.program == BenchProgram::Sink && reading.stamped > 0 {
            let histogram: PerCpuArray<_, u64> = PerCpuArray::try_from(
                self.ebpf
                    .map("bench_latency")
                    .context("bench_latency map")?,
            )?;
            reading.latency_us = (0..LATENCY_BUCKETS as u32)
                .map(|bucket| Ok(histogram.get(&bucket, 0)?.iter().sum()))
                .collect::<Result<_>>()?;
        }
        Ok(reading)
    }
}
