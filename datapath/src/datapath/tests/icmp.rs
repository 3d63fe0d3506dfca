//! ICMP through the NAT: echo queries keyed by their identifier, errors from the internet translated
//! back to the LAN host, and fragmentation needed for packets too big for the next link.

use super::*;

/// RFC 5508 REQ-1: an echo query from the LAN and its reply cross the NAT, the identifier translated
/// as the query's "port" (REQ-1a).
#[test]
fn rfc5508_req1a_echo_requests_open_icmp_flows_and_replies_come_back_with_the_original_id() {
    let rig = Rig::new(Settings::default(), true);
    let mut spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Echo {
            request: true,
            id: 0x4242,
            seq: 1,
        },
    );
    spec.source_mac = HOST_MAC;
    let mut out = build_frame(&spec);
    let port = rig.transmit(PortId::LAN, &mut out);
    let (src, id, _, _) = endpoint(&out);
    assert!(checksums_valid(&out, &parse_frame(&out).unwrap()));
    let reply_spec = FrameSpec::new(
        SERVER,
        src.octets(),
        L4Spec::Echo {
            request: false,
            id,
            seq: 1,
        },
    );
    let mut reply = build_frame(&reply_spec);
    assert_eq!(rig.transmit(port, &mut reply), PortId::LAN);
    let (_, rid, dst, _) = endpoint(&reply);
    assert_eq!((dst, rid), (Ipv4Addr::from(HOST), 0x4242));
    assert!(checksums_valid(&reply, &parse_frame(&reply).unwrap()));
}

/// RFC 5508 REQ-4: an ICMP error from the internet about a mapped flow reaches the LAN host with the
/// embedded packet reverted to its original form.
#[test]
fn rfc5508_req4_an_icmp_port_unreachable_from_the_internet_reaches_the_lan_host_translated() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut out);
    // The server answers with port unreachable quoting the translated datagram.
    let quoted = out[14..].to_vec();
    let (src, _, _, _) = endpoint(&out);
    let spec = FrameSpec::new(
        SERVER,
        src.octets(),
        L4Spec::IcmpError {
            message_type: 3,
            code: 3,
            rest: [0; 4],
            quoted: &quoted,
        },
    );
    let mut error = build_frame(&spec);
    assert_eq!(rig.transmit(port, &mut error), PortId::LAN);
    let p = parse_frame(&error).unwrap();
    assert_eq!(p.key.destination, Ipv4Addr::from(HOST));
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error")
    };
    assert_eq!(
        (info.embedded.source, info.embedded.source_port),
        (Ipv4Addr::from(HOST), 5000)
    );
    assert!(checksums_valid(&error, &p));
}

