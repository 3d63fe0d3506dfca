//! Parsing the example, round trips, and one test per class of error, each checking the exact
//! `file:line: field: message` location.

use std::net::Ipv4Addr;

use flowpin_nat::RefreshPolicy;

use super::*;

const EXAMPLE: &str = include_str!("../../examples/flowpin.toml");

/// A small valid file that the error tests break in one place each.
const BASE: &str = r#"[lan]
interface = "lan0"
prefixes = ["10.0.0.0/16"]

[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "192.0.2.1"
weight = 1

[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.1"
weight = 1
"#;

fn errors_of(text: &str) -> Vec<String> {
    errors_with_range(text, None)
}

fn errors_with_range(text: &str, local: Option<PortRange>) -> Vec<String> {
    match parse(text, "flowpin.toml", local) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that exactly one error was reported and that it starts with `location`
/// (`flowpin.toml:LINE: FIELD: `) and mentions `words`.
fn assert_single_error(text: &str, location: &str, words: &str) {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(location),
        "want `{location}…`, got `{}`",
        errors[0]
    );
    assert!(
        errors[0].contains(words),
        "want `{words}` in `{}`",
        errors[0]
    );
}

#[test]
fn the_example_parses_with_the_linux_default_port_range() {
    let linux_default = PortRange::new(32768, 60999).ok();
    let config = parse(EXAMPLE, "flowpin.toml", linux_default).unwrap();
    assert_eq!(config.uplinks.len(), 3);
    assert_eq!(config.uplinks[2].weight, 0);
    assert_eq!(
        config.uplinks[1].address,
        Some(Ipv4Addr::new(198, 51, 100, 20))
    );
    assert_eq!(config.policies[0].uplinks[0].index, 1);
    assert_eq!(config.policies[1].uplinks[1].weight, Some(1));
    assert_eq!(config.policies[0].matcher.dscp, Some(46));
    assert_eq!(config.nat.timeouts, Timeouts::DEFAULT);
}

#[test]
fn the_example_loads_from_disk() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flowpin.toml");
    let config = load(&path, &Host::default()).unwrap();
    assert_eq!(config, parse(EXAMPLE, "x", None).unwrap());
    let missing = load(
        std::path::Path::new("/nonexistent/flowpin.toml"),
        &Host::default(),
    )
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/flowpin.toml: cannot read"),
        "{missing}"
    );
}

#[test]
fn defaults_fill_everything_optional() {
    let config = parse(BASE, "f", None).unwrap();
    assert_eq!(config.nat.port_range, PortRange::new(10000, 32767).unwrap());
    assert_eq!(config.nat.stickiness, Stickiness::Endpoint);
    assert_eq!(config.nat.filtering, Filtering::AddressAndPortDependent);
    assert!(!config.nat.udp_refresh_on_inbound());
    assert_eq!(
        config.nat.timeouts,
        Timeouts {
            udp_ms: 300_000,
            tcp_established_ms: 7_440_000,
            tcp_transitory_ms: 240_000,
            icmp_ms: 60_000,
            udp_refresh: RefreshPolicy::OutboundOnly,
            icmp_refresh: RefreshPolicy::OutboundOnly,
        }
    );
    assert_eq!(config.datapath.workers, Workers::Auto);
    assert_eq!(config.datapath.mode, XdpMode::Auto);
    assert_eq!(config.datapath.idle, IdleStrategy::Poll);
    assert_eq!(
        config.control.socket,
        std::path::Path::new("/run/flowpin/flowpin.sock")
    );
    assert!(config.policies.is_empty());
    let unweighted = BASE.replace("weight = 1\n", "");
    assert!(
        parse(&unweighted, "f", None)
            .unwrap()
            .uplinks
            .iter()
            .all(|uplink| uplink.weight == 1)
    );
}

#[test]
fn round_trips_through_toml() {
    for text in [EXAMPLE, BASE] {
        let config = parse(text, "f", None).unwrap();
        let written = config.to_toml();
        let again = parse(&written, "written", None)
            .unwrap_or_else(|errors| panic!("{errors}\n--- written:\n{written}"));
        assert_eq!(again, config, "--- written:\n{written}");
        assert_eq!(again.to_toml(), written);
    }
}

#[test]
fn mss_clamp_takes_pmtu_off_or_an_mss_and_names_the_field_otherwise() {
    let with = |value: &str| {
        BASE.replacen(
            "weight = 1\n",
            &format!("weight = 1\nmss_clamp = {value}\n"),
            1,
        )
    };
    let config = parse(&with("\"pmtu\""), "flowpin.toml", None).unwrap();
    assert_eq!(config.uplinks[0].mss_clamp, Some(MssClamp::Pmtu));
    assert_eq!(config.uplinks[1].mss_clamp, None);
    let config = parse(&with("1452"), "flowpin.toml", None).unwrap();
    assert_eq!(config.uplinks[0].mss_clamp, Some(MssClamp::Fixed(1452)));
    assert!(
        explain(&config).contains("MSS clamp 1452"),
        "{}",
        explain(&config)
    );
    let config = parse(&with("\"off\""), "flowpin.toml", None).unwrap();
    assert_eq!(config.uplinks[0].mss_clamp, Some(MssClamp::Off));
    for (value, words) in [
        (
            "\"auto\"",
            "`auto`: expected `\"pmtu\"`, `\"off\"` or an MSS of 536-65495",
        ),
        ("100", "100: expected"),
        ("70000", "70000: expected"),
    ] {
        assert_single_error(
            &with(value),
            "flowpin.toml:10: uplink[0].mss_clamp: ",
            words,
        );
    }
    assert_single_error(
        &with("true"),
        "flowpin.toml:10: uplink[0].mss_clamp: ",
        "pmtu",
    );
}

