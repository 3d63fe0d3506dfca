//! Translation and mappings: outbound and reply rewriting, one external endpoint per internal
//! endpoint, inbound filtering, hairpinning, expiry, and batch processing deciding like frame by frame.

use super::*;

#[test]
fn outbound_udp_is_snatted_to_its_uplink_and_the_reply_reverse_translated() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!(
            "dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    };
    let slot = port.uplink_slot().expect("leaves on an uplink");
    let (src, sport, dst, dport) = endpoint(&out);
    assert_eq!(
        src,
        Ipv4Addr::from(WAN_ADDR[usize::from(slot)]),
        "source is that uplink's address"
    );
    assert_eq!((dst, dport), (Ipv4Addr::from(SERVER), 7777));
    assert!(
        (20000..=29999).contains(&sport),
        "5000 is outside the NAT range: {sport}"
    );
    assert!(checksums_valid(&out, &parse_frame(&out).unwrap()));
    assert_eq!(
        eth(&out),
        (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)])
    );

    let mut reply = udp(
        SERVER,
        7777,
        WAN_ADDR[usize::from(slot)],
        sport,
        GW_MAC[usize::from(slot)],
    );
    let verdict = rig.process(PortId::uplink(slot), &mut reply);
    assert_eq!(verdict.port(), Some(PortId::LAN), "{verdict:?}");
    assert_eq!(
        endpoint(&reply),
        (Ipv4Addr::from(SERVER), 7777, Ipv4Addr::from(HOST), 5000)
    );
    assert_eq!(eth(&reply), (HOST_MAC, LAN_MAC));
    assert!(checksums_valid(&reply, &parse_frame(&reply).unwrap()));
    assert_eq!(rig.flows.table.len(), 1);
}

#[test]
fn the_internal_port_is_preserved_when_free_and_in_range() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 25000, SERVER, 7777, HOST_MAC);
    rig.transmit(PortId::LAN, &mut out);
    assert_eq!(endpoint(&out).1, 25000);
}

/// RFC 4787 REQ-1: endpoint-independent mapping, one external endpoint for every destination.
#[test]
fn rfc4787_req1_one_internal_endpoint_keeps_one_external_endpoint_for_every_destination() {
    let rig = Rig::new(Settings::default(), true);
    let mut seen = std::collections::HashSet::new();
    for i in 0..20u8 {
        let mut out = udp(HOST, 25001, [203, 0, 113, 10 + i], 7777, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut out);
        let (src, sport, _, _) = endpoint(&out);
        seen.insert((port, src, sport));
    }
    assert_eq!(seen.len(), 1, "EIM: {seen:?}");
    assert_eq!(rig.flows.table.len(), 20);
}

/// RFC 4787 REQ-3: no port overloading, two internal endpoints never share an external endpoint.
#[test]
fn rfc4787_req3_two_hosts_with_the_same_source_port_get_distinct_external_endpoints() {
    let rig = Rig::new(Settings::default(), true);
    let mut ext = Vec::new();
    for (host, mac) in [(HOST, HOST_MAC), (HOST2, HOST2_MAC)] {
        let mut out = udp(host, 25002, SERVER, 7777, mac);
        let port = rig.transmit(PortId::LAN, &mut out);
        let (src, sport, _, _) = endpoint(&out);
        ext.push((port, src, sport));
    }
    assert_ne!((ext[0].1, ext[0].2), (ext[1].1, ext[1].2), "{ext:?}");
    // Both replies reach their own host.
    for ((port, src, sport), host) in ext.into_iter().zip([HOST, HOST2]) {
        let mut reply = udp(SERVER, 7777, src.octets(), sport, GW_MAC[0]);
        assert_eq!(rig.transmit(port, &mut reply), PortId::LAN);
        assert_eq!(endpoint(&reply).2, Ipv4Addr::from(host));
    }
}

