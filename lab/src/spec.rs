//! What a lab should look like: how many LAN hosts, which uplinks with which weights, and who routes.
//!
//! Invariants (checked by [`LabSpec::validate`]): 1..=[`MAX_LAN_HOSTS`] LAN hosts,
//! 1..=[`MAX_UPLINKS`] uplinks, every weight in 1..=256 (the range of a Linux nexthop weight),
//! 1..=[`MAX_QUEUES`] queues per veth.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Most LAN hosts a lab can have (hosts are numbered .11 upwards in a /24).
pub const MAX_LAN_HOSTS: usize = 200;
/// Most uplinks a lab can have (one /29 each inside 198.51.100.0/24).
pub const MAX_UPLINKS: usize = 32;
/// Largest uplink weight (Linux nexthop weights are 1..=256).
pub const MAX_WEIGHT: u32 = 256;
/// Most queues a lab veth can have.
pub const MAX_QUEUES: u16 = 16;

/// Who forwards between `lan0` and the uplinks in the router namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// The kernel reference router: `ip_forward=1`, a weighted multipath default route with the L4
    /// hash, nft masquerade per uplink, and a FORWARD chain with policy drop (invalid dropped,
    /// established/related accepted, LAN→WAN accepted).
    Kernel,
    /// Nobody: the router namespace has its addresses, the connected routes to every gateway,
    /// permanent neighbour entries for the gateways and the LAN hosts, `ip_forward=1`, and a plain
    /// default route via uplink 1's gateway for the router's own traffic, but no NAT and no
    /// firewall. The caller starts a forwarder (flowpin) in the router namespace. Note that the
    /// kernel itself would forward LAN traffic un-NATed out of `wan1` in this mode: the ISP counters
    /// then count it as a leak, which is what a fail-closed test wants to be able to see.
    None,
    /// flowpin: the router namespace as for `None` but without permanent neighbours (flowpin resolves
    /// the gateways through the kernel), then `flowpin run` with a configuration written for the lab
    /// (see [`crate::flowpin_router`]).
    Flowpin,
}

impl std::str::FromStr for RouterKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "kernel" => Ok(RouterKind::Kernel),
            "none" => Ok(RouterKind::None),
            "flowpin" => Ok(RouterKind::Flowpin),
            other => bail!("unknown router kind {other:?} (expected kernel, flowpin or none)"),
        }
    }
}

/// How the router's uplinks reach their ISPs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkWiring {
    /// Uplink k is the router's `wank`, a veth of its own to ISP k.
    #[default]
    Separate,
    /// Every uplink is on the router's one `wan1` (one address per uplink on it): its veth peer is
    /// on a bridge in the segment namespace with every ISP's `to-rtr`, like two modems behind a
    /// hub on one network card.
    Shared,
    /// Uplink k is a macvlan `wank` (bridge mode, a MAC of its own) on the router's veth `wan0`,
    /// whose peer is on the segment bridge with every ISP's `to-rtr`.
    Macvlan,
}

impl std::str::FromStr for UplinkWiring {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "separate" => Ok(UplinkWiring::Separate),
            "shared" => Ok(UplinkWiring::Shared),
            "macvlan" => Ok(UplinkWiring::Macvlan),
            other => {
                bail!("unknown uplink wiring {other:?} (expected separate, shared or macvlan)")
            }
        }
    }
}

/// One uplink of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkSpec {
    /// Share of new flows this uplink should get, relative to the other uplinks' weights.
    pub weight: u32,
    /// The router reaches this ISP over a tun device (no link layer, like `ppp0` or `wg0`) instead
    /// of a veth: `wanK` is a tun in the router, `to-rtr` a tun in the ISP, and the lab's relay
    /// (see [`crate::tun_relay`]) carries packets between the two, playing the modem.
    #[serde(default)]
    pub tun: bool,
}

impl UplinkSpec {
    /// An Ethernet (veth) uplink of `weight`.
    pub const fn ethernet(weight: u32) -> Self {
        UplinkSpec { weight, tun: false }
    }
}

/// The shape of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Number of LAN hosts on the router's `lan0` segment.
    pub lan_hosts: usize,
    /// The router's uplinks, `wan1..wanK` in order.
    pub uplinks: Vec<UplinkSpec>,
    /// Who routes in the router namespace.
    pub router: RouterKind,
    /// Prefix of every namespace name; `None` generates a unique one (`fp` + 6 random characters).
    pub name: Option<String>,
    /// RX and TX queues of the router's veth pairs (`lan0` ↔ the switch's `rtr`, `wanK` ↔ the ISP's
    /// `to-rtr`; see [`crate::wiring`] for how flows spread over them). flowpin runs one worker per
    /// queue.
    #[serde(default = "one_queue")]
    pub queues: u16,
    /// flowpin's `[datapath] flow_capacity` (the default's 262,144; tests of a full table use less).
    #[serde(default = "default_flow_capacity")]
    pub flow_capacity: u32,
    /// How the uplinks reach their ISPs (a veth each, by default).
    #[serde(default)]
    pub wiring: UplinkWiring,
}

fn one_queue() -> u16 {
    1
}

fn default_flow_capacity() -> u32 {
    262_144
}

