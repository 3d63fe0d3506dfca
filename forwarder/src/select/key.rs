//! Stickiness keys: the keyed hash of the fields a [`Stickiness`] mode selects.
//!
//! Invariants: two flows get the same [`StickinessKey`] exactly when the fields of the mode agree
//! (up to 64-bit hash collisions); the hash is keyed with a per-process secret seed so that LAN
//! hosts cannot predict, hence cannot steer, which uplink a crafted endpoint lands on. The seed
//! lives as long as the process: rebuilding the selection objects on reload keeps the same
//! [`KeyHasher`], so keys keep their uplinks across reloads.

use std::hash::BuildHasher;

use foldhash::quality::FixedState;

use super::FlowTuple;
use crate::config::Stickiness;

/// The hashed stickiness key of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StickinessKey(pub u64);

/// Hashes flows into [`StickinessKey`]s with a secret seed. Build once per process.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    state: FixedState,
}

impl KeyHasher {
    /// A hasher with a fresh random secret seed (what the daemon uses).
    pub fn random() -> Self {
        Self::from_seed(rand::random())
    }

    /// A hasher with a given seed (tests, reproducible experiments).
    pub fn from_seed(seed: u64) -> Self {
        KeyHasher {
            state: FixedState::with_seed(seed),
        }
    }

    /// The key of `tuple` under `stickiness`. No allocation.
    #[inline]
    pub fn key(&self, stickiness: Stickiness, tuple: &FlowTuple) -> StickinessKey {
        let src = u32::from(tuple.src);
        let dst = u32::from(tuple.dst);
        StickinessKey(match stickiness {
            Stickiness::Endpoint => self.state.hash_one((tuple.proto, src, tuple.src_port)),
            Stickiness::Host => self.state.hash_one(src),
            Stickiness::HostDest => self.state.hash_one((src, dst)),
            Stickiness::Flow => {
                self.state
                    .hash_one((tuple.proto, src, dst, tuple.src_port, tuple.dst_port))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const BASE: FlowTuple = FlowTuple {
        proto: 6,
        src: Ipv4Addr::new(10, 0, 0, 7),
        dst: Ipv4Addr::new(198, 51, 100, 9),
        src_port: 40000,
        dst_port: 443,
    };

    /// The tuple with one field changed, for each field, named.
    fn variants() -> [(&'static str, FlowTuple); 5] {
        [
            ("proto", FlowTuple { proto: 17, ..BASE }),
            (
                "src",
                FlowTuple {
                    src: Ipv4Addr::new(10, 0, 0, 8),
                    ..BASE
                },
            ),
            (
                "dst",
                FlowTuple {
                    dst: Ipv4Addr::new(198, 51, 100, 10),
                    ..BASE
                },
            ),
            (
                "src_port",
                FlowTuple {
                    src_port: 40001,
                    ..BASE
                },
            ),
            (
                "dst_port",
                FlowTuple {
                    dst_port: 80,
                    ..BASE
                },
            ),
        ]
    }

    fn assert_key_fields(stickiness: Stickiness, fields: &[&str]) {
        let hasher = KeyHasher::from_seed(7);
        let base = hasher.key(stickiness, &BASE);
        for (field, tuple) in variants() {
            let changed = hasher.key(stickiness, &tuple) != base;
            assert_eq!(
                changed,
                fields.contains(&field),
                "{stickiness}: changing {field}"
            );
        }
    }

    #[test]
    fn endpoint_keys_on_protocol_source_address_and_port() {
        assert_key_fields(Stickiness::Endpoint, &["proto", "src", "src_port"]);
    }

    #[test]
    fn host_keys_on_source_address() {
        assert_key_fields(Stickiness::Host, &["src"]);
    }

    #[test]
    fn host_dest_keys_on_both_addresses() {
        assert_key_fields(Stickiness::HostDest, &["src", "dst"]);
    }

    #[test]
    fn flow_keys_on_the_whole_tuple() {
        assert_key_fields(
            Stickiness::Flow,
            &["proto", "src", "dst", "src_port", "dst_port"],
        );
    }

    #[test]
    fn the_seed_changes_every_key_and_fixes_them() {
        let (one, other) = (KeyHasher::from_seed(1), KeyHasher::from_seed(2));
        assert_eq!(
            one.key(Stickiness::Flow, &BASE),
            KeyHasher::from_seed(1).key(Stickiness::Flow, &BASE)
        );
        assert_ne!(
            one.key(Stickiness::Flow, &BASE),
            other.key(Stickiness::Flow, &BASE)
        );
        let (a, b) = (KeyHasher::random(), KeyHasher::random());
        assert_ne!(
            a.key(Stickiness::Host, &BASE),
            b.key(Stickiness::Host, &BASE)
        );
    }
}