#[test]
fn unsolicited_inbound_is_dropped_and_creates_nothing() {
    let rig = Rig::new(Settings::default(), true);
    let mut inbound = udp(SERVER, 7777, WAN_ADDR[0], 25000, GW_MAC[0]);
    assert_eq!(
        rig.process(PortId::uplink(0), &mut inbound),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert_eq!(rig.flows.table.len(), 0);
    assert_eq!(rig.drops(DropReason::UnsolicitedInbound), 1);
}

#[test]
fn spoofed_lan_sources_are_dropped_and_create_nothing() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp([192, 168, 1, 5], 5000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut out),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    assert_eq!(rig.flows.table.len(), 0);
}

#[test]
fn no_flow_leaves_before_its_gateway_is_resolved() {
    let rig = Rig::new(Settings::default(), false);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    // Unresolved gateways make every uplink ineligible for new flows: the host is told.
    assert_eq!(rig.process(PortId::LAN, &mut out).port(), Some(PortId::LAN));
    assert_net_unreachable(&out, &udp(HOST, 5000, SERVER, 7777, HOST_MAC));
    assert_eq!(rig.drops(DropReason::NoUplink), 1);
    assert_eq!(rig.flows.table.len(), 0);
}

/// RFC 4787 REQ-5: a UDP mapping lives 300 s (the default) after its last outbound packet.
#[test]
fn rfc4787_req5_expiry_follows_the_protocol_timeouts() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 25003, SERVER, 7777, HOST_MAC);
    rig.transmit(PortId::LAN, &mut out);
    let t = &rig.snapshot.timeouts;
    let f = rig.flows.table.live_flows(rig.now_ms).next().unwrap();
    let d = flows::deadline(t, &f.value, f.protocol_state, f.last_seen_ms);
    assert_eq!(
        d,
        rig.now_ms + 300_000,
        "UDP: 300 s after the last outbound packet"
    );
}

/// RFC 4787 REQ-8: by default, address- and port-dependent filtering.
#[test]
fn rfc4787_req8_by_default_only_the_remote_a_flow_was_opened_to_may_answer() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 25020, SERVER, 3478, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut out);
    let (ext, ext_port, _, _) = endpoint(&out);
    let mut stranger = udp([203, 0, 113, 99], 5555, ext.octets(), ext_port, GW_MAC[0]);
    assert_eq!(
        rig.process(port, &mut stranger),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert_eq!(rig.flows.table.len(), 1, "the stranger created nothing");
}

/// RFC 4787 REQ-8: endpoint-independent filtering when configured (application transparency).
#[test]
fn rfc4787_req8_endpoint_independent_filtering_lets_any_remote_reach_a_live_mapping() {
    let settings = Settings {
        endpoint_independent_filtering: true,
        ..Settings::default()
    };
    let rig = Rig::new(settings, true);
    let mut out = udp(HOST, 25021, SERVER, 3478, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut out);
    let (ext, ext_port, _, _) = endpoint(&out);
    let mut peer = udp([203, 0, 113, 99], 5555, ext.octets(), ext_port, GW_MAC[0]);
    let verdict = rig.process(port, &mut peer);
    assert_eq!(verdict.port(), Some(PortId::LAN), "{verdict:?}");
    assert_eq!(
        endpoint(&peer),
        (
            Ipv4Addr::new(203, 0, 113, 99),
            5555,
            Ipv4Addr::from(HOST),
            25021
        )
    );
    assert_eq!(eth(&peer).0, HOST_MAC);
    assert!(checksums_valid(&peer, &parse_frame(&peer).unwrap()));
    // The host's answer leaves with the same external endpoint (EIM).
    let mut answer = udp(HOST, 25021, [203, 0, 113, 99], 5555, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut answer),
        Verdict::Transmit {
            port,
            len: answer.len()
        }
    );
    assert_eq!(endpoint(&answer).0, ext);
    assert_eq!(endpoint(&answer).1, ext_port);
    // A port nobody holds stays closed.
    let mut probe = udp([203, 0, 113, 99], 5555, ext.octets(), 29999, GW_MAC[0]);
    assert_eq!(
        rig.process(port, &mut probe),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
}

