//! From the file as written ([`super::raw`]) to the validated [`Config`]: defaults, required
//! keys, and every semantic rule, each failure located at its value's line and named by its
//! field path. All problems are collected, not just the first.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;

use super::locate::Source;
use super::model::{
    Config, Control, Datapath, Lan, Nat, Policy, PolicyMatch, PolicyUplink, Timeouts, Uplink,
    Workers,
};
use super::raw::{
    RawConfig, RawControl, RawDatapath, RawLan, RawMatch, RawNat, RawPolicy, RawPolicyUplink,
    RawTimeouts, RawUplink, S,
};
use super::{ConfigError, ConfigErrors, Ipv4Prefix, PortRange};

/// The highest weight an uplink or a policy member may have.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The lowest port the NAT may hand out (below are the well-known ports, RFC 4787 §4.2.1).
pub const MIN_NAT_PORT: u16 = 1024;
/// The NAT port range when `[nat] port_range` is absent: below Linux's default
/// `ip_local_port_range` (32768-60999).
pub const DEFAULT_NAT_PORT_RANGE: (u16, u16) = (10000, 32767);
/// Bounds of `[datapath] flow_capacity`.
pub const FLOW_CAPACITY_RANGE: (u32, u32) = (1024, 1 << 28);
/// Bounds of `[datapath] frames_per_worker` (a power of two).
pub const FRAMES_PER_WORKER_RANGE: (u32, u32) = (512, 1 << 20);

/// Checks `raw` and builds the [`Config`], or reports every problem found.
pub(super) fn validate(
    source: Source<'_>,
    raw: RawConfig,
    local_port_range: Option<PortRange>,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        source,
        errors: Vec::new(),
    };
    let lan = checker.lan(raw.lan);
    let uplinks = checker.uplinks(raw.uplink, &lan);
    let nat = checker.nat(raw.nat, local_port_range);
    let policies = checker.policies(raw.policy, &lan, &uplinks);
    let datapath = checker.datapath(raw.datapath);
    let control = checker.control(raw.control);
    if checker.errors.is_empty() {
        Ok(Config {
            lan,
            uplinks,
            nat,
            policies,
            datapath,
            control,
        })
    } else {
        let mut errors = checker.errors;
        errors.sort_by_key(|error| error.line.unwrap_or(0));
        Err(ConfigErrors(errors))
    }
}

