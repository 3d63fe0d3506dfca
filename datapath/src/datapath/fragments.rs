//! One worker's IPv4 fragment state: how the later fragments of a datagram follow its first one,
//! and the later fragments held until their first arrives.
//!
//! The pipeline translates a first fragment like a whole packet (it carries the ports and finds or
//! creates the flow) and then records, under the datagram's id (source, destination, protocol,
//! IP ID), the route its later fragments take: the addresses and Ethernet addresses the first one
//! left with, its egress port and the port it came in on. A later fragment with a route gets the
//! address-only rewrite and leaves the same way; one without is held (copied aside) until its first
//! is translated, then released and sent, or expired and counted.
//!
//! Invariants:
//! - the state is one worker's, reached through a `RefCell` the worker alone borrows (no lock, no
//!   sharing); all memory is allocated in [`Fragments::new`] (`flowpin_nat::FragmentTracker`);
//! - a later fragment is translated only with a route recorded by a first fragment that arrived
//!   on the same port and was translated: a fragment of an unknown datagram creates no flow and
//!   never leaves un-translated;
//! - at most `held` fragments are held at once, each at most `timeout_ms`; every held fragment is
//!   either released (then forwarded or dropped under its reason) or counted as
//!   `fragment_expired`: `frames = forwarded + drops + held_now()`.

use flowpin_nat::{DatagramId, FragmentLimits, FragmentRewrite, FragmentTracker, MacPair};

use crate::datapath::verdict::PortId;

/// The way the later fragments of one datagram go: recorded from its translated first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentRoute {
    /// The port the first fragment came in on: later fragments must come in on it too.
    pub ingress: PortId,
    /// The port it left by.
    pub egress: PortId,
    /// The addresses it left with.
    pub rewrite: FragmentRewrite,
    /// The Ethernet addresses it left with.
    pub macs: MacPair,
}

/// One worker's fragment state (see the module docs).
#[derive(Debug)]
pub struct Fragments {
    tracker: FragmentTracker<FragmentRoute>,
    held_now: usize,
    /// The datagram whose first fragment was just translated while fragments of it were held.
    release_due: Option<(DatagramId, FragmentRoute)>,
}

impl Default for Fragments {
    fn default() -> Self {
        Self::new(FragmentLimits::default())
    }
}

impl Fragments {
    /// The state with every bound of `limits` allocated now.
    #[must_use]
    pub fn new(limits: FragmentLimits) -> Self {
        Self {
            tracker: FragmentTracker::new(limits),
            held_now: 0,
            release_due: None,
        }
    }

    /// The bounds in force.
    #[must_use]
    pub const fn limits(&self) -> FragmentLimits {
        self.tracker.limits()
    }

    /// Fragments held now.
    #[must_use]
    pub const fn held_now(&self) -> usize {
        self.held_now
    }

    /// Records the route of datagram `id` (its first fragment was just translated); when fragments
    /// of it are held, they are due for release.
    pub(crate) fn record(&mut self, id: DatagramId, route: FragmentRoute, now_ms: u64) {
        self.tracker.record(id, route, now_ms);
        if self.held_now > 0 {
            self.release_due = Some((id, route));
        }
    }

    /// The route of datagram `id` for a later fragment that came in on `ingress`.
    pub(crate) fn route(
        &mut self,
        id: &DatagramId,
        ingress: PortId,
        now_ms: u64,
    ) -> Option<FragmentRoute> {
        self.tracker
            .lookup(id, now_ms)
            .filter(|route| route.ingress == ingress)
    }

    /// Holds a later fragment of datagram `id` until its first comes.
    pub(crate) fn hold(
        &mut self,
        id: DatagramId,
        fragment: &[u8],
        now_ms: u64,
    ) -> Result<(), flowpin_nat::HoldRefused> {
        self.tracker.hold(id, fragment, now_ms)?;
        self.held_now += 1;
        Ok(())
    }

    /// Hands each fragment held for the datagram due for release to `send` with its route.
    pub(crate) fn release(&mut self, now_ms: u64, mut send: impl FnMut(&[u8], FragmentRoute)) {
        let Some((id, route)) = self.release_due.take() else {
            return;
        };
        let released = self.tracker.release(&id, now_ms, |held| send(held, route));
        self.held_now -= released;
    }

    /// Frees the holds that timed out; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        if self.held_now == 0 {
            return 0;
        }
        let expired = self.tracker.expire(now_ms);
        self.held_now -= expired;
        expired
    }
}
