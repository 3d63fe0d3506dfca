//! The record's sequence word: a generation counter and a lifecycle status in one `u32`.
//!
//! Invariants:
//! - the generation changes only on the `Free -> Writing` transition (a record being claimed for a
//!   new incarnation) and on an inserter's retry (`Aborted -> Writing`); every other transition keeps
//!   it. So "same generation" means "same keys and same value".
//! - the record's body (keys and value) is written only while the status is `Writing`, by the one
//!   thread that claimed it; readers copy the body and then check that the generation did not move.
//! - `Pending -> Live | Aborted | Clashed` may be decided by any thread (helping); all other
//!   transitions are made by the record's owner (its inserter, or whoever won `Live -> Dead`).

/// Bits of the word that hold the status; the rest is the generation.
const STATUS_BITS: u32 = 3;
const STATUS_MASK: u32 = (1 << STATUS_BITS) - 1;

/// Where a record is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Unused; may be claimed by an inserter.
    Free = 0,
    /// Claimed; its owner is writing the body or publishing/retracting its index slots.
    Writing = 1,
    /// Body written and both keys published; the first-packet race is being decided.
    Pending = 2,
    /// A flow: visible to lookups.
    Live = 3,
    /// Removed (expired or removed by handle); its remover is retracting the slots.
    Dead = 4,
    /// Lost the race for its LAN-side key; its inserter retracts the slots.
    Aborted = 5,
    /// Another flow owns its uplink-side key; its inserter retracts the slots.
    Clashed = 6,
}

/// A snapshot of a record's sequence word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Seq(pub(crate) u32);

impl Seq {
    pub(crate) const fn new(generation: u32, status: Status) -> Self {
        Seq((generation << STATUS_BITS) | status as u32)
    }

    pub(crate) const fn generation(self) -> u32 {
        self.0 >> STATUS_BITS
    }

    /// The same generation with another status.
    pub(crate) const fn with_status(self, status: Status) -> Self {
        Seq::new(self.generation(), status)
    }

    /// The next generation (wrapping), in status `Writing`.
    pub(crate) const fn next_incarnation(self) -> Self {
        Seq::new(
            self.generation().wrapping_add(1) & (u32::MAX >> STATUS_BITS),
            Status::Writing,
        )
    }

    pub(crate) fn status(self) -> Status {
        match self.0 & STATUS_MASK {
            0 => Status::Free,
            1 => Status::Writing,
            2 => Status::Pending,
            3 => Status::Live,
            4 => Status::Dead,
            5 => Status::Aborted,
            _ => Status::Clashed,
        }
    }

    pub(crate) fn same_generation(self, other: Seq) -> bool {
        self.generation() == other.generation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_generation_round_trip() {
        for status in [
            Status::Free,
            Status::Writing,
            Status::Pending,
            Status::Live,
            Status::Dead,
            Status::Aborted,
            Status::Clashed,
        ] {
            let seq = Seq::new(12345, status);
            assert_eq!(seq.status(), status);
            assert_eq!(seq.generation(), 12345);
        }
    }

    #[test]
    fn next_incarnation_bumps_generation_and_wraps() {
        let seq = Seq::new(7, Status::Free).next_incarnation();
        assert_eq!((seq.generation(), seq.status()), (8, Status::Writing));
        let last = Seq::new(u32::MAX >> STATUS_BITS, Status::Dead).next_incarnation();
        assert_eq!((last.generation(), last.status()), (0, Status::Writing));
        assert!(!Seq::new(3, Status::Live).same_generation(Seq::new(4, Status::Live)));
        assert!(Seq::new(3, Status::Live).same_generation(Seq::new(3, Status::Dead)));
    }
}
