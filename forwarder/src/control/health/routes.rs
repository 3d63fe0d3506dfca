//! Source routes for the router's own traffic from each uplink address: what makes a probe bound to
//! uplink k's address leave by uplink k's gateway even when the main table's default route points
//! elsewhere (with `SO_BINDTODEVICE` alone, the kernel finds no route through the other interfaces and
//! would ARP for the target on the link).
//!
//! For uplink slot k flowpin installs `default via GATEWAY dev IFACE table 7400+k` and the rule
//! `from ADDRESS lookup 7400+k pref 7400+k`, replacing what was there, and removes both at shutdown.
//! Only packets *from an uplink's address* are affected; forwarded traffic never reaches the kernel.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};

/// Routing table (and rule priority) of uplink slot 0; slot k uses `PROBE_TABLE_BASE + k`.
pub const PROBE_TABLE_BASE: u32 = 7400;

/// The `ip` argument lists that install slot `slot`'s source route.
pub fn install_commands(
    slot: u8,
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    interface: &str,
) -> [Vec<String>; 2] {
    let table = (PROBE_TABLE_BASE + u32::from(slot)).to_string();
    [
        [
            "route",
            "replace",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            interface,
            "table",
            &table,
        ]
        .map(str::to_owned)
        .to_vec(),
        [
            "rule",
            "add",
            "from",
            &format!("{address}/32"),
            "lookup",
            &table,
            "pref",
            &table,
        ]
        .map(str::to_owned)
        .to_vec(),
    ]
}

fn ip(args: &[String]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running `ip`")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Installs (or replaces) slot `slot`'s source route.
pub fn install(slot: u8, address: Ipv4Addr, gateway: Ipv4Addr, interface: &str) -> Result<()> {
    remove(slot);
    for command in install_commands(slot, address, gateway, interface) {
        ip(&command)?;
    }
    Ok(())
}

/// Removes slot `slot`'s rule and table (missing ones are fine).
pub fn remove(slot: u8) {
    let table = (PROBE_TABLE_BASE + u32::from(slot)).to_string();
    let rule = ["rule", "del", "pref", &table].map(str::to_owned);
    while ip(&rule).is_ok() {}
    let _ = ip(&["route", "flush", "table", &table].map(str::to_owned));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_gets_its_own_table_and_rule() {
        let [route, rule] = install_commands(
            1,
            Ipv4Addr::new(100, 64, 2, 2),
            Ipv4Addr::new(100, 64, 2, 1),
            "wan2",
        );
        assert_eq!(
            route.join(" "),
            "route replace default via 100.64.2.1 dev wan2 table 7401"
        );
        assert_eq!(
            rule.join(" "),
            "rule add from 100.64.2.2/32 lookup 7401 pref 7401"
        );
    }
}
