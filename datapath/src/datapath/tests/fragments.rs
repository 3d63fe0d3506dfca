//! IPv4 fragments (RFC 4787 REQ-14): a first fragment finds or creates the flow, later fragments
//! follow it (in order or before it), orphans are held then expired, nothing un-translated leaves.

use flowpin_nat::checksum::{internet_checksum, ipv4_pseudo_header_sum};
use flowpin_nat::wire::ipv4::Ipv4Packet;

use super::*;

/// A UDP datagram of `len` payload bytes from `src:sport` to `dst:dport`, IP id `ident`, DF off,
/// cut into fragments of at most `piece` IP payload bytes (a multiple of 8), in order.
fn fragments(
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    mac: Mac,
    len: usize,
    piece: usize,
    ident: u16,
) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let mut spec = FrameSpec::new(
        src,
        dst,
        L4Spec::Udp {
            ports: (sport, dport),
            payload: &payload,
        },
    );
    spec.source_mac = mac;
    spec.destination_mac = LAN_MAC;
    spec.dont_fragment = false;
    spec.ident = ident;
    let whole = build_frame(&spec);
    let data = &whole[34..];
    data.chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let mut frame = whole[..34].to_vec();
            frame.extend_from_slice(chunk);
            let more = (i + 1) * piece < data.len();
            let flags = u16::try_from(i * piece / 8).unwrap() | if more { 0x2000 } else { 0 };
            frame[16..18].copy_from_slice(&u16::try_from(20 + chunk.len()).unwrap().to_be_bytes());
            frame[20..22].copy_from_slice(&flags.to_be_bytes());
            Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
            frame
        })
        .collect()
}

/// Reassembles translated fragments (any order); asserts every IP header verifies and the UDP
/// checksum of the whole datagram verifies by a full recomputation. Returns (source, sport,
/// destination, dport) and the payload.
fn reassemble(frames: &[Vec<u8>]) -> (Ipv4Addr, u16, Ipv4Addr, u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut addresses = None;
    for frame in frames {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum(), "every fragment's IP header verifies");
        let at = usize::from(ip.fragment_offset()) * 8;
        let payload = ip.payload();
        if data.len() < at + payload.len() {
            data.resize(at + payload.len(), 0);
        }
        data[at..at + payload.len()].copy_from_slice(payload);
        let pair = (ip.source(), ip.destination());
        assert_eq!(
            *addresses.get_or_insert(pair),
            pair,
            "one datagram's addresses"
        );
    }
    let (source, destination) = addresses.unwrap();
    let sum = ipv4_pseudo_header_sum(
        source.octets(),
        destination.octets(),
        17,
        u16::try_from(data.len()).unwrap(),
    );
    assert_eq!(
        internet_checksum(&data, sum),
        0,
        "the whole datagram's UDP checksum verifies"
    );
    let port = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    (source, port(0), destination, port(2), data[8..].to_vec())
}

/// Releases what is due, as the worker does: each held fragment copied and translated.
fn release(rig: &Rig) -> Vec<(Verdict, Vec<u8>)> {
    let mut out = Vec::new();
    rig.pipeline().release_held_fragments(|held, translate| {
        let mut copy = held.to_vec();
        let verdict = translate(&mut copy);
        out.push((verdict, copy));
    });
    out
}

fn expect_transmit(rig: &Rig, ingress: PortId, frame: &mut Vec<u8>) -> PortId {
    match rig.process(ingress, frame) {
        Verdict::Transmit { port, .. } => port,
        other => panic!(
            "{other:?}: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        ),
    }
}

#[test]
fn rfc4787_req14_fragments_in_order_follow_the_first_both_ways() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = fragments((HOST, 5000), (SERVER, 7), HOST_MAC, 3000, 1480, 0x1234);
    assert_eq!(out.len(), 3);
    let egress = expect_transmit(&rig, PortId::LAN, &mut out[0]);
    let slot = egress.uplink_slot().expect("leaves on an uplink");
    for frame in &mut out[1..] {
        assert_eq!(
            expect_transmit(&rig, PortId::LAN, frame),
            egress,
            "the first's way"
        );
        assert_eq!(
            eth(frame),
            (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)])
        );
    }
    let (src, sport, dst, dport, payload) = reassemble(&out);
    assert_eq!(src, Ipv4Addr::from(WAN_ADDR[usize::from(slot)]));
    assert_eq!((dst, dport), (Ipv4Addr::from(SERVER), 7));
    assert_eq!(payload.len(), 3000);
    assert_eq!(rig.counters.fragments_followed.get(), 2);

    let mut back = fragments(
        (SERVER, 7),
        (WAN_ADDR[usize::from(slot)], sport),
        GW_MAC[usize::from(slot)],
        3000,
        1480,
        0x4321,
    );
    for frame in &mut back {
        assert_eq!(
            expect_transmit(&rig, PortId::uplink(slot), frame),
            PortId::LAN
        );
        assert_eq!(eth(frame), (HOST_MAC, LAN_MAC));
    }
    let (src, sport_in, dst, dport, payload_in) = reassemble(&back);
    assert_eq!((src, sport_in), (Ipv4Addr::from(SERVER), 7));
    assert_eq!((dst, dport), (Ipv4Addr::from(HOST), 5000));
    assert_eq!(payload_in, payload);
    assert_eq!(rig.flows.table.len(), 1, "one flow for both datagrams");
}

