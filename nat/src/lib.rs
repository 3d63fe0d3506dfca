//! flowpin's packet core: packet views, checksums, NAT rewrite, ICMP error translation, originated
//! packets, EIM port allocation, and protocol state with timeouts. No I/O, no clocks (time is a `u64`
//! of milliseconds passed in), no allocation or panics on the per-packet path, and no `unsafe`.
//! The optional `serde` feature gives [`PortRange`] the configuration file's forms; the
//! configuration uses [`PortRange`] and [`Timeouts`] (with its RFC floors) as its own types.
//!
//! # Untrusted bytes: the `new_checked` contract
//! Every view in [`wire`] has `new_unchecked` (wrap, trust the caller) and `new_checked` (validate
//! everything its getters and setters rely on and return the first malformation as a typed
//! [`ParseError`]). After `new_checked` succeeds, no accessor of that view panics. Checksums are never
//! verified by `new_checked` — verification is an explicit call, because a NAT must carry an invalid
//! transport checksum through unchanged. [`parse_frame`] chains the checks for a whole frame and
//! returns a small `Copy` [`ParsedFrame`]; each refusal is one [`ParseError`] variant with a stable
//! counter name ([`ParseError::name`], [`ParseError::ALL`]).
//!
//! # Behaviours and the RFC clauses behind them
//! | Behaviour | Where | Clause |
//! |---|---|---|
//! | Drop a bad IPv4 header checksum | [`parse_frame`] | RFC 1812 §5.2.2 |
//! | Never translate 0/8, 127/8, 224/4, 240/4 | [`parse::is_martian`] | RFC 1812 §5.3.7 |
//! | Ethernet padding / trailer ignored (IP total length rules) | [`parse_frame`] | RFC 894, RFC 791 |
//! | Incremental checksum `HC' = ~(~HC + ~m + m')` | [`checksum::ChecksumDelta`] | RFC 1624 eqn. 3 |
//! | UDP checksum 0 stays 0; computed 0 sent as 0xFFFF | [`Rewrite::apply`] | RFC 768 |
//! | Invalid L4 checksum stays invalid | [`Rewrite::apply`] | RFC 1624 §3 (incremental) |
//! | TTL decremented, TTL ≤ 1 not forwarded | [`Rewrite::apply`] | RFC 1812 §5.3.1 |
//! | Echo id is the ICMP "port" | [`FlowKey`] | RFC 5508 REQ-1a |
//! | Hairpinning: target sees the sender's external endpoint | [`Rewrite`] | RFC 4787 REQ-9, RFC 5382 REQ-8 |
//! | ICMP errors: outer + embedded header, ports/id, all checksums | [`translate_icmp_error`] | RFC 5508 §4 REQ-4, REQ-5; RFC 5382 REQ-9 |
//! | Never an ICMP error about an ICMP error, a fragment or a broadcast | [`originate`] | RFC 1812 §4.3.2.7 |
//! | ICMP error quotes up to 576 bytes | [`originate`] | RFC 1812 §4.3.2.3 |
//! | TCP MSS of SYN / SYN-ACK lowered to what the path carries, checksum updated incrementally | [`clamp_mss`] | RFC 879, RFC 1624 |
//! | Fragmentation needed carries next-hop MTU | [`originate::build_unreachable`] | RFC 1191 §4 |
//! | Net unreachable (3/0) when no route (no uplink) exists | [`originate::build_unreachable`] | RFC 1812 §5.2.7.1 |
//! | One external port per internal endpoint, any destination (EIM) | [`PortAllocator`] | RFC 4787 REQ-1, RFC 5382 REQ-1 |
//! | Mappings per protocol | one [`PortAllocator`] per (address, protocol) | RFC 7857 §5 |
//! | Port preservation, never two endpoints on one port | [`PortAllocator`] | RFC 4787 REQ-3 |
//! | Keep the port's class (< 1024 / ≥ 1024) | [`PortAllocator`] | RFC 4787 REQ-3a |
//! | Unpredictable external ports | [`PortAllocator`] | RFC 6056 §4 (keyed hash) |
//! | Released port quarantined 120 s | [`PortAllocator`] | RFC 6888 REQ-8 |
//! | Per-host port quota | [`PortAllocator`] | RFC 6888 REQ-4 |
//! | NAT range must not overlap the router's own ephemeral range | [`port_range`] | (flowpin's rule) |
//! | TCP state machine, RST lingers 4 min, only exact RSTs close | [`tcp_state`] | RFC 7857 §2.1–2.2, RFC 6146 §3.5.2, RFC 5961 §3.2 |
//! | UDP ≥ 120 s (default 300 s), outbound refresh only | [`Timeouts`] | RFC 4787 REQ-5, REQ-6 |
//! | TCP established 7440 s, transitory 240 s | [`Timeouts`] | RFC 5382 REQ-5 |
//! | ICMP query ≥ 60 s | [`Timeouts`] | RFC 5508 REQ-2 |
//!
//! # For the datapath
//! Per frame: [`parse_frame`] → look the flow up by `parsed.key` (or, for ICMP errors,
//! [`icmp_error_flow_key`]) → [`Rewrite::apply`] (or [`translate_icmp_error`]) with the egress MACs →
//! feed TCP segments to the flow's [`AtomicTcpTracker`]. Per new flow: [`PortAllocator::acquire`] on the
//! uplink's allocator for the protocol, then one [`Rewrite`] per direction (`Rewrite::new(lan_key,
//! uplink_key)` and its [`Rewrite::inverse`]). Drops are counted by [`ParseError::name`],
//! [`TranslateError::name`] and [`AllocError::name`]; each enum has an `ALL` list.
//!
//! # Tests, golden tables, fuzzing, benches
//! - `cargo test -p flowpin-nat`: unit and property tests beside the code; `tests/golden.rs` checks
//!   `tests/golden/cases.tsv` byte for byte; `tests/no_allocation.rs` proves the per-packet path never
//!   allocates.
//! - `python3 nat/tests/golden/generate.py` regenerates the golden table (scapy is the oracle) and the
//!   fuzz seeds; the output is committed, so tests need no scapy.
//! - `cd nat/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse_rewrite corpus/parse_rewrite seeds --
//!   -max_total_time=60` (stable toolchain; `RUSTC_BOOTSTRAP=1` admits the sanitizer flags).
//! - `cargo bench -p flowpin-nat --bench datapath`.
#![deny(unsafe_code)]

