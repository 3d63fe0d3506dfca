//! When to ask for an uplink's gateway again while its link carries packets and the gateway is
//! unresolved.
//!
//! The kernel sends one ARP request when flowpin solicits the gateway and repeats it only after its
//! retransmit time (a second by default). At a carrier's return the first request or its answer is
//! often lost (the link, or the gateway's side of it, is still coming up), so waiting for the kernel
//! costs a second of an uplink that works. This schedule asks again soon, then backs off to the
//! kernel's own pace, so a gateway that is really gone costs one request a second.
//!
//! Invariants: pure (time is an argument); one schedule per uplink slot; a schedule restarts from its
//! first step whenever the gateway resolves or the link stops carrying packets.

/// Delays between asks, in ms, after the gateway is first seen unresolved on a working link (the first
/// ask is at once: that first sight is already a tick after the solicitation that went unanswered); the
/// last one repeats.
const STEPS_MS: [u64; 5] = [100, 200, 400, 800, 1000];

/// The ask schedule of one uplink's gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayRetry {
    /// When the next ask is due (daemon ms) and the step it is at; `None` while nothing is pending.
    next: Option<(u64, usize)>,
}

impl GatewayRetry {
    /// Whether to ask for the gateway again at `now_ms`, given whether it is `waiting` now (the link
    /// carries packets and the gateway has no usable MAC).
    pub fn due(&mut self, waiting: bool, now_ms: u64) -> bool {
        if !waiting {
            self.next = None;
            return false;
        }
        match self.next {
            None => {
                self.next = Some((now_ms + STEPS_MS[0], 0));
                true
            }
            Some((at, step)) if now_ms >= at => {
                let step = (step + 1).min(STEPS_MS.len() - 1);
                self.next = Some((now_ms + STEPS_MS[step], step));
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The times in `0..until_ms` (a 100 ms tick) at which the schedule asks while always waiting.
    fn asks(until_ms: u64) -> Vec<u64> {
        let mut retry = GatewayRetry::default();
        (0..until_ms)
            .step_by(100)
            .filter(|&t| retry.due(true, t))
            .collect()
    }

    #[test]
    fn asks_soon_then_backs_off_to_once_a_second() {
        assert_eq!(asks(5000), vec![0, 100, 300, 700, 1500, 2500, 3500, 4500]);
    }

    #[test]
    fn a_resolved_gateway_or_a_dead_link_restarts_the_schedule() {
        let mut retry = GatewayRetry::default();
        assert!(retry.due(true, 0));
        assert!(!retry.due(true, 50));
        assert!(retry.due(true, 100));
        assert!(!retry.due(false, 200), "resolved: nothing to ask");
        assert!(
            retry.due(true, 300),
            "a new wait starts from the first step"
        );
        assert!(!retry.due(true, 350));
        assert!(retry.due(true, 400));
    }
}
