//! From the file as written ([`super::raw`]) to the validated [`Config`]: defaults, required
//! keys, and every semantic rule, each failure located at its value's line and named by its
//! field path. All problems are collected, not just the first.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;

use super::cpus::{Host, format_cpu_list};
use super::locate::Source;
use super::model::{
    Config, Control, Datapath, Lan, Nat, Policy, PolicyMatch, PolicyUplink, Timeouts, Uplink,
    Workers,
};
use super::raw::{
    RawConfig, RawControl, RawDatapath, RawLan, RawMatch, RawNat, RawPolicy, RawPolicyUplink,
    RawTimeouts, RawUplink, S,
};
use super::raw::{RawFailback, RawFailover, RawHealth, RawMetrics};
use super::resilience::{
    Failback, FailbackMode, Failover, FailoverAction, Health, Metrics, ProbeKind, ProbeTarget,
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
    host: &Host,
) -> Result<Config, ConfigErrors> {
    let local_port_range = host.local_port_range;
    let mut checker = Checker {
        source,
        errors: Vec::new(),
    };
    let lan = checker.lan(raw.lan);
    let uplinks = checker.uplinks(raw.uplink, &lan);
    let nat = checker.nat(raw.nat, local_port_range);
    let policies = checker.policies(raw.policy, &lan, &uplinks);
    let datapath = checker.datapath(raw.datapath, host.online_cpus.as_deref());
    let control = checker.control(raw.control);
    let health = checker.health(raw.health);
    let failover = checker.failover(raw.failover);
    let failback = checker.failback(raw.failback);
    let metrics = checker.metrics(raw.metrics);
    if checker.errors.is_empty() {
        Ok(Config {
            lan,
            uplinks,
            nat,
            policies,
            datapath,
            control,
            health,
            failover,
            failback,
            metrics,
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
            ports_per_host: None,
            early_drop_unanswered: true,
            port_exhausted_icmp_per_s: Nat::DEFAULT_PORT_EXHAUSTED_ICMP_PER_S,
            port_exhausted_icmp_burst: Nat::DEFAULT_PORT_EXHAUSTED_ICMP_BURST,
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
        if let Some(early_drop) = raw.early_drop_unanswered {
            nat.early_drop_unanswered = early_drop.into_inner();
        }
        if let Some(quota) = raw.ports_per_host {
            let range_len = u32::from(nat.port_range.last() - nat.port_range.first()) + 1;
            if !(1..=range_len).contains(quota.get_ref()) {
                let message = format!(
                    "{}: must be 1-{range_len} (the size of port_range {}; RFC 6888 REQ-4)",
                    quota.get_ref(),
                    nat.port_range
                );
                self.fail(quota.span(), "nat.ports_per_host", message);
            }
            nat.ports_per_host = Some(quota.into_inner());
        }
        self.rate_limit(
            "nat.port_exhausted_icmp",
            (
                raw.port_exhausted_icmp_per_s,
                &mut nat.port_exhausted_icmp_per_s,
            ),
            (
                raw.port_exhausted_icmp_burst,
                &mut nat.port_exhausted_icmp_burst,
            ),
        );
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
        let Some(local) = local_port_range else {
            return;
        };
        let nat = flowpin_nat::PortRange::from(range);
        let Err(overlap) = nat.validate_against_local_range(local.into()) else {
            return;
        };
        let message = overlap.to_string();
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
                "RFC 5508 REQ-2",
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

    /// `[datapath] cpus`: not empty, no duplicate, each online (when `online` is known).
    fn cpus(&mut self, raw: S<Vec<S<u32>>>, online: Option<&[u32]>) -> Vec<u32> {
        const FIELD: &str = "datapath.cpus";
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.fail(
                span,
                FIELD,
                "empty: list at least one CPU id, or remove the key to use every CPU",
            );
            return Vec::new();
        }
        let mut cpus = Vec::with_capacity(raw.len());
        for (index, cpu) in raw.into_iter().enumerate() {
            let field = format!("{FIELD}[{index}]");
            let id = *cpu.get_ref();
            if cpus.contains(&id) {
                self.fail(cpu.span(), &field, format!("CPU {id} is listed twice"));
            } else if let Some(online) = online.filter(|online| !online.contains(&id)) {
                let message = format!(
                    "CPU {id} is not online on this machine (online CPUs: {})",
                    format_cpu_list(online)
                );
                self.fail(cpu.span(), &field, message);
            }
            cpus.push(id);
        }
        cpus
    }

    fn datapath(&mut self, raw: Option<RawDatapath>, online_cpus: Option<&[u32]>) -> Datapath {
        let mut datapath = Datapath {
            workers: Workers::Auto,
            mode: Default::default(),
            idle: Default::default(),
            flow_capacity: Datapath::DEFAULT_FLOW_CAPACITY,
            frames_per_worker: Datapath::DEFAULT_FRAMES_PER_WORKER,
            cpus: Vec::new(),
        };
        let Some(raw) = raw else { return datapath };
        if let Some(cpus) = raw.cpus {
            datapath.cpus = self.cpus(cpus, online_cpus);
        }
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

/// `[health]`, `[failover]`, `[failback]`, `[metrics]`.
impl Checker<'_> {
    fn health(&mut self, raw: Option<RawHealth>) -> Health {
        let mut health = Health::DEFAULT;
        let Some(raw) = raw else { return health };
        let mut min_answers_span = None;
        let counts = [
            (
                raw.interval_ms,
                &mut health.interval_ms,
                10,
                3_600_000,
                "interval_ms",
            ),
            (
                raw.timeout_ms,
                &mut health.timeout_ms,
                1,
                3_600_000,
                "timeout_ms",
            ),
            (
                raw.down_after,
                &mut health.down_after,
                1,
                1000,
                "down_after",
            ),
            (raw.up_after, &mut health.up_after, 1, 1000, "up_after"),
            (raw.window, &mut health.window, 1, 1000, "window"),
            (
                raw.down_rtt_ms,
                &mut health.down_rtt_ms,
                1,
                3_600_000,
                "down_rtt_ms",
            ),
            (
                raw.up_rtt_ms,
                &mut health.up_rtt_ms,
                1,
                3_600_000,
                "up_rtt_ms",
            ),
            (
                raw.min_answers,
                &mut health.min_answers,
                1,
                64,
                "min_answers",
            ),
            (
                raw.passive_down_after_unanswered,
                &mut health.passive_down_after_unanswered,
                0,
                1_000_000,
                "passive_down_after_unanswered",
            ),
            (
                raw.passive_answer_window_ms,
                &mut health.passive_answer_window_ms,
                100,
                600_000,
                "passive_answer_window_ms",
            ),
        ];
        let mut spans = HashMap::new();
        for (value, slot, low, high, key) in counts {
            let Some(value) = value else { continue };
            if !(low..=high).contains(value.get_ref()) {
                let message = format!("{}: must be {low}-{high}", value.get_ref());
                self.fail(value.span(), &format!("health.{key}"), message);
            }
            spans.insert(key, value.span());
            if key == "min_answers" {
                min_answers_span = Some(value.span());
            }
            *slot = value.into_inner();
        }
        for (value, slot, key) in [
            (
                raw.down_loss_percent,
                &mut health.down_loss_percent,
                "down_loss_percent",
            ),
            (
                raw.up_loss_percent,
                &mut health.up_loss_percent,
                "up_loss_percent",
            ),
        ] {
            let Some(value) = value else { continue };
            if *value.get_ref() > 100 {
                let message = format!("{} %: must be 0-100", value.get_ref());
                self.fail(value.span(), &format!("health.{key}"), message);
            }
            spans.insert(key, value.span());
            *slot = value.into_inner();
        }
        let span_of = |key: &str| spans.get(key).cloned().unwrap_or(0..0);
        if health.timeout_ms >= health.interval_ms {
            let message = format!(
                "{} ms is not below interval_ms ({} ms): a probe must end before the next round",
                health.timeout_ms, health.interval_ms
            );
            self.fail(span_of("timeout_ms"), "health.timeout_ms", message);
        }
        if health.up_loss_percent > health.down_loss_percent {
            let message = format!(
                "{} % is above down_loss_percent ({} %): the up threshold must not be looser",
                health.up_loss_percent, health.down_loss_percent
            );
            self.fail(
                span_of("up_loss_percent"),
                "health.up_loss_percent",
                message,
            );
        }
        if health.up_rtt_ms > health.down_rtt_ms {
            let message = format!(
                "{} ms is above down_rtt_ms ({} ms): the up threshold must not be looser",
                health.up_rtt_ms, health.down_rtt_ms
            );
            self.fail(span_of("up_rtt_ms"), "health.up_rtt_ms", message);
        }
        for (index, target) in raw.target.into_iter().enumerate() {
            let span = target.span();
            let target = target.into_inner();
            let field = |key: &str| format!("health.target[{index}].{key}");
            let kind = self
                .required(target.kind, &span, &field("kind"))
                .map_or(ProbeKind::Icmp, S::into_inner);
            let address = self.required(target.address, &span, &field("address"));
            let address = match address {
                Some(address) => {
                    let value = *address.get_ref();
                    if value.is_unspecified() || value.is_broadcast() || value.is_multicast() {
                        self.fail(
                            address.span(),
                            &field("address"),
                            format!("{value} is not a unicast host address"),
                        );
                    }
                    value
                }
                None => Ipv4Addr::UNSPECIFIED,
            };
            let port = match target.port {
                Some(port) if kind == ProbeKind::Icmp => {
                    self.fail(port.span(), &field("port"), "ICMP probes have no port");
                    0
                }
                Some(port) if *port.get_ref() == 0 => {
                    self.fail(port.span(), &field("port"), "port 0 cannot be probed");
                    0
                }
                Some(port) => port.into_inner(),
                None => kind.default_port(),
            };
            let query = match (kind, target.query) {
                (ProbeKind::Dns, Some(query)) => {
                    let text = query.get_ref();
                    let valid = !text.is_empty()
                        && text.len() <= 253
                        && text
                            .trim_end_matches('.')
                            .split('.')
                            .all(|label| (1..=63).contains(&label.len()) && label.is_ascii());
                    if !valid {
                        let message = format!("`{text}` is not a domain name");
                        self.fail(query.span(), &field("query"), message);
                    }
                    query.into_inner()
                }
                (ProbeKind::Dns, None) => {
                    self.fail(span, &field("query"), "missing (required for dns targets)");
                    String::new()
                }
                (_, Some(query)) => {
                    self.fail(
                        query.span(),
                        &field("query"),
                        "only dns targets have a query",
                    );
                    String::new()
                }
                (_, None) => String::new(),
            };
            health.targets.push(ProbeTarget {
                kind,
                address,
                port,
                query,
            });
        }
        if let Some(span) = min_answers_span
            && !health.targets.is_empty()
            && health.min_answers as usize > health.targets.len()
        {
            let message = format!(
                "{} answers can never come from {} target(s)",
                health.min_answers,
                health.targets.len()
            );
            self.fail(span, "health.min_answers", message);
        }
        if health.passive_trigger_enabled() && health.targets.is_empty() {
            let message = "needs [[health.target]]: only probes bring back an uplink the passive \
                           signal took down";
            self.fail(
                span_of("passive_down_after_unanswered"),
                "health.passive_down_after_unanswered",
                message,
            );
        }
        health
    }

    fn failover(&mut self, raw: Option<RawFailover>) -> Failover {
        let mut failover = Failover::default();
        let Some(raw) = raw else { return failover };
        for (value, slot, key) in [
            (raw.tcp, &mut failover.tcp, "tcp"),
            (raw.udp, &mut failover.udp, "udp"),
            (raw.icmp, &mut failover.icmp, "icmp"),
        ] {
            let Some(value) = value else { continue };
            if *value.get_ref() == FailoverAction::Reset && key != "tcp" {
                let message = "`reset` is a TCP action (an RST); use `move` or `keep`";
                self.fail(value.span(), &format!("failover.{key}"), message);
            }
            *slot = value.into_inner();
        }
        self.rate_limit(
            "failover.net_unreachable",
            (
                raw.net_unreachable_per_s,
                &mut failover.net_unreachable_per_s,
            ),
            (
                raw.net_unreachable_burst,
                &mut failover.net_unreachable_burst,
            ),
        );
        failover
    }

    /// A token bucket's two keys `{prefix}_per_s` and `{prefix}_burst` (`prefix` is the field path
    /// without the suffix): each 0-1000000, and a burst of at least 1 when the rate is not 0 (a rate
    /// of 0 switches the packets off).
    fn rate_limit(
        &mut self,
        prefix: &str,
        (raw_per_s, per_s): (Option<S<u32>>, &mut u32),
        (raw_burst, burst): (Option<S<u32>>, &mut u32),
    ) {
        let mut burst_span = None;
        for (value, slot, suffix) in [
            (raw_per_s, &mut *per_s, "per_s"),
            (raw_burst, &mut *burst, "burst"),
        ] {
            let Some(value) = value else { continue };
            if *value.get_ref() > 1_000_000 {
                let message = format!("{}: must be 0-1000000", value.get_ref());
                self.fail(value.span(), &format!("{prefix}_{suffix}"), message);
            }
            if suffix == "burst" {
                burst_span = Some(value.span());
            }
            *slot = value.into_inner();
        }
        if *per_s > 0 && *burst == 0 {
            let key = prefix.rsplit('.').next().unwrap_or(prefix);
            let message = format!("0 would never send one; set {key}_per_s = 0 to switch them off");
            self.fail(
                burst_span.unwrap_or(0..0),
                &format!("{prefix}_burst"),
                message,
            );
        }
    }

    fn failback(&mut self, raw: Option<S<RawFailback>>) -> Failback {
        let mut failback = Failback::default();
        let Some(raw) = raw else { return failback };
        let span = raw.span();
        let raw = raw.into_inner();
        if let Some(mode) = raw.mode {
            failback.mode = mode.into_inner();
        }
        if let Some(after) = raw.after_s {
            failback.after_s = after.into_inner();
        } else if failback.mode == FailbackMode::MoveAfter {
            self.fail(
                span,
                "failback.after_s",
                "missing (required with mode = \"move-after\")",
            );
        }
        if let Some(ports) = raw.udp_ports {
            if failback.mode == FailbackMode::Stay {
                self.fail(
                    ports.span(),
                    "failback.udp_ports",
                    "only with mode = \"move-after\"",
                );
            }
            failback.udp_ports = Some(ports.into_inner());
        }
        failback
    }

    fn metrics(&mut self, raw: Option<RawMetrics>) -> Metrics {
        let mut metrics = Metrics::default();
        let Some(listen) = raw.and_then(|raw| raw.listen) else {
            return metrics;
        };
        let text = listen.get_ref();
        if text == "off" {
            metrics.listen = None;
        } else {
            match text.parse() {
                Ok(address) => metrics.listen = Some(address),
                Err(_) => {
                    let message = format!("`{text}` is not `address:port` or \"off\"");
                    self.fail(listen.span(), "metrics.listen", message);
                }
            }
        }
        metrics
    }
}
