//! Batches: every frame of a batch parsed first, then all their flows looked up at once.

use flowpin_flowtable::Found;
use flowpin_nat::{
    Classified, FlowKey, IpProtocol, ParseError, classify_frame, icmp_error_flow_key,
};

use super::Pipeline;
use crate::datapath::counters::DropReason;
use crate::datapath::record::FlowValue;
use crate::datapath::verdict::{PortId, Verdict};

/// The most frames one batch holds.
pub const BATCH: usize = 64;

/// A key no flow has (TCP from 0.0.0.0:0 to 0.0.0.0:0 is a martian that never parses): the lookup slot
/// of a frame that did not parse.
const NO_KEY: FlowKey = FlowKey {
    protocol: IpProtocol::Tcp,
    source: std::net::Ipv4Addr::UNSPECIFIED,
    destination: std::net::Ipv4Addr::UNSPECIFIED,
    source_port: 0,
    destination_port: 0,
};

/// The first stage of a batch: every frame parsed, and every frame's flow looked up at once, so the
/// table can hash the whole batch and prefetch its buckets and records before probing (the memory
/// misses of a batch overlap instead of queueing). Allocated once per worker.
#[derive(Debug)]
pub struct PreparedBatch {
    parsed: [Result<Classified, ParseError>; BATCH],
    keys: [FlowKey; BATCH],
    found: [Option<Found<FlowValue>>; BATCH],
    len: usize,
}

impl PreparedBatch {
    /// An empty batch (boxed: it is a few KiB).
    pub fn new() -> Box<Self> {
        Box::new(Self {
            parsed: [Err(ParseError::RuntFrame); BATCH],
            keys: [NO_KEY; BATCH],
            found: [None; BATCH],
            len: 0,
        })
    }

    /// Forgets the previous batch.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of frames parsed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame was parsed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parses the next frame (frame `self.len()` of the batch). Returns `false`, doing nothing, when the
    /// batch is full.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.len == BATCH {
            return false;
        }
        let parsed = classify_frame(frame);
        self.keys[self.len] = match &parsed {
            Ok(Classified::Packet(p)) => icmp_error_flow_key(p).unwrap_or(p.key),
            Ok(Classified::LaterFragment(_)) | Err(_) => NO_KEY,
        };
        self.parsed[self.len] = parsed;
        self.len += 1;
        true
    }
}

impl Pipeline<'_> {
    /// Looks up the flows of every frame of `batch` at once (stage one, after the frames were pushed).
    pub fn look_up(&self, batch: &mut PreparedBatch) {
        let n = batch.len;
        self.flows
            .table
            .lookup_batch(&batch.keys[..n], &mut batch.found[..n]);
    }

    /// Stage two: decides frame `index` of a prepared batch and rewrites it in place. `frame` is the
    /// whole frame buffer (its first `len` bytes are the received frame — the bytes that were pushed; the
    /// rest is tailroom the pipeline may use for a longer reply).
    pub fn process_prepared(
        &self,
        batch: &PreparedBatch,
        index: usize,
        ingress: PortId,
        frame: &mut [u8],
        len: usize,
    ) -> Verdict {
        let parsed = batch.parsed[index].map_err(DropReason::Malformed);
        self.finish(ingress, frame, len, parsed, batch.found[index])
    }
}
