//! The state file: round trip, versions, damage (truncated, flipped bytes, torn record, random
//! bytes), and the restore's checks against a changed configuration.

use std::net::Ipv4Addr;

use flowpin_nat::{FlowKey, IpProtocol, Rewrite};

use super::collect::collect;
use super::layout::{self, Refusal, decode, encode};
use super::model::SavedState;
use super::restore::restore;
use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
use crate::datapath::{FlowKind, FlowValue, Flows, LanView, Snapshot};

const TWO_UPLINKS: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[nat]
port_range = "20000-29999"
"#;

/// isp1 removed, isp2 in slot 0.
const ISP2_ONLY: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[nat]
port_range = "20000-29999"
"#;

const ISP1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const ISP2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const NOW: u64 = 1_000_000;

fn snapshot(builder: &mut SnapshotBuilder, config: &str, addresses: &[Ipv4Addr]) -> Snapshot {
    let config = crate::config::parse(config, "t.toml", None).expect("config");
    let facts = addresses
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            Some(UplinkFacts {
                address,
                mac: [2, 0, 0, 0, 0, i as u8],
                gateway_mac: Some([2, 0, 0, 0, 1, i as u8]),
                mtu: 1500,
                eligible: true,
            })
        })
        .collect::<Vec<_>>();
    let lan = LanView {
        mac: [2, 0, 0, 0, 9, 9],
        address: Ipv4Addr::new(10, 77, 0, 1),
        mtu: 1500,
        prefixes: config.lan.prefixes.clone(),
    };
    builder.build(&config, lan, &facts, Vec::new())
}

/// Pins a flow from `HOST:port` on uplink `slot` as the datapath does; returns its external port.
fn pin(flows: &Flows, snapshot: &Snapshot, slot: u8, protocol: IpProtocol, port: u16) -> u16 {
    let key = FlowKey {
        protocol,
        source: HOST,
        source_port: port,
        destination: Ipv4Addr::new(203, 0, 113, 10),
        destination_port: if protocol == IpProtocol::Icmp {
            port
        } else {
            443
        },
    };
    let uplink = snapshot.uplink(slot).expect("uplink");
    let external = uplink
        .nat
        .pool(protocol)
        .acquire(HOST, port, NOW)
        .expect("port");
    let translated = FlowKey {
        source: uplink.address,
        source_port: external,
        destination_port: if protocol == IpProtocol::Icmp {
            external
        } else {
            443
        },
        ..key
    };
    let rewrite = Rewrite::new(key, translated).expect("rewrite");
    let value = FlowValue::new(
        rewrite,
        [2, 0, 0, 0, 0, 7],
        slot,
        u8::MAX,
        FlowKind::Outbound,
        1,
    );
    flows.hosts.take_in_place(HOST).expect("host");
    let handle = flows
        .table
        .insert_if_absent(value.lan_key(), value.uplink_key(), value, NOW)
        .expect("inserted")
        .handle();
    flows.on_inserted(handle, protocol, true, NOW);
    external
}

/// A running daemon's state: a TCP, a UDP and an ICMP flow on isp1, a UDP flow on isp2, and a
/// quarantined UDP port on isp1.
fn running_state() -> (SavedState, Vec<(IpProtocol, u16)>) {
    let mut builder = SnapshotBuilder::new(42, Default::default());
    let flows = Flows::with_capacity(64).expect("table");
    let snap = snapshot(&mut builder, TWO_UPLINKS, &[ISP1, ISP2]);
    let ports = vec![
        (
            IpProtocol::Tcp,
            pin(&flows, &snap, 0, IpProtocol::Tcp, 40_000),
        ),
        (
            IpProtocol::Udp,
            pin(&flows, &snap, 0, IpProtocol::Udp, 40_001),
        ),
        (IpProtocol::Icmp, pin(&flows, &snap, 0, IpProtocol::Icmp, 7)),
        (
            IpProtocol::Udp,
            pin(&flows, &snap, 1, IpProtocol::Udp, 40_002),
        ),
    ];
    let udp = &snap.uplink(0).expect("isp1").nat.udp;
    let gone = udp.acquire(HOST, 40_009, NOW).expect("port");
    udp.release(gone, HOST, 40_009, NOW).expect("released");
    (
        collect(&flows, &snap, builder.seed(), [9; 16], NOW + 10),
        ports,
    )
}

