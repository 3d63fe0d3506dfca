//! A host's fair share of the flow table: a flooding host is held to its share and gives way to
//! itself, a host over its share with nothing to give way is refused under its own reason, a
//! neighbour is served throughout, and the per-host counts follow every removal.

use super::table_full::answered_udp_flow;
use super::*;
use crate::datapath::FlowShare;

/// A rig with a `capacity`-flow table under pressure from half full, with a floor of one flow.
fn share_rig(capacity: usize) -> Rig {
    let settings = Settings {
        flow_share: FlowShare {
            pressure_percent: 50,
            floor: 1,
        },
        ..Settings::default()
    };
    let mut rig = Rig::new(settings, true);
    rig.flows = Flows::with_capacity(capacity).unwrap();
    rig
}

/// The live flows of `host` in the table, counted by walking it.
fn flows_of(rig: &Rig, host: [u8; 4]) -> u32 {
    let host = Ipv4Addr::from(host);
    let count = rig
        .flows
        .table
        .live_flows(rig.now_ms)
        .filter(|flow| flow.value.internal_endpoint().0 == host)
        .count();
    u32::try_from(count).unwrap()
}

/// The host counts agree with the table.
fn assert_counts_match_the_table(rig: &Rig) {
    for host in [HOST, HOST2] {
        assert_eq!(
            rig.flows.hosts.held(Ipv4Addr::from(host)),
            flows_of(rig, host),
            "{host:?}'s count"
        );
    }
}

/// One host sends SYNs nobody answers to 300 tuples through a 64-flow table under pressure from 32:
/// once over its share it replaces its own unconfirmed flows, so the table never fills, the
/// neighbour's answered flows stay and its 20 new flows all get in, the neighbour held to its own
/// share (64 / 3) in turn.
#[test]
fn a_flooding_host_is_held_to_its_share_and_gives_way_to_itself() {
    let rig = share_rig(64);
    let answered: Vec<_> = (0..4)
        .map(|i| answered_udp_flow(&rig, HOST2, HOST2_MAC, 5000 + i))
        .collect();
    for sport in 30000..30300u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert!(
            rig.process(PortId::LAN, &mut syn).port().is_some(),
            "SYN {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    assert_counts_match_the_table(&rig);
    let flooder = flows_of(&rig, HOST);
    assert_eq!(flooder, 28, "free up to 32 flows in use, then in place");
    assert_eq!(
        rig.counters.flows_early_dropped.get(),
        300 - 28,
        "one for one"
    );
    assert_eq!(rig.drops(DropReason::FlowTableFull), 0, "never full");
    for sport in 6000..6020u16 {
        let mut out = udp(HOST2, sport, SERVER, 7777, HOST2_MAC);
        assert!(
            rig.process(PortId::LAN, &mut out).port().is_some(),
            "the neighbour's flow {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        flows_of(&rig, HOST2),
        21,
        "4 answered, then free up to 64 / 3"
    );
    assert_eq!(
        flows_of(&rig, HOST),
        flooder,
        "the neighbour took nothing of the flooder's"
    );
    for (i, external) in answered.into_iter().enumerate() {
        let mut again = udp(HOST2, 5000 + i as u16, SERVER, 7777, HOST2_MAC);
        assert!(rig.process(PortId::LAN, &mut again).port().is_some());
        let (source, source_port, _, _) = endpoint(&again);
        assert_eq!((source, source_port), external, "answered flows kept");
    }
    assert_counts_match_the_table(&rig);
}

/// A host whose flows are all answered reaches its share of a table under pressure: its next flow
/// is refused (`host_over_flow_share`), nothing is evicted, and another host still gets in.
#[test]
fn a_host_over_its_share_with_only_confirmed_flows_is_refused_and_the_neighbour_served() {
    let rig = share_rig(64);
    for sport in 0..32 {
        answered_udp_flow(&rig, HOST, HOST_MAC, 5000 + sport);
    }
    let mut refused = udp(HOST, 6000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut refused),
        Verdict::Drop(DropReason::HostOverFlowShare),
        "alone at 32 of 64 flows: its share is 64 / 2"
    );
    assert_eq!(rig.drops(DropReason::HostOverFlowShare), 1);
    assert_eq!(rig.counters.flows_early_dropped.get(), 0, "nothing evicted");
    assert_eq!(flows_of(&rig, HOST), 32);
    let mut neighbour = udp(HOST2, 6000, SERVER, 7777, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut neighbour).port().is_some());
    assert_counts_match_the_table(&rig);
}

/// Counts leave with the flows whatever removes them: a removal by handle (failover, reload) and
/// expiry; a host whose last flow is gone holds no entry.
#[test]
fn the_counts_follow_removal_and_expiry() {
    let mut rig = share_rig(64);
    for sport in 30000..30010u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        rig.transmit(PortId::LAN, &mut syn);
    }
    answered_udp_flow(&rig, HOST2, HOST2_MAC, 5000);
    let handles: Vec<_> = rig
        .flows
        .table
        .live_flows(rig.now_ms)
        .filter(|flow| flow.value.internal_endpoint().0 == Ipv4Addr::from(HOST))
        .map(|flow| flow.handle)
        .take(4)
        .collect();
    for handle in handles {
        let value = rig.flows.remove(handle).expect("live");
        rig.snapshot.release_mapping(&value, rig.now_ms);
        assert!(rig.flows.remove(handle).is_none(), "removed once");
    }
    assert_eq!(rig.flows.hosts.held(Ipv4Addr::from(HOST)), 6);
    assert_counts_match_the_table(&rig);
    rig.now_ms += 8_000_000;
    let (now, snapshot, timeouts) = (rig.now_ms, &rig.snapshot, rig.snapshot.timeouts);
    let swept = rig.flows.sweep(
        now,
        64,
        |value, state, last_seen| {
            now >= crate::datapath::flows::deadline(&timeouts, value, state, last_seen)
        },
        |value| snapshot.release_mapping(value, now),
    );
    assert_eq!(swept.removed, 7);
    assert_eq!(rig.flows.hosts.live(), 0, "no host holds an entry");
    assert_counts_match_the_table(&rig);
}
