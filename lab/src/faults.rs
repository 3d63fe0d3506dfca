//! Faults injected into an ISP namespace, for the failover tests: a black hole (the ISP drops
//! everything), and the loss of a share of the router's own probe traffic (at random, or spread
//! evenly and deterministically). Both live in one nft
//! table per ISP, [`FAULT_TABLE`], which also counts the router's *translated* packets (TCP/UDP from
//! the uplink's address with a source port inside the NAT range) so a test can tell flowpin's
//! forwarding from the router's own probes.
//!
//! Invariants:
//! - the fault chains run at prerouting priority -300, after the ISP's leak counters (-400, see
//!   [`crate::isp_counters`]), so the counters still see every packet the router sent into a fault;
//! - the translated-packet counter runs at -390, also before any fault drop;
//! - a probe is recognised by its first packet from the router's own address: an ICMP echo request
//!   with an identifier below 1024, a TCP SYN or a UDP datagram from a source port outside the NAT
//!   range ([`NAT_PORT_RANGE`]); flowpin's translated traffic never matches (its ports and echo ids
//!   are inside the range). Dropping the first packet loses the whole probe, so the drop share is the
//!   probe loss;
//! - [`Lab::clear_faults`] removes the whole table; injecting a fault replaces the previous one.

use anyhow::{Context, Result, bail};

use crate::Lab;
use crate::flowpin_router::NAT_PORT_RANGE;
use crate::isp_counters::NamedCounters;
use crate::plan::{ISP_ROUTER_IFACE, Uplink};

/// nft table holding the faults and the translated-packet counter in an ISP namespace.
pub const FAULT_TABLE: &str = "flowpin_fault";

/// A fault an ISP can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault; only the translated-packet counter.
    None,
    /// The ISP drops every packet it receives, in both directions.
    Blackhole,
    /// The ISP drops this share (in percent, 0..=100) of the router's probe packets, at random.
    ProbeLoss {
        /// Percent of probe packets dropped.
        percent: u8,
    },
    /// The ISP drops exactly this share (in percent, 0..=50) of the router's probe packets, spread
    /// evenly: probe n (counted by `numgen inc`) is dropped when `n mod 100` is in
    /// [`even_drops`]`(percent)`, so any 100 probes in a row lose exactly `percent` and no two
    /// probes in a row are lost.
    EvenProbeLoss {
        /// Percent of probe packets dropped.
        percent: u8,
    },
    /// The ISP silently drops the TCP the router forwards for the LAN (from the uplink's address,
    /// source port in the NAT range) and passes everything else, the router's own probes included:
    /// a failure only the passive handshake signal sees.
    TranslatedTcpDrop,
}

/// The nft ruleset (a whole table, to be loaded with `nft -f -`) that injects `fault` into the
/// ISP of `uplink`.
pub fn fault_ruleset(uplink: &Uplink, fault: Fault) -> String {
    let (first, last) = NAT_PORT_RANGE;
    let router = uplink.router_addr;
    let iface = ISP_ROUTER_IFACE;
    let fault_chain = match fault {
        Fault::None => String::new(),
        Fault::Blackhole => {
            "  chain blackhole {\n    type filter hook prerouting priority -300; policy drop;\n  }\n"
                .to_owned()
        }
        Fault::TranslatedTcpDrop => format!(
            "  chain translated_tcp_drop {{
    type filter hook prerouting priority -300; policy accept;
    iifname \"{iface}\" ip saddr {router} tcp sport {first}-{last} drop
  }}
"
        ),
        Fault::ProbeLoss { percent } => {
            probe_chains(uplink, &format!("numgen random mod 100 < {percent}"))
        }
        Fault::EvenProbeLoss { percent } => {
            let residues: Vec<String> = even_drops(percent).iter().map(u8::to_string).collect();
            let matcher = format!("numgen inc mod 100 {{ {} }}", residues.join(", "));
            probe_chains(uplink, &matcher)
        }
    };
    format!(
        "table ip {FAULT_TABLE} {{
  counter translated {{}}
  counter probes_seen {{}}
  counter probes_dropped {{}}
  chain observe {{
    type filter hook prerouting priority -390; policy accept;
    iifname \"{iface}\" ip saddr {router} meta l4proto {{ tcp, udp }} th sport {first}-{last} counter name \"translated\"
  }}
{fault_chain}}}
"
    )
}