#[test]
fn syntax_error() {
    let text = format!("{BASE}\n[nat\nport_range = \"20000-29999\"\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("flowpin.toml:17:"), "{}", errors[0]);
}

#[test]
fn unknown_keys_at_every_level() {
    assert_single_error(
        &BASE.replace("weight = 1\n\n", "wieght = 1\n\n"),
        "flowpin.toml:9: uplink[0].wieght: ",
        "unknown field `wieght`",
    );
    assert_single_error(
        &format!("{BASE}[nat.timeouts]\ntcp = 9000\n"),
        "flowpin.toml:17: nat.timeouts.tcp: ",
        "unknown field `tcp`",
    );
    assert_single_error(
        &format!("{BASE}[health]\ninterval = 5\n"),
        "flowpin.toml:17: health.interval: ",
        "unknown field `interval`",
    );
    assert_single_error(
        &format!("{BASE}[[policy]]\nname = \"p\"\nuplinks = [\"isp1\"]\nmatch = {{ port = 80 }}\n"),
        "flowpin.toml:19: policy[0].match.port: ",
        "unknown field `port`",
    );
}

#[test]
fn wrong_types() {
    assert_single_error(
        &BASE.replace("weight = 1\n\n", "weight = \"heavy\"\n\n"),
        "flowpin.toml:9: uplink[0].weight: ",
        "invalid type",
    );
    assert_single_error(
        &BASE.replace("\"192.0.2.1\"", "\"192.0.2\""),
        "flowpin.toml:8: uplink[0].gateway: ",
        "invalid IPv4 address",
    );
    assert_single_error(
        &format!("{BASE}[nat]\nstickiness = \"session\"\n"),
        "flowpin.toml:17: nat.stickiness: ",
        "unknown variant `session`",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nworkers = 0\n"),
        "flowpin.toml:17: datapath.workers: ",
        "must be 1-65535",
    );
}

#[test]
fn missing_required_keys_and_tables() {
    assert_single_error(
        &BASE.replace("gateway = \"198.51.100.1\"\n", ""),
        "flowpin.toml:11: uplink[1].gateway: ",
        "missing",
    );
    let errors = errors_of(&BASE.replace(
        "[lan]\ninterface = \"lan0\"\nprefixes = [\"10.0.0.0/16\"]\n",
        "",
    ));
    assert_eq!(
        errors,
        vec!["flowpin.toml: lan: missing table [lan] (interface, prefixes)"]
    );
    let errors = errors_of("[lan]\ninterface = \"lan0\"\nprefixes = [\"10.0.0.0/16\"]\n");
    assert_eq!(
        errors,
        vec!["flowpin.toml: uplink: no [[uplink]]: at least one is required"]
    );
    assert_single_error(
        &BASE.replace("prefixes = [\"10.0.0.0/16\"]", "prefixes = []"),
        "flowpin.toml:3: lan.prefixes: ",
        "at least one",
    );
}

#[test]
fn bad_prefixes() {
    assert_single_error(
        &BASE.replace("[\"10.0.0.0/16\"]", "[\"10.0.0.0/16\", \"10.1.2.3/16\"]"),
        "flowpin.toml:3: lan.prefixes[1]: ",
        "did you mean 10.1.0.0/16",
    );
    assert_single_error(
        &BASE.replace("10.0.0.0/16", "10.0.0.0/40"),
        "flowpin.toml:3: lan.prefixes[0]: ",
        "0..=32",
    );
}

#[test]
fn duplicate_uplink_names_and_interfaces() {
    assert_single_error(
        &BASE.replace("\"isp2\"", "\"isp1\""),
        "flowpin.toml:12: uplink[1].name: ",
        "duplicate uplink name `isp1`",
    );
    assert_single_error(
        &BASE.replace("\"wan2\"", "\"wan1\""),
        "flowpin.toml:13: uplink[1].interface: ",
        "already used by uplink[0], and neither sets `address`",
    );
    assert_single_error(
        &BASE.replace("\"wan2\"", "\"lan0\""),
        "flowpin.toml:13: uplink[1].interface: ",
        "LAN interface",
    );
    assert_single_error(
        &BASE.replace("\"wan2\"", "\"a/b\""),
        "flowpin.toml:13: uplink[1].interface: ",
        "not a Linux interface name",
    );
    assert_single_error(
        &BASE.replace("\"isp2\"", "\"isp 2\""),
        "flowpin.toml:12: uplink[1].name: ",
        "1-32 characters",
    );
}

/// Two uplinks on `wan1`, with the given `address` lines (empty: none).
fn sharing_wan1(first: &str, second: &str) -> String {
    BASE.replace("\"wan2\"", "\"wan1\"")
        .replacen("weight = 1\n", &format!("weight = 1\n{first}"), 1)
        .replace(
            "gateway = \"198.51.100.1\"\nweight = 1\n",
            &format!("gateway = \"198.51.100.1\"\nweight = 1\n{second}"),
        )
}

#[test]
fn uplinks_share_an_interface_with_an_address_each() {
    let config = parse(
        &sharing_wan1("address = \"192.0.2.2\"\n", "address = \"198.51.100.2\"\n"),
        "flowpin.toml",
        None,
    )
    .expect("two uplinks on wan1 with their own addresses");
    assert_eq!(config.uplinks[0].interface, config.uplinks[1].interface);
    // One of them may take the interface's own address.
    parse(
        &sharing_wan1("", "address = \"198.51.100.2\"\n"),
        "flowpin.toml",
        None,
    )
    .expect("one uplink on the interface's own address, one on another");
}

#[test]
fn uplinks_sharing_an_interface_and_an_address_are_named() {
    assert_single_error(
        &sharing_wan1("address = \"192.0.2.2\"\n", "address = \"192.0.2.2\"\n"),
        "flowpin.toml:17: uplink[1].address: ",
        "uplink[0] on interface `wan1` has address 192.0.2.2 too",
    );
    assert_single_error(
        &sharing_wan1("", ""),
        "flowpin.toml:13: uplink[1].interface: ",
        "neither sets `address`",
    );
}

#[test]
fn gateway_and_address_must_be_unicast_outside_the_lan() {
    assert_single_error(
        &BASE.replace("\"192.0.2.1\"", "\"10.0.0.1\""),
        "flowpin.toml:8: uplink[0].gateway: ",
        "inside a [lan] prefix",
    );
    let with_address = BASE.replace("weight = 1\n\n", "address = \"224.0.0.1\"\nweight = 1\n\n");
    assert_single_error(
        &with_address,
        "flowpin.toml:9: uplink[0].address: ",
        "multicast",
    );
}

#[test]
fn zero_total_weight_and_too_heavy() {
    assert_single_error(
        &BASE.replace("weight = 1", "weight = 0"),
        "flowpin.toml:9: uplink[0].weight: ",
        "at least one needs a weight above 0",
    );
    assert_single_error(
        &BASE.replacen("weight = 1", "weight = 2000000", 1),
        "flowpin.toml:9: uplink[0].weight: ",
        "maximum",
    );
    // One standby is fine.
    assert!(parse(&BASE.replacen("weight = 1", "weight = 0", 1), "f", None).is_ok());
}

#[test]
fn port_range_errors() {
    assert_single_error(
        &format!("{BASE}[nat]\nport_range = \"30000-20000\"\n"),
        "flowpin.toml:17: nat.port_range: ",
        "empty",
    );
    assert_single_error(
        &format!("{BASE}[nat]\nport_range = \"80-2000\"\n"),
        "flowpin.toml:17: nat.port_range: ",
        "below 1024",
    );
    let overlapping = format!("{BASE}[nat]\nport_range = {{ first = 20000, last = 59999 }}\n");
    let errors = errors_with_range(&overlapping, PortRange::new(32768, 60999).ok());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("flowpin.toml:17: nat.port_range: NAT port range 20000-59999 overlaps the router's ip_local_port_range 32768-60999"),
        "{}",
        errors[0]
    );
    // The default range is checked too, without a line since the file does not hold it.
    let errors = errors_with_range(BASE, PortRange::new(1024, 65535).ok());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "flowpin.toml: nat.port_range: (default) NAT port range 10000-32767 overlaps"
        ),
        "{}",
        errors[0]
    );
    assert!(parse(BASE, "f", PortRange::new(32768, 60999).ok()).is_ok());
}