impl Default for LabSpec {
    /// Two LAN hosts, two uplinks of weight 1, the kernel reference router, a generated name, one
    /// queue per veth.
    fn default() -> Self {
        LabSpec {
            lan_hosts: 2,
            uplinks: vec![UplinkSpec::ethernet(1); 2],
            router: RouterKind::Kernel,
            name: None,
            queues: one_queue(),
            flow_capacity: default_flow_capacity(),
            wiring: UplinkWiring::Separate,
        }
    }
}

impl LabSpec {
    /// A spec with the given uplink weights and the defaults for everything else.
    pub fn with_weights(weights: &[u32]) -> Self {
        LabSpec {
            uplinks: weights
                .iter()
                .map(|&weight| UplinkSpec::ethernet(weight))
                .collect(),
            ..LabSpec::default()
        }
    }

    /// Checks the invariants in the module documentation.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_LAN_HOSTS).contains(&self.lan_hosts) {
            bail!(
                "a lab needs 1..={MAX_LAN_HOSTS} LAN hosts, not {}",
                self.lan_hosts
            );
        }
        if !(1..=MAX_UPLINKS).contains(&self.uplinks.len()) {
            bail!(
                "a lab needs 1..={MAX_UPLINKS} uplinks, not {}",
                self.uplinks.len()
            );
        }
        if let Some(bad) = self
            .uplinks
            .iter()
            .find(|u| !(1..=MAX_WEIGHT).contains(&u.weight))
        {
            bail!("uplink weight {} is outside 1..={MAX_WEIGHT}", bad.weight);
        }
        if !(1..=MAX_QUEUES).contains(&self.queues) {
            bail!(
                "a lab's veths need 1..={MAX_QUEUES} queues, not {}",
                self.queues
            );
        }
        if self.queues != 1 && self.uplinks.iter().any(|u| u.tun) {
            bail!(
                "a lab with a tun uplink has one queue per veth, not {}",
                self.queues
            );
        }
        if self.wiring != UplinkWiring::Separate && self.uplinks.iter().any(|u| u.tun) {
            bail!(
                "a tun uplink is its own device: it cannot share a segment ({:?} wiring)",
                self.wiring
            );
        }
        if let Some(name) = &self.name {
            crate::name::validate_prefix(name)?;
        }
        Ok(())
    }
}

/// Parses a comma-separated weight list such as `3,1`.
pub fn parse_weights(text: &str) -> Result<Vec<u32>> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<u32>()
                .map_err(|error| anyhow::anyhow!("bad uplink weight {part:?}: {error}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_two_hosts_two_equal_uplinks_kernel_router() {
        let spec = LabSpec::default();
        spec.validate().unwrap();
        assert_eq!(spec.lan_hosts, 2);
        assert_eq!(
            spec.uplinks,
            vec![UplinkSpec::ethernet(1), UplinkSpec::ethernet(1)]
        );
        assert_eq!(spec.router, RouterKind::Kernel);
        assert_eq!(spec.queues, 1);
    }

    #[test]
    fn validation_rejects_out_of_range_shapes() {
        let zero_hosts = LabSpec {
            lan_hosts: 0,
            ..LabSpec::default()
        };
        assert!(zero_hosts.validate().is_err());
        assert!(LabSpec::with_weights(&[]).validate().is_err());
        assert!(LabSpec::with_weights(&[1, 0]).validate().is_err());
        assert!(LabSpec::with_weights(&[257]).validate().is_err());
        assert!(
            LabSpec::with_weights(&[1; MAX_UPLINKS + 1])
                .validate()
                .is_err()
        );
        LabSpec::with_weights(&[256, 1, 7]).validate().unwrap();
        let bad_name = LabSpec {
            name: Some("Bad-Name".into()),
            ..LabSpec::default()
        };
        assert!(bad_name.validate().is_err());
        for (queues, valid) in [
            (0, false),
            (1, true),
            (MAX_QUEUES, true),
            (MAX_QUEUES + 1, false),
        ] {
            let spec = LabSpec {
                queues,
                ..LabSpec::default()
            };
            assert_eq!(spec.validate().is_ok(), valid, "{queues} queues");
        }
    }

    #[test]
    fn a_spec_saved_before_queues_existed_loads_with_one_queue() {
        let json = r#"{"lan_hosts":2,"uplinks":[{"weight":1}],"router":"kernel","name":"fpold1"}"#;
        let spec: LabSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.queues, 1);
        assert!(!spec.uplinks[0].tun, "an uplink without the key is a veth");
    }

    #[test]
    fn a_tun_uplink_needs_one_queue() {
        let mut spec = LabSpec::with_weights(&[1, 1]);
        spec.uplinks[1].tun = true;
        spec.validate().unwrap();
        spec.queues = 2;
        assert!(spec.validate().is_err());
    }

    #[test]
    fn weights_and_router_kinds_parse_from_cli_text() {
        assert_eq!(parse_weights("3, 1,2").unwrap(), vec![3, 1, 2]);
        assert!(parse_weights("3,x").is_err());
        assert_eq!("kernel".parse::<RouterKind>().unwrap(), RouterKind::Kernel);
        assert_eq!("none".parse::<RouterKind>().unwrap(), RouterKind::None);
        assert_eq!(
            "flowpin".parse::<RouterKind>().unwrap(),
            RouterKind::Flowpin
        );
        assert!("vpp".parse::<RouterKind>().is_err());
    }
}