/// The chains that recognise the router's probes and drop those `drop_when` matches.
fn probe_chains(uplink: &Uplink, drop_when: &str) -> String {
    let (first, last) = NAT_PORT_RANGE;
    let router = uplink.router_addr;
    let iface = ISP_ROUTER_IFACE;
    format!(
        "  chain probe_loss {{
    type filter hook prerouting priority -300; policy accept;
    iifname \"{iface}\" ip saddr {router} icmp type echo-request icmp id < 1024 jump probe
    iifname \"{iface}\" ip saddr {router} tcp sport != {first}-{last} tcp flags & (syn | ack) == syn jump probe
    iifname \"{iface}\" ip saddr {router} udp sport != {first}-{last} jump probe
  }}
  chain probe {{
    counter name \"probes_seen\"
    {drop_when} counter name \"probes_dropped\" drop
  }}
"
    )
}

/// The residues mod 100 of the probes [`Fault::EvenProbeLoss`] drops: `n` where `n * percent / 100`
/// steps up (`percent` of them, evenly spaced; for `percent <= 50` never two in a row).
pub fn even_drops(percent: u8) -> Vec<u8> {
    let percent = u32::from(percent.min(50));
    (0..100u32)
        .filter(|n| (n + 1) * percent / 100 != n * percent / 100)
        .map(|n| n as u8)
        .collect()
}

/// What the fault table of one ISP counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// TCP/UDP packets from the uplink's address with a source port in the NAT range.
    pub translated: u64,
    /// The router's probes [`Fault::ProbeLoss`] saw (first packets from the uplink's address: ICMP
    /// echo requests with an id below 1024, TCP SYNs and UDP from outside the NAT range).
    pub probes_seen: u64,
    /// Probes dropped by [`Fault::ProbeLoss`].
    pub probes_dropped: u64,
}

/// Parses `nft -j list counters table ip flowpin_fault`.
pub fn parse_fault_counters(json: &str) -> Result<FaultCounters> {
    let counters = NamedCounters::parse(json, FAULT_TABLE)?;
    Ok(FaultCounters {
        translated: counters.get("translated", "packets")?,
        probes_seen: counters.get("probes_seen", "packets")?,
        probes_dropped: counters.get("probes_dropped", "packets")?,
    })
}

impl Lab {
    fn uplink_by_index(&self, index: usize) -> Result<&Uplink> {
        match self.uplinks().get(index) {
            Some(uplink) => Ok(uplink),
            None => bail!(
                "lab {} has no uplink #{index} (it has {})",
                self.prefix(),
                self.uplinks().len()
            ),
        }
    }

    /// Injects `fault` into the ISP of uplink `index` (0-based), replacing any earlier fault there
    /// atomically (one nft transaction). The fault counters start from zero. The fault is in force
    /// when this returns.
    pub fn inject_fault(&self, index: usize, fault: Fault) -> Result<()> {
        let uplink = self.uplink_by_index(index)?;
        // One transaction: the old table (if any) goes and the new one comes at the same instant.
        let ruleset = format!(
            "add table ip {FAULT_TABLE}\ndelete table ip {FAULT_TABLE}\n{}",
            fault_ruleset(uplink, fault)
        );
        crate::command::run_with_input(
            &["ip", "netns", "exec", &uplink.isp_ns, "nft", "-f", "-"],
            &ruleset,
        )
        .with_context(|| format!("injecting {fault:?} into {}", uplink.isp_ns))?;
        Ok(())
    }

    /// Removes every fault (and the fault counters) from the ISP of uplink `index`. Idempotent.
    pub fn clear_faults(&self, index: usize) -> Result<()> {
        let uplink = self.uplink_by_index(index)?;
        let tables = self.exec_ok(&uplink.isp_ns, &["nft", "list", "tables"])?;
        if tables
            .lines()
            .any(|line| line.trim() == format!("table ip {FAULT_TABLE}"))
        {
            self.exec_ok(
                &uplink.isp_ns,
                &["nft", "delete", "table", "ip", FAULT_TABLE],
            )?;
        }
        Ok(())
    }

