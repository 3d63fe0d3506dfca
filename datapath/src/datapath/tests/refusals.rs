//! New flows that cannot leave (no usable uplink, no free port, a host over its quota): dropped under
//! their reason, nothing evicted, and the host told by an ICMP answer within a per-worker budget.

use super::*;

/// The lab's rate limit for the viability guard's answers: 10 per second, 3 at once.
fn limited() -> Settings {
    Settings {
        net_unreachable: RateLimit {
            per_second: 10,
            burst: 3,
        },
        ..Settings::default()
    }
}

#[test]
fn with_no_usable_uplink_new_flows_get_net_unreachable_and_pinned_flows_stay() {
    let mut rig = Rig::new(limited(), true);
    let mut pinned = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Some(uplink) = rig.process(PortId::LAN, &mut pinned).port() else {
        panic!("the first flow leaves while uplinks are healthy")
    };
    rig.set_eligible(false);
    // The pinned flow still leaves by its uplink, both ways: nothing is evicted.
    let mut again = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    assert_eq!(rig.process(PortId::LAN, &mut again).port(), Some(uplink));
    let (src, sport, _, _) = endpoint(&again);
    let mut reply = udp(SERVER, 7777, src.octets(), sport, GW_MAC[0]);
    assert_eq!(rig.process(uplink, &mut reply).port(), Some(PortId::LAN));
    // A new flow (UDP, TCP SYN, echo request) is dropped and its host told, nothing created.
    let mut syn_spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Tcp {
            ports: (40000, 80),
            seq: 1,
            ack: 0,
            flags: 0x02,
            payload: b"",
        },
    );
    syn_spec.source_mac = HOST_MAC;
    let mut echo_spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Echo {
            request: true,
            id: 9,
            seq: 1,
        },
    );
    echo_spec.source_mac = HOST_MAC;
    for offending in [
        udp(HOST, 5001, SERVER, 7777, HOST_MAC),
        build_frame(&syn_spec),
        build_frame(&echo_spec),
    ] {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame).port(),
            Some(PortId::LAN)
        );
        assert_net_unreachable(&frame, &offending);
    }
    assert_eq!(rig.drops(DropReason::NoUplink), 3);
    assert_eq!(rig.counters.originated.get(), 3);
    assert_eq!(rig.flows.table.len(), 1, "only the pinned flow");
    // An uplink back: new flows leave again.
    rig.set_eligible(true);
    let mut new = udp(HOST, 5002, SERVER, 7777, HOST_MAC);
    assert!(
        rig.process(PortId::LAN, &mut new)
            .port()
            .is_some_and(|p| p != PortId::LAN)
    );
}

#[test]
fn net_unreachable_answers_are_rate_limited_per_worker() {
    let mut rig = Rig::new(limited(), true);
    rig.set_eligible(false);
    let answered = |rig: &Rig, first_port: u16| {
        (0..20)
            .filter(|i| {
                let mut frame = udp(HOST, first_port + i, SERVER, 7777, HOST_MAC);
                rig.process(PortId::LAN, &mut frame).port() == Some(PortId::LAN)
            })
            .count()
    };
    assert_eq!(answered(&rig, 1000), 3, "the burst");
    assert_eq!(rig.drops(DropReason::NoUplink), 20, "every one dropped");
    assert_eq!(rig.counters.net_unreachable_suppressed.get(), 17);
    rig.now_ms += 99;
    assert_eq!(answered(&rig, 2000), 0, "10 per second: not before 100 ms");
    rig.now_ms += 1;
    assert_eq!(answered(&rig, 3000), 1);
    rig.now_ms += 60_000;
    assert_eq!(answered(&rig, 4000), 3, "refilled to the burst, not beyond");
    // Switched off: dropped and counted, never answered.
    let mut off = Rig::new(
        Settings {
            net_unreachable: RateLimit {
                per_second: 0,
                burst: 50,
            },
            ..Settings::default()
        },
        true,
    );
    off.set_eligible(false);
    assert_eq!(answered(&off, 1000), 0);
    assert_eq!(off.drops(DropReason::NoUplink), 20);
}

/// One uplink with a NAT range of four ports, and a port-exhaustion answer budget of 10/s, 3 at once.
fn four_ports() -> Settings {
    Settings {
        weights: vec![1],
        port_range: (20000, 20003),
        port_exhausted_icmp: RateLimit {
            per_second: 10,
            burst: 3,
        },
        ..Settings::default()
    }
}

