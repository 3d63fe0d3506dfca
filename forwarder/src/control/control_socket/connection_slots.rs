//! The control socket's bounded pool of connections, sans I/O: who holds a slot, who is waiting for
//! a request (and since when), and whom a new connection displaces when every slot is taken.
//!
//! Invariants:
//! - at most `limit` connections hold a slot;
//! - a connection is either waiting (for its next request line, evictable) or serving (its request is
//!   being answered, never evicted);
//! - when the pool is full a new connection takes the slot of the connection that has waited longest,
//!   so idle or slow clients cannot lock the operator out; it is refused only when every slot is
//!   serving a request.

use std::time::Instant;

/// One slot: its connection's id, since when it waits (`None`: serving), and what the I/O side uses
/// to tell it to go.
#[derive(Debug)]
struct Slot<T> {
    id: u64,
    waiting_since: Option<Instant>,
    token: T,
}

/// What became of a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// It holds slot `id`; `evicted` is the token of the connection it displaced, if any.
    Admitted {
        /// The new connection's id.
        id: u64,
        /// The displaced connection's token.
        evicted: Option<T>,
    },
    /// Every slot is serving a request.
    Refused,
}

/// The pool: at most `limit` slots.
#[derive(Debug)]
pub struct ConnectionSlots<T> {
    limit: usize,
    next_id: u64,
    slots: Vec<Slot<T>>,
}

impl<T> ConnectionSlots<T> {
    /// An empty pool of `limit` slots.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            next_id: 0,
            slots: Vec::with_capacity(limit),
        }
    }

    /// How many connections hold a slot.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Admits a new connection at `now` (waiting for its first request), displacing the
    /// longest-waiting one when the pool is full.
    pub fn admit(&mut self, now: Instant, token: T) -> Admission<T> {
        let mut evicted = None;
        if self.slots.len() >= self.limit {
            let Some(oldest) = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.waiting_since.map(|t| (t, i)))
                .min()
                .map(|(_, i)| i)
            else {
                return Admission::Refused;
            };
            evicted = Some(self.slots.swap_remove(oldest).token);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push(Slot {
            id,
            waiting_since: Some(now),
            token,
        });
        Admission::Admitted { id, evicted }
    }

    /// Connection `id` is answering a request: it cannot be evicted until it waits again.
    pub fn serving(&mut self, id: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
            slot.waiting_since = None;
        }
    }

    /// Connection `id` waits for its next request from `now`.
    pub fn waiting(&mut self, id: u64, now: Instant) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.id == id) {
            slot.waiting_since = Some(now);
        }
    }

    /// Connection `id` is gone (closed, or evicted already: then nothing happens).
    pub fn release(&mut self, id: u64) {
        self.slots.retain(|s| s.id != id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Instant {
        thread_local!(static EPOCH: Instant = Instant::now());
        EPOCH.with(|e| *e + Duration::from_millis(ms))
    }

    fn id(admission: Admission<&'static str>) -> (u64, Option<&'static str>) {
        match admission {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_full_pool_displaces_the_longest_waiting_connection() {
        let mut pool = ConnectionSlots::new(2);
        let (a, _) = id(pool.admit(at(0), "a"));
        let (_b, _) = id(pool.admit(at(1), "b"));
        assert_eq!(pool.len(), 2);
        // `a` asked something and waits again after `b`: `b` has waited longest now.
        pool.serving(a);
        pool.waiting(a, at(5));
        let (_, evicted) = id(pool.admit(at(6), "c"));
        assert_eq!(evicted, Some("b"));
        assert_eq!(pool.len(), 2, "never more than the limit");
        let (_, evicted) = id(pool.admit(at(7), "d"));
        assert_eq!(evicted, Some("a"));
    }

    #[test]
    fn connections_serving_a_request_are_never_displaced() {
        let mut pool = ConnectionSlots::new(2);
        let (a, _) = id(pool.admit(at(0), "a"));
        let (b, _) = id(pool.admit(at(1), "b"));
        pool.serving(a);
        pool.serving(b);
        assert_eq!(pool.admit(at(2), "c"), Admission::Refused);
        pool.waiting(b, at(3));
        let (_, evicted) = id(pool.admit(at(4), "c"));
        assert_eq!(evicted, Some("b"));
    }

    #[test]
    fn releasing_frees_the_slot_and_is_idempotent() {
        let mut pool = ConnectionSlots::new(1);
        let (a, _) = id(pool.admit(at(0), "a"));
        pool.release(a);
        pool.release(a);
        assert!(pool.is_empty());
        let (b, evicted) = id(pool.admit(at(1), "b"));
        assert_eq!(evicted, None);
        assert_ne!(a, b, "ids are not reused");
        // A stale release of an evicted id touches nobody else.
        let (_, evicted) = id(pool.admit(at(2), "c"));
        assert_eq!(evicted, Some("b"));
        pool.release(b);
        assert_eq!(pool.len(), 1);
    }
}