struct Checker<'a> {
    source: Source<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn fail(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.errors.push(self.source.error(span, field, message));
    }

    /// A required table that is absent from the whole file.
    fn fail_missing_table(&mut self, field: &str, message: &str) {
        self.errors.push(ConfigError {
            file: self.source.file.to_owned(),
            line: None,
            field: field.to_owned(),
            message: message.to_owned(),
        });
    }

    /// `value`, or an error at the enclosing table when it is absent.
    fn required<T>(
        &mut self,
        value: Option<S<T>>,
        table: &Range<usize>,
        field: &str,
    ) -> Option<S<T>> {
        if value.is_none() {
            self.fail(table.clone(), field, "missing (required)");
        }
        value
    }

    fn lan(&mut self, raw: Option<S<RawLan>>) -> Lan {
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

    fn uplinks(&mut self, raw: Vec<S<RawUplink>>, lan: &Lan) -> Vec<Uplink> {
        if raw.is_empty() {
            self.fail_missing_table("uplink", "no [[uplink]]: at least one is required");
            return Vec::new();
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut interfaces: HashMap<String, usize> = HashMap::new();
        let mut uplinks = Vec::with_capacity(raw.len());
        let mut first_weight_span = None;
        for (index, raw) in raw.into_iter().enumerate() {
            let span = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("uplink[{index}].{key}");
            let mut uplink = Uplink {
                name: String::new(),
                interface: String::new(),
                gateway: Ipv4Addr::UNSPECIFIED,
                address: None,
                weight: 1,
            };
            if let Some(name) = self.required(raw.name, &span, &field("name")) {
                self.check_name(&name, &field("name"));
                if let Some(other) = names.insert(name.get_ref().clone(), index) {
                    let message = format!(
                        "duplicate uplink name `{}` (also uplink[{other}])",
                        name.get_ref()
                    );
                    self.fail(name.span(), &field("name"), message);
                }
                uplink.name = name.into_inner();
            }
            if let Some(interface) = self.required(raw.interface, &span, &field("interface")) {
                self.check_interface_name(&interface, &field("interface"));
                if *interface.get_ref() == lan.interface {
                    self.fail(
                        interface.span(),
                        &field("interface"),
                        "is the LAN interface",
                    );
                }
                if let Some(other) = interfaces.insert(interface.get_ref().clone(), index) {
                    let message = format!(
                        "interface `{}` is already used by uplink[{other}]",
                        interface.get_ref()
                    );
                    self.fail(interface.span(), &field("interface"), message);
                }
                uplink.interface = interface.into_inner();
            }
            if let Some(gateway) = self.required(raw.gateway, &span, &field("gateway")) {
                self.check_unicast(&gateway, &field("gateway"), lan);
                uplink.gateway = gateway.into_inner();
            }
            if let Some(address) = raw.address {
                self.check_unicast(&address, &field("address"), lan);
                uplink.address = Some(address.into_inner());
            }
            if let Some(weight) = raw.weight {
                self.check_weight(&weight, &field("weight"));
                first_weight_span.get_or_insert_with(|| weight.span());
                uplink.weight = weight.into_inner();
            }
            uplinks.push(uplink);
        }
        if uplinks.iter().all(|uplink| uplink.weight == 0) {
            let span = first_weight_span.unwrap_or(0..0);
            self.fail(
                span,
                "uplink[0].weight",
                "every uplink has weight 0 (standby): at least one needs a weight above 0",
            );
        }
        uplinks
    }

    fn nat(&mut self, raw: Option<RawNat>, local_port_range: Option<PortRange>) -> Nat {
        let default_range = PortRange::new(DEFAULT_NAT_PORT_RANGE.0, DEFAULT_NAT_PORT_RANGE.1)
            .expect("the default NAT port range is not empty");
        let mut nat = Nat {
            port_range: default_range,
            stickiness: Default::default(),
            timeouts: Timeouts::DEFAULT,
            udp_refresh_on_inbound: false,
            filtering: Default::default(),
        };
        let Some(raw) = raw else {
            self.check_port_range_free(None, nat.port_range, local_port_range);
            return nat;
        };
        if let Some(range) = &raw.port_range {
            if range.get_ref().first() < MIN_NAT_PORT {
                let message = format!(
                    "{} starts below {MIN_NAT_PORT}: well-known ports are not handed out \
                     (RFC 4787 §4.2.1) and may belong to the router's own services",
                    range.get_ref()
                );
                self.fail(range.span(), "nat.port_range", message);
            }
            nat.port_range = *range.get_ref();
        }
        self.check_port_range_free(
            raw.port_range.as_ref().map(S::span),
            nat.port_range,
            local_port_range,
        );
        if let Some(stickiness) = raw.stickiness {
            nat.stickiness = stickiness.into_inner();
        }
        if let Some(refresh) = raw.udp_refresh_on_inbound {
            nat.udp_refresh_on_inbound = refresh.into_inner();
        }
        if let Some(filtering) = raw.filtering {
            nat.filtering = filtering.into_inner();
        }
        if let Some(timeouts) = raw.timeouts {
            nat.timeouts = self.timeouts(timeouts);
        }
        nat
    }

    /// The NAT range must not overlap the router's own ephemeral ports, or the router's own
    /// connections and flowpin's mappings would claim the same ports on the uplink addresses.
    fn check_port_range_free(
        &mut self,
        span: Option<Range<usize>>,
        range: PortRange,
        local_port_range: Option<PortRange>,
    ) {
        let Some(local) = local_port_range.filter(|local| local.overlaps(&range)) else {
            return;
        };
        let message = format!(
            "{range} overlaps the router's ip_local_port_range {}-{}: choose a range outside it \
             or shrink net.ipv4.ip_local_port_range",
            local.first(),
            local.last()
        );
        match span {
            Some(span) => self.fail(span, "nat.port_range", message),
            None => self.fail_missing_table(
                "nat.port_range",
                &format!("(default) {message}; set [nat] port_range"),
            ),
        }
    }

    fn timeouts(&mut self, raw: RawTimeouts) -> Timeouts {
        let mut timeouts = Timeouts::DEFAULT;
        let minimum = Timeouts::MINIMUM;
        let entries = [
            (
                raw.udp,
                &mut timeouts.udp,
                minimum.udp,
                "udp",
                "RFC 4787 REQ-5",
            ),
            (
                raw.tcp_established,
                &mut timeouts.tcp_established,
                minimum.tcp_established,
                "tcp_established",
                "RFC 5382 REQ-5",
            ),
            (
                raw.tcp_transitory,
                &mut timeouts.tcp_transitory,
                minimum.tcp_transitory,
                "tcp_transitory",
                "RFC 5382 REQ-5",
            ),
            (
                raw.icmp,
                &mut timeouts.icmp,
                minimum.icmp,
                "icmp",
                "RFC 5508 REQ-1",
            ),
        ];
        for (value, slot, minimum, key, rfc) in entries {
            let Some(value) = value else { continue };
            if *value.get_ref() < minimum {
                let message = format!(
                    "{} s is below the minimum of {minimum} s ({rfc})",
                    value.get_ref()
                );
                self.errors.push(self.source.error(
                    value.span(),
                    &format!("nat.timeouts.{key}"),
                    message,
                ));
            }
            *slot = value.into_inner();
        }
        timeouts
    }

    fn policies(&mut self, raw: Vec<S<RawPolicy>>, lan: &Lan, uplinks: &[Uplink]) -> Vec<Policy> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut policies = Vec::with_capacity(raw.len());
        for (index, raw) in raw.into_iter().enumerate() {
            let span = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("policy[{index}].{key}");
            let mut policy = Policy {
                name: String::new(),
                matcher: PolicyMatch::default(),
                uplinks: Vec::new(),
            };
            if let Some(name) = self.required(raw.name, &span, &field("name")) {
                self.check_name(&name, &field("name"));
                if let Some(other) = names.insert(name.get_ref().clone(), index) {
                    let message = format!(
                        "duplicate policy name `{}` (also policy[{other}])",
                        name.get_ref()
                    );
                    self.fail(name.span(), &field("name"), message);
                }
                policy.name = name.into_inner();
            }
            if let Some(matcher) = raw.matcher {
                policy.matcher = self.policy_match(matcher, &field("match"), lan);
            }
            if let Some(members) = self.required(raw.uplinks, &span, &field("uplinks")) {
                policy.uplinks = self.policy_uplinks(members, &field("uplinks"), uplinks);
            }
            policies.push(policy);
        }
        policies
    }

    fn policy_match(&mut self, raw: RawMatch, field: &str, lan: &Lan) -> PolicyMatch {
        let mut matcher = PolicyMatch::default();
        if let Some(src) = raw.src {
            let src = self.prefixes(src, &format!("{field}.src"));
            for (index, prefix) in src.iter().enumerate() {
                let overlaps_lan = lan.prefixes.iter().any(|lan_prefix| {
                    lan_prefix.covers(prefix.get_ref()) || prefix.get_ref().covers(lan_prefix)
                });
                if !overlaps_lan && !lan.prefixes.is_empty() {
                    let message = format!(
                        "{} lies outside every [lan] prefix, so it would never match (other \
                         sources are dropped as spoofed)",
                        prefix.get_ref()
                    );
                    self.fail(prefix.span(), &format!("{field}.src[{index}]"), message);
                }
            }
            matcher.src = src.into_iter().map(S::into_inner).collect();
        }
        if let Some(dst) = raw.dst {
            let dst = self.prefixes(dst, &format!("{field}.dst"));
            matcher.dst = dst.into_iter().map(S::into_inner).collect();
        }
        matcher.proto = raw.proto.map(S::into_inner);
        if let Some(dst_port) = raw.dst_port {
            if matcher.proto.is_some_and(|proto| !proto.has_ports()) {
                self.fail(
                    dst_port.span(),
                    &format!("{field}.dst_port"),
                    "ICMP has no ports; remove dst_port or match tcp/udp",
                );
            }
            matcher.dst_port = Some(dst_port.into_inner());
        }
        if let Some(dscp) = raw.dscp {
            if *dscp.get_ref() > 63 {
                self.fail(
                    dscp.span(),
                    &format!("{field}.dscp"),
                    format!("{} is not a DSCP code point (0-63)", dscp.get_ref()),
                );
            }
            matcher.dscp = Some(dscp.into_inner());
        }
        matcher
    }

    fn policy_uplinks(
        &mut self,
        members: S<Vec<S<RawPolicyUplink>>>,
        field: &str,
        uplinks: &[Uplink],
    ) -> Vec<PolicyUplink> {
        let list_span = members.span();
        let members = members.into_inner();
        if members.is_empty() {
            self.fail(list_span.clone(), field, "needs at least one uplink");
        }
        let mut group: Vec<PolicyUplink> = Vec::with_capacity(members.len());
        for (position, member) in members.into_iter().enumerate() {
            let span = member.span();
            let member_field = format!("{field}[{position}]");
            let RawPolicyUplink { name, weight } = member.into_inner();
            if let Some(weight) = weight.filter(|weight| *weight > MAX_WEIGHT) {
                self.fail(
                    span.clone(),
                    &format!("{member_field}.weight"),
                    format!("{weight} is above the maximum of {MAX_WEIGHT}"),
                );
            }
            let Some(index) = uplinks.iter().position(|uplink| uplink.name == name) else {
                let known: Vec<&str> = uplinks.iter().map(|uplink| uplink.name.as_str()).collect();
                let message = format!("unknown uplink `{name}` (uplinks: {})", known.join(", "));
                self.fail(span, &member_field, message);
                continue;
            };
            if group.iter().any(|member| member.index == index) {
                self.fail(
                    span,
                    &member_field,
                    format!("uplink `{name}` is listed twice"),
                );
                continue;
            }
            group.push(PolicyUplink {
                name,
                index,
                weight,
            });
        }
        let total: u64 = group
            .iter()
            .map(|member| u64::from(member.weight.unwrap_or(uplinks[member.index].weight)))
            .sum();
        if !group.is_empty() && total == 0 {
            self.fail(
                list_span,
                field,
                "total weight is 0 (standby uplinks inherit weight 0): give a member a weight, \
                 e.g. { name = \"...\", weight = 1 }",
            );
        }
        group
    }

    fn datapath(&mut self, raw: Option<RawDatapath>) -> Datapath {
        let mut datapath = Datapath {
            workers: Workers::Auto,
            mode: Default::default(),
            idle: Default::default(),
            flow_capacity: Datapath::DEFAULT_FLOW_CAPACITY,
            frames_per_worker: Datapath::DEFAULT_FRAMES_PER_WORKER,
        };
        let Some(raw) = raw else { return datapath };
        if let Some(workers) = raw.workers {
            datapath.workers = workers.into_inner();
        }
        if let Some(mode) = raw.mode {
            datapath.mode = mode.into_inner();
        }
        if let Some(idle) = raw.idle {
            datapath.idle = idle.into_inner();
        }
        if let Some(capacity) = raw.flow_capacity {
            let (low, high) = FLOW_CAPACITY_RANGE;
            if !(low..=high).contains(capacity.get_ref()) {
                let message = format!("{} flows: must be {low}-{high}", capacity.get_ref());
                self.fail(capacity.span(), "datapath.flow_capacity", message);
            }
            datapath.flow_capacity = capacity.into_inner();
        }
        if let Some(frames) = raw.frames_per_worker {
            let (low, high) = FRAMES_PER_WORKER_RANGE;
            let value = *frames.get_ref();
            if !value.is_power_of_two() || !(low..=high).contains(&value) {
                let message = format!("{value} frames: must be a power of two, {low}-{high}");
                self.fail(frames.span(), "datapath.frames_per_worker", message);
            }
            datapath.frames_per_worker = value;
        }
        datapath
    }

    fn control(&mut self, raw: Option<RawControl>) -> Control {
        let mut control = Control {
            socket: PathBuf::from(Control::DEFAULT_SOCKET),
        };
        if let Some(socket) = raw.and_then(|raw| raw.socket) {
            if !socket.get_ref().is_absolute() {
                self.fail(
                    socket.span(),
                    "control.socket",
                    format!("`{}` is not an absolute path", socket.get_ref().display()),
                );
            }
            control.socket = socket.into_inner();
        }
        control
    }

    /// Parses a list of prefixes, naming each bad element by its index; keeps the good ones.
    fn prefixes(&mut self, list: S<Vec<S<String>>>, field: &str) -> Vec<S<Ipv4Prefix>> {
        let mut prefixes = Vec::with_capacity(list.get_ref().len());
        for (index, text) in list.into_inner().into_iter().enumerate() {
            match text.get_ref().parse::<Ipv4Prefix>() {
                Ok(prefix) => prefixes.push(S::new(text.span(), prefix)),
                Err(message) => self.fail(text.span(), &format!("{field}[{index}]"), message),
            }
        }
        prefixes
    }

    /// Uplink and policy names: shown in the CLI and metrics labels, so kept plain.
    fn check_name(&mut self, name: &S<String>, field: &str) {
        let text = name.get_ref();
        let plain = text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte));
        if text.is_empty() || text.len() > 32 || !plain {
            let message =
                format!("`{text}`: a name is 1-32 characters of letters, digits, `_`, `-`, `.`");
            self.fail(name.span(), field, message);
        }
    }

    /// Linux interface names: 1-15 bytes, no `/`, `:` or white space.
    fn check_interface_name(&mut self, name: &S<String>, field: &str) {
        let text = name.get_ref();
        let valid = !text.is_empty()
            && text.len() <= 15
            && text != "."
            && text != ".."
            && !text
                .bytes()
                .any(|byte| byte == b'/' || byte == b':' || byte.is_ascii_whitespace());
        if !valid {
            let message = format!(
                "`{text}` is not a Linux interface name (1-15 characters, no `/`, `:`, spaces)"
            );
            self.fail(name.span(), field, message);
        }
    }

    fn check_unicast(&mut self, address: &S<Ipv4Addr>, field: &str, lan: &Lan) {
        let value = *address.get_ref();
        let problem = if value.is_unspecified() || value.is_broadcast() {
            Some("is not a host address")
        } else if value.is_multicast() {
            Some("is a multicast address")
        } else if value.is_loopback() {
            Some("is a loopback address")
        } else if lan.contains(value) {
            Some("lies inside a [lan] prefix")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.fail(address.span(), field, format!("{value} {problem}"));
        }
    }

    fn check_weight(&mut self, weight: &S<u32>, field: &str) {
        if *weight.get_ref() > MAX_WEIGHT {
            let message = format!("{} is above the maximum of {MAX_WEIGHT}", weight.get_ref());
            self.fail(weight.span(), field, message);
        }
    }
}
