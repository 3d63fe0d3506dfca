//! Per-packet costs of the NAT core on a minimum-size frame: 60 bytes in memory (Ethernet + IPv4 +
//! UDP + 18 bytes of payload; 64 on the wire with the FCS). Also the per-new-flow cost of the port
//! allocator. Run: `cargo bench -p flowpin-nat --bench datapath`.

use criterion::{Criterion, criterion_group, criterion_main};
use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use flowpin_nat::{
    FlowKey, MacPair, PortAllocator, PortAllocatorConfig, PortRange, Rewrite, Transport,
    parse_frame, translate_icmp_error,
};
use std::hint::black_box;
use std::net::Ipv4Addr;

const MACS: MacPair = MacPair {
    source: [2, 0, 0, 0, 0, 0xaa],
    destination: [2, 0, 0, 0, 0, 0xbb],
};
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

fn min_frame() -> Vec<u8> {
    let frame = build_frame(&FrameSpec::new(
        [192, 168, 1, 10],
        [198, 51, 100, 7],
        L4Spec::Udp {
            ports: (5000, 4433),
            payload: &[0x5A; 18],
        },
    ));
    assert_eq!(frame.len(), 60);
    frame
}

fn snat_rewrite(key: FlowKey) -> Rewrite {
    Rewrite::new(
        key,
        FlowKey {
            source: EXTERNAL,
            source_port: 61000,
            ..key
        },
    )
    .expect("rewrite")
}

fn benches(c: &mut Criterion) {
    let template = min_frame();
    let parsed = parse_frame(&template).expect("parse");
    let rewrite = snat_rewrite(parsed.key);

    c.bench_function("parse_frame/udp_60B", |b| {
        b.iter(|| parse_frame(black_box(&template)))
    });

    let mut frame = template.clone();
    c.bench_function("copy_60B (baseline of the next two)", |b| {
        b.iter(|| {
            frame.copy_from_slice(black_box(&template));
            black_box(&mut frame);
        });
    });
    c.bench_function("rewrite_apply/udp_60B (+copy)", |b| {
        b.iter(|| {
            frame.copy_from_slice(black_box(&template));
            rewrite.apply(black_box(&mut frame), black_box(&parsed), MACS)
        });
    });
    c.bench_function("full_snat/parse+apply_udp_60B (+copy)", |b| {
        b.iter(|| {
            frame.copy_from_slice(black_box(&template));
            let parsed = parse_frame(&frame).expect("parse");
            rewrite.apply(black_box(&mut frame), &parsed, MACS)
        });
    });

    let mut wan = template.clone();
    rewrite.apply(&mut wan, &parsed, MACS).expect("snat");
    let error_template = build_frame(&FrameSpec::new(
        [203, 0, 113, 254],
        EXTERNAL.octets(),
        L4Spec::IcmpError {
            message_type: 11,
            code: 0,
            rest: [0; 4],
            quoted: &wan[14..],
        },
    ));
    let error_parsed = parse_frame(&error_template).expect("parse");
    let Transport::IcmpError(_) = error_parsed.transport else {
        panic!("not an ICMP error")
    };
    let inbound = rewrite.inverse();
    let mut error = error_template.clone();
    c.bench_function("icmp_error/parse+translate (+copy)", |b| {
        b.iter(|| {
            error.copy_from_slice(black_box(&error_template));
            let parsed = parse_frame(&error).expect("parse");
            translate_icmp_error(black_box(&mut error), &parsed, &inbound, MACS)
        });
    });

    for candidates in [8, 32, 128] {
        let mut config = PortAllocatorConfig::new(PortRange::new(1024, 32767).expect("range"));
        config.quarantine_ms = 0;
        config.candidates = candidates;
        let allocator = PortAllocator::new(config);
        let mut next = 0u32;
        c.bench_function(
            &format!("port_alloc/acquire+release_new_endpoint_k{candidates}"),
            |b| {
                b.iter(|| {
                    next = next.wrapping_add(1);
                    let host = Ipv4Addr::from_bits(0x0A00_0000 | (next & 0xFF));
                    let port = 40000 + (next >> 8 & 0x3FFF) as u16;
                    let external = allocator.acquire(host, port, 0).expect("acquire");
                    allocator.release(external, host, port, 0).expect("release")
                });
            },
        );
    }
}

criterion_group!(nat, benches);
criterion_main!(nat);
