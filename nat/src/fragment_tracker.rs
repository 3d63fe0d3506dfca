//! Shallow (virtual) reassembly state for IPv4 fragments: which translation the later fragments of a
//! datagram follow, and the fragments that arrived before their first one. Nothing is reassembled.
//!
//! A datagram is named by its [`DatagramId`] (source, destination, protocol, IP ID: RFC 791 §3.2).
//! Its first fragment carries the transport header, so it alone can find (or create) the flow; the
//! datapath then [`FragmentTracker::record`]s the flow's translation under the datagram's id, and
//! every later fragment [`FragmentTracker::lookup`]s it. A fragment whose first has not been seen
//! yet can be [`FragmentTracker::hold`]: its bytes are copied aside until the first arrives
//! ([`FragmentTracker::release`]) or its hold times out.
//!
//! Invariants:
//! - all memory is allocated in [`FragmentTracker::new`]: no call after it allocates, locks or
//!   panics; the tracker is one worker's (`&mut self`), never shared;
//! - at most [`FragmentLimits::datagrams`] translations are remembered, each for
//!   [`FragmentLimits::timeout_ms`] after its last fragment; a new datagram takes an expired entry
//!   of its set, else the one that expires first (a set is [`WAYS`] entries: the work per packet is
//!   bounded);
//! - at most [`FragmentLimits::held`] fragments of at most [`FragmentLimits::held_bytes`] bytes
//!   each are held, each for at most the timeout; a fragment that does not fit is refused with its
//!   reason ([`HoldRefused`]) and the caller drops and counts it;
//! - a held fragment is handed back at most once: by `release` (its first fragment came) or counted
//!   by [`FragmentTracker::expire`] (it did not).

use std::net::Ipv4Addr;

use crate::wire::ipv4::Ipv4Packet;

/// Entries per set of the translation table: a lookup or insertion looks at this many at most.
pub const WAYS: usize = 4;

/// What names one IP datagram among its fragments (RFC 791 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramId {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// IP identification.
    pub id: u16,
}

impl DatagramId {
    /// The datagram an IPv4 packet (a fragment or not) belongs to.
    #[must_use]
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Self {
        Self {
            source: ip.source(),
            destination: ip.destination(),
            protocol: ip.protocol(),
            id: ip.ident(),
        }
    }

    const NONE: Self = Self {
        source: Ipv4Addr::UNSPECIFIED,
        destination: Ipv4Addr::UNSPECIFIED,
        protocol: 0,
        id: 0,
    };

    /// A well-mixed 64-bit hash (no allocation, no keyed state: the set only spreads the load, and a
    /// flood that collides only evicts within its set).
    fn hash(&self) -> u64 {
        let words =
            (u64::from(self.source.to_bits()) << 32) | u64::from(self.destination.to_bits());
        let rest = (u64::from(self.protocol) << 16) | u64::from(self.id);
        let mut h = words ^ rest.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// The tracker's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Datagrams whose translation is remembered at once (rounded up to a power of two, at least
    /// [`WAYS`]).
    pub datagrams: usize,
    /// How long a translation, or a held fragment, lives after its last fragment.
    pub timeout_ms: u64,
    /// Fragments held at once waiting for their first.
    pub held: usize,
    /// The longest fragment (whole frame) that can be held.
    pub held_bytes: usize,
}

impl Default for FragmentLimits {
    /// 4,096 datagrams, 2 s, 64 held fragments of up to 2,048 bytes (128 KiB per worker).
    fn default() -> Self {
        Self {
            datagrams: 4096,
            timeout_ms: 2000,
            held: 64,
            held_bytes: 2048,
        }
    }
}

/// Why a fragment was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    /// Every hold slot is taken by a fragment that has not timed out.
    #[error("every hold slot is taken")]
    Full,
    /// Longer than a hold slot.
    #[error("fragment longer than a hold slot")]
    TooLong,
}

#[derive(Debug, Clone, Copy)]
struct Entry<T> {
    id: DatagramId,
    expires_ms: u64,
    value: Option<T>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    id: DatagramId,
    expires_ms: u64,
    len: usize,
    occupied: bool,
}

/// One worker's fragment state; `T` is the translation later fragments follow (small and `Copy`).
#[derive(Debug)]
pub struct FragmentTracker<T> {
    entries: Box<[Entry<T>]>,
    set_mask: usize,
    held: Box<[Held]>,
    held_bytes: Box<[u8]>,
    limits: FragmentLimits,
}

