//! The human summary of a configuration that `flowpin check -c FILE` prints: what flowpin will
//! do with it, in the order a new flow meets it (LAN, uplinks, policies, NAT, timeouts,
//! datapath).
//!
//! Invariant: only reads a validated [`Config`]; every share is a weight over its group's total.

use std::fmt::Write as _;

use super::model::{Config, Datapath, DefaultRoute, Lan, Nat, Policy, PolicyMatch, Uplink};
use super::resilience::ProbeTarget;

/// Each weight's share of new flows in percent (0 for standby members, weight 0). When every
/// weight is 0 the shares are all 0.
pub fn weight_shares(weights: &[u32]) -> Vec<f64> {
    let total: u64 = weights.iter().map(|weight| u64::from(*weight)).sum();
    weights
        .iter()
        .map(|weight| {
            if total == 0 {
                0.0
            } else {
                100.0 * f64::from(*weight) / total as f64
            }
        })
        .collect()
}

/// The summary of `config`, several lines, ending with a newline.
pub fn explain(config: &Config) -> String {
    let mut out = String::new();
    write_lan(&mut out, &config.lan);
    write_uplinks(&mut out, &config.uplinks);
    write_health(&mut out, config);
    write_policies(&mut out, config);
    write_nat(&mut out, &config.nat);
    write_datapath(&mut out, &config.datapath);
    let _ = writeln!(out, "Control socket: {}", config.control.socket.display());
    write_router(&mut out, config);
    out
}

/// What the router's own traffic leaves by.
fn write_router(out: &mut String, config: &Config) {
    let text = match config.router.default_route {
        DefaultRoute::Multipath => {
            "a multipath default over the usable uplinks of the best tier, weighted (table 7399)"
        }
        DefaultRoute::Best => "a default via the best usable uplink (table 7399)",
        DefaultRoute::Unmanaged => "unmanaged: left to the admin or a routing daemon",
    };
    let _ = writeln!(
        out,
        "Router's own traffic: {text}; answers from an uplink's address leave by that uplink"
    );
}

/// Which hosts are served, and which sources are dropped?
fn write_lan(out: &mut String, lan: &Lan) {
    let prefixes: Vec<String> = lan.prefixes.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "LAN {}: sources {} (any other source is dropped as spoofed)",
        lan.interface,
        prefixes.join(", ")
    );
}

/// The default group: each uplink, aligned in columns, with its share of new flows.
fn write_uplinks(out: &mut String, uplinks: &[Uplink]) {
    let _ = writeln!(
        out,
        "\nUplinks (the default group: new flows no policy matches):"
    );
    let shares = tier_shares(uplinks);
    let width = |text: &dyn Fn(&Uplink) -> String| {
        uplinks
            .iter()
            .map(|uplink| text(uplink).len())
            .max()
            .unwrap_or(0)
    };
    let name_width = width(&|uplink| uplink.name.clone());
    let interface_width = width(&|uplink| uplink.interface.clone());
    let gateway_width = width(&|uplink| uplink.gateway.to_string());
    let address_width = width(&|uplink| address_text(uplink));
    for (uplink, share) in uplinks.iter().zip(shares) {
        let _ = writeln!(
            out,
            "  {:name_width$}  on {:interface_width$}  via {:gateway_width$}  {:address_width$}  \
             tier {}  weight {}  {}{}",
            uplink.name,
            uplink.interface,
            uplink.gateway.to_string(),
            address_text(uplink),
            uplink.tier,
            uplink.weight,
            share_text(uplink.weight, share),
            uplink
                .mss_clamp
                .map_or(String::new(), |clamp| format!("  MSS clamp {clamp}"))
        );
    }
}

/// Each uplink's share of its tier's new flows (the tier takes them while it has an eligible uplink
/// and no better tier has one).
fn tier_shares(uplinks: &[Uplink]) -> Vec<f64> {
    let mut shares = vec![0.0; uplinks.len()];
    for tier in uplinks.iter().map(|uplink| uplink.tier) {
        let members: Vec<usize> = (0..uplinks.len())
            .filter(|&index| uplinks[index].tier == tier)
            .collect();
        let weights: Vec<u32> = members.iter().map(|&index| uplinks[index].weight).collect();
        for (index, share) in members.into_iter().zip(weight_shares(&weights)) {
            shares[index] = share;
        }
    }
    shares
}

/// What each uplink probes, how often, and when it goes down.
fn write_health(out: &mut String, config: &Config) {
    let _ = writeln!(out, "\nHealth (each uplink probed through itself):");
    for (slot, uplink) in config.uplinks.iter().enumerate() {
        let health = config.uplink_health(slot);
        let probes = if health.targets.is_empty() {
            "nothing (probe_gateway = false): its state follows its carrier".to_owned()
        } else if health.probing_gateway {
            format!(
                "its gateway {} (icmp, no target configured)",
                uplink.gateway
            )
        } else {
            let targets: Vec<String> = health.targets.iter().map(ProbeTarget::label).collect();
            targets.join(", ")
        };
        let _ = writeln!(
            out,
            "  {}: probes {probes}; every {} ms, down after {} bad rounds (loss >= {} % or RTT >= {} ms), up after {} good ones",
            uplink.name,
            health.interval_ms,
            health.down_after,
            health.down_loss_percent,
            health.down_rtt_ms,
            health.up_after
        );
    }
}