/// A fresh daemon restoring `state` under `config`: its snapshot, flows and what the restore did.
fn restarted(
    state: &SavedState,
    config: &str,
    addresses: &[Ipv4Addr],
    capacity: usize,
) -> (Snapshot, Flows, super::restore::Restored) {
    let secrets = state
        .uplinks
        .iter()
        .map(|u| (u.name.clone(), u.secrets))
        .collect();
    let mut builder = SnapshotBuilder::new(state.stickiness_seed, secrets);
    let snap = snapshot(&mut builder, config, addresses);
    let flows = Flows::with_capacity(capacity).expect("table");
    let restored = restore(state, &snap, &flows, NOW + 2_000);
    (snap, flows, restored)
}

#[test]
fn a_state_round_trips_through_the_file_and_restores_every_flow_on_its_port() {
    let (state, ports) = running_state();
    assert_eq!(state.flows.len(), 4);
    assert_eq!(state.quarantines.len(), 1);
    let decoded = decode(&encode(&state, layout::VERSION)).expect("decoded");
    assert_eq!((decoded.damaged, decoded.missing), (0, 0));
    assert_eq!(decoded.state, state);
    let (snap, flows, restored) = restarted(&decoded.state, TWO_UPLINKS, &[ISP1, ISP2], 64);
    assert_eq!(
        (restored.flows, restored.dropped(), restored.quarantines),
        (4, 0, 1)
    );
    for (flow, (protocol, port)) in state.flows.iter().zip(&ports) {
        let found = flows.table.lookup(&flow.lan_from).expect("restored flow");
        assert_eq!(found.value.external_endpoint().1, *port);
        let pool = snap
            .uplink(found.value.uplink)
            .expect("uplink")
            .nat
            .pool(*protocol);
        assert_eq!(
            pool.owner_of(*port),
            Some((HOST, flow.lan_from.source_port))
        );
        // EIM across the restart: the same endpoint's next flow joins the same port.
        assert_eq!(
            pool.acquire(HOST, flow.lan_from.source_port, NOW + 3_000),
            Ok(*port)
        );
    }
    assert_eq!(flows.hosts.held(HOST), 4);
}

#[test]
fn a_version_1_file_is_converted_and_other_versions_are_refused_whole() {
    let (state, _) = running_state();
    let v1 = decode(&encode(&state, layout::VERSION_V1)).expect("v1 decoded");
    assert_eq!(v1.version, layout::VERSION_V1);
    assert_eq!(v1.state.flows.len(), 4);
    let tcp = v1.state.flows[0];
    assert_eq!(u64::from(tcp.tcp.phase_word), tcp.protocol_state);
    let (_, _, restored) = restarted(&v1.state, TWO_UPLINKS, &[ISP1, ISP2], 64);
    assert_eq!(restored.flows, 4);
    for version in [0, 3, 0xffff_ffff] {
        let mut bytes = encode(&state, layout::VERSION);
        bytes[8..12].copy_from_slice(&u32::to_le_bytes(version));
        assert_eq!(
            decode(&bytes),
            Err(Refusal::IncompatibleVersion { found: version })
        );
    }
    let mut bytes = encode(&state, layout::VERSION);
    bytes[12] = 64;
    assert_eq!(decode(&bytes), Err(Refusal::RecordSize(64)));
    assert_eq!(decode(b"not a state file"), Err(Refusal::NotAStateFile));
}

#[test]
fn a_truncated_file_keeps_its_whole_records_and_reports_the_rest() {
    let (state, _) = running_state();
    let bytes = encode(&state, layout::VERSION);
    // Meta + 2 uplinks + 4 flows + 1 quarantine; cut in the middle of the third flow.
    let cut = layout::PREAMBLE + 5 * layout::RECORD + 50;
    let decoded = decode(&bytes[..cut]).expect("decoded");
    assert_eq!(decoded.state.flows.len(), 2);
    assert_eq!((decoded.damaged, decoded.missing), (1, 2));
    assert_eq!(
        decode(&bytes[..layout::PREAMBLE + 10]),
        Err(Refusal::MetaDamaged)
    );
    assert_eq!(decode(&bytes[..7]), Err(Refusal::NotAStateFile));
}

