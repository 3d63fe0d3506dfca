//! MSS clamping on an uplink: SYNs leaving and SYN-ACKs entering through it, nothing else.

use super::*;
use flowpin_nat::checksum::{internet_checksum, ipv4_pseudo_header_sum};
use flowpin_nat::wire::ipv4::Ipv4Packet;

/// A TCP segment (see [`tcp`]) that carries an MSS option announcing `mss`, checksums valid.
fn tcp_with_mss(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    mac: Mac,
    mss: u16,
) -> Vec<u8> {
    let mut frame = tcp(src, sport, dst, dport, flags, mac);
    let l4 = 34;
    let [high, low] = mss.to_be_bytes();
    frame.splice(l4 + 20..l4 + 20, [2, 4, high, low]);
    frame[l4 + 12] = 6 << 4;
    let total = u16::try_from(frame.len() - 14).unwrap();
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
    frame[l4 + 16..l4 + 18].fill(0);
    let pseudo = ipv4_pseudo_header_sum(src, dst, 6, u16::try_from(frame.len() - l4).unwrap());
    let checksum = internet_checksum(&frame[l4..], pseudo);
    frame[l4 + 16..l4 + 18].copy_from_slice(&checksum.to_be_bytes());
    frame
}

fn announced_mss(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34 + 22], frame[34 + 23]])
}

fn clamped(rig: &Rig) -> u64 {
    rig.uplink_sum(|c| c.mss_clamped.get())
}

#[test]
fn a_syn_leaving_and_its_syn_ack_entering_are_clamped_to_the_uplinks_limit() {
    let mut rig = Rig::new(Settings::default(), true);
    for uplink in rig.snapshot.uplinks.iter_mut().flatten() {
        uplink.mss_clamp = Some(1452);
    }
    let mut syn = tcp_with_mss(HOST, 40000, SERVER, 80, SYN, HOST_MAC, 1460);
    let port = rig.transmit(PortId::LAN, &mut syn);
    let slot = usize::from(port.uplink_slot().expect("out of an uplink"));
    assert_eq!(announced_mss(&syn), 1452);
    assert!(checksums_valid(&syn, &parse_frame(&syn).unwrap()));
    assert_eq!(rig.counters.uplinks[slot].mss_clamped.get(), 1);
    let (src, sport, _, _) = endpoint(&syn);
    let mut syn_ack = tcp_with_mss(SERVER, 80, src.octets(), sport, SYN_ACK, GW_MAC[slot], 8960);
    assert_eq!(rig.transmit(port, &mut syn_ack), PortId::LAN);
    assert_eq!(announced_mss(&syn_ack), 1452);
    assert!(checksums_valid(&syn_ack, &parse_frame(&syn_ack).unwrap()));
    assert_eq!(clamped(&rig), 2);
    // An MSS already below the limit, and segments without SYN, pass as they are.
    let mut small = tcp_with_mss(HOST, 40001, SERVER, 80, SYN, HOST_MAC, 1200);
    rig.transmit(PortId::LAN, &mut small);
    assert_eq!(announced_mss(&small), 1200);
    let mut ack = tcp_with_mss(HOST, 40000, SERVER, 80, ACK, HOST_MAC, 1460);
    rig.transmit(PortId::LAN, &mut ack);
    assert_eq!(announced_mss(&ack), 1460);
    assert_eq!(clamped(&rig), 2);
}

#[test]
fn an_uplink_without_a_clamp_leaves_the_mss_alone() {
    let rig = Rig::new(Settings::default(), true);
    let mut syn = tcp_with_mss(HOST, 40000, SERVER, 80, SYN, HOST_MAC, 1460);
    rig.transmit(PortId::LAN, &mut syn);
    assert_eq!(announced_mss(&syn), 1460);
    assert_eq!(clamped(&rig), 0);
}