/// Path MTU discovery inbound: a packet from the internet too big for the LAN with DF set is answered
/// with ICMP fragmentation needed carrying the LAN MTU, from the uplink's address and MAC to the
/// gateway it came from, out of that uplink, quoting the packet as received; rate limited per worker.
#[test]
fn a_too_big_packet_from_an_uplink_gets_fragmentation_needed_back_out_of_that_uplink() {
    let mut rig = Rig::new(Settings::default(), true);
    rig.snapshot.lan.mtu = 1400;
    rig.snapshot.frag_needed_to_uplink = RateLimit {
        per_second: 1,
        burst: 2,
    };
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut out);
    let slot = port.uplink_slot().unwrap();
    let (external, external_port, _, _) = endpoint(&out);
    let payload = vec![0x5a; 1450];
    let too_big = |dont_fragment: bool| {
        let mut spec = FrameSpec::new(
            SERVER,
            external.octets(),
            L4Spec::Udp {
                ports: (7777, external_port),
                payload: &payload,
            },
        );
        spec.source_mac = GW_MAC[usize::from(slot)];
        spec.destination_mac = WAN_MAC[usize::from(slot)];
        spec.dont_fragment = dont_fragment;
        build_frame(&spec)
    };
    let offending = too_big(true);
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(port, &mut frame).port(),
        Some(port),
        "sent back out of the uplink it came in by"
    );
    let p = parse_frame(&frame).expect("the answer parses");
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error: {p:?}")
    };
    assert_eq!(
        (info.message_type, info.code),
        (3, 4),
        "fragmentation needed"
    );
    let l4 = usize::from(p.l4_offset);
    assert_eq!(
        u16::from_be_bytes([frame[l4 + 6], frame[l4 + 7]]),
        1400,
        "the LAN MTU"
    );
    assert_eq!(
        (p.key.source, p.key.destination),
        (external, Ipv4Addr::from(SERVER)),
        "from the uplink's address to the remote sender"
    );
    assert_eq!(external, Ipv4Addr::from(WAN_ADDR[usize::from(slot)]));
    assert_eq!(
        eth(&frame),
        (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)]),
        "uplink MAC to the gateway"
    );
    assert!(checksums_valid(&frame, &p));
    assert_eq!(
        info.embedded,
        parse_frame(&offending).unwrap().key,
        "quotes the packet as received, untranslated"
    );
    assert_eq!(
        &frame[l4 + 8..l4 + 8 + 28],
        &offending[14..14 + 28],
        "the quoted header and first 8 bytes"
    );
    assert_eq!(rig.drops(DropReason::FragmentationNeeded), 1);
    assert_eq!(rig.counters.originated.get(), 1);
    // The budget: one more answer, then suppressed; without DF a plain drop.
    let mut frame = offending.clone();
    assert_eq!(rig.process(port, &mut frame).port(), Some(port));
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(port, &mut frame),
        Verdict::Drop(DropReason::FragmentationNeeded)
    );
    assert_eq!(rig.counters.frag_needed_to_uplink_suppressed.get(), 1);
    assert_eq!(rig.counters.originated.get(), 2);
    let mut frame = too_big(false);
    assert_eq!(
        rig.process(port, &mut frame),
        Verdict::Drop(DropReason::WouldFragment)
    );
}

#[test]
fn a_too_big_packet_with_df_gets_fragmentation_needed_with_the_mtu() {
    let rig = Rig::new(Settings::default(), true);
    let payload = vec![0u8; 1600];
    let mut spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Udp {
            ports: (5000, 7777),
            payload: &payload,
        },
    );
    spec.source_mac = HOST_MAC;
    let mut out = build_frame(&spec);
    let verdict = rig.process(PortId::LAN, &mut out);
    assert_eq!(verdict.port(), Some(PortId::LAN), "{verdict:?}");
    let p = parse_frame(&out).unwrap();
    assert_eq!(p.key.destination, Ipv4Addr::from(HOST));
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error")
    };
    assert_eq!((info.message_type, info.code), (3, 4));
    assert_eq!(
        u16::from_be_bytes([
            out[usize::from(p.l4_offset) + 6],
            out[usize::from(p.l4_offset) + 7]
        ]),
        1500
    );
    assert!(checksums_valid(&out, &p));
    assert_eq!(eth(&out).0, HOST_MAC);
}

/// A LAN host sending too-big DF packets gets fragmentation needed within the worker's budget only:
/// beyond it the packet is still dropped and counted, the answer suppressed and counted.
#[test]
fn fragmentation_needed_to_lan_hosts_is_rate_limited_per_worker() {
    let mut rig = Rig::new(Settings::default(), true);
    rig.snapshot.frag_needed_to_lan = RateLimit {
        per_second: 1,
        burst: 2,
    };
    let payload = vec![0u8; 1600];
    let mut spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Udp {
            ports: (5000, 7777),
            payload: &payload,
        },
    );
    spec.source_mac = HOST_MAC;
    let offending = build_frame(&spec);
    for _ in 0..2 {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame).port(),
            Some(PortId::LAN)
        );
    }
    for _ in 0..3 {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame),
            Verdict::Drop(DropReason::FragmentationNeeded)
        );
    }
    assert_eq!(rig.counters.frag_needed_to_lan_suppressed.get(), 3);
    assert_eq!(rig.counters.originated.get(), 2);
    assert_eq!(rig.drops(DropReason::FragmentationNeeded), 5);
    let suppressed = rig.counters.answers_suppressed();
    assert!(
        suppressed.contains(&("frag_needed_to_lan", 3)),
        "{suppressed:?}"
    );
    // The budget belongs to this answer only: the uplink-side one is untouched.
    assert_eq!(rig.counters.frag_needed_to_uplink_suppressed.get(), 0);
}