pub mod checksum;
pub mod flow_key;
pub mod fragment;
pub mod fragment_tracker;
pub mod frame_builder;
pub mod icmp_error;
pub mod mss_clamp;
pub mod originate;
pub mod parse;
pub mod parse_error;
pub mod port_alloc;
pub mod port_range;
pub mod rewrite;
pub mod tcp_state;
pub mod timeouts;
pub mod translate_error;
pub mod verify;
pub mod wire;

pub use flow_key::{FlowKey, IpProtocol};
pub use fragment::{FragmentRewrite, Fragmentation, LaterFragment};
pub use fragment_tracker::{DatagramId, FragmentLimits, FragmentTracker, HoldRefused};
pub use icmp_error::{icmp_error_flow_key, translate_icmp_error};
pub use mss_clamp::{MssClamp, clamp_mss, mss_for_mtu};
pub use parse::{
    Classified, IcmpErrorInfo, ParsedFrame, TcpInfo, Transport, classify_frame, parse_frame,
};
pub use parse_error::ParseError;
pub use port_alloc::{AllocError, AllocatorSecret, PortAllocator, PortAllocatorConfig};
pub use port_range::{PortRange, PortRangeError};
pub use rewrite::{MacPair, Rewrite, RewriteBuildError};
pub use tcp_state::{AtomicTcpTracker, Direction, TcpPhase, TcpTracker};
pub use timeouts::{FlowActivity, FlowState, RefreshPolicy, TimeoutKind, Timeouts, TimeoutsError};
pub use translate_error::TranslateError;