#[test]
fn timeouts_below_the_rfc_minimums() {
    let text = format!(
        "{BASE}[nat.timeouts]\nudp = 119\ntcp_established = 7439\ntcp_transitory = 239\nicmp = 59\n"
    );
    let errors = errors_of(&text);
    assert_eq!(
        errors,
        vec![
            "flowpin.toml:17: nat.timeouts.udp: 119 s is below the minimum of 120 s (RFC 4787 REQ-5)",
            "flowpin.toml:18: nat.timeouts.tcp_established: 7439 s is below the minimum of 7440 s (RFC 5382 REQ-5)",
            "flowpin.toml:19: nat.timeouts.tcp_transitory: 239 s is below the minimum of 240 s (RFC 5382 REQ-5)",
            "flowpin.toml:20: nat.timeouts.icmp: 59 s is below the minimum of 60 s (RFC 5508 REQ-2)",
        ]
    );
    let text = format!("{BASE}[nat.timeouts]\nudp = 120\n");
    assert_eq!(
        parse(&text, "f", None).unwrap().nat.timeouts.udp_ms,
        120_000
    );
}

fn with_policy(body: &str) -> String {
    format!("{BASE}\n[[policy]]\nname = \"p\"\n{body}\n")
}

#[test]
fn policy_errors() {
    // line 17 = [[policy]], 18 = name, 19 = first body line
    assert_single_error(
        &with_policy("uplinks = [\"isp3\"]"),
        "flowpin.toml:19: policy[0].uplinks[0]: ",
        "unknown uplink `isp3` (uplinks: isp1, isp2)",
    );
    assert_single_error(
        &with_policy("uplinks = [\"isp1\", \"isp1\"]"),
        "flowpin.toml:19: policy[0].uplinks[1]: ",
        "listed twice",
    );
    assert_single_error(
        &with_policy("uplinks = []"),
        "flowpin.toml:19: policy[0].uplinks: ",
        "at least one",
    );
    assert_single_error(
        &with_policy("match = { proto = \"tcp\" }"),
        "flowpin.toml:17: policy[0].uplinks: ",
        "missing",
    );
    assert_single_error(
        &with_policy("uplinks = [{ name = \"isp1\", weight = 0 }]"),
        "flowpin.toml:19: policy[0].uplinks: ",
        "total weight is 0",
    );
    assert_single_error(
        &with_policy("uplinks = [\"isp1\"]\nmatch = { proto = \"icmp\", dst_port = 53 }"),
        "flowpin.toml:20: policy[0].match.dst_port: ",
        "ICMP has no ports",
    );
    assert_single_error(
        &with_policy("uplinks = [\"isp1\"]\nmatch = { dscp = 64 }"),
        "flowpin.toml:20: policy[0].match.dscp: ",
        "0-63",
    );
    assert_single_error(
        &with_policy(
            "uplinks = [\"isp1\"]\n[policy.match]\nsrc = [\"10.0.1.0/24\", \"172.16.0.0/12\"]",
        ),
        "flowpin.toml:21: policy[0].match.src[1]: ",
        "outside every [lan] prefix",
    );
    assert_single_error(
        &with_policy("uplinks = [\"isp1\"]\nmatch = { dst_port = \"9-1\" }"),
        "flowpin.toml:20: policy[0].match.dst_port: ",
        "empty",
    );
    assert_single_error(
        &with_policy("uplinks = [\"isp1\", 7]"),
        "flowpin.toml:19: policy[0].uplinks[1]: ",
        "expected an uplink name or a table { name, weight }",
    );
    let twice = format!(
        "{}[[policy]]\nname = \"p\"\nuplinks = [\"isp2\"]\n",
        with_policy("uplinks = [\"isp1\"]")
    );
    assert_single_error(
        &twice,
        "flowpin.toml:21: policy[1].name: ",
        "duplicate policy name `p`",
    );
    assert_single_error(
        &with_policy("uplinks = [{ name = \"isp1\", wieght = 2 }]"),
        "flowpin.toml:19: policy[0].uplinks[0]: ",
        "unknown field `wieght`, expected one of `name`, `weight`, `tier`",
    );
}

#[test]
fn policy_members_inherit_or_override_weights() {
    let config = parse(
        &with_policy("uplinks = [\"isp1\", { name = \"isp2\", weight = 5 }]"),
        "f",
        None,
    )
    .unwrap();
    let members = &config.policies[0].uplinks;
    assert_eq!((members[0].index, members[0].weight), (0, None));
    assert_eq!((members[1].index, members[1].weight), (1, Some(5)));
    assert_eq!(config.policies[0].matcher, PolicyMatch::default());
}

#[test]
fn syn_budgets_default_parse_and_reject_a_zero_burst() {
    let defaults = parse(BASE, "f", None).unwrap().datapath;
    assert_eq!(
        defaults.syn_per_host_per_s,
        Datapath::DEFAULT_SYN_PER_HOST_PER_S
    );
    assert_eq!(defaults.admission().lan.per_s, Datapath::DEFAULT_SYN_PER_S);
    let text = format!("{BASE}[datapath]\nsyn_per_host_per_s = 0\ninbound_syn_burst = 7\n");
    let config = parse(&text, "f", None).unwrap().datapath;
    assert_eq!(config.admission().host.per_s, 0);
    assert_eq!(config.admission().inbound.burst, 7);
    assert_eq!(config.syn_burst, Datapath::DEFAULT_SYN_BURST);
    assert_single_error(
        &format!("{BASE}[datapath]\nsyn_burst = 0\n"),
        "flowpin.toml:17: datapath.syn_burst: ",
        "must be 1-100000000",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\ninbound_syn_per_s = 100000001\n"),
        "flowpin.toml:17: datapath.inbound_syn_per_s: ",
        "must be 0-100000000",
    );
}

#[test]
fn datapath_and_control_errors() {
    assert_single_error(
        &format!("{BASE}[datapath]\nframes_per_worker = 3000\n"),
        "flowpin.toml:17: datapath.frames_per_worker: ",
        "power of two",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nflow_capacity = 10\n"),
        "flowpin.toml:17: datapath.flow_capacity: ",
        "1024-",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nmode = \"fast\"\n"),
        "flowpin.toml:17: datapath.mode: ",
        "unknown variant `fast`",
    );
    assert_single_error(
        &format!("{BASE}[control]\nsocket = \"flowpin.sock\"\n"),
        "flowpin.toml:17: control.socket: ",
        "absolute",
    );
    let config = parse(
        &format!("{BASE}[datapath]\nworkers = 2\nidle = \"busy-poll\"\n"),
        "f",
        None,
    )
    .unwrap();
    assert_eq!(
        config.datapath.workers,
        Workers::Count(std::num::NonZeroU16::new(2).unwrap())
    );
    assert_eq!(config.datapath.idle, IdleStrategy::BusyPoll);
}

