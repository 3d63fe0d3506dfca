//! Two ISP gateways on one segment behind one router interface (issue 15 §1): the router's `wan1`
//! carries both uplinks' addresses, and a bridge joins it to both ISPs. The uplink suite
//! (`suite/uplinks.rs`) passes on it: the weighted split, a long flow pinned to one uplink and one
//! external endpoint, EIM, failover by black-hole and recovery; each ISP sees only its own uplink's
//! address as source.

#[path = "suite/uplinks.rs"]
mod uplinks;

use flowpin_lab::UplinkWiring;

const WIRING: UplinkWiring = UplinkWiring::Shared;

#[test]
fn shared_interface_new_endpoints_split_by_weight() {
    uplinks::new_endpoints_split_by_weight(WIRING);
}

#[test]
fn shared_interface_a_long_flow_stays_on_one_uplink() {
    uplinks::a_long_flow_stays_on_one_uplink(WIRING);
}

#[test]
fn shared_interface_one_socket_has_one_external_endpoint() {
    uplinks::one_socket_has_one_external_endpoint(WIRING);
}

#[test]
fn shared_interface_blackholed_isp_fails_over_and_recovers() {
    uplinks::blackholed_isp_fails_over_and_recovers(WIRING);
}
