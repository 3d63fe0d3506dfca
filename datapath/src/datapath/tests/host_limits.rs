//! Per-host limits: a host refused on its uplink for its share spills to another member of its
//! group; a full host table is answered like a full range; sources no LAN host may use open nothing.

use super::*;
use flowpin_nat::AllocError;

/// Both uplinks of weight 1, a hard quota of 2 ports per host and uplink.
fn two_ports_per_host() -> Settings {
    Settings {
        ports_per_host: 2,
        ..Settings::default()
    }
}

#[test]
fn a_host_refused_for_its_share_spills_to_the_other_uplink_and_keeps_one_mapping_per_endpoint() {
    let rig = Rig::new(two_ports_per_host(), true);
    let mut egress = Vec::new();
    for sport in 5000..5004 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        egress.push(rig.transmit(PortId::LAN, &mut out));
    }
    for slot in 0..2 {
        let held = rig.pools[slot].udp.host_mappings(Ipv4Addr::from(HOST));
        assert_eq!(held, 2, "isp{} holds its quota", slot + 1);
    }
    let spilled = rig.counters.flows_spilled.get();
    assert!(
        spilled >= 1,
        "four flows on two uplinks of two ports: some spilled"
    );
    // A spilled endpoint's next flow joins its mapping there (EIM) and counts no new spill.
    let spilled_endpoint = (5000..5004u16)
        .zip(&egress)
        .find(|&(sport, &port)| {
            let chosen = rig.snapshot.policy.decide(
                &parse_frame(&udp(HOST, sport, SERVER, 7777, HOST_MAC))
                    .unwrap()
                    .key,
                0,
            );
            chosen.uplink.map(|u| PortId::uplink(u as u8)) != Some(port)
        })
        .expect("a flow off its group's choice");
    let mut again = udp(HOST, spilled_endpoint.0, [192, 0, 2, 9], 53, HOST_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut again), *spilled_endpoint.1);
    assert_eq!(rig.counters.flows_spilled.get(), spilled);
    // Both uplinks refuse: the chosen one's reason, answered with 3/13.
    let offending = udp(HOST, 5004, SERVER, 7777, HOST_MAC);
    let mut frame = offending.clone();
    assert_eq!(rig.transmit(PortId::LAN, &mut frame), PortId::LAN);
    assert_unreachable_to_host(&frame, &offending, 13);
    assert_eq!(
        rig.drops(DropReason::NatAllocation(AllocError::QuotaExceeded)),
        1
    );
    // Another host is not affected.
    let mut other = udp(HOST2, 5004, SERVER, 7777, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut other).port().is_some());
}

#[test]
fn a_flow_that_spilled_is_placed_as_such_and_its_replies_come_back() {
    let rig = Rig::new(two_ports_per_host(), true);
    for sport in 5000..5004 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut out);
        let (src, external, _, _) = endpoint(&out);
        let mut reply = udp(SERVER, 7777, src.octets(), external, GW_MAC[0]);
        assert_eq!(rig.transmit(port, &mut reply), PortId::LAN);
    }
    let placements: Vec<_> = rig
        .flows
        .table
        .live_flows(rig.now_ms)
        .map(|flow| flow.value.placement)
        .collect();
    let spilled = placements
        .iter()
        .filter(|p| **p == Placement::SpilledOverShare)
        .count() as u64;
    assert_eq!(spilled, rig.counters.flows_spilled.get());
}

#[test]
fn a_full_host_table_is_counted_and_answered_and_a_leaving_host_makes_room() {
    let mut rig = Rig::new(
        Settings {
            weights: vec![1],
            max_hosts: 1,
            ..Settings::default()
        },
        true,
    );
    let mut first = udp(HOST2, 5000, SERVER, 7777, HOST2_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut first), PortId::uplink(0));
    let offending = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let mut frame = offending.clone();
    assert_eq!(rig.transmit(PortId::LAN, &mut frame), PortId::LAN);
    assert_unreachable_to_host(&frame, &offending, 13);
    assert_eq!(
        rig.drops(DropReason::NatAllocation(AllocError::HostTableFull)),
        1
    );
    // HOST2's flow expires; with its last mapping it leaves the host table.
    rig.now_ms += 301_000;
    let (now, snapshot, timeouts) = (rig.now_ms, &rig.snapshot, rig.snapshot.timeouts);
    let swept = rig.flows.sweep(
        now,
        1 << 12,
        |value, state, last_seen| {
            now >= crate::datapath::flows::deadline(&timeouts, value, state, last_seen)
        },
        |value| snapshot.release_mapping(value, now),
    );
    assert_eq!(swept.removed, 1);
    assert_eq!(rig.pools[0].udp.hosts().live(), 0);
    let mut frame = offending.clone();
    assert_eq!(rig.transmit(PortId::LAN, &mut frame), PortId::uplink(0));
}

#[test]
fn the_routers_lan_address_and_the_prefix_network_and_broadcast_open_nothing() {
    let rig = Rig::new(Settings::default(), true);
    for source in [[10, 77, 0, 1], [10, 77, 0, 0], [10, 77, 0, 255]] {
        let mut frame = udp(source, 5000, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut frame),
            Verdict::Drop(DropReason::LanReservedSource),
            "{source:?}"
        );
    }
    assert_eq!(rig.drops(DropReason::LanReservedSource), 3);
    assert_eq!(rig.flows.table.len(), 0, "nothing created");
    assert_eq!(
        rig.pools[0].udp.hosts().live() + rig.pools[1].udp.hosts().live(),
        0
    );
    let mut host = udp([10, 77, 0, 254], 5000, SERVER, 7777, HOST_MAC);
    assert!(
        rig.process(PortId::LAN, &mut host).port().is_some(),
        "a host next to them"
    );
}
