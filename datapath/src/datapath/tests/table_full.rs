//! A full flow table: early drop of unconfirmed flows (junk, unanswered first packets, flows opened
//! from outside that the LAN host never answered), refused new flows when every flow is confirmed,
//! and the ports early-dropped flows give back.

use super::*;

/// A rig whose flow table holds `capacity` flows (a full table refuses new flows: the default).
fn small_rig(capacity: usize) -> Rig {
    let mut rig = Rig::new(Settings::default(), true);
    rig.flows = Flows::with_capacity(capacity).unwrap();
    rig
}

/// Like [`small_rig`] with `[nat] early_drop_unanswered = true`.
fn small_early_drop_rig(capacity: usize) -> Rig {
    let settings = Settings {
        early_drop_unanswered: true,
        ..Settings::default()
    };
    let mut rig = Rig::new(settings, true);
    rig.flows = Flows::with_capacity(capacity).unwrap();
    rig
}

/// Opens a UDP flow from `host:sport` and answers it from the server; returns its external endpoint.
pub(super) fn answered_udp_flow(rig: &Rig, host: [u8; 4], mac: Mac, sport: u16) -> (Ipv4Addr, u16) {
    let mut out = udp(host, sport, SERVER, 7777, mac);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!(
            "dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        )
    };
    let slot = port.uplink_slot().unwrap();
    let (external, external_port, _, _) = endpoint(&out);
    let mut reply = udp(
        SERVER,
        7777,
        external.octets(),
        external_port,
        GW_MAC[usize::from(slot)],
    );
    assert_eq!(
        rig.process(PortId::uplink(slot), &mut reply).port(),
        Some(PortId::LAN)
    );
    (external, external_port)
}

/// With early drop on, a SYN flood into a full table: each new SYN makes room by early-dropping
/// never-answered flows, so new connections keep getting through, while answered flows are never
/// touched.
#[test]
fn a_full_table_early_drops_unanswered_flows_and_keeps_answered_ones() {
    let rig = small_early_drop_rig(64);
    let answered: Vec<_> = (0..8)
        .map(|i| {
            (
                5000 + i,
                answered_udp_flow(&rig, HOST2, HOST2_MAC, 5000 + i),
            )
        })
        .collect();
    for sport in 30000..30300u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert!(
            rig.process(PortId::LAN, &mut syn).port().is_some(),
            "SYN {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    assert!(rig.flows.table.len() <= 64);
    assert_eq!(rig.drops(DropReason::FlowTableFull), 0);
    let early = rig.counters.flows_early_dropped.get();
    assert!(early >= 300 - 56, "the flood made its own room: {early}");
    for (sport, external) in answered {
        let mut again = udp(HOST2, sport, SERVER, 7777, HOST2_MAC);
        assert!(rig.process(PortId::LAN, &mut again).port().is_some());
        let (source, source_port, _, _) = endpoint(&again);
        assert_eq!(
            (source, source_port),
            external,
            "an answered flow kept its mapping"
        );
    }
    assert_eq!(
        rig.flows.table.len(),
        rig.flows.table.live_flows(rig.now_ms).count(),
        "every counted flow is live"
    );
}

/// With `early_drop_unanswered = false` a full table still makes room by early-dropping unconfirmed
/// flows, whose ports keep their 120 s quarantine (RFC 6888 REQ-8): a SYN flood into a full table
/// still lets every SYN through.
#[test]
fn rfc6888_req8_early_dropped_flows_may_keep_their_ports_quarantined() {
    let mut rig = Rig::new(
        Settings {
            early_drop_unanswered: false,
            ..Settings::default()
        },
        true,
    );
    rig.flows = Flows::with_capacity(64).unwrap();
    let mut first = None;
    for sport in 30000..30300u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        let port = rig.transmit(PortId::LAN, &mut syn);
        first.get_or_insert((port, endpoint(&syn)));
    }
    assert!(rig.counters.flows_early_dropped.get() >= 300 - 64);
    assert_eq!(rig.drops(DropReason::FlowTableFull), 0);
    let (port, (_, external, _, _)) = first.unwrap();
    let slot = usize::from(port.uplink_slot().unwrap());
    assert!(
        rig.pools[slot].tcp.is_quarantined(external, rig.now_ms),
        "the first SYN's flow was dropped and its port quarantined"
    );
}

/// A LAN host sending bare ACKs and FINs to many tuples (no SYN, nobody answers) fills the table with
/// unconfirmed flows: another host's new connection takes the room of one of them, and the junk
/// expires after the transitory timeout, not the established one.
#[test]
fn junk_that_nobody_answers_is_unconfirmed_gives_way_and_expires_soon() {
    let rig = small_rig(64);
    for sport in 1024..1200u16 {
        let flags = if sport % 2 == 0 { ACK } else { 0x11 };
        let mut junk = tcp(HOST, sport, SERVER, 80, flags, HOST_MAC);
        rig.transmit(PortId::LAN, &mut junk);
    }
    assert!(
        rig.counters.flows_early_dropped.get() > 0,
        "the junk filled the table and made room among itself"
    );
    for flow in rig.flows.table.live_flows(rig.now_ms) {
        assert!(flows::is_unconfirmed(&flow.value, flow.protocol_state));
        let deadline = flows::deadline(
            &rig.snapshot.timeouts,
            &flow.value,
            flow.protocol_state,
            flow.last_seen_ms,
        );
        assert_eq!(deadline, flow.last_seen_ms + 240_000, "transitory");
    }
    let mut syn = tcp(HOST2, 40000, SERVER, 443, SYN, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut syn).port().is_some());
    assert_eq!(rig.drops(DropReason::FlowTableFull), 0);
}