/// RFC 4787 / 5382 let a NAT that cannot create a mapping say so: the new flow (and a new hairpin
/// flow, which needs a mapping too) is dropped under `nat_ports_exhausted`, nothing is evicted, and
/// the host gets an ICMP administratively prohibited (3/13), rate limited by its own bucket.
#[test]
fn a_new_flow_without_a_free_port_gets_administratively_prohibited_within_its_budget() {
    let mut rig = Rig::new(four_ports(), true);
    // HOST2 holds three ports (one a hairpin target), HOST the last one: each within its fair
    // share, so the range, not a share, is what runs out.
    let mut target = udp(HOST2, 6000, SERVER, 3478, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut target).port().is_some());
    let (target_ip, target_port, _, _) = endpoint(&target);
    for sport in 6001..6003 {
        let mut more = udp(HOST2, sport, SERVER, 3478, HOST2_MAC);
        assert!(rig.process(PortId::LAN, &mut more).port().is_some());
    }
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut out).port(),
        Some(PortId::uplink(0))
    );
    let exhausted = DropReason::NatAllocation(flowpin_nat::AllocError::Exhausted);
    let outbound = udp(HOST, 5002, SERVER, 7777, HOST_MAC);
    let hairpin = udp(HOST, 5004, target_ip.octets(), target_port, HOST_MAC);
    for offending in [outbound.clone(), hairpin] {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame).port(),
            Some(PortId::LAN),
            "answered on the LAN"
        );
        assert_unreachable_to_host(&frame, &offending, 13);
    }
    assert_eq!(rig.drops(exhausted), 2, "counted under the NAT reason");
    assert_eq!(rig.counters.originated.get(), 2);
    assert_eq!(rig.flows.table.len(), 4, "nothing evicted, nothing created");
    // The budget: one more token of the burst, then suppressed until the bucket refills.
    let answered = |rig: &Rig, tries: u16| {
        (0..tries)
            .filter(|i| {
                let mut frame = udp(HOST, 5100 + i, SERVER, 7777, HOST_MAC);
                rig.process(PortId::LAN, &mut frame).port() == Some(PortId::LAN)
            })
            .count()
    };
    assert_eq!(answered(&rig, 5), 1);
    assert_eq!(rig.counters.port_exhausted_icmp_suppressed.get(), 4);
    assert_eq!(
        rig.counters.net_unreachable_suppressed.get(),
        0,
        "its own bucket"
    );
    assert_eq!(rig.drops(exhausted), 7);
    rig.now_ms += 100;
    assert_eq!(answered(&rig, 5), 1, "10 per second");
    // Switched off: dropped and counted, never answered.
    let off = Rig::new(
        Settings {
            port_exhausted_icmp: RateLimit {
                per_second: 0,
                burst: 3,
            },
            ..four_ports()
        },
        true,
    );
    for (host, mac, sport) in [(HOST2, HOST2_MAC, 5010), (HOST2, HOST2_MAC, 5011)]
        .into_iter()
        .chain([(HOST2, HOST2_MAC, 5012), (HOST, HOST_MAC, 5013)])
    {
        let mut out = udp(host, sport, SERVER, 7777, mac);
        assert!(off.process(PortId::LAN, &mut out).port().is_some());
    }
    let mut frame = outbound;
    assert_eq!(
        off.process(PortId::LAN, &mut frame),
        Verdict::Drop(exhausted)
    );
    assert_eq!(off.counters.originated.get(), 0);
}

/// RFC 6888 REQ-4: `[nat] ports_per_host` bounds one host's mappings; the host over its quota is
/// told (3/13) and another host still gets ports.
#[test]
fn rfc6888_req4_a_host_over_its_port_quota_is_refused_and_told_while_others_get_ports() {
    let settings = Settings {
        port_range: (20000, 20999),
        ports_per_host: 2,
        ..four_ports()
    };
    let rig = Rig::new(settings, true);
    for sport in 5000..5002 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut out).port(),
            Some(PortId::uplink(0))
        );
    }
    // A second flow of a mapped endpoint takes no quota (EIM: the same mapping).
    let mut same_endpoint = udp(HOST, 5000, [192, 0, 2, 9], 53, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut same_endpoint).port(),
        Some(PortId::uplink(0))
    );
    let offending = udp(HOST, 5002, SERVER, 7777, HOST_MAC);
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(PortId::LAN, &mut frame).port(),
        Some(PortId::LAN)
    );
    assert_unreachable_to_host(&frame, &offending, 13);
    assert_eq!(
        rig.drops(DropReason::NatAllocation(
            flowpin_nat::AllocError::QuotaExceeded
        )),
        1
    );
    let mut other_host = udp(HOST2, 5002, SERVER, 7777, HOST2_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut other_host).port(),
        Some(PortId::uplink(0))
    );
}
