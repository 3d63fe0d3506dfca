//! TCP connection tracking for NAT timeouts (RFC 7857 §2, the RFC 6146 §3.5.2 state machine).
//!
//! Inside = the LAN host (RFC 6146's "V6" side), outside = the remote (its "V4" side).
//!
//! Phases and the timeout class each keeps ([`TcpPhase::is_transitory`]):
//! `Closed` → outbound SYN → `SynOut` / inbound SYN → `SynIn` (transitory) → the other side's SYN →
//! `Established` (established) → a FIN → `FinOut` / `FinIn` (established) → the other FIN → `FinBoth`
//! (transitory). An acceptable RST in any phase → `Reset` (transitory: the flow lingers 4 minutes,
//! RFC 7857 §2.2, RFC 6146 TRANS); any later non-RST segment revives it (`Established`, or `SynOut` /
//! `SynIn` for a SYN). A first segment that is not a SYN (a connection picked up mid-stream, e.g. after
//! a restart) goes straight to `Established`, unconfirmed ([`TcpTracker::is_confirmed`]) until the
//! other side answers: a mid-stream pickup carries on as soon as the remote's next segment arrives,
//! while junk (bare ACKs, FINs to tuples nobody answers) never becomes a confirmed connection.
//!
//! RST acceptance (RFC 5961 §3.2: a receiver resets only on an RST whose sequence number is exactly its
//! RCV.NXT; an in-window inexact one only draws a challenge ACK): the receiver's RCV.NXT lies between
//! the highest acknowledgment it has sent and the highest sequence number the sender has used, so an
//! RST outside that interval is inexact for certain and does not close the flow. In `SynOut` an inbound
//! RST must acknowledge the SYN (RFC 9293 §3.10.7.3), and symmetrically in `SynIn`.
//!
//! The whole state is three words, which a flow record holds as atomics ([`AtomicTcpTracker`]):
//! `phase` (`u32`: phase in bits 0–3, "known" flags in bits 4–7) and one `u64` per side
//! (`next_seq << 32 | highest_ack`). The sequence words only move forward (modulo 2³²).

use crate::parse::TcpInfo;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Which way a segment travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the LAN host (inside) to the remote.
    Outbound,
    /// From the remote to the LAN host.
    Inbound,
}

/// A tracked connection's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpPhase {
    /// Nothing seen.
    Closed = 0,
    /// Inside sent SYN (RFC 6146 V6 INIT).
    SynOut = 1,
    /// Outside sent SYN (RFC 6146 V4 INIT).
    SynIn = 2,
    /// Both SYNs seen.
    Established = 3,
    /// Inside sent FIN (V6 FIN RCV).
    FinOut = 4,
    /// Outside sent FIN (V4 FIN RCV).
    FinIn = 5,
    /// Both FINs seen.
    FinBoth = 6,
    /// An acceptable RST was seen (TRANS).
    Reset = 7,
}

impl TcpPhase {
    /// The phase encoded in a tracker's phase word (bits 0–3; the flag bits are ignored), e.g. the
    /// word a flow table keeps for expiry.
    #[must_use]
    pub const fn from_phase_word(word: u32) -> Self {
        Self::from_bits(word)
    }

    const fn from_bits(bits: u32) -> Self {
        match bits & 0xF {
            1 => Self::SynOut,
            2 => Self::SynIn,
            3 => Self::Established,
            4 => Self::FinOut,
            5 => Self::FinIn,
            6 => Self::FinBoth,
            7 => Self::Reset,
            _ => Self::Closed,
        }
    }

    /// True when the transitory timeout applies, false for the established one (RFC 5382 REQ-5).
    #[must_use]
    pub const fn is_transitory(self) -> bool {
        matches!(
            self,
            Self::Closed | Self::SynOut | Self::SynIn | Self::FinBoth | Self::Reset
        )
    }