#[test]
fn a_flipped_byte_or_a_torn_record_drops_that_record_only() {
    let (state, _) = running_state();
    let bytes = encode(&state, layout::VERSION);
    let third_flow = layout::PREAMBLE + 5 * layout::RECORD;
    for offset in [0, 1, 20, 40, 100, 123, 127] {
        let mut flipped = bytes.clone();
        flipped[third_flow + offset] ^= 0x10;
        let decoded = decode(&flipped).expect("decoded");
        assert_eq!(decoded.damaged, 1, "byte {offset}");
        assert_eq!(decoded.state.flows.len(), 3);
        assert!(!decoded.state.flows.contains(&state.flows[2]));
    }
    // Torn: the first half of the record is from another write (zeros), the second half old.
    let mut torn = bytes.clone();
    torn[third_flow..third_flow + 64].fill(0);
    let decoded = decode(&torn).expect("decoded");
    assert_eq!((decoded.damaged, decoded.state.flows.len()), (1, 3));
    // Damaged meta record: nothing is trusted.
    let mut meta = bytes;
    meta[layout::PREAMBLE + 3] ^= 1;
    assert_eq!(decode(&meta), Err(Refusal::MetaDamaged));
}

#[test]
fn random_bytes_never_panic_and_never_restore_a_wrong_translation() {
    let (state, _) = running_state();
    let good = encode(&state, layout::VERSION);
    let mut seed = 0x1234_5678_9abc_def0_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2_000 {
        let mut bytes = good.clone();
        // Random bytes over a random stretch, or a whole random file after a valid preamble.
        if round % 4 == 0 {
            bytes.truncate(layout::PREAMBLE);
            bytes.extend((0..(next() % 2_000)).map(|_| next() as u8));
        } else {
            let start = (next() as usize) % bytes.len();
            let len = 1 + (next() as usize) % 200;
            for b in bytes.iter_mut().skip(start).take(len) {
                *b = next() as u8;
            }
        }
        let Ok(decoded) = decode(&bytes) else {
            continue;
        };
        let (_, flows, _) = restarted(&decoded.state, TWO_UPLINKS, &[ISP1, ISP2], 64);
        // Whatever survived is one of the saved flows, exactly.
        for live in flows.table.live_flows(NOW + 2_000) {
            assert!(
                state
                    .flows
                    .iter()
                    .any(|f| f.lan_from == live.lan_key && f.lan_to == live.value.lan_side.to()),
                "round {round}: a flow that was never saved"
            );
        }
    }
}

#[test]
fn a_removed_uplink_fails_its_flows_over_by_class_and_the_others_move_to_their_new_slot() {
    let (state, ports) = running_state();
    let (snap, flows, restored) = restarted(&state, ISP2_ONLY, &[ISP2], 64);
    assert_eq!((restored.flows, restored.uplink_gone), (1, 3));
    // The TCP flow is to be reset towards its host; UDP and ICMP just move on their next packet.
    assert_eq!(restored.to_reset.len(), 1);
    assert_eq!(restored.to_reset[0].0.protocol(), IpProtocol::Tcp);
    let moved = flows
        .table
        .lookup(&state.flows[3].lan_from)
        .expect("isp2's flow");
    assert_eq!(moved.value.uplink, 0, "isp2 is in slot 0 now");
    assert_eq!(
        snap.uplink(0).expect("isp2").nat.udp.owner_of(ports[3].1),
        Some((HOST, 40_002))
    );
}

#[test]
fn a_renumbered_uplink_an_expired_flow_and_a_foreign_source_are_dropped() {
    let (mut state, _) = running_state();
    let (_, _, restored) = restarted(
        &state,
        TWO_UPLINKS,
        &[Ipv4Addr::new(198, 51, 100, 3), ISP2],
        64,
    );
    assert_eq!(
        (
            restored.flows,
            restored.address_changed,
            restored.quarantines
        ),
        (1, 3, 0)
    );
    // The UDP flow of isp2 last went out long ago: expired while flowpin was down.
    state.flows[3].protocol_state = 1 | crate::datapath::flows::SENT;
    state.flows[3].last_seen_ms = 1;
    // A flow claiming a source outside the LAN prefixes.
    state.flows[1].lan_from.source = Ipv4Addr::new(192, 0, 2, 1);
    let (_, _, restored) = restarted(&state, TWO_UPLINKS, &[ISP1, ISP2], 64);
    assert_eq!(
        (restored.flows, restored.expired, restored.invalid),
        (2, 1, 1)
    );
}

