//! The ICMP answers the pipeline originates in place of a frame it cannot forward, each within a
//! per-worker budget: net unreachable (no uplink), administratively prohibited (no port),
//! fragmentation needed (too big).

use flowpin_nat::originate::{RouterIdentity, UnreachableKind, build_unreachable};
use flowpin_nat::{AllocError, ParsedFrame};

use super::Pipeline;
use crate::datapath::counters::{DropReason, OwnedCounter};
use crate::datapath::rate_limit::{RateLimit, TokenBucket};
use crate::datapath::verdict::{PortId, Verdict};

/// The largest frame the in-place ICMP error builder quotes from (RFC 1812: at most 576 bytes of IP).
const QUOTE_BUFFER: usize = 14 + 4 + 576;

/// A worker's allowance of one kind of originated answer: its bucket, the snapshot's limit, and
/// what counts the answers the bucket refused.
struct Budget<'a> {
    bucket: &'a TokenBucket,
    limit: RateLimit,
    suppressed: &'a OwnedCounter,
}

impl Pipeline<'_> {
    /// A LAN packet too big for its egress: ICMP fragmentation needed back to the host when DF is set
    /// (RFC 1191), built in place of the offending frame, within the worker's budget
    /// ([`Snapshot::frag_needed_to_lan`]: one LAN host must not make the router answer at line rate);
    /// otherwise a counted drop (flowpin does not fragment).
    pub(super) fn too_big(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        mtu: u16,
    ) -> Result<Verdict, DropReason> {
        if !parsed.dont_fragment {
            return Err(DropReason::WouldFragment);
        }
        let budget = Budget {
            bucket: &self.counters.frag_needed_to_lan_budget,
            limit: self.snapshot.frag_needed_to_lan,
            suppressed: &self.counters.frag_needed_to_lan_suppressed,
        };
        self.refuse_new_flow(
            frame,
            len,
            parsed,
            budget,
            UnreachableKind::FragmentationNeeded { next_hop_mtu: mtu },
            DropReason::FragmentationNeeded,
        )
    }

    /// A packet from uplink `slot` too big for the LAN: with DF set, an ICMP fragmentation needed
    /// carrying the LAN MTU (RFC 1191, RFC 1812 §5.2.7.1) back out of that uplink to the remote sender,
    /// from the uplink's address and MAC to the gateway the frame came from, quoting the packet as
    /// received — so path MTU discovery works inbound too. Rate limited per worker
    /// ([`Snapshot::frag_needed_to_uplink`]): the remote side is not trusted to keep it rare. Without
    /// DF, or beyond the budget, a counted drop.
    pub(super) fn too_big_from_uplink(
        &self,
        slot: u8,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        mtu: u16,
    ) -> Result<Verdict, DropReason> {
        if !parsed.dont_fragment {
            return Err(DropReason::WouldFragment);
        }
        let uplink = self
            .snapshot
            .uplink(slot)
            .ok_or(DropReason::FragmentationNeeded)?;
        if !self
            .counters
            .frag_needed_to_uplink_budget
            .take(self.now_ms, self.snapshot.frag_needed_to_uplink)
        {
            self.counters.frag_needed_to_uplink_suppressed.add(1);
            return Err(DropReason::FragmentationNeeded);
        }
        let router = RouterIdentity {
            mac: uplink.mac,
            address: uplink.address,
        };
        self.answer_unreachable_from(
            frame,
            len,
            parsed,
            (router, PortId::uplink(slot)),
            UnreachableKind::FragmentationNeeded { next_hop_mtu: mtu },
            DropReason::FragmentationNeeded,
        )
    }

    /// Viability guard: a new LAN flow no uplink can take. Nothing is evicted; the frame is dropped
    /// (`no_uplink`) and, while the worker's budget lasts, answered with an ICMP net unreachable so the
    /// host fails at once instead of retransmitting into the void.
    pub(super) fn no_uplink(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
    ) -> Result<Verdict, DropReason> {
        let budget = Budget {
            bucket: &self.counters.net_unreachable_budget,
            limit: self.snapshot.net_unreachable,
            suppressed: &self.counters.net_unreachable_suppressed,
        };
        self.refuse_new_flow(
            frame,
            len,
            parsed,
            budget,
            UnreachableKind::NetUnreachable,
            DropReason::NoUplink,
        )
    }

    /// A new LAN flow that got no external port: its uplink's range has no candidate left, or its host
    /// holds its quota (RFC 6888 REQ-4). Nothing is evicted; the frame stays counted under its NAT
    /// reason and, while the worker's budget lasts, is answered with an ICMP administratively
    /// prohibited (3/13, RFC 1812 §5.2.7.1), which RFC 4787 and RFC 5382 allow a NAT to send when it
    /// cannot create a mapping: the host gives up at once instead of retransmitting.
    pub(super) fn port_exhausted(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        error: AllocError,
    ) -> Result<Verdict, DropReason> {
        let budget = Budget {
            bucket: &self.counters.port_exhausted_icmp_budget,
            limit: self.snapshot.port_exhausted_icmp,
            suppressed: &self.counters.port_exhausted_icmp_suppressed,
        };
        self.refuse_new_flow(
            frame,
            len,
            parsed,
            budget,
            UnreachableKind::AdministrativelyProhibited,
            DropReason::NatAllocation(error),
        )
    }

    /// A LAN frame refused for `reason` (a new flow, or a packet too big): answered in place with an
    /// ICMP unreachable of `kind` to its host while `budget` has a token, else a plain drop counted
    /// as suppressed.
    fn refuse_new_flow(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        budget: Budget<'_>,
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        if !budget.bucket.take(self.now_ms, budget.limit) {
            budget.suppressed.add(1);
            return Err(reason);
        }
        self.answer_unreachable(frame, len, parsed, kind, reason)
    }

    /// Replaces the offending LAN frame (its first `len` bytes) by an ICMP destination unreachable of
    /// `kind` to its sender, from the router's LAN side, sent back on the LAN; the offending packet
    /// still counts as dropped for `reason`. When no error can be built (RFC 1812 §4.3.2.7 forbids it,
    /// or no room), a plain drop.
    fn answer_unreachable(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        let router = RouterIdentity {
            mac: self.snapshot.lan.mac,
            address: self.snapshot.lan.address,
        };
        self.answer_unreachable_from(frame, len, parsed, (router, PortId::LAN), kind, reason)
    }

    /// Replaces the offending frame (its first `len` bytes) by an ICMP destination unreachable of
    /// `kind` to its sender (Ethernet destination: the frame's source), from `router`, sent out of
    /// `egress` (the port the frame came in by); the offending packet still counts as dropped for
    /// `reason`. When no error can be built (RFC 1812 §4.3.2.7 forbids it, or no room), a plain drop.
    fn answer_unreachable_from(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        (router, egress): (RouterIdentity, PortId),
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        let mut quote = [0u8; QUOTE_BUFFER];
        let copied = len.min(QUOTE_BUFFER).min(frame.len());
        quote[..copied].copy_from_slice(&frame[..copied]);
        let mut truncated = *parsed;
        // The builder quotes at most 576 bytes; it reads only what lies inside `copied`.
        let max_ip = copied.saturating_sub(usize::from(parsed.l3_offset));
        truncated.ip_total_len = parsed
            .ip_total_len
            .min(u16::try_from(max_ip).unwrap_or(u16::MAX));
        match build_unreachable(frame, &quote[..copied], &truncated, router, kind) {
            Ok(out_len) => {
                self.counters.originated.add(1);
                self.counters.count_drop(reason);
                Ok(Verdict::Transmit {
                    port: egress,
                    len: out_len,
                })
            }
            Err(_) => Err(reason),
        }
    }
}
