//! The kernel forward-path guard that makes flowpin fail closed.
//!
//! flowpin's XDP link is owned by the process: when the process dies the program detaches and the kernel
//! sees every packet again. If the kernel's forward path then accepted LAN→uplink transit, private source
//! addresses would leave the uplinks un-NATed. So at start the forwarder installs (and on every start
//! re-installs, replacing any earlier copy) an nftables table that drops transit between the LAN interface
//! and the uplinks in the kernel's forward hook, in both directions. The guard is left in place on exit and
//! on crash: it only stops the *kernel* from forwarding between those interfaces, which flowpin never asks
//! it to do. The router's own traffic (input/output hooks) is untouched, and packets with TTL <= 1 still get
//! their ICMP Time Exceeded, because `ip_forward()` checks the TTL before the forward hook runs.
//!
//! The guard's second chain covers what the kernel *originates*. Replies to flowpin's flows that arrive
//! while the XDP program is detached (a crash, a restart) are the kernel's to answer: a TCP RST or an ICMP
//! port unreachable from the uplink address they were sent to. The kernel routes those by its own table,
//! whose default route names one uplink, so an answer from uplink 2's address could leave by uplink 1 —
//! a packet with another uplink's source, which the ISP drops as spoofed. The postrouting chain drops any
//! IPv4 packet leaving an uplink whose source is not an address of that very interface (`fib saddr . oif
//! type local` asks the kernel's local table exactly that, so DHCP address changes need no update).
//! Source 0.0.0.0 (a DHCP client's discover) is let through.
//!
//! The guard is not the kernel's to keep: `flush ruleset` (the first line of Debian's
//! `/etc/nftables.conf`) removes it. The daemon checks it every second ([`is_intact`]) and
//! re-installs it when any of its three rules is gone.
//!
//! The guard covers IPv4 only, the family flowpin translates. IPv6 between the LAN and the uplinks is
//! not flowpin's: the XDP program passes it to the kernel, and the forwarding, firewall and routes the
//! admin configured for it keep working with flowpin running (a dual-stack LAN keeps its IPv6).
//!
//! Invariants: while the guard is installed, no IPv4 packet arriving on the LAN interface is forwarded
//! by the kernel to an uplink, none arriving on an uplink is forwarded to the LAN, IPv6 transit is
//! never touched, and no IPv4 packet the kernel
//! sends leaves an uplink with a source address that is not that uplink's. (flowpin's own transmissions
//! bypass netfilter; the datapath keeps the same invariant for them.)

use std::io::Write;
use std::process::{Command, Stdio};

/// Name of the nftables table (family `inet`) that holds the guard.
pub const GUARD_TABLE: &str = "flowpin_guard";

/// The comments of the guard's three rules: a listing without one of them lacks that rule.
const RULE_COMMENTS: [&str; 3] = [
    "flowpin: LAN to uplink transit is flowpin's, never the kernel's",
    "flowpin: uplink to LAN transit is flowpin's, never the kernel's",
    "flowpin: only an uplink's own address leaves that uplink",
];

/// The interfaces the guard separates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    /// The LAN interface.
    pub lan: String,
    /// Every uplink interface.
    pub uplinks: Vec<String>,
}

impl GuardSpec {
    /// The nft script that (re)creates the guard table atomically.
    pub fn ruleset(&self) -> String {
        let uplinks = self
            .uplinks
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "table inet {GUARD_TABLE}\n\
             delete table inet {GUARD_TABLE}\n\
             table inet {GUARD_TABLE} {{\n\
             \tchain forward {{\n\
             \t\ttype filter hook forward priority filter - 10; policy accept;\n\
             \t\tmeta nfproto ipv4 iifname \"{lan}\" oifname {{ {uplinks} }} counter drop comment \"{lan_to_uplink}\"\n\
             \t\tmeta nfproto ipv4 iifname {{ {uplinks} }} oifname \"{lan}\" counter drop comment \"{uplink_to_lan}\"\n\
             \t}}\n\
             \tchain postrouting {{\n\
             \t\ttype filter hook postrouting priority filter + 10; policy accept;\n\
             \t\tmeta nfproto ipv4 oifname {{ {uplinks} }} ip saddr != 0.0.0.0 fib saddr . oif type != local counter drop comment \"{own_source}\"\n\
             \t}}\n\
             }}\n",
            lan = self.lan,
            lan_to_uplink = RULE_COMMENTS[0],
            uplink_to_lan = RULE_COMMENTS[1],
            own_source = RULE_COMMENTS[2],
        )
    }

    /// Installs the guard, replacing any earlier copy in one nft transaction.
    pub fn install(&self) -> Result<(), GuardError> {
        run_nft_script(&self.ruleset())
    }
}

/// Whether the guard table is present in the current network namespace.
pub fn is_installed() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", GUARD_TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether the guard table is present with all three of its rules (`nft` not runnable: `false`).
pub fn is_intact() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", GUARD_TABLE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && listing_is_intact(&String::from_utf8_lossy(&out.stdout))
        })
}

/// Whether `nft list table inet flowpin_guard`'s output holds every rule of the guard.
fn listing_is_intact(listing: &str) -> bool {
    RULE_COMMENTS
        .iter()
        .all(|comment| listing.contains(&format!("comment \"{comment}\"")))
}

/// Removes the guard (used by `flowpin guard remove`, for an admin decommissioning flowpin).
pub fn remove() -> Result<(), GuardError> {
    run_nft_script(&format!(
        "table inet {GUARD_TABLE}\ndelete table inet {GUARD_TABLE}\n"
    ))
}

/// Why the guard could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `nft` could not be run at all.
    #[error("cannot run nft (is nftables installed?): {0}")]
    Spawn(#[from] std::io::Error),
    /// `nft` rejected the ruleset.
    #[error("nft rejected the forward guard: {0}")]
    Rejected(String),
}

fn run_nft_script(script: &str) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(GuardError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_drops_both_directions_between_lan_and_every_uplink() {
        let spec = GuardSpec {
            lan: "lan0".into(),
            uplinks: vec!["wan1".into(), "wan2".into()],
        };
        let r = spec.ruleset();
        assert!(r.contains(
            "meta nfproto ipv4 iifname \"lan0\" oifname { \"wan1\", \"wan2\" } counter drop"
        ));
        assert!(r.contains(
            "meta nfproto ipv4 iifname { \"wan1\", \"wan2\" } oifname \"lan0\" counter drop"
        ));
        assert!(r.contains("hook forward"));
        assert!(r.contains(
            "oifname { \"wan1\", \"wan2\" } ip saddr != 0.0.0.0 fib saddr . oif type != local counter drop"
        ));
        // Re-installation replaces the table in the same transaction.
        assert!(r.find("delete table").unwrap() < r.find("chain forward").unwrap());
    }

    #[test]
    fn a_listing_is_intact_only_with_all_three_rules() {
        let spec = GuardSpec {
            lan: "lan0".into(),
            uplinks: vec!["wan1".into()],
        };
        let full = spec.ruleset();
        assert!(listing_is_intact(&full));
        for comment in RULE_COMMENTS {
            let without = full
                .lines()
                .filter(|line| !line.contains(comment))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!listing_is_intact(&without), "{comment}");
        }
        assert!(!listing_is_intact(""));
    }
}
