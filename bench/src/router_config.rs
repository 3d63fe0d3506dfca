//! The configurations the lab benchmark compares, each a router (or none) between the generator and
//! the sinks.
//!
//! Invariants: every configuration keeps its one- or two-letter label (`G`, `X`, `K0`, `K1`, `O`) in
//! reports, in the JSON and as a command-line alias, so earlier reports and scripts still read;
//! [`Config::ALL`] is the alternation order of every round and the row order of every table.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A router configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Config {
    /// G: generator → sink on the router's `lan0`, no router (the generator's ceiling).
    #[serde(rename = "G")]
    #[value(alias = "g")]
    GeneratorOnly,
    /// X: XDP redirect `lan0` → `wan1` only (the plumbing ceiling).
    #[serde(rename = "X")]
    #[value(alias = "x")]
    XdpRedirect,
    /// K0: kernel plain ECMP forwarding.
    #[serde(rename = "K0")]
    #[value(alias = "k0")]
    KernelForwarding,
    /// K1: kernel ECMP + conntrack + nft masquerade (the lab's kernel router), RPS.
    #[serde(rename = "K1")]
    #[value(alias = "k1")]
    KernelNat,
    /// O: flowpin (`flowpin run` in the router namespace, one worker, copy-mode AF_XDP).
    #[serde(rename = "O")]
    #[value(alias = "o")]
    Flowpin,
}

impl Config {
    /// All, in alternation order.
    pub const ALL: [Config; 5] = [
        Config::GeneratorOnly,
        Config::XdpRedirect,
        Config::KernelForwarding,
        Config::KernelNat,
        Config::Flowpin,
    ];

    /// The label in reports: `G`, `X`, `K0`, `K1` or `O`.
    pub fn label(self) -> &'static str {
        match self {
            Config::GeneratorOnly => "G",
            Config::XdpRedirect => "X",
            Config::KernelForwarding => "K0",
            Config::KernelNat => "K1",
            Config::Flowpin => "O",
        }
    }

    /// Short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Config::GeneratorOnly => {
                "generator → XDP sink on lan0 (no router): the generator's ceiling"
            }
            Config::XdpRedirect => "XDP redirect lan0 → wan1 only: the plumbing ceiling",
            Config::KernelForwarding => "kernel: ip_forward + ECMP multipath (L4 hash)",
            Config::KernelNat => "kernel: ECMP + conntrack + nft masquerade per uplink",
            Config::Flowpin => {
                "flowpin: XDP → AF_XDP (copy mode), 1 worker sleeping in poll(), SNAT per uplink"
            }
        }
    }

    /// Where this configuration's work runs (the generator always runs on CPU 0).
    pub fn core_split(self) -> &'static str {
        match self {
            Config::GeneratorOnly => {
                "sink's NAPI thread (threaded NAPI on lan0) pinned to CPU 1, SCHED_FIFO"
            }
            Config::XdpRedirect => {
                "redirect's NAPI thread (threaded NAPI on lan0) pinned to CPU 1, SCHED_FIFO"
            }
            Config::KernelForwarding | Config::KernelNat => {
                "RPS on lan0 → CPU 1 (softirq: IP stack, forwarding, transmit into the uplink veth)"
            }
            Config::Flowpin => {
                "lan0's NAPI thread (XDP + copy into the AF_XDP ring) and the flowpin worker both \
                 pinned to CPU 1, SCHED_FIFO"
            }
        }
    }
}

/// The report label (`G`, `X`, `K0`, `K1`, `O`).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Options {
        #[arg(long, value_delimiter = ',')]
        configs: Vec<Config>,
    }

    fn parse(configs: &str) -> Vec<Config> {
        Options::try_parse_from(["bench", "--configs", configs])
            .expect("valid configurations")
            .configs
    }

    #[test]
    fn the_letters_stay_command_line_aliases_beside_the_names() {
        assert_eq!(parse("g,x,k0,k1,o"), Config::ALL);
        assert_eq!(
            parse("generator-only,xdp-redirect,kernel-forwarding,kernel-nat,flowpin"),
            Config::ALL
        );
    }

    #[test]
    fn reports_and_json_keep_the_letters() {
        let labels: Vec<String> = Config::ALL.iter().map(Config::to_string).collect();
        assert_eq!(labels, ["G", "X", "K0", "K1", "O"]);
        let json = serde_json::to_string(&Config::ALL).expect("serialisable");
        assert_eq!(json, r#"["G","X","K0","K1","O"]"#);
        let back: Vec<Config> = serde_json::from_str(&json).expect("deserialisable");
        assert_eq!(back, Config::ALL);
    }
}
