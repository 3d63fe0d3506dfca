//! `[[forward]]`: names unique, uplinks existing (or `"all"`), external ports clear of the NAT
//! range and of every other forward on a shared uplink and protocol, a LAN host as the target and a
//! LAN port range as long as the external one.
//!
//! Ports the router itself listens on are not known here (they are the machine's, not the
//! file's): `flowpin check` warns about a forwarded port the router listens on
//! (`control/environment.rs`); the forward wins for packets to the uplink's address.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::super::model::{Forward, Lan, Nat, Uplink};
use super::super::raw::{RawForward, RawForwardUplinks, S};
use super::super::{PortRange, Protocol};
use super::Checker;

/// A forward already checked: what a later one may not overlap.
struct Claimed {
    index: usize,
    name: String,
    line: usize,
    uplinks: Vec<String>,
    protocols: &'static [Protocol],
    port: PortRange,
}

impl Checker<'_> {
    /// Which inbound ports go to which LAN hosts (`[[forward]]`, in file order)?
    pub(super) fn forwards(
        &mut self,
        raw: Vec<S<RawForward>>,
        lan: &Lan,
        uplinks: &[Uplink],
        nat: &Nat,
    ) -> Vec<Forward> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claimed: Vec<Claimed> = Vec::new();
        let mut forwards = Vec::with_capacity(raw.len());
        let mut total_entries = 0usize;
        for (index, raw) in raw.into_iter().enumerate() {
            let span = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("forward[{index}].{key}");
            let name = self.required(raw.name, &span, &field("name"));
            if let Some(name) = &name {
                self.check_name(name, &field("name"));
                if let Some(other) = names.insert(name.get_ref().clone(), index) {
                    let message = format!(
                        "duplicate forward name `{}` (also forward[{other}])",
                        name.get_ref()
                    );
                    self.fail(name.span(), &field("name"), message);
                }
            }
            let members = (self.required(raw.uplinks, &span, &field("uplinks")))
                .map(|members| self.forward_uplinks(members, &field("uplinks"), uplinks));
            let protocol = self.required(raw.protocol, &span, &field("protocol"));
            let port = (self.required(raw.port, &span, &field("port")))
                .filter(|port| self.check_forward_port(port, &field("port"), nat));
            let to = (self.required(raw.to, &span, &field("to")))
                .filter(|to| self.check_forward_target(to, &field("to"), lan));
            let to_port = match (raw.to_port, &port) {
                (Some(to_port), Some(port)) => {
                    self.check_to_port(&to_port, *port.get_ref(), &field("to_port"))
                }
                (None, port) => port.as_ref().map(|port| *port.get_ref()),
                (Some(_), None) => None,
            };
            let (Some(name), Some(members), Some(protocol), Some(port), Some(to), Some(to_port)) =
                (name, members, protocol, port, to, to_port)
            else {
                continue;
            };
            let protocols = protocol.get_ref().protocols();
            if let Some(other) = claimed.iter().find(|other| {
                other.port.overlaps(*port.get_ref())
                    && other.protocols.iter().any(|p| protocols.contains(p))
                    && other.uplinks.iter().any(|u| members.contains(u))
            }) {
                let message = format!(
                    "{} overlaps forward[{}] `{}` (line {}, port {}) on a shared uplink and \
                     protocol",
                    port.get_ref(),
                    other.index,
                    other.name,
                    other.line,
                    other.port
                );
                self.fail(port.span(), &field("port"), message);
                continue;
            }
            let entries = port.get_ref().len() * members.len() * protocols.len();
            total_entries += entries;
            if total_entries > flowpin_bpf::MAX_FORWARD_PORTS as usize {
                let message = format!(
                    "the forwards up to this one need {total_entries} (uplink, protocol, port) \
                     entries; the XDP program holds {}",
                    flowpin_bpf::MAX_FORWARD_PORTS
                );
                self.fail(port.span(), &field("port"), message);
                continue;
            }
            claimed.push(Claimed {
                index,
                name: name.get_ref().clone(),
                line: self.source.line_of(port.span().start),
                uplinks: members.clone(),
                protocols,
                port: *port.get_ref(),
            });
            forwards.push(Forward {
                name: name.into_inner(),
                uplinks: members,
                protocol: protocol.into_inner(),
                port: port.into_inner(),
                to: to.into_inner(),
                to_port,
            });
        }
        forwards
    }

    /// The uplinks a forward names: `"all"`, or a list of existing uplinks, each once.
    fn forward_uplinks(
        &mut self,
        members: S<RawForwardUplinks>,
        field: &str,
        uplinks: &[Uplink],
    ) -> Vec<String> {
        let span = members.span();
        match members.into_inner() {
            RawForwardUplinks::Word(word) if word == "all" => {
                uplinks.iter().map(|u| u.name.clone()).collect()
            }
            RawForwardUplinks::Word(word) => {
                let message = format!("`{word}`: expected \"all\" or a list of uplink names");
                self.fail(span, field, message);
                Vec::new()
            }
            RawForwardUplinks::Names(names) if names.is_empty() => {
                self.fail(span, field, "names no uplink");
                Vec::new()
            }
            RawForwardUplinks::Names(names) => {
                let mut members: Vec<String> = Vec::with_capacity(names.len());
                for (i, name) in names.into_iter().enumerate() {
                    let text = &name;
                    let problem = if !uplinks.iter().any(|u| &u.name == text) {
                        Some(format!("`{text}` is not an [[uplink]] name"))
                    } else if members.contains(text) {
                        Some(format!("`{text}` is listed twice"))
                    } else {
                        None
                    };
                    match problem {
                        Some(message) => self.fail(span.clone(), &format!("{field}[{i}]"), message),
                        None => members.push(name),
                    }
                }
                members
            }
        }
    }

    /// Is a forward's external port range clear of the NAT range (where it would steal mappings'
    /// return traffic) and above 0?
    fn check_forward_port(&mut self, port: &S<PortRange>, field: &str, nat: &Nat) -> bool {
        let range = *port.get_ref();
        let problem = if range.first() == 0 {
            Some("port 0 cannot be forwarded".to_owned())
        } else if range.overlaps(nat.port_range) {
            Some(format!(
                "{range} overlaps the NAT port range {} ([nat] port_range): its return traffic \
                 would be taken for forwarded traffic",
                nat.port_range
            ))
        } else {
            None
        };
        if let Some(message) = &problem {
            self.fail(port.span(), field, message.as_str());
        }
        problem.is_none()
    }

    /// Is a forward's target a LAN host: inside a `[lan]` prefix, neither its network nor its
    /// broadcast address?
    fn check_forward_target(&mut self, to: &S<Ipv4Addr>, field: &str, lan: &Lan) -> bool {
        let address = *to.get_ref();
        let problem =
            if !lan.contains(address) {
                Some("lies outside every [lan] prefix")
            } else if lan.prefixes.iter().any(|p| {
                p.prefix_len() <= 30 && (address == p.network() || address == p.broadcast())
            }) {
                Some("is a [lan] prefix's network or broadcast address")
            } else {
                None
            };
        if let Some(problem) = problem {
            self.fail(to.span(), field, format!("{address} {problem}"));
        }
        problem.is_none()
    }

    /// A LAN port range as long as the external one, above 0.
    fn check_to_port(
        &mut self,
        to_port: &S<PortRange>,
        port: PortRange,
        field: &str,
    ) -> Option<PortRange> {
        let range = *to_port.get_ref();
        if range.first() == 0 {
            self.fail(to_port.span(), field, "port 0 cannot be a target");
            return None;
        }
        if range.len() != port.len() {
            let message = format!(
                "{range} holds {} ports, the external range {port} {}: a range maps port by port",
                range.len(),
                port.len()
            );
            self.fail(to_port.span(), field, message);
            return None;
        }
        Some(range)
    }
}
