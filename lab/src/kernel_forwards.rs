//! Port forwards on the kernel reference router, the way split-access guides do them: nft DNAT of
//! the forwarded port on each uplink's address, the connection marked with the uplink it arrived on
//! (`ct mark`), the LAN server's replies carrying that mark (`meta mark set ct mark`) and routed by
//! an `ip rule fwmark` to a table whose default route is that uplink's gateway. Hairpin: LAN
//! traffic to an uplink's address and the port is DNATed too, and masqueraded to the router's LAN
//! address so the server answers through the router.
//!
//! It gives the lab the same forwards flowpin's `[[forward]]` does, so tests compare like with like.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::command::{run_in, run_with_input};
use crate::kernel_router::ROUTER_TABLE;
use crate::plan::Topology;

/// nft table of the kernel router's forwards.
pub const FORWARDS_TABLE: &str = "flowpin_kernel_forwards";
/// Routing table and fwmark of uplink k's replies: `FORWARD_TABLE_BASE + k`.
pub const FORWARD_TABLE_BASE: u32 = 7700;

/// One forward: `port` (TCP and UDP) on every uplink's address to `to`:`to_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelForward {
    /// The external port.
    pub port: u16,
    /// The LAN server.
    pub to: Ipv4Addr,
    /// Its port.
    pub to_port: u16,
}

/// The nft ruleset of `forward` on `topology`'s router.
pub fn forward_ruleset(topology: &Topology, forward: &KernelForward) -> String {
    let lan = &topology.router.lan_iface;
    let KernelForward { port, to, to_port } = *forward;
    let mut dnat = String::new();
    let mut marks = String::new();
    for u in &topology.uplinks {
        let mark = FORWARD_TABLE_BASE + u.number as u32;
        dnat.push_str(&format!(
            "    ip daddr {addr} meta l4proto {{ tcp, udp }} th dport {port} dnat to {to}:{to_port}\n",
            addr = u.router_addr
        ));
        marks.push_str(&format!(
            "    iifname \"{iface}\" ct state new ct mark set {mark}\n",
            iface = u.router_iface
        ));
    }
    format!(
        "table ip {FORWARDS_TABLE} {{
  chain prerouting_nat {{
    type nat hook prerouting priority dstnat; policy accept;
{dnat}  }}
  chain prerouting_mark {{
    type filter hook prerouting priority mangle; policy accept;
{marks}    iifname \"{lan}\" ct mark != 0 meta mark set ct mark
  }}
  chain postrouting_nat {{
    type nat hook postrouting priority srcnat; policy accept;
    iifname \"{lan}\" oifname \"{lan}\" ct status dnat masquerade
  }}
}}
"
    )
}

/// Installs `forward` on the kernel router of `topology`: the ruleset, an accept of DNATed
/// connections in the router's forward chain, and one fwmark rule and table per uplink.
pub fn add_forward(topology: &Topology, forward: &KernelForward) -> Result<()> {
    let ns = &topology.router.ns;
    run_with_input(
        &["ip", "netns", "exec", ns, "nft", "-f", "-"],
        &forward_ruleset(topology, forward),
    )?;
    run_in(
        ns,
        &[
            "nft",
            "insert",
            "rule",
            "ip",
            ROUTER_TABLE,
            "forward",
            "ct",
            "status",
            "dnat",
            "accept",
        ],
    )?;
    for u in &topology.uplinks {
        let table = (FORWARD_TABLE_BASE + u.number as u32).to_string();
        run_in(
            ns,
            &[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &u.gateway.to_string(),
                "dev",
                &u.router_iface,
                "table",
                &table,
            ],
        )?;
        run_in(
            ns,
            &[
                "ip", "rule", "add", "fwmark", &table, "table", &table, "priority", &table,
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    #[test]
    fn each_uplink_dnats_and_marks_and_lan_replies_carry_the_mark() {
        let topology = Topology::plan("fpk", &LabSpec::with_weights(&[1, 1]));
        let forward = KernelForward {
            port: 8080,
            to: Ipv4Addr::new(10, 77, 0, 12),
            to_port: 8000,
        };
        let rules = forward_ruleset(&topology, &forward);
        for (addr, wan, mark) in [
            ("198.51.100.2", "wan1", 7701),
            ("198.51.100.10", "wan2", 7702),
        ] {
            assert!(rules.contains(&format!(
                "ip daddr {addr} meta l4proto {{ tcp, udp }} th dport 8080 dnat to 10.77.0.12:8000"
            )));
            assert!(rules.contains(&format!(
                "iifname \"{wan}\" ct state new ct mark set {mark}"
            )));
        }
        assert!(rules.contains("iifname \"lan0\" ct mark != 0 meta mark set ct mark"));
    }
}