    /// True once both sides' SYNs were seen and the connection is not closed or reset.
    #[must_use]
    pub const fn is_established(self) -> bool {
        matches!(self, Self::Established | Self::FinOut | Self::FinIn)
    }
}

const INSIDE_SEQ_KNOWN: u32 = 1 << 4;
const INSIDE_ACK_KNOWN: u32 = 1 << 5;
const OUTSIDE_SEQ_KNOWN: u32 = 1 << 6;
const OUTSIDE_ACK_KNOWN: u32 = 1 << 7;

/// `a` is after `b` in sequence space (RFC 9293 §3.4 modular comparison).
const fn seq_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).cast_signed() > 0
}

const fn next_seq(word: u64) -> u32 {
    (word >> 32) as u32
}

const fn highest_ack(word: u64) -> u32 {
    (word & 0xFFFF_FFFF) as u32
}

const fn side_word(next: u32, ack: u32) -> u64 {
    ((next as u64) << 32) | ack as u64
}

/// The sequence number just past this segment (SYN and FIN count as one).
#[must_use]
pub fn segment_end(segment: &TcpInfo) -> u32 {
    segment
        .seq
        .wrapping_add(u32::from(segment.payload_len))
        .wrapping_add(u32::from(segment.flags.syn()))
        .wrapping_add(u32::from(segment.flags.fin()))
}

/// A plain (non-atomic) tracker: the three state words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpTracker {
    /// Phase and "known" flags.
    pub phase_word: u32,
    /// Inside side: `next_seq << 32 | highest_ack`.
    pub inside: u64,
    /// Outside side: `next_seq << 32 | highest_ack`.
    pub outside: u64,
}

impl TcpTracker {
    /// The current phase.
    #[must_use]
    pub const fn phase(&self) -> TcpPhase {
        TcpPhase::from_bits(self.phase_word)
    }

    /// Whether both sides sent a segment other than an RST (conntrack's "assured"): the connection is
    /// real, not a first packet nobody answered. Read from the phase word alone (see
    /// [`confirmed_phase_word`]).
    #[must_use]
    pub const fn is_confirmed(&self) -> bool {
        confirmed_phase_word(self.phase_word)
    }

    /// The sequence number an RST towards the inside host must carry to reset it at once: the highest
    /// acknowledgment number the host sent (its RCV.NXT as of its last segment). `None` before the host
    /// acknowledged anything.
    #[must_use]
    pub const fn rst_seq_towards_inside(&self) -> Option<u32> {
        if self.phase_word & INSIDE_ACK_KNOWN != 0 {
            Some(highest_ack(self.inside))
        } else {
            None
        }
    }

    /// The next sequence number the outside would use (the ACK number for an RST towards the inside).
    #[must_use]
    pub const fn outside_next_seq(&self) -> Option<u32> {
        if self.phase_word & OUTSIDE_SEQ_KNOWN != 0 {
            Some(next_seq(self.outside))
        } else {
            None
        }
    }

    /// The sequence number an RST towards the outside (the remote) must carry to reset it at once:
    /// the highest acknowledgment number the remote sent. `None` before it acknowledged anything.
    #[must_use]
    pub const fn rst_seq_towards_outside(&self) -> Option<u32> {
        if self.phase_word & OUTSIDE_ACK_KNOWN != 0 {
            Some(highest_ack(self.outside))
        } else {
            None
        }
    }

    /// The next sequence number the inside host would use (the ACK number for an RST towards the
    /// outside).
    #[must_use]
    pub const fn inside_next_seq(&self) -> Option<u32> {
        if self.phase_word & INSIDE_SEQ_KNOWN != 0 {
            Some(next_seq(self.inside))
        } else {
            None
        }
    }

    /// Feeds one segment; returns the new phase.
    pub fn observe(&mut self, direction: Direction, segment: &TcpInfo) -> TcpPhase {
        let (phase_word, sender_word) = transition(
            self.phase_word,
            self.inside,
            self.outside,
            direction,
            segment,
        );
        self.phase_word = phase_word;
        if let Some(word) = sender_word {
            match direction {
                Direction::Outbound => self.inside = word,
                Direction::Inbound => self.outside = word,
            }
        }
        self.phase()
    }
}

