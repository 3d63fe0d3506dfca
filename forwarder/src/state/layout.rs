//! The state file's byte layout: versioned, one checksum per record.
//!
//! - A 16-byte preamble: magic `FLOWPINS`, layout version (u32 LE), record size (u32 LE, 128).
//! - Then fixed-size 128-byte records: kind (1 byte), payload (123 bytes), CRC-32 of the first 124
//!   bytes (LE). Fixed size keeps a damaged record from hiding the next one: a flipped byte, random
//!   bytes or a record torn by a crash mid-write cost that record only, never the framing.
//! - The first record is the meta record (boot id, save time, stickiness seed, how many uplink,
//!   flow and quarantine records follow); without a valid one nothing is trusted. Fewer valid
//!   records than it announces are reported as damaged or missing (a truncated file).
//! - Versions: [`VERSION`] is written; [`VERSION_V1`] (flow records without the TCP sequence
//!   words) is read and converted; any other is refused, whole.
//! - The stream is a sequence of independent records, so a standby could apply it record by record.

use std::net::Ipv4Addr;

use flowpin_nat::{AllocatorSecret, FlowKey, IpProtocol, TcpTracker};

use super::model::{FileFlow, FileQuarantine, SavedState, SavedUplink};
use crate::datapath::{FlowKind, Placement};

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"FLOWPINS";
/// The layout this build writes.
pub const VERSION: u32 = 2;
/// The previous layout, read and converted: flow records carry no TCP sequence words.
pub const VERSION_V1: u32 = 1;
/// Bytes per record.
pub const RECORD: usize = 128;
/// Bytes of the preamble.
pub const PREAMBLE: usize = 16;
const PAYLOAD: usize = RECORD - 1 - 4;
/// Longest uplink name a record holds.
pub const NAME_MAX: usize = 64;

const META: u8 = 1;
const UPLINK: u8 = 2;
const FLOW: u8 = 3;
const QUARANTINE: u8 = 4;

/// Why a whole file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a flowpin state file (or its preamble is damaged).
    #[error("not a flowpin state file (no FLOWPINS magic)")]
    NotAStateFile,
    /// A layout this build cannot read.
    #[error("state layout version {found}, this build reads versions {VERSION_V1} and {VERSION}")]
    IncompatibleVersion {
        /// The file's version.
        found: u32,
    },
    /// A record size this build does not use.
    #[error("state record size {0}, this build uses {RECORD}")]
    RecordSize(u32),
    /// The meta record is missing or damaged.
    #[error("the state file's meta record is missing or damaged")]
    MetaDamaged,
}

/// A file read back: what was valid, and what was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The valid records.
    pub state: SavedState,
    /// The file's layout version (converted when older than [`VERSION`]).
    pub version: u32,
    /// Records whose checksum or contents were wrong (dropped), a torn tail included.
    pub damaged: usize,
    /// Records the meta record announced that were not found (a truncated file).
    pub missing: usize,
}

/// The file for `state` in layout `version` ([`VERSION`], or [`VERSION_V1`] for upgrade tests).
pub fn encode(state: &SavedState, version: u32) -> Vec<u8> {
    let records = 1 + state.uplinks.len() + state.flows.len() + state.quarantines.len();
    let mut out = Vec::with_capacity(PREAMBLE + records * RECORD);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(RECORD as u32).to_le_bytes());
    push(&mut out, META, &meta_payload(state));
    for uplink in &state.uplinks {
        push(&mut out, UPLINK, &uplink_payload(uplink));
    }
    for flow in &state.flows {
        push(&mut out, FLOW, &flow_payload(flow, version));
    }
    for q in &state.quarantines {
        let mut p = Writer::default();
        p.u16(q.uplink)
            .u8(q.protocol.number())
            .u16(q.port)
            .u64(q.until_ms);
        push(&mut out, QUARANTINE, &p);
    }
    out
}