#[test]
fn a_smaller_table_takes_what_fits_and_gives_the_other_ports_back() {
    let (state, _) = running_state();
    let (snap, flows, restored) = restarted(&state, TWO_UPLINKS, &[ISP1, ISP2], 2);
    assert_eq!((restored.flows, restored.key_taken), (2, 2));
    assert_eq!(flows.table.len(), 2);
    let mapped: usize = (0..2)
        .map(|slot| {
            let nat = &snap.uplink(slot).expect("uplink").nat;
            nat.tcp.mapped_ports() + nat.udp.mapped_ports() + nat.icmp.mapped_ports()
        })
        .sum();
    assert_eq!(mapped, 2, "the refused flows' ports were given back");
}

#[test]
fn two_saved_flows_claiming_one_port_restore_only_the_first() {
    let (mut state, _) = running_state();
    let mut twin = state.flows[1];
    twin.lan_from.source = Ipv4Addr::new(10, 77, 0, 12);
    twin.lan_from.destination_port = 444;
    twin.lan_to.destination_port = 444;
    state.flows.push(twin);
    let (_, _, restored) = restarted(&state, TWO_UPLINKS, &[ISP1, ISP2], 64);
    assert_eq!((restored.flows, restored.port_conflict), (4, 1));
}

/// A forward of TCP 8080 on both uplinks to `HOST:80`.
const WITH_FORWARD: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[nat]
port_range = "20000-29999"
[[forward]]
name = "web"
uplinks = "all"
protocol = "tcp"
port = 8080
to = "10.77.0.11"
to_port = 80
"#;

/// The same forward now leading to another LAN host.
const FORWARD_MOVED: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[nat]
port_range = "20000-29999"
[[forward]]
name = "web"
uplinks = "all"
protocol = "tcp"
port = 8080
to = "10.77.0.12"
to_port = 80
"#;

/// A state holding one flow opened from outside through the forward on isp2, as the datapath
/// pins it: the LAN side is `HOST:80 → remote`, the uplink side `remote → isp2:8080`.
fn forwarded_state() -> SavedState {
    let mut builder = SnapshotBuilder::new(42, Default::default());
    let flows = Flows::with_capacity(64).expect("table");
    let snap = snapshot(&mut builder, WITH_FORWARD, &[ISP1, ISP2]);
    let remote = Ipv4Addr::new(203, 0, 113, 10);
    let lan_key = FlowKey {
        protocol: IpProtocol::Tcp,
        source: HOST,
        source_port: 80,
        destination: remote,
        destination_port: 51_000,
    };
    let translated = FlowKey {
        source: ISP2,
        source_port: 8080,
        ..lan_key
    };
    let rewrite = Rewrite::new(lan_key, translated).expect("rewrite");
    let value = FlowValue {
        placement: crate::datapath::Placement::Forwarded,
        ..FlowValue::new(rewrite, [2, 0, 0, 0, 0, 7], 1, 0, FlowKind::Outbound, 1)
    };
    flows.hosts.take_in_place(HOST).expect("host");
    let handle = flows
        .table
        .insert_if_absent(value.lan_key(), value.uplink_key(), value, NOW)
        .expect("inserted")
        .handle();
    flows.on_inserted(handle, IpProtocol::Tcp, true, NOW);
    collect(&flows, &snap, builder.seed(), [9; 16], NOW + 10)
}

#[test]
fn a_forwarded_flow_is_restored_without_a_pool_port_and_dropped_when_its_forward_moved() {
    let state = forwarded_state();
    assert_eq!(state.flows.len(), 1);
    let decoded = decode(&encode(&state, layout::VERSION)).expect("decoded");
    assert_eq!(decoded.state, state);
    let (snap, flows, restored) = restarted(&decoded.state, WITH_FORWARD, &[ISP1, ISP2], 64);
    assert_eq!((restored.flows, restored.dropped()), (1, 0));
    let found = flows
        .table
        .lookup(&state.flows[0].lan_from)
        .expect("restored flow");
    assert_eq!(found.value.placement, crate::datapath::Placement::Forwarded);
    assert_eq!(found.value.external_endpoint(), (ISP2, 8080));
    // 8080 is the forward's, outside the NAT range: no pool was touched.
    let pool = &snap.uplink(1).expect("isp2").nat.tcp;
    assert_eq!(pool.owner_of(8080), None);

    let (_, flows, restored) = restarted(&decoded.state, FORWARD_MOVED, &[ISP1, ISP2], 64);
    assert_eq!((restored.flows, restored.forward_gone), (0, 1));
    assert!(flows.table.lookup(&state.flows[0].lan_from).is_none());
}