impl<T: Copy> FragmentTracker<T> {
    /// A tracker with every bound of `limits` allocated now.
    #[must_use]
    pub fn new(limits: FragmentLimits) -> Self {
        let datagrams = limits.datagrams.max(WAYS).next_power_of_two();
        let empty = Entry {
            id: DatagramId::NONE,
            expires_ms: 0,
            value: None,
        };
        let free = Held {
            id: DatagramId::NONE,
            expires_ms: 0,
            len: 0,
            occupied: false,
        };
        Self {
            entries: vec![empty; datagrams].into_boxed_slice(),
            set_mask: datagrams / WAYS - 1,
            held: vec![free; limits.held].into_boxed_slice(),
            held_bytes: vec![0; limits.held * limits.held_bytes].into_boxed_slice(),
            limits: FragmentLimits {
                datagrams,
                ..limits
            },
        }
    }

    /// The bounds in force (`datagrams` as rounded).
    #[must_use]
    pub const fn limits(&self) -> FragmentLimits {
        self.limits
    }

    fn set(&mut self, id: &DatagramId) -> &mut [Entry<T>] {
        // The set index is masked to the table: the truncation to usize only drops high bits.
        #[allow(clippy::cast_possible_truncation)]
        let start = (id.hash() as usize & self.set_mask) * WAYS;
        &mut self.entries[start..start + WAYS]
    }

    /// Remembers that datagram `id` is translated with `value` (its first fragment's flow), until
    /// `timeout_ms` after `now_ms`.
    pub fn record(&mut self, id: DatagramId, value: T, now_ms: u64) {
        let expires_ms = now_ms + self.limits.timeout_ms;
        let set = self.set(&id);
        let at = set
            .iter()
            .position(|e| e.value.is_some() && e.id == id)
            .or_else(|| {
                set.iter()
                    .position(|e| e.value.is_none() || e.expires_ms <= now_ms)
            })
            .unwrap_or_else(|| {
                // Every entry live: the one that expires first gives way.
                (0..WAYS).min_by_key(|&i| set[i].expires_ms).unwrap_or(0)
            });
        set[at] = Entry {
            id,
            expires_ms,
            value: Some(value),
        };
    }

    /// The translation of datagram `id`, if its first fragment was recorded and has not timed out;
    /// a hit keeps it alive for another timeout.
    pub fn lookup(&mut self, id: &DatagramId, now_ms: u64) -> Option<T> {
        let timeout_ms = self.limits.timeout_ms;
        let set = self.set(id);
        let entry = set
            .iter_mut()
            .find(|e| e.value.is_some() && e.id == *id && e.expires_ms > now_ms)?;
        entry.expires_ms = now_ms + timeout_ms;
        entry.value
    }

    /// Copies `fragment` aside until the first fragment of datagram `id` is recorded.
    ///
    /// # Errors
    /// [`HoldRefused`]: no free slot (expired holds are freed only by [`Self::expire`]), or too long.
    pub fn hold(
        &mut self,
        id: DatagramId,
        fragment: &[u8],
        now_ms: u64,
    ) -> Result<(), HoldRefused> {
        let size = self.limits.held_bytes;
        if fragment.len() > size {
            return Err(HoldRefused::TooLong);
        }
        let slot = self
            .held
            .iter()
            .position(|h| !h.occupied)
            .ok_or(HoldRefused::Full)?;
        self.held_bytes[slot * size..slot * size + fragment.len()].copy_from_slice(fragment);
        self.held[slot] = Held {
            id,
            expires_ms: now_ms + self.limits.timeout_ms,
            len: fragment.len(),
            occupied: true,
        };
        Ok(())
    }

    /// Hands every held fragment of datagram `id` that has not timed out to `send` (in the order
    /// they were held is not promised) and frees its slot; returns how many were handed over.
    pub fn release(&mut self, id: &DatagramId, now_ms: u64, mut send: impl FnMut(&[u8])) -> usize {
        let size = self.limits.held_bytes;
        let mut released = 0;
        for (slot, held) in self.held.iter_mut().enumerate() {
            if held.occupied && held.id == *id && held.expires_ms > now_ms {
                send(&self.held_bytes[slot * size..slot * size + held.len]);
                held.occupied = false;
                released += 1;
            }
        }
        released
    }