    /// The fault counters of the ISP of uplink `index` (a fault, possibly [`Fault::None`], must be
    /// injected there).
    pub fn fault_counters(&self, index: usize) -> Result<FaultCounters> {
        let uplink = self.uplink_by_index(index)?;
        let json = self.exec_ok(
            &uplink.isp_ns,
            &["nft", "-j", "list", "counters", "table", "ip", FAULT_TABLE],
        )?;
        parse_fault_counters(&json).with_context(|| format!("fault counters of {}", uplink.isp_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Topology;
    use crate::spec::LabSpec;

    fn uplink() -> Uplink {
        Topology::plan("fpfault", &LabSpec::default()).uplinks[1].clone()
    }

    #[test]
    fn probe_loss_drops_only_the_routers_own_packets_at_random() {
        let rules = fault_ruleset(&uplink(), Fault::ProbeLoss { percent: 30 });
        let router = uplink().router_addr.to_string();
        assert!(rules.contains("numgen random mod 100 < 30"), "{rules}");
        assert!(rules.contains("icmp id < 1024"));
        assert!(rules.contains("tcp sport != 10000-32767 tcp flags & (syn | ack) == syn"));
        assert!(rules.contains("udp sport != 10000-32767"));
        assert_eq!(rules.matches(&format!("ip saddr {router}")).count(), 4);
        assert_eq!(rules.matches("jump probe").count(), 3);
        assert!(rules.contains("counter name \"probes_seen\"\n    numgen"));
        assert!(rules.contains("priority -300; policy accept"));
        assert!(!rules.contains("policy drop"));
    }

    #[test]
    fn even_probe_loss_drops_exactly_its_share_never_two_in_a_row() {
        let drops = even_drops(30);
        assert_eq!(drops.len(), 30);
        assert!(
            drops.windows(2).all(|pair| pair[1] - pair[0] >= 2),
            "{drops:?}"
        );
        assert!(drops.first() != Some(&0) || drops.last() != Some(&99));
        // Any 10 probes in a row lose exactly 3.
        for start in 0..100usize {
            let lost = (start..start + 10)
                .filter(|n| drops.contains(&((n % 100) as u8)))
                .count();
            assert_eq!(lost, 3, "from {start}");
        }
        let rules = fault_ruleset(&uplink(), Fault::EvenProbeLoss { percent: 30 });
        assert!(
            rules.contains("numgen inc mod 100 { 3, 6, 9, 13,"),
            "{rules}"
        );
        assert_eq!(rules.matches("jump probe").count(), 3);
    }

    #[test]
    fn blackhole_drops_everything_after_the_counters() {
        let rules = fault_ruleset(&uplink(), Fault::Blackhole);
        assert!(rules.contains("priority -300; policy drop;"), "{rules}");
        assert!(rules.contains("priority -390"));
        assert!(rules.contains("th sport 10000-32767 counter name \"translated\""));
        let none = fault_ruleset(&uplink(), Fault::None);
        assert!(!none.contains("-300"), "{none}");
    }

    #[test]
    fn fault_counters_parse_from_nft_json() {
        let json = r#"{"nftables": [
            {"counter": {"family": "ip", "name": "probes_dropped", "table": "flowpin_fault", "packets": 7, "bytes": 1}},
            {"counter": {"family": "ip", "name": "translated", "table": "flowpin_fault", "packets": 42, "bytes": 1}},
            {"counter": {"family": "ip", "name": "probes_seen", "table": "flowpin_fault", "packets": 20, "bytes": 1}},
            {"counter": {"family": "ip", "name": "translated", "table": "other", "packets": 9, "bytes": 1}}
        ]}"#;
        assert_eq!(
            parse_fault_counters(json).unwrap(),
            FaultCounters {
                translated: 42,
                probes_seen: 20,
                probes_dropped: 7
            }
        );
        assert!(parse_fault_counters(r#"{"nftables": []}"#).is_err());
    }
}
