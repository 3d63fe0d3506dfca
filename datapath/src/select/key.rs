//! Stickiness keys: the keyed hash of the fields a [`Stickiness`] mode selects.
//!
//! Invariants: two flows get the same [`StickinessKey`] exactly when the fields of the mode agree
//! (up to 64-bit hash collisions); the hash is keyed with a per-process secret seed so that LAN
//! hosts cannot predict, hence cannot steer, which uplink a crafted endpoint lands on. The seed
//! lives as long as the process: rebuilding the selection objects on reload keeps the same
//! [`KeyHasher`], so keys keep their uplinks across reloads. The hashed fields come from the
//! flow's [`FlowKey`]; for ICMP queries only the echo id (the source "port") counts, because the
//! key repeats it as the destination port, which names no destination service.

use std::hash::BuildHasher;

use foldhash::quality::FixedState;

use flowpin_nat::{FlowKey, IpProtocol};

use super::Stickiness;

/// The hashed stickiness key of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StickinessKey(pub u64);

/// Hashes flows into [`StickinessKey`]s with a secret seed. Build once per process.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    state: FixedState,
}

impl KeyHasher {
    /// A hasher with the secret `seed`: the daemon draws it at random once per process; tests and
    /// reproducible experiments fix it.
    pub fn from_seed(seed: u64) -> Self {
        KeyHasher {
            state: FixedState::with_seed(seed),
        }
    }

    /// The key of the flow `key` under `stickiness`. No allocation.
    #[inline]
    pub fn key(&self, stickiness: Stickiness, key: &FlowKey) -> StickinessKey {
        let protocol = key.protocol.number();
        let source = u32::from(key.source);
        let destination = u32::from(key.destination);
        // ICMP: the destination "port" repeats the echo id; only the source side identifies it.
        let destination_port = if key.protocol == IpProtocol::Icmp {
            0
        } else {
            key.destination_port
        };
        StickinessKey(match stickiness {
            Stickiness::Endpoint => self.state.hash_one((protocol, source, key.source_port)),
            Stickiness::Host => self.state.hash_one(source),
            Stickiness::HostDest => self.state.hash_one((source, destination)),
            Stickiness::Flow => self.state.hash_one((
                protocol,
                source,
                destination,
                key.source_port,
                destination_port,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const BASE: FlowKey = FlowKey {
        protocol: IpProtocol::Tcp,
        source: Ipv4Addr::new(10, 0, 0, 7),
        destination: Ipv4Addr::new(198, 51, 100, 9),
        source_port: 40000,
        destination_port: 443,
    };

    /// The key with one field changed, for each field, named.
    fn variants() -> [(&'static str, FlowKey); 5] {
        [
            (
                "proto",
                FlowKey {
                    protocol: IpProtocol::Udp,
                    ..BASE
                },
            ),
            (
                "src",
                FlowKey {
                    source: Ipv4Addr::new(10, 0, 0, 8),
                    ..BASE
                },
            ),
            (
                "dst",
                FlowKey {
                    destination: Ipv4Addr::new(198, 51, 100, 10),
                    ..BASE
                },
            ),
            (
                "src_port",
                FlowKey {
                    source_port: 40001,
                    ..BASE
                },
            ),
            (
                "dst_port",
                FlowKey {
                    destination_port: 80,
                    ..BASE
                },
            ),
        ]
    }

    fn assert_key_fields(stickiness: Stickiness, fields: &[&str]) {
        let hasher = KeyHasher::from_seed(7);
        let base = hasher.key(stickiness, &BASE);
        for (field, key) in variants() {
            let changed = hasher.key(stickiness, &key) != base;
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
    fn icmp_keys_ignore_the_repeated_echo_id_in_the_destination_port() {
        let hasher = KeyHasher::from_seed(7);
        let echo = FlowKey {
            protocol: IpProtocol::Icmp,
            source_port: 0x1234,
            destination_port: 0x1234,
            ..BASE
        };
        let other_destination_port = FlowKey {
            destination_port: 0,
            ..echo
        };
        let other_id = FlowKey {
            source_port: 0x1235,
            destination_port: 0x1235,
            ..echo
        };
        for stickiness in [Stickiness::Flow, Stickiness::HostDest] {
            assert_eq!(
                hasher.key(stickiness, &echo),
                hasher.key(stickiness, &other_destination_port),
                "{stickiness}"
            );
        }
        assert_ne!(
            hasher.key(Stickiness::Flow, &echo),
            hasher.key(Stickiness::Flow, &other_id),
            "the echo id still separates ICMP flows"
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
        let random = || KeyHasher::from_seed(rand::random());
        let (a, b) = (random(), random());
        assert_ne!(
            a.key(Stickiness::Host, &BASE),
            b.key(Stickiness::Host, &BASE)
        );
    }
}
