//! `[lan]` and `[[uplink]]`: the LAN's interface and prefixes; uplinks with unique names, interfaces
//! that are not the LAN's, unicast gateways and addresses outside the LAN, and at least one weight
//! above 0; `mss_clamp` one of its forms.
//!
//! Several uplinks may share an interface (two modems behind one NIC): they are told apart by their
//! NAT address, so on one interface no two uplinks may have the same `address`, and at most one may
//! leave it unset (it takes the interface's own address).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::super::model::{Lan, Uplink};
use super::super::raw::{RawLan, RawUplink, S};
use super::Checker;

/// Uplink names seen so far (to the index of the uplink that took them), the NAT addresses taken
/// on each interface (`None`: the interface's own), and the first weight written.
#[derive(Default)]
struct Taken {
    names: HashMap<String, usize>,
    interfaces: HashMap<String, Vec<(Option<Ipv4Addr>, usize)>>,
    first_weight: Option<Range<usize>>,
}

impl Checker<'_> {
    /// Which interface faces the hosts, and which sources are legitimate?
    pub(super) fn lan(&mut self, raw: Option<S<RawLan>>) -> Lan {
        let mut lan = Lan {
            interface: String::new(),
            prefixes: Vec::new(),
        };
        let Some(raw) = raw else {
            self.fail_missing_table("lan", "missing table [lan] (interface, prefixes)");
            return lan;
        };
        let span = raw.span();
        let raw = raw.into_inner();
        if let Some(interface) = self.required(raw.interface, &span, "lan.interface") {
            self.check_interface_name(&interface, "lan.interface");
            lan.interface = interface.into_inner();
        }
        if let Some(prefixes) = self.required(raw.prefixes, &span, "lan.prefixes") {
            if prefixes.get_ref().is_empty() {
                self.fail(prefixes.span(), "lan.prefixes", "needs at least one prefix");
            }
            lan.prefixes = self
                .prefixes(prefixes, "lan.prefixes")
                .into_iter()
                .map(S::into_inner)
                .collect();
        }
        lan
    }

    /// What are the uplinks, in file order?
    pub(super) fn uplinks(&mut self, raw: Vec<S<RawUplink>>, lan: &Lan) -> Vec<Uplink> {
        if raw.is_empty() {
            self.fail_missing_table("uplink", "no [[uplink]]: at least one is required");
            return Vec::new();
        }
        let mut taken = Taken::default();
        let uplinks: Vec<Uplink> = (raw.into_iter().enumerate())
            .map(|(index, raw)| self.uplink(index, raw, lan, &mut taken))
            .collect();
        if uplinks.iter().all(|uplink| uplink.weight == 0) {
            self.fail(
                taken.first_weight.unwrap_or(0..0),
                "uplink[0].weight",
                "every uplink has weight 0 (standby): at least one needs a weight above 0",
            );
        }
        uplinks
    }

    /// What is `uplink[index]`, and does it clash with the LAN or an earlier uplink?
    fn uplink(&mut self, index: usize, raw: S<RawUplink>, lan: &Lan, taken: &mut Taken) -> Uplink {
        let span = raw.span();
        let raw = raw.into_inner();
        let field = |key: &str| format!("uplink[{index}].{key}");
        let mut uplink = Uplink {
            name: String::new(),
            interface: String::new(),
            gateway: Ipv4Addr::UNSPECIFIED,
            address: None,
            weight: 1,
            tier: Uplink::DEFAULT_TIER,
            mss_clamp: None,
            health: None,
        };
        if let Some(name) = self.required(raw.name, &span, &field("name")) {
            self.check_name(&name, &field("name"));
            if let Some(other) = taken.names.insert(name.get_ref().clone(), index) {
                let message = format!(
                    "duplicate uplink name `{}` (also uplink[{other}])",
                    name.get_ref()
                );
                self.fail(name.span(), &field("name"), message);
            }
            uplink.name = name.into_inner();
        }
        let interface = self.required(raw.interface, &span, &field("interface"));
        if let Some(interface) = &interface {
            self.check_uplink_interface(interface, &field("interface"), lan);
            uplink.interface = interface.get_ref().clone();
        }
        if let Some(gateway) = self.required(raw.gateway, &span, &field("gateway")) {
            self.check_unicast(&gateway, &field("gateway"), lan);
            uplink.gateway = gateway.into_inner();
        }
        if let Some(address) = &raw.address {
            self.check_unicast(address, &field("address"), lan);
            uplink.address = Some(*address.get_ref());
        }
        if let Some(interface) = &interface {
            let place = match &raw.address {
                Some(address) => (address.span(), field("address")),
                None => (interface.span(), field("interface")),
            };
            self.check_shared_interface(interface.get_ref(), uplink.address, place, taken, index);
        }
        if let Some(weight) = raw.weight {
            self.check_weight(&weight, &field("weight"));
            taken.first_weight.get_or_insert_with(|| weight.span());
            uplink.weight = weight.into_inner();
        }
        if let Some(tier) = raw.tier {
            self.check_tier(*tier.get_ref(), tier.span(), &field("tier"));
            uplink.tier = tier.into_inner();
        }
        if let Some(mss_clamp) = raw.mss_clamp {
            match mss_clamp.get_ref().validate() {
                Ok(value) => uplink.mss_clamp = Some(value),
                Err(message) => self.fail(mss_clamp.span(), &field("mss_clamp"), message),
            }
        }
        uplink
    }

    /// Is `interface` a Linux name, and not the LAN's?
    fn check_uplink_interface(&mut self, interface: &S<String>, field: &str, lan: &Lan) {
        self.check_interface_name(interface, field);
        if *interface.get_ref() == lan.interface {
            self.fail(interface.span(), field, "is the LAN interface");
        }
    }

    /// Does `uplink[index]` have a NAT address of its own on `interface` (no earlier uplink there
    /// with the same `address`, or, without one, no earlier uplink there without one either)? The
    /// error is placed at `place`: its `address`, or its `interface` when it has none.
    fn check_shared_interface(
        &mut self,
        interface: &str,
        address: Option<Ipv4Addr>,
        (span, field): (Range<usize>, String),
        taken: &mut Taken,
        index: usize,
    ) {
        let on_interface = taken.interfaces.entry(interface.to_owned()).or_default();
        let clash = (on_interface.iter()).find(|(other_address, _)| *other_address == address);
        if let Some((_, other)) = clash {
            let message = match address {
                Some(address) => format!(
                    "uplink[{other}] on interface `{interface}` has address {address} too: \
                     uplinks sharing an interface need an `address` each, all different"
                ),
                None => format!(
                    "interface `{interface}` is already used by uplink[{other}], and neither sets \
                     `address`: uplinks sharing an interface need an `address` each (at most one \
                     may take the interface's own)"
                ),
            };
            self.fail(span, &field, message);
        }
        on_interface.push((address, index));
    }
}
