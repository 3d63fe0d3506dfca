//! Placement of new flows on uplinks: spread by weight, pinned for life, and an internal endpoint
//! with a live mapping kept on its uplink under the stickiness modes that promise it.

use super::*;

#[test]
fn new_flows_spread_by_weight_and_each_stays_pinned() {
    let settings = Settings {
        weights: vec![3, 1],
        ..Settings::default()
    };
    let mut rig = Rig::new(settings, true);
    // 4,000 flows of one host: below 75 % of the table, where the host's fair share does not apply.
    rig.flows = Flows::with_capacity(1 << 13).unwrap();
    let mut per_uplink = [0usize; 2];
    for sport in 30000..34000u16 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut out);
        let slot = usize::from(port.uplink_slot().unwrap());
        per_uplink[slot] += 1;
        let (src, _, _, _) = endpoint(&out);
        assert_eq!(
            src,
            Ipv4Addr::from(WAN_ADDR[slot]),
            "never another uplink's address"
        );
        // The second packet of the flow takes the same uplink.
        let mut again = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut again),
            Verdict::Transmit {
                port,
                len: again.len()
            }
        );
    }
    let share = per_uplink[0] as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.05, "3:1 split gave {per_uplink:?}");
}

/// RFC 4787 REQ-1 across a weight change: the next flow of an internal endpoint whose mapping lives on
/// uplink A stays on A with the same external endpoint, though the new weights would choose B for it.
#[test]
fn rfc4787_req1_an_endpoints_new_flows_follow_its_live_mapping_after_a_weight_change() {
    let mut rig = Rig::new(Settings::default(), true);
    let mut first = udp(HOST, 40000, SERVER, 7777, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut first);
    let slot = usize::from(port.uplink_slot().unwrap());
    let (external, external_port, _, _) = endpoint(&first);
    // Weights that put nearly every key on the other uplink.
    let other = 1 - slot;
    let weights = if other == 0 { (1000, 1) } else { (1, 1000) };
    rig.settings.weights = vec![weights.0, weights.1];
    rig.set_eligible(true);
    let mut fresh_on_other = 0;
    for sport in 41000..41100u16 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut out);
        fresh_on_other += usize::from(usize::from(port.uplink_slot().unwrap()) == other);
    }
    assert!(
        fresh_on_other > 95,
        "the new weights are in force: {fresh_on_other}/100"
    );
    for destination in [[203, 0, 113, 11], [203, 0, 113, 12], [192, 0, 2, 33]] {
        let mut next = udp(HOST, 40000, destination, 53, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut next);
        assert_eq!(usize::from(port.uplink_slot().unwrap()), slot);
        let (source, source_port, _, _) = endpoint(&next);
        assert_eq!(
            (source, source_port),
            (external, external_port),
            "one external endpoint"
        );
    }
}

/// The live-mapping override keeps EIM only for the stickiness modes that promise it (`endpoint`,
/// `host`): under `flow` (and `host-dest`), documented to break EIM, one internal endpoint's flows to
/// many destinations spread by their own key instead of all following its first mapping.
#[test]
fn rfc4787_req1_only_eim_keeping_stickiness_modes_follow_an_endpoints_live_mapping() {
    let shares = |stickiness: Stickiness| {
        let settings = Settings {
            stickiness,
            ..Settings::default()
        };
        let rig = Rig::new(settings, true);
        let mut per_uplink = [0usize; 2];
        for i in 0..200u16 {
            let destination = [198, 18, (i >> 8) as u8, i as u8];
            let mut out = udp(HOST, 40000, destination, 443, HOST_MAC);
            let port = rig.transmit(PortId::LAN, &mut out);
            let slot = usize::from(port.uplink_slot().unwrap());
            assert_eq!(endpoint(&out).0, Ipv4Addr::from(WAN_ADDR[slot]));
            per_uplink[slot] += 1;
        }
        per_uplink
    };
    let flow = shares(Stickiness::Flow);
    assert!(
        flow.iter().all(|&n| n >= 50),
        "flow stickiness spreads one endpoint's flows: {flow:?}"
    );
    let host_dest = shares(Stickiness::HostDest);
    assert!(
        host_dest.iter().all(|&n| n >= 50),
        "host-dest spreads by destination: {host_dest:?}"
    );
    for eim in [Stickiness::Endpoint, Stickiness::Host] {
        let split = shares(eim);
        assert!(split.contains(&200), "{eim} keeps one uplink: {split:?}");
    }
}
