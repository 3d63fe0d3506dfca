//! Fuzzes everything that touches untrusted frames: `parse_frame`, `Rewrite::apply`,
//! `translate_icmp_error`, `clamp_mss`, `build_unreachable` and `build_tcp_rst`.
//!
//! Input: 9 bytes choosing the outgoing tuple (addresses kept non-martian), then the frame.
//! Properties: nothing panics; every emitted frame parses again, and each checksum that was valid in
//! the input (IPv4 header, L4, quoted IPv4 header) is valid in the output.
#![no_main]

use flowpin_nat::originate::{RouterIdentity, UnreachableKind, build_tcp_rst, build_unreachable};
use flowpin_nat::verify::{ChecksumReport, checksum_report, checksums_valid};
use flowpin_nat::{
    FlowKey, IpProtocol, MacPair, MssClamp, Rewrite, Transport, clamp_mss, parse_frame, translate_icmp_error,
};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

const MACS: MacPair = MacPair { source: [2, 0, 0, 0, 0, 0xaa], destination: [2, 0, 0, 0, 0, 0xbb] };

/// A unicast, non-martian address from four fuzz bytes.
fn address(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(1 + b[0] % 223, b[1], b[2], b[3]).to_bits().max(0x0100_0000).into()
}

fn target_key(from: FlowKey, selector: &[u8]) -> FlowKey {
    let port = u16::from_be_bytes([selector[4], selector[5]]);
    let mut to = from;
    match selector[8] % 3 {
        0 => {
            to.source = address(&selector[0..4]);
            to.source_port = port;
        }
        1 => {
            to.destination = address(&selector[0..4]);
            to.destination_port = port;
        }
        _ => {
            to.source = address(&selector[0..4]);
            to.destination = address(&[selector[6], selector[7], selector[1], selector[0]]);
            to.source_port = port;
            to.destination_port = u16::from_be_bytes([selector[7], selector[6]]);
        }
    }
    if to.protocol == IpProtocol::Icmp {
        to.destination_port = to.source_port;
    }
    if (to.source.octets()[0] == 127) || to.destination.octets()[0] == 127 {
        return from;
    }
    to
}

fn assert_preserved(input: ChecksumReport, output: ChecksumReport) {
    assert!(output.ip, "IPv4 header checksum broken");
    assert!(!input.l4 || output.l4, "valid L4 checksum became invalid");
    assert!(input.embedded_ip != Some(true) || output.embedded_ip == Some(true), "quoted header checksum broken");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        let _ = parse_frame(data);
        return;
    }
    let (selector, frame) = data.split_at(9);
    let Ok(parsed) = parse_frame(frame) else { return };
    let before = checksum_report(frame, &parsed);
    assert!(before.ip, "parse_frame accepted a bad IPv4 header checksum");

    let mut out = frame.to_vec();
    let from = match parsed.transport {
        Transport::IcmpError(error) => error.embedded.reversed(),
        _ => parsed.key,
    };
    let Ok(rewrite) = Rewrite::new(from, target_key(from, selector)) else { panic!("rewrite refused") };
    let result = match parsed.transport {
        Transport::IcmpError(_) => translate_icmp_error(&mut out, &parsed, &rewrite, MACS),
        _ => rewrite.apply(&mut out, &parsed, MACS),
    };
    match result {
        Ok(()) => {
            let reparsed = parse_frame(&out).expect("translated frame must parse");
            assert_preserved(before, checksum_report(&out, &reparsed));
            let limit = u16::from_be_bytes([selector[2], selector[3]]);
            let unclamped = out.clone();
            match clamp_mss(&mut out, &reparsed, limit) {
                MssClamp::Unchanged => assert_eq!(out, unclamped, "an unchanged clamp changed the frame"),
                MssClamp::Lowered { from } => assert!(from > limit, "raised the MSS {from} to {limit}"),
            }
            let clamped = parse_frame(&out).expect("clamped frame must parse");
            assert_eq!(clamped, reparsed, "clamping changed what the frame parses as");
            assert_preserved(before, checksum_report(&out, &clamped));
        }
        Err(_) => assert_eq!(out, frame, "a refused translation changed the frame"),
    }

    let router = RouterIdentity { mac: [2, 0, 0, 0, 0, 1], address: Ipv4Addr::new(192, 168, 1, 1) };
    let mut reply = [0u8; 640];
    let kind = UnreachableKind::FragmentationNeeded { next_hop_mtu: u16::from_be_bytes([selector[0], selector[1]]) };
    if let Ok(len) = build_unreachable(&mut reply, frame, &parsed, router, kind) {
        let built = parse_frame(&reply[..len]).expect("originated ICMP error must parse");
        assert!(checksums_valid(&reply[..len], &built), "originated ICMP error has a bad checksum");
    }
    if parsed.key.protocol == IpProtocol::Tcp {
        let seq = u32::from_be_bytes([selector[0], selector[1], selector[2], selector[3]]);
        let len = build_tcp_rst(&mut reply, MACS, None, parsed.key.reversed(), seq, Some(seq)).expect("rst");
        let built = parse_frame(&reply[..len]).expect("RST must parse");
        assert!(checksums_valid(&reply[..len], &built), "RST has a bad checksum");
    }
});
