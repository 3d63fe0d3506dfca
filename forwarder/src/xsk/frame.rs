//! A UMEM frame held by the datapath.
//!
//! Invariants: a [`Frame`] is created only by its worker, is neither `Clone` nor `Copy`, and
//! names one chunk no other live `Frame` names — so holding `&mut Frame` is exclusive access to
//! the chunk's bytes. It must be handed back (transmit or recycle); a frame that is dropped
//! instead leaks from the pool and shows as `in_flight` in the accounting forever.
//! `start + len <= capacity` always holds.

/// Index of a port (one socket = one (interface, queue)) in its worker, in the order given to
/// `XskWorker::new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// The index as `usize`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Ownership of one UMEM chunk, with the bounds of the packet inside it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a frame must be transmitted or recycled, or it leaks from the UMEM"]
pub struct Frame {
    pub(super) owner: u64,
    pub(super) chunk: u64,
    pub(super) start: u32,
    pub(super) len: u32,
    pub(super) capacity: u32,
    pub(super) rx_port: Option<PortId>,
}

impl Frame {
    /// The port the frame was received on (`None` for an allocated frame).
    pub fn rx_port(&self) -> Option<PortId> {
        self.rx_port
    }

    /// Offset of the packet's first byte in the chunk (headroom before it).
    pub fn start(&self) -> u32 {
        self.start
    }

    /// Length of the packet.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the packet is empty (fresh allocations are).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the chunk: `start + len` never exceeds it.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Bytes available after the packet.
    pub fn tailroom(&self) -> u32 {
        self.capacity - self.start - self.len
    }

    /// Sets the packet's length (it keeps its start). Returns `false`, changing nothing, if it
    /// would not fit in the chunk.
    pub fn set_len(&mut self, len: u32) -> bool {
        self.set_bounds(self.start, len)
    }

    /// Moves the packet to `start` with length `len` (e.g. to prepend a header into the
    /// headroom). Returns `false`, changing nothing, if it would not fit in the chunk.
    pub fn set_bounds(&mut self, start: u32, len: u32) -> bool {
        match start.checked_add(len) {
            Some(end) if end <= self.capacity => {
                self.start = start;
                self.len = len;
                true
            }
            _ => false,
        }
    }

    /// UMEM offset of the packet's first byte (the TX descriptor address).
    pub(super) fn umem_addr(&self) -> u64 {
        self.chunk + u64::from(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            owner: 1,
            chunk: 8192,
            start: 256,
            len: 60,
            capacity: 4096,
            rx_port: None,
        }
    }

    #[test]
    fn bounds_stay_inside_the_chunk() {
        let mut frame = frame();
        assert_eq!(frame.tailroom(), 4096 - 256 - 60);
        assert!(frame.set_len(4096 - 256));
        assert_eq!(frame.tailroom(), 0);
        assert!(!frame.set_len(4096 - 255));
        assert_eq!(
            frame.len(),
            4096 - 256,
            "a refused change leaves the frame as it was"
        );
        assert!(frame.set_bounds(0, 4096));
        assert!(!frame.set_bounds(1, 4096));
        assert!(
            !frame.set_bounds(u32::MAX, 2),
            "overflow is refused, not wrapped"
        );
        assert!(frame.set_bounds(200, 100));
        assert_eq!(frame.umem_addr(), 8192 + 200);
    }
}
