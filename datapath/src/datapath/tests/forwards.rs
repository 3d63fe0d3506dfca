//! Port forwards: an inbound first packet to a forward opens a flow pinned to the uplink it arrived
//! on, DNATed to the LAN server; replies leave by that uplink whatever the weights; TCP needs a SYN;
//! a closed uplink opens nothing; LAN hosts reach a forward by hairpinning.

use flowpin_nat::IpProtocol;

use super::*;

/// TCP 8080 and UDP 5353 on both uplinks to HOST2 (the LAN server) port 80 and 53.
fn forwarding(weights: Vec<u32>) -> Settings {
    let rule = |index, slot, protocol, first, to_first| ForwardRule {
        index,
        slot,
        protocol,
        first,
        last: first,
        to: Ipv4Addr::from(HOST2),
        to_first,
    };
    Settings {
        weights,
        forwards: vec![
            rule(0, 0, IpProtocol::Tcp, 8080, 80),
            rule(0, 1, IpProtocol::Tcp, 8080, 80),
            rule(1, 0, IpProtocol::Udp, 5353, 53),
            rule(1, 1, IpProtocol::Udp, 5353, 53),
        ],
        ..Settings::default()
    }
}

fn from_internet(dst: [u8; 4], sport: u16, dport: u16, flags: u8, slot: usize) -> Vec<u8> {
    tcp(SERVER, sport, dst, dport, flags, GW_MAC[slot])
}

/// Opens a TCP forwarded flow from SERVER:`sport` through uplink `slot`; returns the SYN as the
/// LAN server received it.
fn open_through(rig: &Rig, slot: u8, sport: u16) -> Vec<u8> {
    let mut syn = from_internet(WAN_ADDR[usize::from(slot)], sport, 8080, SYN, slot.into());
    assert_eq!(rig.transmit(PortId::uplink(slot), &mut syn), PortId::LAN);
    syn
}

/// The LAN server's SYN-ACK to the SYN it received; returns its egress and the frame as it left.
fn answer(rig: &Rig, received: &[u8]) -> (PortId, Vec<u8>) {
    let (src, sport, dst, dport) = endpoint(received);
    let mut syn_ack = tcp(dst.octets(), dport, src.octets(), sport, SYN_ACK, HOST2_MAC);
    let port = rig.transmit(PortId::LAN, &mut syn_ack);
    (port, syn_ack)
}

#[test]
fn a_forward_dnats_to_the_lan_server_keeping_the_remote_address_and_answers_by_its_uplink() {
    // Weights 1:0: uplink 2 takes no chosen flows, yet its forward answers through it.
    let rig = Rig::new(forwarding(vec![1, 0]), true);
    for slot in [0u8, 1] {
        let syn = open_through(&rig, slot, 40000 + u16::from(slot));
        assert_eq!(
            endpoint(&syn),
            (
                Ipv4Addr::from(SERVER),
                40000 + u16::from(slot),
                Ipv4Addr::from(HOST2),
                80
            ),
            "DNAT to the LAN server, remote address and port kept"
        );
        assert_eq!(eth(&syn), (HOST2_MAC, LAN_MAC));
        assert!(checksums_valid(&syn, &parse_frame(&syn).unwrap()));
        let (egress, out) = answer(&rig, &syn);
        assert_eq!(
            egress,
            PortId::uplink(slot),
            "the reply leaves by the ingress uplink"
        );
        assert_eq!(
            endpoint(&out),
            (
                Ipv4Addr::from(WAN_ADDR[usize::from(slot)]),
                8080,
                Ipv4Addr::from(SERVER),
                40000 + u16::from(slot)
            )
        );
        assert_eq!(
            eth(&out),
            (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)])
        );
        assert!(checksums_valid(&out, &parse_frame(&out).unwrap()));
    }
    assert_eq!(rig.flows.table.len(), 2);
    let forwarded: u64 = rig.uplink_sum(|c| c.forwarded_flows_created.get());
    assert_eq!(forwarded, 2);
    let found = rig
        .flows
        .table
        .lookup(&flowpin_nat::FlowKey {
            protocol: IpProtocol::Tcp,
            source: Ipv4Addr::from(SERVER),
            source_port: 40001,
            destination: Ipv4Addr::from(WAN_ADDR[1]),
            destination_port: 8080,
        })
        .expect("the flow is in the table");
    assert_eq!(found.value.placement, Placement::Forwarded);
    assert_eq!(found.value.uplink, 1);
    assert_eq!(found.value.policy, 0, "the forward's index");
}

#[test]
fn the_same_remote_endpoint_through_two_uplinks_gets_a_stand_in_port_on_the_second() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    let first = open_through(&rig, 0, 40000);
    let second = open_through(&rig, 1, 40000);
    assert_eq!(endpoint(&first).1, 40000);
    let (src, stand_in, dst, dport) = endpoint(&second);
    assert_eq!(
        (src, dst, dport),
        (Ipv4Addr::from(SERVER), Ipv4Addr::from(HOST2), 80)
    );
    assert_ne!(
        stand_in, 40000,
        "the LAN server cannot tell two flows of one key apart"
    );
    for (slot, received) in [(0u8, &first), (1, &second)] {
        let (egress, out) = answer(&rig, received);
        assert_eq!(egress, PortId::uplink(slot));
        assert_eq!(
            endpoint(&out),
            (
                Ipv4Addr::from(WAN_ADDR[usize::from(slot)]),
                8080,
                Ipv4Addr::from(SERVER),
                40000
            ),
            "the remote sees its own port"
        );
    }
}