/// A connection picked up mid-stream (first segment an ACK, e.g. after a restart) is confirmed by the
/// remote's answer and then keeps the established timeout and its place.
#[test]
fn a_pickup_mid_stream_is_confirmed_by_the_remotes_answer() {
    let rig = small_rig(16);
    let mut ack = tcp(HOST, 5000, SERVER, 80, ACK, HOST_MAC);
    let port = rig.transmit(PortId::LAN, &mut ack);
    let (src, external, _, _) = endpoint(&ack);
    let mut answer = tcp(SERVER, 80, src.octets(), external, ACK, GW_MAC[0]);
    assert_eq!(rig.transmit(port, &mut answer), PortId::LAN);
    let flow = rig.flows.table.live_flows(rig.now_ms).next().unwrap();
    assert!(!flows::is_unconfirmed(&flow.value, flow.protocol_state));
    let deadline = flows::deadline(
        &rig.snapshot.timeouts,
        &flow.value,
        flow.protocol_state,
        flow.last_seen_ms,
    );
    assert_eq!(deadline, flow.last_seen_ms + 7_440_000, "established");
}

/// A flow opened from outside (endpoint-independent filtering) is unconfirmed until its LAN host
/// answers.
#[test]
fn a_flow_opened_from_outside_is_unconfirmed_until_the_lan_host_answers() {
    let mut rig = Rig::new(
        Settings {
            endpoint_independent_filtering: true,
            ..Settings::default()
        },
        true,
    );
    rig.flows = Flows::with_capacity(16).unwrap();
    let (external, external_port) = answered_udp_flow(&rig, HOST, HOST_MAC, 5000);
    let slot = (0..2)
        .find(|&slot| Ipv4Addr::from(WAN_ADDR[slot]) == external)
        .unwrap();
    let stranger = [192, 0, 2, 77];
    let mut inbound = udp(
        stranger,
        9999,
        external.octets(),
        external_port,
        GW_MAC[slot],
    );
    assert_eq!(
        rig.transmit(PortId::uplink(slot as u8), &mut inbound),
        PortId::LAN
    );
    let unconfirmed = |rig: &Rig| {
        rig.flows
            .table
            .live_flows(rig.now_ms)
            .filter(|f| flows::is_unconfirmed(&f.value, f.protocol_state))
            .count()
    };
    assert_eq!(unconfirmed(&rig), 1, "the inbound-opened flow");
    let mut answer = udp(HOST, 5000, stranger, 9999, HOST_MAC);
    assert_eq!(
        rig.transmit(PortId::LAN, &mut answer),
        PortId::uplink(slot as u8)
    );
    assert_eq!(unconfirmed(&rig), 0);
}

/// When every flow was answered, nothing is evicted even with early drop on: the new flow is refused
/// and counted.
#[test]
fn a_table_full_of_answered_flows_refuses_new_ones() {
    let rig = small_early_drop_rig(16);
    let answered: Vec<_> = (0..16)
        .map(|i| answered_udp_flow(&rig, HOST2, HOST2_MAC, 6000 + i))
        .collect();
    let mut unsolicited_udp = udp(HOST, 7000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut unsolicited_udp),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    let mut syn = tcp(HOST, 7001, SERVER, 80, SYN, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut syn),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    assert_eq!(rig.counters.flows_early_dropped.get(), 0);
    assert_eq!(rig.flows.table.len(), answered.len());
}

/// A UDP flow's outbound stamps keep its "answered" mark, and the mark does not disturb its expiry.
#[test]
fn the_replied_mark_survives_outbound_stamps_and_leaves_the_timeout_alone() {
    let mut rig = small_rig(16);
    let external = answered_udp_flow(&rig, HOST, HOST_MAC, 5000);
    rig.now_ms += 10 * flows::OUTBOUND_STAMP_GRANULARITY_MS;
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut out).port().is_some());
    let flow = rig
        .flows
        .table
        .live_flows(rig.now_ms)
        .next()
        .expect("the flow");
    assert_ne!(
        flow.protocol_state & flows::REPLIED,
        0,
        "still marked answered"
    );
    assert!(!flows::is_unconfirmed(&flow.value, flow.protocol_state));
    assert_eq!(
        flow.protocol_state & !(flows::REPLIED | flows::SENT),
        rig.now_ms,
        "stamped now"
    );
    let deadline = flows::deadline(
        &rig.snapshot.timeouts,
        &flow.value,
        flow.protocol_state,
        flow.last_seen_ms,
    );
    assert_eq!(
        deadline,
        rig.now_ms + 300_000,
        "UDP timeout from the last outbound packet"
    );
    let _ = external;
}

/// A flood of new endpoints longer than the NAT range: early-dropped flows free their ports at once
/// (no quarantine for a mapping nobody answered), so the range never runs dry and another host still
/// gets a mapping. With quarantine, 20 000 SYNs (2 uplinks × 10 000 ports) would exhaust it.
#[test]
fn early_dropped_flows_give_their_ports_back_without_quarantine() {
    let rig = small_early_drop_rig(64);
    for sport in 1024..26024u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert!(
            rig.process(PortId::LAN, &mut syn).port().is_some(),
            "SYN {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    let mut syn = tcp(HOST2, 40000, SERVER, 80, SYN, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut syn).port().is_some());
    assert_eq!(rig.counters.nonzero_drops().count(), 0);
}
