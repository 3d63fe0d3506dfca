//! The XDP program's per-decision counters, summed over CPUs.

use flowpin_bpf::{Counter, Decision};

/// One [`Counter`] per [`Decision`], summed over all CPUs at read time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounters {
    counters: [Counter; Decision::COUNT],
}

impl DecisionCounters {
    /// Builds from per-decision sums (index = [`Decision::index`]).
    pub fn from_counters(counters: [Counter; Decision::COUNT]) -> Self {
        Self { counters }
    }

    /// The count of one decision.
    pub fn get(&self, decision: Decision) -> Counter {
        self.counters[decision.index() as usize]
    }

    /// Packets of one decision.
    pub fn packets(&self, decision: Decision) -> u64 {
        self.get(decision).packets
    }

    /// Every decision with its count, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Decision, Counter)> + '_ {
        Decision::ALL
            .into_iter()
            .map(|decision| (decision, self.get(decision)))
    }

    /// What happened since `earlier` (per decision, wrapping).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut delta = *self;
        for (now, then) in delta.counters.iter_mut().zip(earlier.counters) {
            now.packets = now.packets.wrapping_sub(then.packets);
            now.bytes = now.bytes.wrapping_sub(then.bytes);
        }
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_per_decision() {
        let mut before = [Counter::default(); Decision::COUNT];
        before[Decision::PassTtl.index() as usize] = Counter {
            packets: 2,
            bytes: 120,
        };
        let mut after = before;
        after[Decision::PassTtl.index() as usize] = Counter {
            packets: 5,
            bytes: 300,
        };
        after[Decision::DropNoSocket.index() as usize] = Counter {
            packets: 1,
            bytes: 60,
        };
        let delta =
            DecisionCounters::from_counters(after).since(&DecisionCounters::from_counters(before));
        assert_eq!(
            delta.get(Decision::PassTtl),
            Counter {
                packets: 3,
                bytes: 180
            }
        );
        assert_eq!(delta.packets(Decision::DropNoSocket), 1);
        assert_eq!(delta.packets(Decision::PassLocal), 0);
        assert_eq!(delta.iter().filter(|(_, c)| c.packets > 0).count(), 2);
    }
}