/// RFC 4787 REQ-9: hairpinning, the target seeing the sender's external address and port.
#[test]
fn rfc4787_req9_a_hairpinned_packet_reaches_the_target_host_from_the_senders_external_endpoint() {
    let rig = Rig::new(Settings::default(), true);
    // HOST2 opens a mapping (e.g. to a STUN server).
    let mut out = udp(HOST2, 25010, SERVER, 3478, HOST2_MAC);
    rig.transmit(PortId::LAN, &mut out);
    let (ext2, ext2_port, _, _) = endpoint(&out);
    // HOST sends to HOST2's external endpoint.
    let mut hp = udp(HOST, 25011, ext2.octets(), ext2_port, HOST_MAC);
    let verdict = rig.process(PortId::LAN, &mut hp);
    assert_eq!(verdict.port(), Some(PortId::LAN), "{verdict:?}");
    let (src, sport, dst, dport) = endpoint(&hp);
    assert_eq!((dst, dport), (Ipv4Addr::from(HOST2), 25010));
    assert!(
        WAN_ADDR.contains(&src.octets()),
        "the target sees an external address: {src}"
    );
    assert_eq!(sport, 25011);
    assert_eq!(eth(&hp).0, HOST2_MAC);
    assert!(checksums_valid(&hp, &parse_frame(&hp).unwrap()));
    // HOST2's answer to that external endpoint comes back to HOST, from HOST2's external endpoint.
    let mut back = udp(HOST2, 25010, src.octets(), sport, HOST2_MAC);
    let verdict = rig.process(PortId::LAN, &mut back);
    assert_eq!(verdict.port(), Some(PortId::LAN), "{verdict:?}");
    assert_eq!(
        endpoint(&back),
        (ext2, ext2_port, Ipv4Addr::from(HOST), 25011)
    );
    assert_eq!(eth(&back).0, HOST_MAC);
}

#[test]
fn a_prepared_batch_decides_like_frame_by_frame_processing() {
    let rig = Rig::new(Settings::default(), true);
    let pipeline = rig.pipeline();
    // Two packets of one new flow, a malformed frame and an unsolicited inbound one, in one batch: the
    // batch's lookups all happen before the first packet creates the flow.
    let mut frames = vec![
        (PortId::LAN, udp(HOST, 25030, SERVER, 7777, HOST_MAC)),
        (PortId::LAN, udp(HOST, 25030, SERVER, 7777, HOST_MAC)),
        (PortId::LAN, vec![0u8; 20]),
        (
            PortId::uplink(0),
            udp(SERVER, 7777, WAN_ADDR[0], 29000, GW_MAC[0]),
        ),
    ];
    let mut batch = PreparedBatch::new();
    for (_, f) in &frames {
        assert!(batch.push(f));
    }
    pipeline.look_up(&mut batch);
    let verdicts: Vec<Verdict> = frames
        .iter_mut()
        .enumerate()
        .map(|(i, (port, f))| {
            let len = f.len();
            f.resize(2048, 0);
            pipeline.process_prepared(&batch, i, *port, f, len)
        })
        .collect();
    let Verdict::Transmit { port, .. } = verdicts[0] else {
        panic!("{verdicts:?}")
    };
    assert_eq!(
        verdicts[1], verdicts[0],
        "the second packet adopts the flow the first created"
    );
    assert!(matches!(
        verdicts[2],
        Verdict::Drop(DropReason::Malformed(_))
    ));
    assert_eq!(verdicts[3], Verdict::Drop(DropReason::UnsolicitedInbound));
    assert!(port.uplink_slot().is_some());
    assert_eq!(rig.flows.table.len(), 1);
    assert_eq!(
        rig.flows
            .table
            .live_flows(rig.now_ms)
            .next()
            .unwrap()
            .counters
            .packets[0],
        2,
        "both packets counted on the one flow"
    );
}