#[test]
fn fragment_bounds_default_and_out_of_range_ones_name_their_line() {
    let config = parse(BASE, "f", None).unwrap();
    let limits = config.datapath.fragment_limits();
    assert_eq!(
        (limits.datagrams, limits.held, limits.timeout_ms),
        (4096, 64, 2000)
    );
    for (key, bad, range) in [
        ("fragment_datagrams", 3, "4-1048576"),
        ("fragment_held", 70000, "0-65536"),
        ("fragment_timeout", 0, "1-60"),
        ("fragment_timeout", 61, "1-60"),
    ] {
        assert_single_error(
            &format!("{BASE}[datapath]\n{key} = {bad}\n"),
            &format!("flowpin.toml:17: datapath.{key}: "),
            &format!("{bad}: must be {range}"),
        );
    }
    let config = parse(
        &format!(
            "{BASE}[datapath]\nfragment_datagrams = 100\nfragment_held = 0\nfragment_timeout = 5\n"
        ),
        "f",
        None,
    )
    .unwrap();
    let limits = config.datapath.fragment_limits();
    assert_eq!(
        (limits.datagrams, limits.held, limits.timeout_ms),
        (100, 0, 5000)
    );
}

#[test]
fn the_pin_name_is_one_path_component_and_defaults_to_the_lan_interface() {
    for bad in ["", "..", "a/b", "x y", &"n".repeat(65)] {
        assert_single_error(
            &format!("{BASE}[datapath]\npin_name = \"{bad}\"\n"),
            "flowpin.toml:17: datapath.pin_name: ",
            "must be 1-64 characters",
        );
    }
    let config = parse(
        &format!("{BASE}[datapath]\npin_name = \"lab-1.x_2\"\n"),
        "f",
        None,
    )
    .unwrap();
    assert_eq!(config.datapath.pin_name(&config.lan.interface), "lab-1.x_2");
    let config = parse(BASE, "f", None).unwrap();
    assert_eq!(
        config.datapath.pin_name(&config.lan.interface),
        config.lan.interface
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = BASE
        .replace("\"wan2\"", "\"wan1\"")
        .replace("\"192.0.2.1\"", "\"224.1.1.1\"");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("flowpin.toml:8: uplink[0].gateway:"));
    assert!(errors[1].starts_with("flowpin.toml:13: uplink[1].interface:"));
}

#[test]
fn explain_tells_shares_policies_and_eim() {
    let config = parse(EXAMPLE, "f", None).unwrap();
    let text = explain(&config);
    assert!(
        text.contains("weight 2  66.7 % of its tier's new flows"),
        "{text}"
    );
    assert!(
        text.contains("weight 1  33.3 % of its tier's new flows"),
        "{text}"
    );
    assert!(text.contains("lte") && text.contains("standby"), "{text}");
    let voip = text
        .find("1. voip: udp, port 5060-5061, dscp 46 -> cable 100.0 %")
        .expect(&text);
    let office = text
        .find("2. office-web: from 10.0.1.0/24, tcp, port 443 -> fiber 50.0 %, cable 50.0 %")
        .expect(&text);
    assert!(voip < office);
    assert!(
        text.contains(
            "external ports 10000-32767 (22768 per uplink address, a LAN host over its fair share \
             is refused first once 75 % are mapped)"
        ),
        "{text}"
    );
    assert!(
        text.contains("endpoint-independent mapping holds"),
        "{text}"
    );
    assert!(
        text.contains("UDP 300 s (refreshed by outbound packets only)"),
        "{text}"
    );

    let flow = parse(&format!("{BASE}[nat]\nstickiness = \"flow\"\n"), "f", None).unwrap();
    assert!(explain(&flow).contains("BREAKS endpoint-independent mapping"));
}

mod generated {
    //! Round trips of generated valid configurations: every key, every variant.

    use std::net::Ipv4Addr;
    use std::num::NonZeroU16;
    use std::path::PathBuf;

    use flowpin_nat::RefreshPolicy;
    use proptest::prelude::*;

    use super::super::*;