/// Reads a file: the preamble and meta record must be valid; every other record is taken when its
/// checksum and contents are, and counted as damaged otherwise.
///
/// # Errors
/// [`Refusal`] when nothing in the file can be trusted.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Refusal> {
    if bytes.len() < PREAMBLE || bytes[..8] != MAGIC {
        return Err(Refusal::NotAStateFile);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION && version != VERSION_V1 {
        return Err(Refusal::IncompatibleVersion { found: version });
    }
    let size = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if size as usize != RECORD {
        return Err(Refusal::RecordSize(size));
    }
    let body = &bytes[PREAMBLE..];
    let mut records = body.chunks(RECORD);
    let (announced, mut state) = records
        .next()
        .and_then(checked)
        .filter(|(kind, _)| *kind == META)
        .and_then(|(_, payload)| read_meta(payload))
        .ok_or(Refusal::MetaDamaged)?;
    let mut damaged = 0;
    for record in records {
        let taken = checked(record).and_then(|(kind, payload)| match kind {
            UPLINK => read_uplink(payload).map(|u| state.uplinks.push(u)),
            FLOW => read_flow(payload, version).map(|f| state.flows.push(f)),
            QUARANTINE => read_quarantine(payload).map(|q| state.quarantines.push(q)),
            _ => None,
        });
        damaged += usize::from(taken.is_none());
    }
    let found = state.uplinks.len() + state.flows.len() + state.quarantines.len();
    let missing = announced.saturating_sub(found + damaged);
    Ok(Decoded {
        state,
        version,
        damaged,
        missing,
    })
}

/// The kind and payload of a whole record whose checksum holds.
fn checked(record: &[u8]) -> Option<(u8, &[u8])> {
    if record.len() != RECORD {
        return None;
    }
    let stored = u32::from_le_bytes(record[RECORD - 4..].try_into().ok()?);
    (crc32fast::hash(&record[..RECORD - 4]) == stored).then(|| (record[0], &record[1..RECORD - 4]))
}

fn push(out: &mut Vec<u8>, kind: u8, payload: &Writer) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&payload.bytes);
    out.resize(start + 1 + PAYLOAD, 0);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn meta_payload(state: &SavedState) -> Writer {
    let mut p = Writer::default();
    p.bytes.extend_from_slice(&state.boot_id);
    p.u64(state.saved_at_ms)
        .u64(state.stickiness_seed)
        .u32(state.uplinks.len() as u32)
        .u32(state.flows.len() as u32)
        .u32(state.quarantines.len() as u32);
    p
}

/// The meta record: how many records it announces, and the state without them yet.
fn read_meta(payload: &[u8]) -> Option<(usize, SavedState)> {
    let mut r = Reader(payload);
    let boot_id = r.take::<16>()?;
    let saved_at_ms = r.u64()?;
    let stickiness_seed = r.u64()?;
    let counts = [r.u32()?, r.u32()?, r.u32()?];
    let announced = counts.iter().map(|&c| c as usize).sum();
    Some((
        announced,
        SavedState {
            boot_id,
            saved_at_ms,
            stickiness_seed,
            uplinks: Vec::new(),
            flows: Vec::new(),
            quarantines: Vec::new(),
        },
    ))
}

fn uplink_payload(uplink: &SavedUplink) -> Writer {
    let mut p = Writer::default();
    p.u16(uplink.id).u32(uplink.address.to_bits());
    for secret in uplink.secrets {
        p.u64(secret.0[0]).u64(secret.0[1]);
    }
    let name = &uplink.name.as_bytes()[..uplink.name.len().min(NAME_MAX)];
    p.u8(name.len() as u8);
    p.bytes.extend_from_slice(name);
    p
}