#[test]
fn fragments_before_their_first_are_held_and_released_when_it_comes() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = fragments((HOST, 5001), (SERVER, 7), HOST_MAC, 8000, 1480, 7);
    let (first, later) = out.split_first_mut().unwrap();
    for frame in later.iter_mut().rev().take(4) {
        assert_eq!(rig.process(PortId::LAN, frame), Verdict::Held);
    }
    assert!(release(&rig).is_empty(), "nothing due before the first");
    let egress = expect_transmit(&rig, PortId::LAN, first);
    let released = release(&rig);
    assert_eq!(released.len(), 4, "every held fragment, once");
    assert!(release(&rig).is_empty());
    let mut frames = vec![first.clone(), later[0].clone()];
    for (verdict, frame) in released {
        assert_eq!(verdict.port(), Some(egress));
        frames.push(frame);
    }
    // The one not held (the hold has 4 slots) arrives after the first and follows it.
    assert_eq!(expect_transmit(&rig, PortId::LAN, &mut frames[1]), egress);
    let (src, _, _, _, payload) = reassemble(&frames);
    assert_eq!(payload.len(), 8000);
    assert_eq!(
        src,
        Ipv4Addr::from(WAN_ADDR[usize::from(egress.uplink_slot().unwrap())])
    );
    assert_eq!(rig.counters.fragments_held.get(), 4);
    assert_eq!(rig.counters.fragments_followed.get(), 5);
    assert_eq!(rig.fragments.borrow().held_now(), 0);
}

#[test]
fn orphan_fragments_create_nothing_are_bounded_and_expire_counted() {
    let mut rig = Rig::new(Settings::default(), true);
    // From the internet to a NAT address: no flow, no first fragment.
    for ident in 0..10u16 {
        let mut orphan = fragments(
            (SERVER, 7),
            (WAN_ADDR[0], 20000),
            GW_MAC[0],
            3000,
            1480,
            ident,
        )
        .remove(1);
        let verdict = rig.process(PortId::uplink(0), &mut orphan);
        assert!(matches!(
            verdict,
            Verdict::Held | Verdict::Drop(DropReason::FragmentHoldFull)
        ));
    }
    assert_eq!(
        rig.fragments.borrow().held_now(),
        4,
        "at most `held` are held"
    );
    assert_eq!(rig.drops(DropReason::FragmentHoldFull), 6);
    // Not addressed to the uplink: not even held.
    let mut stray = fragments((SERVER, 7), (HOST, 5000), GW_MAC[0], 3000, 1480, 99).remove(1);
    assert_eq!(
        rig.process(PortId::uplink(0), &mut stray),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    // A LAN fragment from outside the LAN prefixes: not held.
    let mut spoofed =
        fragments(([192, 0, 2, 1], 1), (SERVER, 7), HOST_MAC, 3000, 1480, 5).remove(1);
    assert_eq!(
        rig.process(PortId::LAN, &mut spoofed),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    rig.now_ms += 1999;
    rig.pipeline().expire_fragments();
    assert_eq!(rig.drops(DropReason::FragmentExpired), 0);
    rig.now_ms += 1;
    rig.pipeline().expire_fragments();
    assert_eq!(rig.drops(DropReason::FragmentExpired), 4);
    assert_eq!(rig.fragments.borrow().held_now(), 0);
    assert_eq!(rig.flows.table.len(), 0, "fragments create no flow");
    assert_eq!(rig.counters.forwarded.get(), 0, "nothing left");
}

#[test]
fn a_first_fragment_that_opens_no_flow_releases_nothing() {
    let rig = Rig::new(Settings::default(), true);
    // Inbound, unsolicited: the first fragment is dropped, its held later fragment is not sent.
    let mut inbound = fragments((SERVER, 7), (WAN_ADDR[0], 20000), GW_MAC[0], 3000, 1480, 3);
    assert_eq!(
        rig.process(PortId::uplink(0), &mut inbound[1]),
        Verdict::Held
    );
    assert_eq!(
        rig.process(PortId::uplink(0), &mut inbound[0]),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert!(release(&rig).is_empty());
    assert_eq!(rig.fragments.borrow().held_now(), 1, "left to expire");
}

#[test]
fn a_later_fragment_follows_only_on_the_port_its_first_came_in_on() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = fragments((HOST, 5002), (SERVER, 7), HOST_MAC, 3000, 1480, 11);
    let egress = expect_transmit(&rig, PortId::LAN, &mut out[0]);
    let other = PortId::uplink(1 - egress.uplink_slot().unwrap());
    // The same datagram id arriving on an uplink does not match (and is not addressed to it).
    let mut twisted = out[1].clone();
    assert!(matches!(rig.process(other, &mut twisted), Verdict::Drop(_)));
    assert_eq!(expect_transmit(&rig, PortId::LAN, &mut out[1]), egress);
}