    /// Frees the holds that timed out; returns how many (each a dropped fragment to count).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        for held in self.held.iter_mut() {
            if held.occupied && held.expires_ms <= now_ms {
                held.occupied = false;
                expired += 1;
            }
        }
        expired
    }

    /// Fragments held now.
    #[must_use]
    pub fn held_count(&self) -> usize {
        self.held.iter().filter(|h| h.occupied).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u16) -> DatagramId {
        DatagramId {
            source: Ipv4Addr::new(198, 51, 100, 7),
            destination: Ipv4Addr::new(203, 0, 113, 2),
            protocol: 17,
            id: n,
        }
    }

    fn small() -> FragmentLimits {
        FragmentLimits {
            datagrams: 8,
            timeout_ms: 100,
            held: 2,
            held_bytes: 16,
        }
    }

    #[test]
    fn a_packet_names_its_datagram_by_addresses_protocol_and_ident() {
        let frame = crate::frame_builder::build_frame(&crate::frame_builder::FrameSpec::new(
            [198, 51, 100, 7],
            [203, 0, 113, 2],
            crate::frame_builder::L4Spec::Udp {
                ports: (1, 2),
                payload: b"x",
            },
        ));
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!(
            DatagramId::of(&ip),
            DatagramId {
                id: ip.ident(),
                ..id(0)
            }
        );
    }

    #[test]
    fn later_fragments_follow_the_first_until_the_timeout() {
        let mut t = FragmentTracker::new(small());
        assert_eq!(
            t.lookup(&id(1), 0),
            None,
            "nothing before the first fragment"
        );
        t.record(id(1), 'a', 0);
        assert_eq!(t.lookup(&id(1), 99), Some('a'));
        assert_eq!(t.lookup(&id(1), 198), Some('a'), "a hit keeps it alive");
        assert_eq!(t.lookup(&id(1), 298), None, "timed out");
        let other = DatagramId {
            protocol: 6,
            ..id(1)
        };
        t.record(id(1), 'a', 300);
        assert_eq!(
            t.lookup(&other, 300),
            None,
            "the protocol is part of the name"
        );
    }

    #[test]
    fn a_full_set_gives_way_to_the_entry_that_expires_first() {
        let mut t = FragmentTracker::new(FragmentLimits {
            datagrams: WAYS,
            ..small()
        });
        for n in 0..WAYS as u16 {
            t.record(id(n), n, u64::from(n));
        }
        t.record(id(100), 100, 10);
        assert_eq!(t.lookup(&id(0), 10), None, "the oldest gave way");
        for n in 1..WAYS as u16 {
            assert_eq!(t.lookup(&id(n), 10), Some(n));
        }
        assert_eq!(t.lookup(&id(100), 10), Some(100));
    }

    #[test]
    fn held_fragments_are_released_once_to_their_first_or_expire_counted() {
        let mut t = FragmentTracker::<()>::new(small());
        t.hold(id(1), b"second", 0).unwrap();
        t.hold(id(2), b"other", 0).unwrap();
        assert_eq!(t.hold(id(1), b"third", 0), Err(HoldRefused::Full));
        assert_eq!(t.hold(id(3), &[0; 17], 0), Err(HoldRefused::TooLong));
        let mut got = Vec::new();
        assert_eq!(t.release(&id(1), 50, |f| got.push(f.to_vec())), 1);
        assert_eq!(got, [b"second".to_vec()]);
        assert_eq!(t.release(&id(1), 50, |_| panic!("released twice")), 0);
        assert_eq!(t.held_count(), 1);
        assert_eq!(t.expire(99), 0);
        assert_eq!(t.release(&id(2), 100, |_| panic!("timed out")), 0);
        assert_eq!(t.expire(100), 1);
        assert_eq!(t.held_count(), 0);
    }

    proptest! {
        /// However many datagrams and orphans arrive, the memory stays what `new` allocated: at most
        /// `held` fragments are held, the table never holds more than its entries, and every
        /// fragment held is either released or expired exactly once.
        #[test]
        fn bounded_whatever_arrives(ops in proptest::collection::vec((0u8..4, 0u16..64, 0usize..20), 0..400)) {
            let limits = small();
            let mut t = FragmentTracker::new(limits);
            let (mut held, mut out) = (0usize, 0usize);
            let mut now = 0u64;
            for (op, n, len) in ops {
                now += 7;
                match op {
                    0 => t.record(id(n), n, now),
                    1 => if let Some(v) = t.lookup(&id(n), now) { prop_assert_eq!(v, n) },
                    2 => if t.hold(id(n), &vec![0; len], now).is_ok() { held += 1 },
                    _ => out += t.release(&id(n), now, |f| assert!(f.len() <= limits.held_bytes)) + t.expire(now),
                }
                prop_assert!(t.held_count() <= limits.held);
                prop_assert_eq!(held, out + t.held_count());
            }
        }
    }
}