#[test]
fn a_tcp_segment_without_syn_opens_nothing() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    for flags in [ACK, SYN_ACK, 0x04] {
        let mut segment = from_internet(WAN_ADDR[0], 40000, 8080, flags, 0);
        assert_eq!(
            rig.process(PortId::uplink(0), &mut segment),
            Verdict::Drop(DropReason::UnsolicitedInbound)
        );
    }
    assert_eq!(rig.flows.table.len(), 0);
}

#[test]
fn any_udp_packet_opens_and_other_ports_stay_unsolicited() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    let mut query = udp(SERVER, 33000, WAN_ADDR[1], 5353, GW_MAC[1]);
    assert_eq!(rig.transmit(PortId::uplink(1), &mut query), PortId::LAN);
    assert_eq!(
        endpoint(&query),
        (Ipv4Addr::from(SERVER), 33000, Ipv4Addr::from(HOST2), 53)
    );
    let mut reply = udp(HOST2, 53, SERVER, 33000, HOST2_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut reply), PortId::uplink(1));
    assert_eq!(endpoint(&reply).0, Ipv4Addr::from(WAN_ADDR[1]));

    let mut elsewhere = udp(SERVER, 33000, WAN_ADDR[1], 5354, GW_MAC[1]);
    assert_eq!(
        rig.process(PortId::uplink(1), &mut elsewhere),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert_eq!(rig.flows.table.len(), 1);
}

/// Several uplinks may share an interface, whose frames the worker names by the first of them: a
/// forwarded flow belongs to the uplink whose address the packet is addressed to, not to the port's
/// name (the XDP program only redirects traffic to addresses of uplinks on the ingress interface),
/// and its replies leave by that uplink.
#[test]
fn a_forwarded_flow_belongs_to_the_uplink_whose_address_it_reached() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    let mut query = udp(SERVER, 33001, WAN_ADDR[0], 5353, GW_MAC[0]);
    assert_eq!(rig.transmit(PortId::uplink(1), &mut query), PortId::LAN);
    let mut reply = udp(HOST2, 53, SERVER, 33001, HOST2_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut reply), PortId::uplink(0));
    assert_eq!(endpoint(&reply).0, Ipv4Addr::from(WAN_ADDR[0]));
}

#[test]
fn a_forward_on_an_uplink_closed_to_new_flows_is_unreachable() {
    let mut rig = Rig::new(forwarding(vec![1, 1]), true);
    rig.set_eligible(false);
    let mut syn = from_internet(WAN_ADDR[0], 40000, 8080, SYN, 0);
    assert_eq!(
        rig.process(PortId::uplink(0), &mut syn),
        Verdict::Drop(DropReason::ForwardUplinkClosed)
    );
    assert_eq!(rig.flows.table.len(), 0);
}

#[test]
fn a_forwarded_flow_holds_no_port_of_a_pool() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    open_through(&rig, 0, 40000);
    let pool = rig.pools[0].pool(IpProtocol::Tcp);
    assert!(pool.mapping_of(Ipv4Addr::from(HOST2), 80).is_none());
    let removed = rig.flows.table.lookup(&flowpin_nat::FlowKey {
        protocol: IpProtocol::Tcp,
        source: Ipv4Addr::from(SERVER),
        source_port: 40000,
        destination: Ipv4Addr::from(WAN_ADDR[0]),
        destination_port: 8080,
    });
    // Releasing it (expiry, failover) touches no pool.
    rig.snapshot
        .release_mapping(&removed.unwrap().value, rig.now_ms);
    assert!(pool.mapping_of(Ipv4Addr::from(HOST2), 80).is_none());
}

/// RFC 5382 REQ-8 / RFC 4787 REQ-9 through a forward: the LAN server sees the client's own
/// external endpoint, and the client sees the forward's address and port.
#[test]
fn a_lan_host_reaches_a_forward_by_hairpinning() {
    let rig = Rig::new(forwarding(vec![1, 1]), true);
    let mut syn = tcp(HOST, 45000, WAN_ADDR[1], 8080, SYN, HOST_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut syn), PortId::LAN);
    let (src, sport, dst, dport) = endpoint(&syn);
    assert!(
        WAN_ADDR.contains(&src.octets()),
        "the source is the client's external address: {src}"
    );
    assert!(
        (20000..=29999).contains(&sport),
        "its external port: {sport}"
    );
    assert_eq!((dst, dport), (Ipv4Addr::from(HOST2), 80));
    assert_eq!(eth(&syn), (HOST2_MAC, LAN_MAC));

    let mut syn_ack = tcp(HOST2, 80, src.octets(), sport, SYN_ACK, HOST2_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut syn_ack), PortId::LAN);
    assert_eq!(
        endpoint(&syn_ack),
        (
            Ipv4Addr::from(WAN_ADDR[1]),
            8080,
            Ipv4Addr::from(HOST),
            45000
        )
    );
    assert_eq!(eth(&syn_ack), (HOST_MAC, LAN_MAC));
    assert!(checksums_valid(&syn_ack, &parse_frame(&syn_ack).unwrap()));

    let mut query = udp(HOST, 45001, WAN_ADDR[0], 5353, HOST_MAC);
    assert_eq!(rig.transmit(PortId::LAN, &mut query), PortId::LAN);
    assert_eq!(endpoint(&query).2, Ipv4Addr::from(HOST2));
    assert_eq!(endpoint(&query).3, 53);
}