    fn uplinks(count: usize) -> impl Strategy<Value = Vec<Uplink>> {
        let one = (1u32..1000, any::<bool>(), 1u8..250);
        prop::collection::vec(one, count).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(index, (weight, with_address, host))| Uplink {
                    name: format!("isp{index}"),
                    interface: format!("wan{index}"),
                    gateway: Ipv4Addr::new(192, 0, 2, index as u8 + 1),
                    address: with_address.then(|| Ipv4Addr::new(198, 51, 100, host)),
                    weight: if index == 0 { weight } else { weight % 3 },
                    tier: (weight % 3) as u8 + 1,
                    mss_clamp: match weight % 4 {
                        0 => None,
                        1 => Some(MssClamp::Pmtu),
                        2 => Some(MssClamp::Off),
                        _ => Some(MssClamp::Fixed(536 + weight as u16)),
                    },
                    health: (index == 1).then(|| Health {
                        interval_ms: 2000,
                        timeout_ms: 1500,
                        down_loss_percent: 75,
                        up_loss_percent: 25,
                        targets: vec![
                            ProbeTarget {
                                kind: ProbeKind::Icmp,
                                address: Ipv4Addr::new(203, 0, 113, 7),
                                port: 0,
                                query: String::new(),
                                http: None,
                            },
                            ProbeTarget {
                                kind: ProbeKind::Http,
                                address: Ipv4Addr::new(203, 0, 113, 8),
                                port: 8080,
                                query: String::new(),
                                http: Some(Box::new(HttpCheck {
                                    url: "http://203.0.113.8:8080/health".into(),
                                    host: "203.0.113.8".into(),
                                    path: "/health".into(),
                                    expect_status: (200, 299),
                                    expect_body: Some("ok".into()),
                                    ca_file: None,
                                })),
                            },
                        ],
                        // The hook keys are global: an uplink's settings carry `[health]`'s.
                        ..global_health()
                    }),
                })
                .collect()
        })
    }

    /// The generated `[health]`: defaults with hooks.
    fn global_health() -> Health {
        Health {
            hooks_dir: Some(PathBuf::from("/etc/flowpin/hooks.d")),
            hook_timeout_ms: 5000,
            ..Health::DEFAULT
        }
    }

    fn matcher() -> impl Strategy<Value = PolicyMatch> {
        let prefix = |first: u8| {
            (0u8..=255, 16u8..=32).prop_map(move |(third, len)| {
                let address = Ipv4Addr::new(first, 0, third, 0);
                let network = u32::from(address) & (u32::MAX << (32 - u32::from(len)));
                Ipv4Prefix::new(Ipv4Addr::from(network), len).unwrap()
            })
        };
        let proto = prop::option::of(prop_oneof![
            Just(Protocol::Tcp),
            Just(Protocol::Udp),
            Just(Protocol::Icmp)
        ]);
        let ports = prop::option::of(
            (1024u16..9000, 0u16..100)
                .prop_map(|(first, extra)| PortRange::new(first, first + extra).unwrap()),
        );
        (
            prop::collection::vec(prefix(10), 0..3),
            prop::collection::vec(prefix(203), 0..3),
            proto,
            ports,
            prop::option::of(0u8..64),
        )
            .prop_map(|(src, dst, proto, dst_port, dscp)| PolicyMatch {
                src,
                dst,
                proto,
                dst_port: if proto == Some(Protocol::Icmp) {
                    None
                } else {
                    dst_port
                },
                dscp,
            })
    }

    fn nat() -> impl Strategy<Value = Nat> {
        let sharing = (
            prop_oneof![
                Just(Stickiness::Endpoint),
                Just(Stickiness::Host),
                Just(Stickiness::HostDest),
                Just(Stickiness::Flow)
            ],
            prop_oneof![
                Just(Filtering::AddressAndPortDependent),
                Just(Filtering::EndpointIndependent)
            ],
        );
        let ports = ((1024u16..30000, 0u16..2000), prop::option::of(1u32..=1024));
        let timeouts = (
            (120u32..1000, 7440u32..9000, 240u32..500, 60u32..200),
            any::<bool>(),
        );
        let exhaustion = ((0u32..1000, 1u32..1000), any::<bool>());
        let frag_needed = (0u32..1000, 1u32..1000);
        (sharing, ports, timeouts, exhaustion, frag_needed).prop_map(
            |(
                (stickiness, filtering),
                ((first, extra), ports_per_host),
                ((udp, tcp_established, tcp_transitory, icmp), refresh),
                ((port_exhausted_icmp_per_s, port_exhausted_icmp_burst), early_drop_unanswered),
                (frag_needed_icmp_per_s, frag_needed_icmp_burst),
            )| Nat {
                port_range: PortRange::new(first, first + extra).unwrap(),
                stickiness,
                timeouts: Timeouts {
                    udp_ms: u64::from(udp) * 1000,
                    tcp_established_ms: u64::from(tcp_established) * 1000,
                    tcp_transitory_ms: u64::from(tcp_transitory) * 1000,
                    icmp_ms: u64::from(icmp) * 1000,
                    udp_refresh: if refresh {
                        RefreshPolicy::Bidirectional
                    } else {
                        RefreshPolicy::OutboundOnly
                    },
                    icmp_refresh: RefreshPolicy::OutboundOnly,
                },
                filtering,
                ports_per_host: ports_per_host.map(|quota| quota.min(u32::from(extra) + 1)),
                early_drop_unanswered,
                port_exhausted_icmp_per_s,
                port_exhausted_icmp_burst,
                frag_needed_icmp_per_s,
                frag_needed_icmp_burst,
            },
        )
    }

    fn datapath() -> impl Strategy<Value = Datapath> {
        (
            prop::option::of(1u16..64),
            prop_oneof![
                Just(XdpMode::Auto),
                Just(XdpMode::Copy),
                Just(XdpMode::Zerocopy)
            ],
            prop_oneof![Just(IdleStrategy::Poll), Just(IdleStrategy::BusyPoll)],
            1024u32..1_000_000,
            9u32..20,
            // Distinct CPU ids in any order; empty: every CPU.
            prop::collection::btree_set(0u32..256, 0..5)
                .prop_map(|ids| ids.into_iter().rev().collect::<Vec<_>>()),
        )
            .prop_map(
                |(workers, mode, idle, flow_capacity, frames_log2, cpus)| Datapath {
                    workers: workers
                        .and_then(NonZeroU16::new)
                        .map_or(Workers::Auto, Workers::Count),
                    mode,
                    idle,
                    flow_capacity,
                    frames_per_worker: 1 << frames_log2,
                    flow_share_pressure_percent: (flow_capacity % 100 + 1) as u8,
                    flow_share_floor: frames_log2 * 10,
                    cpus,
                    pin_name: None,
                    syn_per_host_per_s: flow_capacity % 7,
                    syn_per_host_burst: flow_capacity % 7 + 1,
                    syn_per_s: Datapath::DEFAULT_SYN_PER_S,
                    syn_burst: flow_capacity,
                    inbound_syn_per_s: 0,
                    inbound_syn_burst: Datapath::DEFAULT_INBOUND_SYN_BURST,
                    fragment_datagrams: 4 + flow_capacity % 1000,
                    fragment_held: flow_capacity % 100,
                    fragment_timeout: 1 + frames_log2,
                },
            )
    }

    /// A generated policy: its match and its members as (uplink index, weight).
    type GeneratedPolicy = (PolicyMatch, Vec<(usize, Option<u32>)>);

    /// One policy per generated one, members listed once, each group's total weight positive.
    fn policies(uplinks: &[Uplink], generated: Vec<GeneratedPolicy>) -> Vec<Policy> {
        generated
            .into_iter()
            .enumerate()
            .map(|(number, (matcher, members))| {
                let mut group: Vec<PolicyUplink> = Vec::new();
                for (index, weight) in members {
                    if group.iter().all(|member| member.index != index) {
                        // Keep the group's total positive: uplink 0 always has a weight.
                        let weight = weight.or((uplinks[index].weight == 0).then_some(1));
                        group.push(PolicyUplink {
                            name: uplinks[index].name.clone(),
                            index,
                            weight,
                            tier: weight.map(|weight| (weight % 2) as u8 + 1),
                        });
                    }
                }
                Policy {
                    name: format!("rule-{number}"),
                    matcher,
                    uplinks: group,
                }
            })
            .collect()
    }

    fn config() -> impl Strategy<Value = Config> {
        (1usize..5)
            .prop_flat_map(|count| {
                let member = (0..count, prop::option::of(1u32..50));
                let policy = (matcher(), prop::collection::vec(member, 1..4));
                (
                    uplinks(count),
                    prop::collection::vec(policy, 0..4),
                    nat(),
                    datapath(),
                )
            })
            .prop_map(|(uplinks, generated, nat, datapath)| Config {
                lan: Lan {
                    interface: "lan0".into(),
                    prefixes: vec!["10.0.0.0/8".parse().unwrap()],
                },
                policies: policies(&uplinks, generated),
                uplinks,
                nat,
                datapath,
                control: Control {
                    socket: PathBuf::from("/run/test/flowpin.sock"),
                },
                health: global_health(),
                failover: Failover::default(),
                failback: Failback::default(),
                metrics: Metrics::default(),
                router: Router::default(),
                forwards: Vec::new(),
            })
    }

    proptest! {
        #[test]
        fn every_valid_config_round_trips(config in config()) {
            let written = config.to_toml();
            let parsed = parse(&written, "generated.toml", None);
            prop_assert!(parsed.is_ok(), "{}\n--- written:\n{written}", parsed.unwrap_err());
            prop_assert_eq!(parsed.unwrap(), config);
        }
    }
}

