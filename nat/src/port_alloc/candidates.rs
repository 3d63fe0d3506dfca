//! The candidate external ports of one internal endpoint, in claim order: its own port when in
//! range, then hashed blocks of eight ports of its class (see the allocator's module docs).

use super::PortAllocator;
use crate::port_range::PortRange;

const fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Candidate ports are visited in blocks of this many consecutive slots (one 64-byte cache line of
/// `AtomicU64`s), so probing `K` candidates touches about `K / 8` cache lines.
pub(super) const BLOCK: usize = 8;

/// The candidate ports of one endpoint, in claim order (see the module docs). Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidates {
    preserved: Option<u16>,
    class: PortRange,
    start_block: usize,
    block_step: usize,
    blocks: usize,
    positions: usize,
}

impl Candidates {
    /// Every candidate in claim order as `(position, port)`, with `None` for a position to skip (past
    /// the class's last port, or the preserved port met again). Division-free: blocks advance by
    /// addition.
    pub(super) fn iter(&self) -> CandidateIter {
        CandidateIter {
            candidates: *self,
            position: 0,
            hashed: 0,
            block: self.start_block,
        }
    }
}

/// Iterator of [`Candidates::iter`].
#[derive(Debug, Clone, Copy)]
pub(super) struct CandidateIter {
    candidates: Candidates,
    position: usize,
    hashed: usize,
    block: usize,
}

impl Iterator for CandidateIter {
    type Item = (usize, Option<u16>);

    fn next(&mut self) -> Option<Self::Item> {
        let c = &self.candidates;
        let position = self.position;
        self.position += 1;
        if position == 0
            && let Some(port) = c.preserved
        {
            return Some((position, Some(port)));
        }
        if self.hashed >= c.positions {
            return None;
        }
        let within = self.hashed % BLOCK;
        let offset = self.block * BLOCK + within;
        self.hashed += 1;
        if within == BLOCK - 1 {
            self.block += c.block_step;
            if self.block >= c.blocks {
                self.block -= c.blocks;
            }
        }
        if offset >= c.class.len() {
            return Some((position, None));
        }
        let port = u16::try_from(usize::from(c.class.first()) + offset).ok();
        Some((position, port.filter(|&p| c.preserved != Some(p))))
    }
}

impl PortAllocator {
    pub(super) fn candidates(&self, endpoint: u64, internal_port: u16) -> Candidates {
        let class = if !self.config.keep_port_class {
            self.config.range
        } else if internal_port >= 1024 {
            self.high_class
        } else {
            self.low_class
        };
        let blocks = class.len().div_ceil(BLOCK);
        let hash = self.secret.hash_one(endpoint);
        let start_block = usize::try_from(hash % blocks as u64).unwrap_or(0);
        let mut block_step = usize::try_from((hash >> 32) % blocks as u64)
            .unwrap_or(1)
            .max(1);
        while gcd(block_step, blocks) != 1 {
            block_step = block_step % blocks + 1;
        }
        let wanted = usize::try_from(self.config.candidates).unwrap_or(usize::MAX);
        let positions = wanted.div_ceil(BLOCK).min(blocks) * BLOCK;
        let preserved = class.contains(internal_port).then_some(internal_port);
        Candidates {
            preserved,
            class,
            start_block,
            block_step,
            blocks,
            positions,
        }
    }
}
