//! Uplinks on macvlan devices over one router NIC (issue 15 §1): uplink k is a macvlan `wank` (bridge
//! mode, a MAC of its own) on the router's veth `wan0`, which a bridge joins to every ISP. The uplink
//! suite (`suite/uplinks.rs`) passes on it: new UDP endpoints split by weight, a long iperf3 flow
//! pinned, EIM, failover by black-hole and recovery, with no leaked or wrong-uplink source.

#[path = "suite/uplinks.rs"]
mod uplinks;

use flowpin_lab::UplinkWiring;

const WIRING: UplinkWiring = UplinkWiring::Macvlan;

#[test]
fn macvlan_new_endpoints_split_by_weight() {
    uplinks::new_endpoints_split_by_weight(WIRING);
}

#[test]
fn macvlan_a_long_flow_stays_on_one_uplink() {
    uplinks::a_long_flow_stays_on_one_uplink(WIRING);
}

#[test]
fn macvlan_one_socket_has_one_external_endpoint() {
    uplinks::one_socket_has_one_external_endpoint(WIRING);
}

#[test]
fn macvlan_blackholed_isp_fails_over_and_recovers() {
    uplinks::blackholed_isp_fails_over_and_recovers(WIRING);
}
