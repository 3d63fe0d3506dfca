//! `[[forward]]`: what a valid one becomes, and one test per class of error, each checking the
//! exact `file:line: field: message` location.

use std::net::Ipv4Addr;

use super::*;

/// Two uplinks, the LAN 10.0.0.0/16, the default NAT range 10000-32767; forwards start at line 17.
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

fn with_forwards(forwards: &str) -> String {
    format!("{BASE}\n{forwards}")
}

fn errors_of(text: &str) -> Vec<String> {
    match parse(text, "flowpin.toml", None) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

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

const WEB: &str = r#"[[forward]]
name = "web"
uplinks = "all"
protocol = "tcp"
port = 8080
to = "10.0.0.5"
to_port = 80
"#;

#[test]
fn a_forward_on_all_uplinks_and_one_on_a_list_with_a_range() {
    let text = with_forwards(&format!(
        "{WEB}\n[[forward]]\nname = \"game\"\nuplinks = [\"isp2\"]\nprotocol = \"both\"\n\
         port = \"7000-7009\"\nto = \"10.0.0.6\"\n"
    ));
    let config = parse(&text, "flowpin.toml", None).expect("valid");
    assert_eq!(config.forwards.len(), 2);
    let web = &config.forwards[0];
    assert_eq!(web.uplinks, ["isp1", "isp2"]);
    assert_eq!(web.protocol, ForwardProtocol::Tcp);
    assert_eq!((web.port.first(), web.port.last()), (8080, 8080));
    assert_eq!(web.to, Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(web.to_port.first(), 80);
    let game = &config.forwards[1];
    assert_eq!(game.uplinks, ["isp2"]);
    assert_eq!(game.protocol.protocols(), [Protocol::Tcp, Protocol::Udp]);
    assert_eq!(game.to_port, game.port, "to_port defaults to port");
}

#[test]
fn a_port_inside_the_nat_range_is_refused() {
    assert_single_error(
        &with_forwards(&WEB.replace("port = 8080", "port = \"10000-10001\"")),
        "flowpin.toml:21: forward[0].port: ",
        "overlaps the NAT port range 10000-32767",
    );
}

#[test]
fn two_forwards_overlapping_on_a_shared_uplink_and_protocol_name_each_other() {
    let second = "[[forward]]\nname = \"other\"\nuplinks = [\"isp2\"]\nprotocol = \"both\"\n\
                  port = \"8000-8080\"\nto = \"10.0.0.9\"\n";
    assert_single_error(
        &with_forwards(&format!("{WEB}\n{second}")),
        "flowpin.toml:29: forward[1].port: ",
        "overlaps forward[0] `web` (line 21, port 8080)",
    );
    // Another protocol, or another uplink, is no overlap.
    let udp_only = second.replace("both", "udp");
    assert!(parse(&with_forwards(&format!("{WEB}\n{udp_only}")), "f", None).is_ok());
    let isp1_only = WEB.replace("\"all\"", "[\"isp1\"]");
    let isp2_only = second.replace("both", "tcp");
    assert!(
        parse(
            &with_forwards(&format!("{isp1_only}\n{isp2_only}")),
            "f",
            None
        )
        .is_ok()
    );
}

#[test]
fn a_target_outside_the_lan_or_its_broadcast_is_refused() {
    assert_single_error(
        &with_forwards(&WEB.replace("10.0.0.5", "192.168.1.5")),
        "flowpin.toml:22: forward[0].to: ",
        "192.168.1.5 lies outside every [lan] prefix",
    );
    assert_single_error(
        &with_forwards(&WEB.replace("10.0.0.5", "10.0.255.255")),
        "flowpin.toml:22: forward[0].to: ",
        "broadcast",
    );
}

#[test]
fn uplinks_must_exist_once_and_to_port_match_the_length() {
    assert_single_error(
        &with_forwards(&WEB.replace("\"all\"", "[\"isp1\", \"isp3\"]")),
        "flowpin.toml:19: forward[0].uplinks[1]: ",
        "`isp3` is not an [[uplink]] name",
    );
    assert_single_error(
        &with_forwards(&WEB.replace("\"all\"", "[\"isp1\", \"isp1\"]")),
        "flowpin.toml:19: forward[0].uplinks[1]: ",
        "listed twice",
    );
    assert_single_error(
        &with_forwards(&WEB.replace("\"all\"", "\"every\"")),
        "flowpin.toml:19: forward[0].uplinks: ",
        "expected \"all\"",
    );
    assert_single_error(
        &with_forwards(&WEB.replace("to_port = 80", "to_port = \"80-81\"")),
        "flowpin.toml:23: forward[0].to_port: ",
        "a range maps port by port",
    );
}

#[test]
fn missing_keys_duplicate_names_and_bad_protocols() {
    assert_single_error(
        &with_forwards(&WEB.replace("to = \"10.0.0.5\"\n", "")),
        "flowpin.toml:17: forward[0].to: ",
        "missing",
    );
    assert_single_error(
        &with_forwards(&format!("{WEB}\n{}", WEB.replace("8080", "8081"))),
        "flowpin.toml:26: forward[1].name: ",
        "duplicate forward name `web`",
    );
    let errors = errors_of(&with_forwards(&WEB.replace("\"tcp\"", "\"icmp\"")));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("forward"), "{errors:#?}");
}

#[test]
fn more_forwarded_ports_than_the_xdp_map_holds_are_refused() {
    let big = WEB
        .replace("port = 8080", "port = \"1000-5999\"")
        .replace("to_port = 80\n", "");
    assert_single_error(
        &with_forwards(&big),
        "flowpin.toml:21: forward[0].port: ",
        "need 10000 (uplink, protocol, port) entries; the XDP program holds 8192",
    );
}