/// Whether a tracker's phase word says both sides sent a segment other than an RST (each side's
/// sequence number is known only from its own non-RST segments).
#[must_use]
pub const fn confirmed_phase_word(phase_word: u32) -> bool {
    let both = INSIDE_SEQ_KNOWN | OUTSIDE_SEQ_KNOWN;
    phase_word & both == both
}

/// Merges a sender's segment into its side word (forward only).
fn advance_side(word: u64, known_seq: bool, known_ack: bool, segment: &TcpInfo) -> u64 {
    let end = segment_end(segment);
    let next = if known_seq && !seq_after(end, next_seq(word)) {
        next_seq(word)
    } else {
        end
    };
    let ack = if segment.flags.ack() && (!known_ack || seq_after(segment.ack, highest_ack(word))) {
        segment.ack
    } else {
        highest_ack(word)
    };
    side_word(next, ack)
}

/// The pure transition: new phase word, and the sender's new side word (`None` for an RST).
fn transition(
    phase_word: u32,
    inside: u64,
    outside: u64,
    direction: Direction,
    segment: &TcpInfo,
) -> (u32, Option<u64>) {
    let phase = TcpPhase::from_bits(phase_word);
    let flags = segment.flags;
    let known = phase_word & !0xF;
    let (sender, receiver, seq_known, ack_known, receiver_ack_known) = match direction {
        Direction::Outbound => (
            inside,
            outside,
            INSIDE_SEQ_KNOWN,
            INSIDE_ACK_KNOWN,
            OUTSIDE_ACK_KNOWN,
        ),
        Direction::Inbound => (
            outside,
            inside,
            OUTSIDE_SEQ_KNOWN,
            OUTSIDE_ACK_KNOWN,
            INSIDE_ACK_KNOWN,
        ),
    };
    if flags.rst() {
        let receiver_seq_known = match direction {
            Direction::Outbound => OUTSIDE_SEQ_KNOWN,
            Direction::Inbound => INSIDE_SEQ_KNOWN,
        };
        let answers_syn = matches!(
            (phase, direction),
            (TcpPhase::SynOut, Direction::Inbound) | (TcpPhase::SynIn, Direction::Outbound)
        );
        let acceptable = if answers_syn {
            flags.ack() && known & receiver_seq_known != 0 && segment.ack == next_seq(receiver)
        } else {
            let lower = (known & receiver_ack_known != 0).then_some(highest_ack(receiver));
            let upper = (known & seq_known != 0).then_some(next_seq(sender));
            match (lower, upper) {
                (Some(lo), Some(hi)) => segment.seq.wrapping_sub(lo) <= hi.wrapping_sub(lo),
                (Some(exact), None) | (None, Some(exact)) => segment.seq == exact,
                (None, None) => false,
            }
        };
        let phase = if acceptable && phase != TcpPhase::Closed {
            TcpPhase::Reset
        } else {
            phase
        };
        return (known | phase as u32, None);
    }
    let word = advance_side(
        sender,
        known & seq_known != 0,
        known & ack_known != 0,
        segment,
    );
    let mut known = known | seq_known;
    if flags.ack() {
        known |= ack_known;
    }
    let (syn, fin, out) = (flags.syn(), flags.fin(), direction == Direction::Outbound);
    let next = match phase {
        TcpPhase::Closed | TcpPhase::Reset if syn => {
            if out {
                TcpPhase::SynOut
            } else {
                TcpPhase::SynIn
            }
        }
        TcpPhase::Closed | TcpPhase::Reset => TcpPhase::Established,
        TcpPhase::SynOut if syn && !out => TcpPhase::Established,
        TcpPhase::SynIn if syn && out => TcpPhase::Established,
        TcpPhase::Established if fin => {
            if out {
                TcpPhase::FinOut
            } else {
                TcpPhase::FinIn
            }
        }
        TcpPhase::FinOut if fin && !out => TcpPhase::FinBoth,
        TcpPhase::FinIn if fin && out => TcpPhase::FinBoth,
        other => other,
    };
    (known | next as u32, Some(word))
}