#[test]
fn the_router_default_route_is_multipath_unless_set() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(config.router.default_route, DefaultRoute::Multipath);
    for (word, mode) in [
        ("multipath", DefaultRoute::Multipath),
        ("best", DefaultRoute::Best),
        ("unmanaged", DefaultRoute::Unmanaged),
    ] {
        let text = format!("{BASE}\n[router]\ndefault_route = \"{word}\"\n");
        let config = parse(&text, "flowpin.toml", None).unwrap();
        assert_eq!(config.router.default_route, mode);
        assert_eq!(mode.name(), word);
        assert!(
            config
                .to_toml()
                .contains(&format!("default_route = \"{word}\""))
        );
        let said = explain(&config);
        let line = said
            .lines()
            .find(|l| l.starts_with("Router's own traffic: "))
            .expect(&said);
        assert_eq!(
            line.contains("unmanaged"),
            mode == DefaultRoute::Unmanaged,
            "{line}"
        );
        assert_eq!(
            line.contains("multipath"),
            mode == DefaultRoute::Multipath,
            "{line}"
        );
    }
}

#[test]
fn an_unknown_default_route_is_named_with_its_line() {
    let text = format!("{BASE}\n[router]\ndefault_route = \"ecmp\"\n");
    assert_single_error(
        &text,
        "flowpin.toml:18: router.default_route: ",
        "unknown variant `ecmp`",
    );
}

#[test]
fn health_failover_failback_and_metrics_parse_with_their_defaults() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(config.health, Health::DEFAULT);
    assert_eq!(config.failover.tcp, FailoverAction::Reset);
    assert_eq!(config.failover.udp, FailoverAction::Move);
    assert_eq!(config.failback.mode, FailbackMode::Stay);
    assert_eq!(config.metrics.listen, Some(Metrics::DEFAULT_LISTEN));
    let text = format!(
        "{BASE}[health]\ninterval_ms = 500\ntimeout_ms = 300\nmin_answers = 2\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
         [[health.target]]\nkind = \"dns\"\naddress = \"203.0.113.11\"\nquery = \"probe.test\"\n\
         [failover]\ntcp = \"keep\"\n[failback]\nmode = \"move-after\"\nafter_s = 30\nudp_ports = \"500-4500\"\n\
         [metrics]\nlisten = \"off\"\n"
    );
    let config = parse(&text, "flowpin.toml", None).unwrap();
    assert_eq!(config.health.interval_ms, 500);
    assert_eq!(config.health.targets.len(), 2);
    assert_eq!(config.health.targets[1].port, 53);
    assert_eq!(config.failover.tcp, FailoverAction::Keep);
    assert_eq!(config.failback.after_s, 30);
    assert_eq!(config.metrics.listen, None);
    assert_eq!(
        parse(&config.to_toml(), "again.toml", None).unwrap(),
        config
    );
}

#[test]
fn health_errors_name_their_line_and_field() {
    assert_single_error(
        &format!("{BASE}[health]\ninterval_ms = 500\ntimeout_ms = 500\n"),
        "flowpin.toml:18: health.timeout_ms: ",
        "not below interval_ms",
    );
    assert_single_error(
        &format!("{BASE}[failover]\nudp = \"reset\"\n"),
        "flowpin.toml:17: failover.udp: ",
        "TCP action",
    );
    assert_single_error(
        &format!("{BASE}[[health.target]]\nkind = \"dns\"\naddress = \"203.0.113.10\"\n"),
        "flowpin.toml:16: health.target[0].query: ",
        "required for dns",
    );
    assert_single_error(
        &format!(
            "{BASE}[health]\nmin_answers = 2\n[[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n"
        ),
        "flowpin.toml:17: health.min_answers: ",
        "can never come from 1 target",
    );
    assert_single_error(
        &format!("{BASE}[metrics]\nlisten = \"localhost\"\n"),
        "flowpin.toml:17: metrics.listen: ",
        "not `address:port`",
    );
    assert_single_error(
        &format!("{BASE}[health]\npassive_down_after_unanswered = 5\nprobe_gateway = false\n"),
        "flowpin.toml:17: health.passive_down_after_unanswered: ",
        "needs targets or probe_gateway = true",
    );
    assert_single_error(
        &format!(
            "{BASE}[health]\npassive_answer_window_ms = 50\n[[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n"
        ),
        "flowpin.toml:17: health.passive_answer_window_ms: ",
        "must be 100-600000",
    );
    assert_single_error(
        &format!("{BASE}[failover]\nnet_unreachable_burst = 0\n"),
        "flowpin.toml:17: failover.net_unreachable_burst: ",
        "would never send one",
    );
    assert_single_error(
        &format!("{BASE}[nat]\nport_exhausted_icmp_burst = 0\n"),
        "flowpin.toml:17: nat.port_exhausted_icmp_burst: ",
        "would never send one; set port_exhausted_icmp_per_s = 0",
    );
    assert_single_error(
        &format!("{BASE}[nat]\nport_exhausted_icmp_per_s = 2000000\n"),
        "flowpin.toml:17: nat.port_exhausted_icmp_per_s: ",
        "must be 0-1000000",
    );
}

#[test]
fn an_uplink_without_targets_probes_its_gateway_unless_told_not_to() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    let isp1 = config.uplink_health(0);
    assert_eq!(isp1.targets.len(), 1);
    assert_eq!(isp1.targets[0].kind, ProbeKind::Icmp);
    assert_eq!(isp1.targets[0].address, config.uplinks[0].gateway);
    assert_eq!(
        config.uplink_health(1).targets[0].address,
        config.uplinks[1].gateway
    );
    // min_answers above one target's worth is clamped for the gateway.
    let two = parse(
        &format!("{BASE}[health]\nmin_answers = 2\n"),
        "flowpin.toml",
        None,
    )
    .unwrap();
    assert_eq!(two.uplink_health(0).min_answers, 1);
    let off = parse(
        &format!("{BASE}[health]\nprobe_gateway = false\n"),
        "flowpin.toml",
        None,
    )
    .unwrap();
    assert!(off.uplink_health(0).targets.is_empty(), "carrier only");
    let far = parse(
        &format!("{BASE}[[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n"),
        "flowpin.toml",
        None,
    )
    .unwrap();
    let targets = &far.uplink_health(1).targets;
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].address, Ipv4Addr::new(203, 0, 113, 10));
}

/// `BASE` with isp2 given its own health table `table` (its keys, one a line).
fn with_isp2_health(table: &str) -> String {
    let isp2 = BASE.find("name = \"isp2\"").unwrap();
    let end = BASE[isp2..].find("\n\n").map_or(BASE.len(), |at| isp2 + at);
    format!("{}\n[uplink.health]\n{table}{}", &BASE[..end], &BASE[end..])
}

