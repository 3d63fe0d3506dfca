//! The per-packet path never allocates: parse, rewrite, ICMP error translation, originated packets,
//! TCP tracking, MSS clamping, the fragment tracker (record, lookup, hold, release, expire),
//! deadlines and port acquire/release are run under a counting global allocator
//! (`allocation-counter`, so this crate still needs no `unsafe`; it counts the measuring thread only,
//! so the test harness's bookkeeping on its other threads cannot show up), and the allocation count must not move.

use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use flowpin_nat::originate::{RouterIdentity, UnreachableKind, build_tcp_rst, build_unreachable};
use flowpin_nat::{
    DatagramId, Direction, FlowActivity, FlowKey, FlowState, FragmentLimits, FragmentTracker,
    MacPair, PortAllocator, PortAllocatorConfig, PortRange, Rewrite, TcpTracker, Timeouts,
    Transport, clamp_mss, parse_frame, translate_icmp_error,
};
use std::net::Ipv4Addr;

const MACS: MacPair = MacPair {
    source: [2, 0, 0, 0, 0, 0xaa],
    destination: [2, 0, 0, 0, 0, 0xbb],
};

#[test]
fn the_per_packet_path_does_not_allocate() {
    // Everything allocated up front (frames, allocator tables, threads' buffers).
    let tcp = build_frame(&FrameSpec::new(
        [192, 168, 1, 10],
        [198, 51, 100, 7],
        L4Spec::Tcp {
            ports: (40000, 443),
            seq: 1,
            ack: 0,
            flags: 2,
            payload: b"",
        },
    ));
    let udp = build_frame(&FrameSpec::new(
        [192, 168, 1, 10],
        [198, 51, 100, 7],
        L4Spec::Udp {
            ports: (5000, 53),
            payload: b"q",
        },
    ));
    let mut frame = tcp.clone();
    let mut wan_udp = udp.clone();
    let mut error = vec![0u8; 200];
    let mut reply = [0u8; 600];
    let allocator = PortAllocator::new(PortAllocatorConfig::new(
        PortRange::new(1024, 65535).expect("range"),
    ));
    let timeouts = Timeouts::default();
    let router = RouterIdentity {
        mac: [2, 0, 0, 0, 0, 1],
        address: Ipv4Addr::new(192, 168, 1, 1),
    };
    let external = Ipv4Addr::new(203, 0, 113, 2);
    let udp_parsed = parse_frame(&udp).expect("udp");
    let udp_snat = Rewrite::new(
        udp_parsed.key,
        FlowKey {
            source: external,
            source_port: 61000,
            ..udp_parsed.key
        },
    )
    .expect("rewrite");
    udp_snat
        .apply(&mut wan_udp, &udp_parsed, MACS)
        .expect("snat");
    let error_template = build_frame(&FrameSpec::new(
        [203, 0, 113, 254],
        external.octets(),
        L4Spec::IcmpError {
            message_type: 11,
            code: 0,
            rest: [0; 4],
            quoted: &wan_udp[14..],
        },
    ));
    error.truncate(error_template.len());
    let mut fragments = FragmentTracker::<Rewrite>::new(FragmentLimits::default());
    // Warm up lazily initialised state (e.g. the allocator's hasher) outside the measured region.
    let warm = allocator
        .acquire(Ipv4Addr::new(10, 9, 9, 9), 1, 0)
        .expect("warm");
    allocator
        .release(warm, Ipv4Addr::new(10, 9, 9, 9), 1, 0)
        .expect("warm");

    let stats = allocation_counter::measure(|| {
        for round in 0..100u16 {
            let parsed = parse_frame(&frame).expect("parse");
            let external_port = allocator
                .acquire(parsed.key.source, parsed.key.source_port + round, 0)
                .expect("acquire");
            let rewrite = Rewrite::new(
                parsed.key,
                FlowKey {
                    source: external,
                    source_port: external_port,
                    ..parsed.key
                },
            )
            .expect("rewrite");
            frame.copy_from_slice(&tcp);
            rewrite.apply(&mut frame, &parsed, MACS).expect("apply");
            clamp_mss(&mut frame, &parsed, 1200);
            let datagram = DatagramId {
                id: round,
                ..DatagramId::of(
                    &flowpin_nat::wire::ipv4::Ipv4Packet::new_checked(&tcp[14..]).expect("ip"),
                )
            };
            fragments
                .hold(datagram, &tcp, u64::from(round))
                .expect("hold");
            fragments.record(datagram, rewrite, u64::from(round));
            assert_eq!(fragments.lookup(&datagram, u64::from(round)), Some(rewrite));
            assert_eq!(fragments.release(&datagram, u64::from(round), |_| {}), 1);
            fragments.expire(u64::from(round));
            frame.copy_from_slice(&tcp);
            let mut tracker = TcpTracker::default();
            let Transport::Tcp(info) = parsed.transport else {
                panic!("tcp")
            };
            let phase = tracker.observe(Direction::Outbound, &info);
            let _ = timeouts.deadline(
                FlowState::Tcp(phase),
                FlowActivity {
                    last_outbound_ms: 1,
                    last_inbound_ms: 0,
                },
            );
            error.copy_from_slice(&error_template);
            let error_parsed = parse_frame(&error).expect("error parse");
            translate_icmp_error(&mut error, &error_parsed, &udp_snat.inverse(), MACS)
                .expect("translate");
            build_unreachable(
                &mut reply,
                &tcp,
                &parsed,
                router,
                UnreachableKind::HostUnreachable,
            )
            .expect("unreachable");
            build_tcp_rst(&mut reply, MACS, None, parsed.key.reversed(), 1, None).expect("rst");
            allocator
                .release(
                    external_port,
                    parsed.key.source,
                    parsed.key.source_port + round,
                    0,
                )
                .expect("release");
        }
    });
    assert_eq!(
        stats.count_total, 0,
        "the per-packet path allocated: {stats:?}"
    );
}