/// The tracker as three atomics in a shared flow record; updated lock-free by any worker.
///
/// The phase word is updated by compare-and-swap from the state it was computed from; each side word
/// only moves forward. The words are not updated as one unit, so a segment racing another on a
/// different worker may be judged against sequence numbers one segment old — harmless for timeouts,
/// and an RST judged too strictly only leaves the flow to its established timeout.
#[derive(Debug, Default)]
pub struct AtomicTcpTracker {
    /// Phase and "known" flags.
    pub phase_word: AtomicU32,
    /// Inside side word.
    pub inside: AtomicU64,
    /// Outside side word.
    pub outside: AtomicU64,
}

impl AtomicTcpTracker {
    /// A snapshot of the three words.
    #[must_use]
    pub fn load(&self) -> TcpTracker {
        TcpTracker {
            phase_word: self.phase_word.load(Ordering::Acquire),
            inside: self.inside.load(Ordering::Acquire),
            outside: self.outside.load(Ordering::Acquire),
        }
    }

    /// Feeds one segment; returns the new phase.
    pub fn observe(&self, direction: Direction, segment: &TcpInfo) -> TcpPhase {
        loop {
            let snapshot = self.load();
            let (phase_word, sender_word) = transition(
                snapshot.phase_word,
                snapshot.inside,
                snapshot.outside,
                direction,
                segment,
            );
            if sender_word.is_some() {
                let side = match direction {
                    Direction::Outbound => &self.inside,
                    Direction::Inbound => &self.outside,
                };
                let (seq_known, ack_known) = match direction {
                    Direction::Outbound => (INSIDE_SEQ_KNOWN, INSIDE_ACK_KNOWN),
                    Direction::Inbound => (OUTSIDE_SEQ_KNOWN, OUTSIDE_ACK_KNOWN),
                };
                let _ = side.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                    let merged = advance_side(
                        current,
                        snapshot.phase_word & seq_known != 0,
                        snapshot.phase_word & ack_known != 0,
                        segment,
                    );
                    (merged != current).then_some(merged)
                });
            }
            if snapshot.phase_word == phase_word
                || self
                    .phase_word
                    .compare_exchange(
                        snapshot.phase_word,
                        phase_word,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                return TcpPhase::from_bits(phase_word);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::TcpFlags;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;

    fn seg(flags: u8, seq: u32, ack: u32, payload_len: u16) -> TcpInfo {
        TcpInfo {
            flags: TcpFlags(flags),
            seq,
            ack,
            payload_len,
        }
    }

    /// Handshake with inside ISN 1000 and outside ISN 5000, then 100 bytes each way.
    fn established() -> TcpTracker {
        let mut t = TcpTracker::default();
        assert_eq!(
            t.observe(Direction::Outbound, &seg(SYN, 1000, 0, 0)),
            TcpPhase::SynOut
        );
        assert_eq!(
            t.observe(Direction::Inbound, &seg(SYN | ACK, 5000, 1001, 0)),
            TcpPhase::Established
        );
        t.observe(Direction::Outbound, &seg(ACK, 1001, 5001, 100));
        t.observe(Direction::Inbound, &seg(ACK, 5001, 1101, 100));
        t.observe(Direction::Outbound, &seg(ACK, 1101, 5101, 0));
        t
    }

    #[test]
    fn a_connection_is_confirmed_once_both_sides_sent_and_an_rst_confirms_nothing() {
        let mut t = TcpTracker::default();
        t.observe(Direction::Outbound, &seg(SYN, 1000, 0, 0));
        assert!(!t.is_confirmed(), "a SYN alone");
        t.observe(Direction::Inbound, &seg(RST | ACK, 0, 1001, 0));
        assert!(!t.is_confirmed(), "refused by an RST");
        assert!(established().is_confirmed());
        // A pickup mid-stream: Established at once, confirmed only by the remote's answer.
        let mut pickup = TcpTracker::default();
        for _ in 0..3 {
            pickup.observe(Direction::Outbound, &seg(ACK, 7000, 9000, 0));
        }
        pickup.observe(Direction::Outbound, &seg(FIN | ACK, 7000, 9000, 0));
        assert!(
            !pickup.is_confirmed(),
            "bare ACKs and a FIN nobody answered"
        );
        pickup.observe(Direction::Inbound, &seg(ACK, 9000, 7001, 0));
        assert!(pickup.is_confirmed());
    }

    #[test]
    fn handshake_and_orderly_close() {
        let mut t = established();
        assert!(!t.phase().is_transitory());
        assert_eq!(
            t.observe(Direction::Outbound, &seg(FIN | ACK, 1101, 5101, 0)),
            TcpPhase::FinOut
        );
        assert!(
            !t.phase().is_transitory(),
            "half-closed keeps the established timeout"
        );
        assert_eq!(
            t.observe(Direction::Outbound, &seg(FIN | ACK, 1101, 5101, 0)),
            TcpPhase::FinOut
        );
        assert_eq!(
            t.observe(Direction::Inbound, &seg(FIN | ACK, 5101, 1102, 0)),
            TcpPhase::FinBoth
        );
        assert!(t.phase().is_transitory());
    }

    #[test]
    fn an_rst_towards_either_side_carries_what_that_side_acknowledged() {
        let t = established();
        assert_eq!(t.rst_seq_towards_inside(), Some(5101));
        assert_eq!(t.outside_next_seq(), Some(5101));
        assert_eq!(t.rst_seq_towards_outside(), Some(1101));
        assert_eq!(t.inside_next_seq(), Some(1101));
        let mut syn_only = TcpTracker::default();
        syn_only.observe(Direction::Outbound, &seg(SYN, 1000, 0, 0));
        assert_eq!(
            syn_only.rst_seq_towards_outside(),
            None,
            "nothing acknowledged"
        );
        assert_eq!(syn_only.inside_next_seq(), Some(1001));
    }

    #[test]
    fn exact_rst_resets_and_data_revives() {
        let mut t = established();
        assert_eq!(t.rst_seq_towards_inside(), Some(5101));
        assert_eq!(
            t.observe(Direction::Inbound, &seg(RST, 5101, 0, 0)),
            TcpPhase::Reset
        );
        assert!(t.phase().is_transitory());
        assert_eq!(
            t.observe(Direction::Outbound, &seg(ACK, 1101, 5101, 10)),
            TcpPhase::Established
        );
    }

    #[test]
    fn out_of_window_or_inexact_rst_does_not_close() {
        let mut t = established();
        // Outside has sent up to 5101 and inside acknowledged 5101: only 5101 can be exact.
        for bad in [5100, 5102, 5101 + 65_535, 0, 5101u32.wrapping_sub(1 << 31)] {
            assert_eq!(
                t.observe(Direction::Inbound, &seg(RST, bad, 0, 0)),
                TcpPhase::Established,
                "seq {bad}"
            );
        }
        // Outbound RST: outside acknowledged 1101, inside sent up to 1101.
        assert_eq!(
            t.observe(Direction::Outbound, &seg(RST | ACK, 1200, 5101, 0)),
            TcpPhase::Established
        );
        assert_eq!(
            t.observe(Direction::Outbound, &seg(RST | ACK, 1101, 5101, 0)),
            TcpPhase::Reset
        );
    }

    #[test]
    fn rst_within_unacknowledged_data_may_be_exact() {
        let mut t = established();
        t.observe(Direction::Inbound, &seg(ACK, 5101, 1101, 1000)); // in flight: inside has not acked yet
        assert_eq!(
            t.observe(Direction::Inbound, &seg(RST, 6101, 0, 0)),
            TcpPhase::Reset
        );
    }

    #[test]
    fn rst_answering_a_syn_must_acknowledge_it() {
        let mut t = TcpTracker::default();
        t.observe(Direction::Outbound, &seg(SYN, 1000, 0, 0));
        assert_eq!(
            t.observe(Direction::Inbound, &seg(RST | ACK, 0, 999, 0)),
            TcpPhase::SynOut
        );
        assert_eq!(
            t.observe(Direction::Inbound, &seg(RST, 0, 0, 0)),
            TcpPhase::SynOut
        );
        assert_eq!(
            t.observe(Direction::Inbound, &seg(RST | ACK, 0, 1001, 0)),
            TcpPhase::Reset
        );
    }

    #[test]
    fn sequence_tracking_survives_wraparound_and_ignores_old_segments() {
        let mut t = TcpTracker::default();
        t.observe(Direction::Outbound, &seg(SYN, u32::MAX - 10, 0, 0));
        t.observe(Direction::Inbound, &seg(SYN | ACK, 7, u32::MAX - 9, 0));
        t.observe(Direction::Outbound, &seg(ACK, u32::MAX - 9, 8, 100));
        t.observe(Direction::Outbound, &seg(ACK, u32::MAX - 9, 8, 50)); // retransmission, older end
        assert_eq!(next_seq(t.inside), (u32::MAX - 9).wrapping_add(100));
        assert_eq!(t.outside_next_seq(), Some(8));
        assert_eq!(
            t.observe(Direction::Outbound, &seg(RST, 90, 0, 0)),
            TcpPhase::Reset
        );
    }

    #[test]
    fn midstream_pickup_is_established_and_simultaneous_open_works() {
        let mut t = TcpTracker::default();
        assert_eq!(
            t.observe(Direction::Outbound, &seg(ACK, 1, 1, 10)),
            TcpPhase::Established
        );
        let mut s = TcpTracker::default();
        assert_eq!(
            s.observe(Direction::Inbound, &seg(SYN, 1, 0, 0)),
            TcpPhase::SynIn
        );
        assert_eq!(
            s.observe(Direction::Outbound, &seg(SYN | ACK, 9, 2, 0)),
            TcpPhase::Established
        );
    }

    #[test]
    fn atomic_tracker_matches_the_plain_one_and_is_shareable() {
        let atomic = std::sync::Arc::new(AtomicTcpTracker::default());
        let mut plain = TcpTracker::default();
        let script = [
            (Direction::Outbound, seg(SYN, 1000, 0, 0)),
            (Direction::Inbound, seg(SYN | ACK, 5000, 1001, 0)),
            (Direction::Outbound, seg(ACK, 1001, 5001, 100)),
            (Direction::Inbound, seg(RST, 4000, 0, 0)),
            (Direction::Inbound, seg(ACK, 5001, 1101, 0)),
            (Direction::Outbound, seg(FIN | ACK, 1101, 5001, 0)),
            (Direction::Inbound, seg(FIN | ACK, 5001, 1102, 0)),
        ];
        for (direction, segment) in script {
            assert_eq!(
                atomic.observe(direction, &segment),
                plain.observe(direction, &segment)
            );
            assert_eq!(atomic.load(), plain);
        }
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let atomic = std::sync::Arc::clone(&atomic);
                std::thread::spawn(move || {
                    for n in 0..1000u32 {
                        atomic.observe(Direction::Inbound, &seg(ACK, 5002 + n * 10 + i, 1102, 10));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            atomic.load().outside_next_seq(),
            Some(5002 + 999 * 10 + 1 + 10)
        );
        assert_eq!(atomic.load().phase(), TcpPhase::FinBoth);
    }
}
