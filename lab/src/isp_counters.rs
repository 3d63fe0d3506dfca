//! The ISP's view of what the router sends: in every ISP namespace an nft chain at prerouting
//! priority -400 (before conntrack, so nothing is hidden by connection tracking) classifies every
//! IPv4 packet arriving on the interface that faces the router:
//! - source == that uplink's router address, to one of the ISP's own addresses (its gateway
//!   address: the router's gateway health probe, its ARP solicitation datagram) → the nft counter
//!   `to_isp` only (accepted): the router talking to its gateway is not traffic the ISP carries,
//!   so it is in none of [`IspCounters`]' classes;
//! - source == that uplink's router address → `good` (accepted);
//! - private source (10/8, 172.16/12, 192.168/16, 100.64/10) → `leak` (counted and dropped, as
//!   an ISP doing BCP 38 ingress filtering would);
//! - any other source (typically another uplink's address) → `wrong_uplink` (counted and dropped).
//!
//! The counters are named nft counters, read with `nft -j list counters`.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// nft table holding the counters in every ISP namespace.
pub const COUNTER_TABLE: &str = "flowpin_lab";

/// Packets an ISP received from the router, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IspCounters {
    /// Packets whose source is this uplink's router address.
    pub good: u64,
    /// Bytes of the `good` packets.
    pub good_bytes: u64,
    /// Packets with a private source address (un-NATed LAN traffic).
    pub leak: u64,
    /// Packets with any other source (e.g. another uplink's address).
    pub wrong_uplink: u64,
}

impl IspCounters {
    /// All packets the ISP saw from the router.
    pub fn total(&self) -> u64 {
        self.good + self.leak + self.wrong_uplink
    }

    /// Counter growth since `earlier` (saturating, so a reset never underflows).
    pub fn since(&self, earlier: &IspCounters) -> IspCounters {
        IspCounters {
            good: self.good.saturating_sub(earlier.good),
            good_bytes: self.good_bytes.saturating_sub(earlier.good_bytes),
            leak: self.leak.saturating_sub(earlier.leak),
            wrong_uplink: self.wrong_uplink.saturating_sub(earlier.wrong_uplink),
        }
    }
}

/// The nft ruleset that installs the counters in an ISP namespace whose router-facing interface is
/// `router_iface` and whose uplink's router address is `router_addr`.
pub fn counter_ruleset(router_iface: &str, router_addr: Ipv4Addr) -> String {
    format!(
        "table ip {COUNTER_TABLE} {{
  counter good {{}}
  counter leak {{}}
  counter wrong_uplink {{}}
  counter to_isp {{}}
  chain from_router {{
    type filter hook prerouting priority -400; policy accept;
    iifname \"{router_iface}\" ip saddr {router_addr} fib daddr type local counter name \"to_isp\" accept
    iifname \"{router_iface}\" ip saddr {router_addr} counter name \"good\" accept
    iifname \"{router_iface}\" ip saddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 }} counter name \"leak\" drop
    iifname \"{router_iface}\" counter name \"wrong_uplink\" drop
  }}
}}
"
    )
}

/// Parses the output of `nft -j list counters table ip flowpin_lab`.
pub fn parse_counters(json: &str) -> Result<IspCounters> {
    let counters = NamedCounters::parse(json, COUNTER_TABLE)?;
    Ok(IspCounters {
        good: counters.get("good", "packets")?,
        good_bytes: counters.get("good", "bytes")?,
        leak: counters.get("leak", "packets")?,
        wrong_uplink: counters.get("wrong_uplink", "packets")?,
    })
}

/// The named counters of one nft table, from `nft -j list counters table ...` output.
#[derive(Debug)]
pub struct NamedCounters {
    table: String,
    items: Vec<serde_json::Value>,
}

impl NamedCounters {
    /// Parses `nft -j` output, keeping the counters of `table`.
    pub fn parse(json: &str, table: &str) -> Result<Self> {
        let mut document: serde_json::Value =
            serde_json::from_str(json).context("nft -j output is not JSON")?;
        let items = match document.get_mut("nftables").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(items)) => items,
            _ => bail!("nft -j output has no \"nftables\" array"),
        };
        Ok(Self {
            table: table.to_owned(),
            items,
        })
    }

    /// `field` (`packets` or `bytes`) of counter `name`.
    pub fn get(&self, name: &str, field: &str) -> Result<u64> {
        self.items
            .iter()
            .filter_map(|item| item.get("counter"))
            .filter(|counter| {
                counter.get("table").and_then(serde_json::Value::as_str) == Some(&self.table)
            })
            .find(|counter| counter.get("name").and_then(serde_json::Value::as_str) == Some(name))
            .and_then(|counter| counter.get(field))
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("nft -j output lacks counter {name:?} with {field:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"counter": {"family": "ip", "name": "wrong_uplink", "table": "flowpin_lab", "handle": 4, "packets": 3, "bytes": 180}},
        {"counter": {"family": "ip", "name": "good", "table": "flowpin_lab", "handle": 2, "packets": 1234, "bytes": 98765}},
        {"counter": {"family": "ip", "name": "good", "table": "other", "handle": 9, "packets": 7, "bytes": 7}},
        {"counter": {"family": "ip", "name": "leak", "table": "flowpin_lab", "handle": 3, "packets": 0, "bytes": 0}}
    ]}"#;

    #[test]
    fn parses_named_counters_in_any_order_ignoring_other_tables() {
        let counters = parse_counters(SAMPLE).unwrap();
        assert_eq!(
            counters,
            IspCounters {
                good: 1234,
                good_bytes: 98765,
                leak: 0,
                wrong_uplink: 3
            }
        );
        assert_eq!(counters.total(), 1237);
    }

    #[test]
    fn rejects_output_without_a_counter() {
        let missing_leak = SAMPLE.replace("\"leak\"", "\"other\"");
        let error = parse_counters(&missing_leak).unwrap_err().to_string();
        assert!(error.contains("leak"), "{error}");
        assert!(parse_counters("not json").is_err());
        assert!(parse_counters(r#"{"other": []}"#).is_err());
    }

    #[test]
    fn growth_is_per_counter_and_saturating() {
        let earlier = IspCounters {
            good: 10,
            good_bytes: 1000,
            leak: 1,
            wrong_uplink: 5,
        };
        let later = IspCounters {
            good: 15,
            good_bytes: 1500,
            leak: 1,
            wrong_uplink: 2,
        };
        assert_eq!(
            later.since(&earlier),
            IspCounters {
                good: 5,
                good_bytes: 500,
                leak: 0,
                wrong_uplink: 0
            }
        );
    }

    #[test]
    fn ruleset_counts_before_conntrack_on_the_router_facing_interface() {
        let rules = counter_ruleset("to-rtr", Ipv4Addr::new(198, 51, 100, 2));
        assert!(rules.contains("priority -400"));
        assert!(rules.contains("ip saddr 198.51.100.2 counter name \"good\" accept"));
        assert_eq!(rules.matches("iifname \"to-rtr\"").count(), 4);
        // The router's own packets to the ISP (its gateway probe) are not traffic the ISP carries,
        // and are sorted out before `good`.
        let to_isp = rules
            .find("fib daddr type local counter name \"to_isp\" accept")
            .expect("a to_isp rule");
        assert!(to_isp < rules.find("counter name \"good\"").unwrap());
        assert!(rules.contains("10.0.0.0/8"));
    }
}