fn read_uplink(payload: &[u8]) -> Option<SavedUplink> {
    let mut r = Reader(payload);
    let id = r.u16()?;
    let address = Ipv4Addr::from_bits(r.u32()?);
    let mut secrets = [AllocatorSecret([0; 2]); 3];
    for secret in &mut secrets {
        *secret = AllocatorSecret([r.u64()?, r.u64()?]);
    }
    let len = usize::from(r.u8()?);
    let name = r.0.get(..len).filter(|_| len <= NAME_MAX)?;
    let name = String::from_utf8(name.to_vec()).ok()?;
    Some(SavedUplink {
        id,
        name,
        address,
        secrets,
    })
}

fn flow_payload(flow: &FileFlow, version: u32) -> Writer {
    let mut p = Writer::default();
    p.u16(flow.uplink)
        .u8(match flow.kind {
            FlowKind::Outbound => 0,
            FlowKind::Hairpin => 1,
        })
        .u8(flow.placement as u8)
        .u8(flow.policy);
    p.bytes.extend_from_slice(&flow.lan_from.to_bytes());
    p.bytes.extend_from_slice(&flow.lan_to.to_bytes());
    p.bytes.extend_from_slice(&flow.lan_host_mac);
    p.bytes.extend_from_slice(&flow.peer_mac);
    p.u32(flow.generation)
        .u64(flow.protocol_state)
        .u64(flow.last_seen_ms);
    if version >= VERSION {
        p.u32(flow.tcp.phase_word)
            .u64(flow.tcp.inside)
            .u64(flow.tcp.outside);
    }
    p
}

fn read_flow(payload: &[u8], version: u32) -> Option<FileFlow> {
    let mut r = Reader(payload);
    let uplink = r.u16()?;
    let kind = match r.u8()? {
        0 => FlowKind::Outbound,
        1 => FlowKind::Hairpin,
        _ => return None,
    };
    let placement = match r.u8()? {
        0 => Placement::Chosen,
        1 => Placement::JoinedLiveMapping,
        2 => Placement::OpenedFromOutside,
        3 => Placement::SpilledOverShare,
        4 => Placement::Forwarded,
        _ => return None,
    };
    let policy = r.u8()?;
    let lan_from = FlowKey::from_bytes(r.take()?)?;
    let lan_to = FlowKey::from_bytes(r.take()?)?;
    let lan_host_mac = r.take()?;
    let peer_mac = r.take()?;
    let generation = r.u32()?;
    let protocol_state = r.u64()?;
    let last_seen_ms = r.u64()?;
    let tcp = if version >= VERSION {
        TcpTracker {
            phase_word: r.u32()?,
            inside: r.u64()?,
            outside: r.u64()?,
        }
    } else {
        converted_v1_tracker(lan_from.protocol, protocol_state)
    };
    Some(FileFlow {
        uplink,
        lan_from,
        lan_to,
        lan_host_mac,
        peer_mac,
        policy,
        kind,
        placement,
        generation,
        protocol_state,
        last_seen_ms,
        tcp,
    })
}

/// Version 1 → 2: a v1 file saved no TCP sequence words. The phase is the table's state word
/// (which always mirrors it); the sequence words start unknown (0), as for a flow picked up
/// mid-stream, which can only make the tracker judge one RST differently, never a translation.
fn converted_v1_tracker(protocol: IpProtocol, protocol_state: u64) -> TcpTracker {
    match protocol {
        IpProtocol::Tcp => TcpTracker {
            phase_word: protocol_state as u32,
            inside: 0,
            outside: 0,
        },
        IpProtocol::Udp | IpProtocol::Icmp => TcpTracker::default(),
    }
}

fn read_quarantine(payload: &[u8]) -> Option<FileQuarantine> {
    let mut r = Reader(payload);
    Some(FileQuarantine {
        uplink: r.u16()?,
        protocol: IpProtocol::from_number(r.u8()?)?,
        port: r.u16()?,
        until_ms: r.u64()?,
    })
}

/// Little-endian payload writer.
#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// Little-endian payload reader; `None` past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}