#[test]
fn an_uplink_health_table_is_written_over_health() {
    let text = format!(
        "{}[health]\ninterval_ms = 2000\ntimeout_ms = 1000\n[[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n",
        with_isp2_health(
            "down_loss_percent = 75\nup_loss_percent = 25\n[[uplink.health.target]]\nkind = \"icmp\"\naddress = \"198.51.100.77\"\n"
        )
    );
    let config = parse(&text, "flowpin.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let fiber = config.uplink_health(0);
    let lte = config.uplink_health(1);
    assert_eq!((fiber.down_loss_percent, fiber.up_loss_percent), (60, 20));
    assert_eq!((lte.down_loss_percent, lte.up_loss_percent), (75, 25));
    assert_eq!((lte.interval_ms, lte.timeout_ms), (2000, 1000), "inherited");
    assert_eq!(fiber.targets[0].address, Ipv4Addr::new(203, 0, 113, 10));
    assert_eq!(lte.targets.len(), 1, "its own targets replace [health]'s");
    assert_eq!(lte.targets[0].address, Ipv4Addr::new(198, 51, 100, 77));
    let again = parse(&config.to_toml(), "again.toml", None).unwrap();
    assert_eq!(again, config);
}

#[test]
fn uplink_health_errors_name_the_uplink_line_and_field() {
    let text = with_isp2_health("up_loss_percent = 80\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(": uplink[1].health.up_loss_percent: 80 % is above down_loss_percent"),
        "{errors:?}"
    );
    let line = text
        .lines()
        .position(|line| line.starts_with("up_loss_percent"))
        .unwrap()
        + 1;
    assert!(
        errors[0].starts_with(&format!("flowpin.toml:{line}:")),
        "{errors:?}"
    );
    // An inherited key that clashes with the uplink's own is blamed at the uplink's table.
    let text = with_isp2_health("interval_ms = 500\n");
    let errors = errors_of(&text);
    assert!(
        errors[0].contains("uplink[1].health.timeout_ms: 800 ms is not below interval_ms (500 ms)"),
        "{errors:?}"
    );
}

#[test]
fn the_tiers_example_puts_fiber_cable_and_lte_in_tiers_with_their_own_limits() {
    let text = include_str!("../../examples/tiers.toml");
    let config = parse(text, "tiers.toml", None).unwrap_or_else(|e| panic!("{e}"));
    let tiers: Vec<u8> = config.uplinks.iter().map(|uplink| uplink.tier).collect();
    assert_eq!(tiers, [1, 2, 3]);
    let (fiber, cable, lte) = (
        config.uplink_health(0),
        config.uplink_health(1),
        config.uplink_health(2),
    );
    assert_eq!((fiber.down_loss_percent, fiber.down_rtt_ms), (20, 200));
    assert_eq!(cable, config.health, "cable keeps [health]");
    assert_eq!((lte.up_loss_percent, lte.down_loss_percent), (25, 75));
    assert_eq!((fiber.targets.len(), lte.targets.len()), (2, 2));
    assert_eq!(lte.targets[1].kind, ProbeKind::Http);
    assert_eq!(
        (lte.hooks_dir.as_ref(), config.health.hooks_dir.as_deref()),
        (
            config.health.hooks_dir.as_ref(),
            Some(std::path::Path::new("/etc/flowpin/hooks.d"))
        ),
        "the hooks are global"
    );
    let text = explain(&config);
    assert!(text.contains("tier 3"), "{text}");
    assert!(
        text.contains(
            "lte: probes icmp 9.9.9.9, http://probe.example.net/generate_204; every 2000 ms, \
             down after 3 bad rounds (loss >= 75 %"
        ),
        "{text}"
    );
    let plain = explain(&parse(BASE, "flowpin.toml", None).unwrap());
    assert!(
        plain.contains("isp1: probes its gateway 192.0.2.1 (icmp, no target configured)"),
        "{plain}"
    );
}

#[test]
fn tiers_default_to_1_and_0_is_refused() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert!(config.uplinks.iter().all(|uplink| uplink.tier == 1));
    let tiered = BASE.replacen("weight = 1\n", "weight = 1\ntier = 2\n", 1);
    let config = parse(&tiered, "flowpin.toml", None).unwrap();
    assert_eq!(config.uplinks[0].tier, 2);
    let zero = BASE.replacen("weight = 1\n", "weight = 1\ntier = 0\n", 1);
    let errors = errors_of(&zero);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("uplink[0].tier: 0 is not a tier"),
        "{errors:?}"
    );
}

#[test]
fn early_dropped_ports_are_freed_at_once_unless_quarantine_is_asked_for() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert!(config.nat.early_drop_unanswered, "freed at once by default");
    let text = format!("{BASE}[nat]\nearly_drop_unanswered = false\n");
    assert!(
        !parse(&text, "flowpin.toml", None)
            .unwrap()
            .nat
            .early_drop_unanswered
    );
}

#[test]
fn the_per_host_port_quota_is_opt_in_and_bounded_by_the_range() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(config.nat.ports_per_host, None, "no hard quota by default");
    let text = format!("{BASE}[nat]\nport_range = \"20000-20999\"\nports_per_host = 1000\n");
    assert_eq!(
        parse(&text, "flowpin.toml", None)
            .unwrap()
            .nat
            .ports_per_host,
        Some(1000),
        "the whole range"
    );
    assert_single_error(
        &format!("{BASE}[nat]\nport_range = \"20000-20999\"\nports_per_host = 1001\n"),
        "flowpin.toml:18: nat.ports_per_host: ",
        "1001: must be 1-1000 (the size of port_range 20000-20999; RFC 6888 REQ-4)",
    );
    assert_single_error(
        &format!("{BASE}[nat]\nports_per_host = 0\n"),
        "flowpin.toml:17: nat.ports_per_host: ",
        "must be 1-",
    );
}

#[test]
fn the_flow_table_share_has_defaults_and_is_bounded_by_the_table() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.datapath.flow_share_pressure_percent,
            config.datapath.flow_share_floor
        ),
        (75, 256)
    );
    let text = format!(
        "{BASE}[datapath]\nflow_capacity = 4096\nflow_share_pressure_percent = 50\nflow_share_floor = 4096\n"
    );
    let datapath = parse(&text, "flowpin.toml", None).unwrap().datapath;
    assert_eq!(
        (
            datapath.flow_share_pressure_percent,
            datapath.flow_share_floor
        ),
        (50, 4096),
        "a floor of the whole table"
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nflow_capacity = 4096\nflow_share_floor = 4097\n"),
        "flowpin.toml:18: datapath.flow_share_floor: ",
        "4097 flows: must be 1-4096 (flow_capacity)",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nflow_share_pressure_percent = 0\n"),
        "flowpin.toml:17: datapath.flow_share_pressure_percent: ",
        "0 %: must be 1-100",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\nflow_share_pressure_percent = 101\n"),
        "flowpin.toml:17: datapath.flow_share_pressure_percent: ",
        "101 %: must be 1-100",
    );
}

