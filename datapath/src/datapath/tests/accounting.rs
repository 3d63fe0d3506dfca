//! What the datapath counts per uplink and per drop reason.

use super::*;

#[test]
fn tcp_handshakes_started_and_answered_are_counted_on_their_uplink() {
    let rig = Rig::new(Settings::default(), true);
    let started = |rig: &Rig| rig.uplink_sum(|c| c.tcp_handshakes_started.get());
    let answered = |rig: &Rig| rig.uplink_sum(|c| c.tcp_handshakes_answered.get());
    let mut syn = tcp(HOST, 40000, SERVER, 80, SYN, HOST_MAC);
    let Some(port) = rig.process(PortId::LAN, &mut syn).port() else {
        panic!("the SYN leaves")
    };
    let slot = usize::from(port.uplink_slot().unwrap());
    let (src, sport, _, _) = endpoint(&syn);
    assert_eq!(rig.counters.uplinks[slot].tcp_handshakes_started.get(), 1);
    assert_eq!(answered(&rig), 0);
    // A retransmitted SYN opens nothing new; a flow picked up mid-stream is no handshake.
    let mut again = tcp(HOST, 40000, SERVER, 80, SYN, HOST_MAC);
    rig.process(PortId::LAN, &mut again);
    let mut midstream = tcp(HOST, 40001, SERVER, 80, ACK, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut midstream).port().is_some());
    assert_eq!(started(&rig), 1);
    // The SYN-ACK answers it, once, on its uplink; a retransmitted one counts no more.
    for _ in 0..2 {
        let mut syn_ack = tcp(SERVER, 80, src.octets(), sport, SYN_ACK, GW_MAC[slot]);
        assert_eq!(rig.process(port, &mut syn_ack).port(), Some(PortId::LAN));
    }
    assert_eq!(rig.counters.uplinks[slot].tcp_handshakes_answered.get(), 1);
    assert_eq!(answered(&rig), 1);
    // A SYN that gets no answer stays started only.
    let mut lonely = tcp(HOST, 40002, SERVER, 80, SYN, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut lonely).port().is_some());
    assert_eq!((started(&rig), answered(&rig)), (2, 1));
    // UDP flows are no handshakes.
    let mut datagram = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    rig.process(PortId::LAN, &mut datagram);
    assert_eq!(started(&rig), 2);
}

#[test]
fn malformed_frames_are_counted_under_their_own_reason() {
    let rig = Rig::new(Settings::default(), true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    out[14 + 10] ^= 0xff; // break the IPv4 header checksum
    assert_eq!(
        rig.process(PortId::LAN, &mut out),
        Verdict::Drop(DropReason::Malformed(
            flowpin_nat::ParseError::Ipv4BadHeaderChecksum
        ))
    );
    let mut runt = vec![0u8; 10];
    assert!(matches!(
        rig.process(PortId::LAN, &mut runt),
        Verdict::Drop(DropReason::Malformed(_))
    ));
}
