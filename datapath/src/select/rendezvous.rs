//! Weighted rendezvous (highest random weight) choice of an uplink for a stickiness key.
//!
//! Every member uplink draws, per key, an exponential variate `-ln(u) / weight` from
//! `u = hash(key, uplink)` in (0, 1); the smallest wins. The minimum of independent exponentials
//! with rates `w_i` is member `i` with probability `w_i / Σw`, so shares follow the weights, and:
//! - removing a member (down, draining) moves only the keys it won — every other member's draw
//!   is unchanged, so every other key keeps its winner; putting it back returns exactly those;
//! - changing one member's weight only rescales its own draws, so keys move only to it (weight
//!   up) or only away from it (weight down), a fraction equal to the change of its share;
//! - a member's draw depends on its *name*, not its position, so reordering the uplinks in the
//!   file or adding one moves nothing but the keys the new one wins.
//!
//! Tiers: only the eligible candidates of the best (lowest) tier that has one are members; a
//! worse tier takes new flows only while every better tier has no eligible uplink, and within the
//! tier in use the weights decide as above.
//!
//! Standby, within that tier: members of weight 0 take new flows only while no weighted member of
//! the tier is eligible; then they share them equally. A tier whose only eligible uplinks are on
//! standby is still in use (it comes before any worse tier). The set is fixed when the chooser is
//! built ([`UplinkChooser::new`]).
//!
//! Cost: one 64-bit mix and one `ln` per member per *new* flow (established flows are found in
//! the flow table and never reach this), no allocation, no table to rebuild.

use super::StickinessKey;

/// One uplink offered to [`UplinkChooser::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The uplink's index (what [`UplinkChooser::choose`] returns).
    pub uplink: usize,
    /// The uplink's name: its draws depend on it, so it must be stable across reloads.
    pub name: &'a str,
    /// Relative weight; 0 = standby.
    pub weight: u32,
    /// Its tier: 1 is the best; a worse tier takes new flows only when no better one can.
    pub tier: u8,
    /// Whether the uplink may take new flows (up and not draining).
    pub eligible: bool,
}

/// A member that takes new flows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Member {
    uplink: usize,
    tier: u8,
    salt: u64,
    inverse_weight: f64,
}

/// An immutable weighted chooser over a set of uplinks, built by the control plane, read by the
/// datapath.
#[derive(Clone, Debug, PartialEq)]
pub struct UplinkChooser {
    members: Box<[Member]>,
}

impl UplinkChooser {
    /// The chooser over the best tier's eligible `candidates` with a weight above 0, or, when
    /// there is none, over that tier's eligible standby candidates with equal weights.
    pub fn new<'a>(candidates: impl IntoIterator<Item = Candidate<'a>>) -> Self {
        let mut eligible: Vec<Candidate<'a>> = candidates
            .into_iter()
            .filter(|candidate| candidate.eligible)
            .collect();
        let best_tier = eligible.iter().map(|candidate| candidate.tier).min();
        eligible.retain(|candidate| Some(candidate.tier) == best_tier);
        let weighted = eligible.iter().any(|candidate| candidate.weight > 0);
        let members = eligible
            .iter()
            .filter(|candidate| !weighted || candidate.weight > 0)
            .map(|candidate| Member {
                uplink: candidate.uplink,
                tier: candidate.tier,
                salt: name_salt(candidate.name),
                inverse_weight: if weighted {
                    1.0 / f64::from(candidate.weight)
                } else {
                    1.0
                },
            })
            .collect();
        UplinkChooser { members }
    }

    /// The uplink for `key`, or `None` when no uplink is eligible. Deterministic, no allocation.
    #[inline]
    pub fn choose(&self, key: StickinessKey) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for member in self.members.iter() {
            let draw = -unit_interval(mix(key.0 ^ member.salt)).ln() * member.inverse_weight;
            if best.is_none_or(|(best_draw, _)| draw < best_draw) {
                best = Some((draw, member.uplink));
            }
        }
        best.map(|(_, uplink)| uplink)
    }

    /// The tier whose uplinks take new flows (`None` when no uplink is eligible).
    pub fn tier(&self) -> Option<u8> {
        self.members.first().map(|member| member.tier)
    }

    /// The uplinks that take new flows, in candidate order.
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().map(|member| member.uplink)
    }

    /// Whether no uplink takes new flows.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// A stable 64-bit value per uplink name (FNV-1a, then mixed): the same in every process, so