#[test]
fn port_exhaustion_answers_are_limited_by_default_and_configurable() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.nat.port_exhausted_icmp_per_s,
            config.nat.port_exhausted_icmp_burst
        ),
        (100, 50)
    );
    let text =
        format!("{BASE}[nat]\nport_exhausted_icmp_per_s = 7\nport_exhausted_icmp_burst = 3\n");
    let config = parse(&text, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.nat.port_exhausted_icmp_per_s,
            config.nat.port_exhausted_icmp_burst
        ),
        (7, 3)
    );
    let off = parse(
        &format!("{BASE}[nat]\nport_exhausted_icmp_per_s = 0\nport_exhausted_icmp_burst = 0\n"),
        "flowpin.toml",
        None,
    )
    .unwrap();
    assert_eq!(off.nat.port_exhausted_icmp_per_s, 0, "switched off");
}

#[test]
fn fragmentation_needed_answers_to_lan_hosts_are_limited_by_default_and_configurable() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.nat.frag_needed_icmp_per_s,
            config.nat.frag_needed_icmp_burst
        ),
        (100, 50)
    );
    let text = format!("{BASE}[nat]\nfrag_needed_icmp_per_s = 9\nfrag_needed_icmp_burst = 4\n");
    let config = parse(&text, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.nat.frag_needed_icmp_per_s,
            config.nat.frag_needed_icmp_burst
        ),
        (9, 4)
    );
    assert_single_error(
        &format!("{BASE}[nat]\nfrag_needed_icmp_burst = 0\n"),
        "flowpin.toml:17: nat.frag_needed_icmp_burst: ",
        "0 would never send one; set frag_needed_icmp_per_s = 0 to switch them off",
    );
}

#[test]
fn the_passive_trigger_is_off_and_net_unreachable_limited_by_default_and_both_configurable() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert!(!config.health.passive_trigger_enabled());
    assert_eq!(config.health.passive_answer_window_ms, 3000);
    assert_eq!(
        (
            config.failover.net_unreachable_per_s,
            config.failover.net_unreachable_burst
        ),
        (100, 50)
    );
    let text = format!(
        "{BASE}[health]\npassive_down_after_unanswered = 8\npassive_answer_window_ms = 2000\n\
         [[health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
         [failover]\nnet_unreachable_per_s = 0\nnet_unreachable_burst = 0\n"
    );
    let config = parse(&text, "flowpin.toml", None).unwrap();
    assert!(config.health.passive_trigger_enabled());
    assert_eq!(config.health.passive_down_after_unanswered, 8);
    assert_eq!(config.health.passive_answer_window_ms, 2000);
    assert_eq!(config.failover.net_unreachable_per_s, 0, "switched off");
    assert_eq!(
        parse(&config.to_toml(), "again.toml", None).unwrap(),
        config
    );
}

#[test]
fn datapath_cpus_are_the_pinning_list_in_order_and_round_trip() {
    let two_cpus = Host {
        local_port_range: None,
        online_cpus: Some(vec![0, 1]),
    };
    let config = parse(BASE, "f", None).unwrap();
    assert!(config.datapath.cpus.is_empty(), "default: every CPU");
    let text = format!("{BASE}[datapath]\ncpus = [1, 0]\n");
    let config = parse_on(&text, "f", &two_cpus).unwrap();
    assert_eq!(config.datapath.cpus, vec![1, 0]);
    assert_eq!(parse(&config.to_toml(), "f", None).unwrap(), config);
    assert!(
        explain(&config).contains("CPUs 1, 0"),
        "{}",
        explain(&config)
    );
    // Without the machine's CPUs (e.g. checking a file for another router) any id is accepted.
    let elsewhere = format!("{BASE}[datapath]\ncpus = [0, 63]\n");
    assert_eq!(
        parse(&elsewhere, "f", None).unwrap().datapath.cpus,
        vec![0, 63]
    );
}

#[test]
fn datapath_cpus_must_be_online_listed_once_and_not_empty() {
    let two_cpus = Host {
        local_port_range: None,
        online_cpus: Some(vec![0, 1]),
    };
    let errors = |text: &str| match parse_on(text, "flowpin.toml", &two_cpus) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(
        errors(&format!(
            "{BASE}[datapath]\nworkers = 2\ncpus = [0, 5, 1, 7]\n"
        )),
        vec![
            "flowpin.toml:18: datapath.cpus[1]: CPU 5 is not online on this machine (online CPUs: 0-1)",
            "flowpin.toml:18: datapath.cpus[3]: CPU 7 is not online on this machine (online CPUs: 0-1)",
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}[datapath]\ncpus = [1, 0, 1]\n")),
        vec!["flowpin.toml:17: datapath.cpus[2]: CPU 1 is listed twice"]
    );
    let empty = errors(&format!("{BASE}[datapath]\ncpus = []\n"));
    assert_eq!(empty.len(), 1, "{empty:?}");
    assert!(
        empty[0].starts_with("flowpin.toml:17: datapath.cpus: empty"),
        "{empty:?}"
    );
    assert_single_error(
        &format!("{BASE}[datapath]\ncpus = [-1]\n"),
        "flowpin.toml:17: datapath.cpus",
        "",
    );
    assert_single_error(
        &format!("{BASE}[datapath]\ncpus = \"0-1\"\n"),
        "flowpin.toml:17: datapath.cpus",
        "",
    );
}

/// The spellings a port range accepts in the file (`nat.port_range`, `match.dst_port`,
/// `failback.udp_ports`).
mod port_range_forms {
    use serde::Deserialize;

    use super::PortRange;

    #[derive(Debug, Deserialize)]
    struct Holder {
        range: PortRange,
    }

    fn from_toml(value: &str) -> Result<PortRange, String> {
        toml::from_str::<Holder>(&format!("range = {value}"))
            .map(|holder| holder.range)
            .map_err(|error| error.message().to_owned())
    }

    #[test]
    fn accepts_every_spelling() {
        assert_eq!(from_toml("443").unwrap(), PortRange::new(443, 443).unwrap());
        assert_eq!(
            from_toml("\"443\"").unwrap(),
            PortRange::new(443, 443).unwrap()
        );
        assert_eq!(
            from_toml("\"8000-8999\"").unwrap(),
            PortRange::new(8000, 8999).unwrap()
        );
        assert_eq!(
            from_toml("{ first = 20000, last = 59999 }").unwrap(),
            PortRange::new(20000, 59999).unwrap()
        );
    }

    #[test]
    fn rejects_empty_zero_and_out_of_range() {
        assert!(from_toml("\"9000-8000\"").unwrap_err().contains("empty"));
        assert!(from_toml("0").is_err());
        assert!(from_toml("70000").unwrap_err().contains("not a port"));
        assert!(from_toml("\"http\"").is_err());
        assert!(from_toml("{ first = 1 }").unwrap_err().contains("last"));
        assert!(
            from_toml("{ first = 1, last = 2, step = 1 }")
                .unwrap_err()
                .contains("step")
        );
    }
}
