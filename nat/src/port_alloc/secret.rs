//! The allocator's secret key: which candidate ports an endpoint gets (RFC 6056 §4).
//!
//! - Keyed SipHash-2-4 (`std`'s, the keyed constructor being the only stable way to choose the
//!   key), so the key can be saved with the daemon's state and a restarted process keeps every
//!   endpoint's candidate order: a restored mapping is found again by [`super::PortAllocator::acquire`]
//!   and [`super::PortAllocator::mapping_of`] (EIM across restarts).
//! - A fresh key is drawn from `std`'s per-process random hasher keys.
//! - Used per new endpoint only (acquire, `mapping_of`), never per packet of a pinned flow.

#![allow(deprecated)] // `SipHasher` is deprecated only in favour of `RandomState`, which cannot be keyed.

use std::hash::{BuildHasher, Hash, Hasher, RandomState, SipHasher};

/// The two 64-bit keys of the allocator's keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorSecret(pub [u64; 2]);

impl AllocatorSecret {
    /// A fresh unpredictable key.
    #[must_use]
    pub fn random() -> Self {
        let random = RandomState::new();
        Self([random.hash_one(0x5eed_u64), random.hash_one(0xfeed_u64)])
    }

    /// The keyed hash of `value`.
    #[must_use]
    pub fn hash_one(&self, value: impl Hash) -> u64 {
        let mut hasher = SipHasher::new_with_keys(self.0[0], self.0[1]);
        value.hash(&mut hasher);
        hasher.finish()
    }
}