/// that only the secret key hash decides placement.
fn name_salt(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(hash)
}

/// A 64-bit finaliser with full avalanche (the MurmurHash3 `fmix64` constants).
#[inline]
fn mix(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^ (value >> 33)
}

/// Maps 64 random bits to a float strictly inside (0, 1).
#[inline]
fn unit_interval(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::select::{KeyHasher, Stickiness};
    use flowpin_nat::{FlowKey, IpProtocol};

    const KEYS: usize = 100_000;
    const NAMES: [&str; 6] = ["isp1", "isp2", "isp3", "lte", "dsl", "sat"];

    /// `count` distinct endpoint keys, as LAN hosts opening connections would produce.
    fn keys(count: usize, seed: u64) -> Vec<StickinessKey> {
        let hasher = KeyHasher::from_seed(seed);
        (0..count)
            .map(|index| {
                let flow = FlowKey {
                    protocol: IpProtocol::Tcp,
                    source: std::net::Ipv4Addr::from(0x0a00_0000 + (index as u32 >> 12)),
                    destination: std::net::Ipv4Addr::new(203, 0, 113, 5),
                    source_port: 1024 + (index & 0xfff) as u16,
                    destination_port: 443,
                };
                hasher.key(Stickiness::Endpoint, &flow)
            })
            .collect()
    }

    fn chooser(weights: &[u32], eligible: &[bool]) -> UplinkChooser {
        tiered(weights, &vec![1; weights.len()], eligible)
    }

    fn tiered(weights: &[u32], tiers: &[u8], eligible: &[bool]) -> UplinkChooser {
        UplinkChooser::new(weights.iter().zip(tiers).zip(eligible).enumerate().map(
            |(uplink, ((weight, tier), eligible))| Candidate {
                uplink,
                name: NAMES[uplink],
                weight: *weight,
                tier: *tier,
                eligible: *eligible,
            },
        ))
    }

    fn all_eligible(weights: &[u32]) -> UplinkChooser {
        chooser(weights, &vec![true; weights.len()])
    }

    fn choices(chooser: &UplinkChooser, keys: &[StickinessKey]) -> Vec<Option<usize>> {
        keys.iter().map(|key| chooser.choose(*key)).collect()
    }

    fn assert_shares_within_3_percent(weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        for seed in [1, 2, 3] {
            let chooser = all_eligible(weights);
            let mut counts = vec![0usize; weights.len()];
            for choice in choices(&chooser, &keys(KEYS, seed)) {
                counts[choice.expect("an eligible uplink")] += 1;
            }
            for (uplink, (weight, count)) in weights.iter().zip(&counts).enumerate() {
                let expected = f64::from(*weight) / f64::from(total);
                let observed = *count as f64 / KEYS as f64;
                assert!(
                    (observed - expected).abs() <= 0.03 * expected,
                    "weights {weights:?}, seed {seed}: uplink {uplink} got {observed:.4}, expected {expected:.4}"
                );
            }
        }
    }

    #[test]
    fn distribution_follows_weights_1_to_1() {
        assert_shares_within_3_percent(&[1, 1]);
    }

    #[test]
    fn distribution_follows_weights_2_to_1() {
        assert_shares_within_3_percent(&[2, 1]);
    }

    #[test]
    fn distribution_follows_weights_11_to_45() {
        assert_shares_within_3_percent(&[11, 45]);
    }

    #[test]
    fn distribution_follows_weights_over_five_uplinks() {
        assert_shares_within_3_percent(&[1, 2, 3, 4, 5]);
    }

    #[test]
    fn choice_is_deterministic() {
        let keys = keys(10_000, 9);
        let first = choices(&all_eligible(&[3, 1, 2]), &keys);
        assert_eq!(first, choices(&all_eligible(&[3, 1, 2]), &keys));
        assert_eq!(first, choices(&all_eligible(&[3, 1, 2]), &keys));
    }

    #[test]
    fn a_down_uplink_moves_only_its_keys_and_they_return() {
        let keys = keys(KEYS, 4);
        let before = choices(&all_eligible(&[1, 1, 1]), &keys);
        let down = choices(&chooser(&[1, 1, 1], &[true, false, true]), &keys);
        let mut moved = [0usize; 3];
        for (old, new) in before.iter().zip(&down) {
            if old == &Some(1) {
                moved[new.unwrap()] += 1;
            } else {
                assert_eq!(old, new, "a key of a healthy uplink moved");
            }
        }
        assert_eq!(moved[1], 0);
        // The orphans spread over the others by weight (1:1).
        let orphans = (moved[0] + moved[2]) as f64;
        assert!((moved[0] as f64 / orphans - 0.5).abs() < 0.02, "{moved:?}");
        let back = choices(&all_eligible(&[1, 1, 1]), &keys);
        assert_eq!(back, before);
    }

    #[test]
    fn a_weight_change_moves_a_proportional_fraction_towards_the_change() {
        let keys = keys(KEYS, 5);
        let before = choices(&all_eligible(&[1, 1, 1]), &keys);
        let heavier = choices(&all_eligible(&[2, 1, 1]), &keys);
        let moved: Vec<_> = before
            .iter()
            .zip(&heavier)
            .filter(|(old, new)| old != new)
            .collect();
        assert!(
            moved.iter().all(|(_, new)| **new == Some(0)),
            "keys may only move to the heavier uplink"
        );
        // Its share grows from 1/3 to 1/2: one sixth of all keys move.
        let fraction = moved.len() as f64 / KEYS as f64;
        assert!((fraction - 1.0 / 6.0).abs() < 0.01, "moved {fraction:.4}");

        let lighter = choices(&all_eligible(&[1, 1, 3]), &keys);
        let heavier_third = choices(&all_eligible(&[1, 1, 6]), &keys);
        let moved: Vec<_> = heavier_third
            .iter()
            .zip(&lighter)
            .filter(|(old, new)| old != new)
            .collect();
        assert!(
            moved.iter().all(|(old, _)| **old == Some(2)),
            "keys may only leave the lighter uplink"
        );
        // Its share drops from 6/8 to 3/5: 15 % of all keys move.
        let fraction = moved.len() as f64 / KEYS as f64;
        assert!((fraction - 0.15).abs() < 0.01, "moved {fraction:.4}");
    }

    #[test]
    fn standby_takes_flows_only_when_no_weighted_uplink_is_eligible() {
        let keys = keys(10_000, 6);
        let normal = choices(&all_eligible(&[1, 1, 0]), &keys);
        assert!(normal.iter().all(|choice| *choice != Some(2)));
        let one_down = choices(&chooser(&[1, 1, 0], &[false, true, true]), &keys);
        assert!(one_down.iter().all(|choice| *choice == Some(1)));
        let both_down = choices(&chooser(&[1, 1, 0], &[false, false, true]), &keys);
        assert!(both_down.iter().all(|choice| *choice == Some(2)));
        let two_standby = chooser(&[1, 0, 0], &[false, true, true]);
        assert_eq!(two_standby.members().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn the_best_tier_with_an_eligible_uplink_takes_every_new_flow_weighted_within_it() {
        let keys = keys(KEYS, 10);
        let tiers = [1, 1, 2, 3];
        let normal = tiered(&[1, 1, 1, 1], &tiers, &[true; 4]);
        assert_eq!(normal.tier(), Some(1));
        let picks = choices(&normal, &keys);
        let first = picks.iter().filter(|choice| **choice == Some(0)).count() as f64;
        assert!(picks.iter().all(|choice| matches!(choice, Some(0 | 1))));
        assert!((first / KEYS as f64 - 0.5).abs() < 0.02, "{first}");
        // One tier-1 uplink down: the other takes all of tier 1's flows, tier 2 none.
        let one_down = tiered(&[1, 1, 1, 1], &tiers, &[false, true, true, true]);
        assert!(choices(&one_down, &keys).iter().all(|c| *c == Some(1)));
        // Tier 1 gone: tier 2, then tier 3.
        let tier2 = tiered(&[1, 1, 1, 1], &tiers, &[false, false, true, true]);
        assert_eq!(tier2.tier(), Some(2));
        assert!(choices(&tier2, &keys).iter().all(|c| *c == Some(2)));
        let tier3 = tiered(&[1, 1, 1, 1], &tiers, &[false, false, false, true]);
        assert_eq!(tier3.members().collect::<Vec<_>>(), vec![3]);
        // Tier 1 back: exactly the keys it had before return to it.
        let back = tiered(&[1, 1, 1, 1], &tiers, &[true; 4]);
        assert_eq!(choices(&back, &keys), picks);
    }

    #[test]
    fn standby_counts_within_its_tier() {
        // Tier 1: a weighted uplink and a standby one; tier 2: a weighted one.
        let tiers = [1, 1, 2];
        let all = tiered(&[1, 0, 1], &tiers, &[true; 3]);
        assert_eq!(all.members().collect::<Vec<_>>(), vec![0]);
        // The weighted tier-1 uplink down: tier 1's standby comes before tier 2.
        let standby = tiered(&[1, 0, 1], &tiers, &[false, true, true]);
        assert_eq!(standby.members().collect::<Vec<_>>(), vec![1]);
        assert_eq!(standby.tier(), Some(1));
        let tier2 = tiered(&[1, 0, 1], &tiers, &[false, false, true]);
        assert_eq!(tier2.members().collect::<Vec<_>>(), vec![2]);
        assert!(tiered(&[1, 0, 1], &tiers, &[false; 3]).tier().is_none());
    }

    #[test]
    fn nothing_eligible_chooses_none() {
        let nothing = chooser(&[1, 2], &[false, false]);
        assert!(nothing.is_empty());
        assert_eq!(nothing.choose(StickinessKey(42)), None);
    }

    #[test]
    fn placement_follows_names_not_positions() {
        let keys = keys(10_000, 8);
        let forward = chooser(&[1, 2, 3], &[true; 3]);
        let reversed = UplinkChooser::new((0..3).rev().map(|uplink| Candidate {
            uplink,
            name: NAMES[uplink],
            weight: [1, 2, 3][uplink],
            tier: 1,
            eligible: true,
        }));
        assert_eq!(choices(&forward, &keys), choices(&reversed, &keys));
    }

    proptest! {
        #[test]
        fn removing_uplinks_moves_only_their_keys(
            weights in prop::collection::vec(1u32..100, 2..6),
            down_mask in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let count = weights.len();
            let eligible: Vec<bool> = (0..count).map(|uplink| down_mask & (1 << uplink) == 0).collect();
            let keys = keys(2_000, seed);
            let before = choices(&all_eligible(&weights), &keys);
            let after = choices(&chooser(&weights, &eligible), &keys);
            for (old, new) in before.iter().zip(&after) {
                let old = old.unwrap();
                if eligible[old] {
                    prop_assert_eq!(Some(old), *new);
                } else {
                    prop_assert!(new.is_none_or(|new| eligible[new]));
                }
            }
        }

        #[test]
        fn changing_one_weight_moves_keys_only_to_or_from_it(
            weights in prop::collection::vec(1u32..100, 2..6),
            changed in 0usize..6,
            new_weight in 1u32..100,
            seed in any::<u64>(),
        ) {
            let changed = changed % weights.len();
            let mut new_weights = weights.clone();
            new_weights[changed] = new_weight;
            let keys = keys(2_000, seed);
            let before = choices(&all_eligible(&weights), &keys);
            let after = choices(&all_eligible(&new_weights), &keys);
            for (old, new) in before.iter().zip(&after) {
                if old != new {
                    if new_weight > weights[changed] {
                        prop_assert_eq!(*new, Some(changed));
                    } else {
                        prop_assert_eq!(*old, Some(changed));
                    }
                }
            }
        }
    }
}
