//! The kernel reference router, configured the way multi-WAN guides do it since
//! Linux 4.4: `ip_forward=1`, a weighted multipath default route with the L4 hash
//! (`fib_multipath_hash_policy=1`), nft masquerade per uplink, and a FORWARD chain with policy drop
//! that drops `ct state invalid`, accepts established/related, and accepts LAN→WAN.
//!
//! It is the baseline flowpin is compared with, and the proof that the lab works.

use anyhow::Result;

use crate::command::{run, run_in, run_with_input};
use crate::plan::Topology;

/// nft table of the kernel router.
pub const ROUTER_TABLE: &str = "flowpin_kernel_router";

/// Arguments after `ip -n NS route replace` for the default route: a plain route for one uplink,
/// a weighted multipath route for several.
pub fn default_route_args(topology: &Topology) -> Vec<String> {
    let mut args = vec!["default".to_owned()];
    if let [only] = topology.uplinks.as_slice() {
        args.extend(
            ["via", &only.gateway.to_string(), "dev", &only.router_iface].map(str::to_owned),
        );
        return args;
    }
    for uplink in &topology.uplinks {
        args.extend(
            [
                "nexthop",
                "via",
                &uplink.gateway.to_string(),
                "dev",
                &uplink.router_iface,
                "weight",
                &uplink.weight.to_string(),
            ]
            .map(str::to_owned),
        );
    }
    args
}

/// The nft ruleset of the kernel router: filter FORWARD and masquerade per uplink.
pub fn router_ruleset(topology: &Topology) -> String {
    let lan = &topology.router.lan_iface;
    let wans: Vec<String> = topology
        .uplinks
        .iter()
        .map(|u| format!("\"{}\"", u.router_iface))
        .collect();
    let masquerades: String = topology
        .uplinks
        .iter()
        .map(|u| format!("    oifname \"{}\" masquerade\n", u.router_iface))
        .collect();
    format!(
        "table ip {ROUTER_TABLE} {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname \"{lan}\" oifname {{ {wans} }} accept
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{masquerades}  }}
}}
",
        wans = wans.join(", ")
    )
}

/// Configures the router namespace of `topology` as the kernel reference router.
pub fn configure(topology: &Topology) -> Result<()> {
    let ns = &topology.router.ns;
    run_in(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    run_in(
        ns,
        &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
    )?;
    let route = default_route_args(topology);
    let mut argv = vec!["ip", "-n", ns, "route", "replace"];
    argv.extend(route.iter().map(String::as_str));
    run(&argv)?;
    run_with_input(
        &["ip", "netns", "exec", ns, "nft", "-f", "-"],
        &router_ruleset(topology),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    #[test]
    fn multipath_route_carries_every_uplink_with_its_weight() {
        let topology = Topology::plan("fpk", &LabSpec::with_weights(&[3, 1]));
        assert_eq!(
            default_route_args(&topology).join(" "),
            "default nexthop via 198.51.100.1 dev wan1 weight 3 nexthop via 198.51.100.9 dev wan2 weight 1"
        );
    }

    #[test]
    fn single_uplink_gets_a_plain_default_route() {
        let topology = Topology::plan("fpk", &LabSpec::with_weights(&[5]));
        assert_eq!(
            default_route_args(&topology).join(" "),
            "default via 198.51.100.1 dev wan1"
        );
    }

    #[test]
    fn ruleset_drops_by_default_and_masquerades_each_uplink() {
        let topology = Topology::plan("fpk", &LabSpec::with_weights(&[1, 1, 1]));
        let rules = router_ruleset(&topology);
        assert!(rules.contains("policy drop;"));
        let invalid = rules.find("ct state invalid drop").unwrap();
        let established = rules.find("ct state established,related accept").unwrap();
        assert!(
            invalid < established,
            "invalid packets must be dropped first"
        );
        assert!(rules.contains("iifname \"lan0\" oifname { \"wan1\", \"wan2\", \"wan3\" } accept"));
        for wan in ["wan1", "wan2", "wan3"] {
            assert!(
                rules.contains(&format!("oifname \"{wan}\" masquerade")),
                "{wan}"
            );
        }
    }
}