/// The policies in the order they are tried.
fn write_policies(out: &mut String, config: &Config) {
    if config.policies.is_empty() {
        let _ = writeln!(
            out,
            "\nPolicies: none (every new flow uses the default group)"
        );
        return;
    }
    let _ = writeln!(
        out,
        "\nPolicies (in order, the first match decides; no match: the default group):"
    );
    for (number, policy) in config.policies.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", number + 1, policy_text(config, policy));
    }
}

/// External ports, filtering, stickiness and timeouts.
fn write_nat(out: &mut String, nat: &Nat) {
    let _ = writeln!(
        out,
        "\nNAT: external ports {} ({} per uplink address, {}); filtering {}",
        nat.port_range,
        nat.port_range.len(),
        nat.ports_per_host.map_or_else(
            || "a LAN host over its fair share is refused first once 75 % are mapped".to_owned(),
            |quota| format!("at most {quota} per LAN host")
        ),
        nat.filtering
    );
    let _ = writeln!(
        out,
        "Stickiness {}: key ({}): {}",
        nat.stickiness,
        nat.stickiness.key_fields(),
        nat.stickiness.meaning()
    );
    let timeouts = &nat.timeouts;
    let refresh = if nat.udp_refresh_on_inbound() {
        "outbound and inbound packets"
    } else {
        "outbound packets only"
    };
    let _ = writeln!(
        out,
        "Timeouts: UDP {} s (refreshed by {refresh}), TCP established {} s, TCP \
         transitory {} s, ICMP {} s",
        timeouts.udp_ms / 1000,
        timeouts.tcp_established_ms / 1000,
        timeouts.tcp_transitory_ms / 1000,
        timeouts.icmp_ms / 1000
    );
}

/// Workers, AF_XDP mode, sizes, and the CPUs workers are pinned to.
fn write_datapath(out: &mut String, datapath: &Datapath) {
    let _ = writeln!(
        out,
        "Datapath: workers {}, AF_XDP mode {}, idle {}, flow capacity {}, {} frames per worker",
        datapath.workers,
        datapath.mode,
        datapath.idle,
        datapath.flow_capacity,
        datapath.frames_per_worker
    );
    let cpus = if datapath.cpus.is_empty() {
        "every CPU the daemon may run on".to_owned()
    } else {
        let list: Vec<String> = datapath.cpus.iter().map(u32::to_string).collect();
        format!(
            "CPUs {} (worker i on cpus[i mod {}])",
            list.join(", "),
            list.len()
        )
    };
    let _ = writeln!(out, "Workers pinned to: {cpus}");
    let _ = writeln!(
        out,
        "Flow table share: once {} % of it is in use, a LAN host holding capacity / (hosts + 1) \
         flows (at least {}) gets no new flow",
        datapath.flow_share_pressure_percent, datapath.flow_share_floor
    );
}

fn address_text(uplink: &Uplink) -> String {
    match uplink.address {
        Some(address) => format!("address {address}"),
        None => "address from the interface".to_owned(),
    }
}

fn share_text(weight: u32, share: f64) -> String {
    if weight == 0 {
        "standby (new flows only when no weighted uplink of its tier is eligible)".to_owned()
    } else {
        format!("{share:.1} % of its tier's new flows")
    }
}

fn policy_text(config: &Config, policy: &Policy) -> String {
    let weights: Vec<u32> = policy
        .uplinks
        .iter()
        .map(|member| member.weight.unwrap_or(config.uplinks[member.index].weight))
        .collect();
    let members: Vec<String> = policy
        .uplinks
        .iter()
        .zip(weight_shares(&weights))
        .zip(&weights)
        .map(|((member, share), weight)| {
            if *weight == 0 {
                format!("{} standby", member.name)
            } else {
                format!("{} {share:.1} %", member.name)
            }
        })
        .collect();
    format!(
        "{}: {} -> {}",
        policy.name,
        match_text(&policy.matcher),
        members.join(", ")
    )
}

fn match_text(matcher: &PolicyMatch) -> String {
    let list = |prefixes: &[super::Ipv4Prefix]| {
        prefixes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut parts = Vec::new();
    if !matcher.src.is_empty() {
        parts.push(format!("from {}", list(&matcher.src)));
    }
    if !matcher.dst.is_empty() {
        parts.push(format!("to {}", list(&matcher.dst)));
    }
    if let Some(proto) = matcher.proto {
        parts.push(proto.to_string());
    }
    if let Some(port) = matcher.dst_port {
        parts.push(format!("port {port}"));
    }
    if let Some(dscp) = matcher.dscp {
        parts.push(format!("dscp {dscp}"));
    }
    if parts.is_empty() {
        "every flow".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights_and_standby_gets_none() {
        let shares = weight_shares(&[2, 1, 0, 1]);
        assert_eq!(shares, vec![50.0, 25.0, 0.0, 25.0]);
        assert_eq!(weight_shares(&[0, 0]), vec![0.0, 0.0]);
    }
}
