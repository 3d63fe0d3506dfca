//! `[health]`'s HTTP(S) targets and hooks, and both in `[uplink.health]`: defaults, round trips,
//! and each error at its line.

use super::*;

const BASE: &str = r#"[lan]
interface = "lan0"
prefixes = ["10.0.0.0/16"]

[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "192.0.2.1"
"#;

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

fn target(body: &str) -> String {
    format!("{BASE}[[health.target]]\n{body}")
}

#[test]
fn http_targets_take_address_and_port_from_the_url_and_expect_2xx_3xx_by_default() {
    let text = target(
        "kind = \"http\"\nurl = \"http://203.0.113.10:8080/health\"\n\
         [[health.target]]\nkind = \"https\"\nurl = \"https://probe.test/ok?x\"\n\
         address = \"203.0.113.11\"\nexpect_status = \"204\"\nexpect_body = \"fine\"\n",
    );
    let config = parse(&text, "flowpin.toml", None).unwrap();
    let [plain, tls] = &config.health.targets[..] else {
        panic!("two targets")
    };
    assert_eq!(
        (plain.kind, plain.address, plain.port),
        (ProbeKind::Http, "203.0.113.10".parse().unwrap(), 8080)
    );
    let check = plain.http.as_ref().unwrap();
    assert_eq!(
        (check.host.as_str(), check.path.as_str()),
        ("203.0.113.10", "/health")
    );
    assert_eq!(check.expect_status, http_probe::DEFAULT_EXPECT_STATUS);
    assert_eq!(plain.label(), "http://203.0.113.10:8080/health");
    assert_eq!((tls.kind, tls.port), (ProbeKind::Https, 443));
    let check = tls.http.as_ref().unwrap();
    assert_eq!(check.host, "probe.test");
    assert_eq!(check.expect_status, (204, 204));
    assert_eq!(check.expect_body.as_deref(), Some("fine"));
    assert_eq!(
        parse(&config.to_toml(), "again.toml", None).unwrap(),
        config
    );
}

#[test]
fn http_target_errors_name_their_line_and_field() {
    assert_single_error(
        &target("kind = \"http\"\nurl = \"http://probe.test/\"\n"),
        "flowpin.toml:9: health.target[0].address: ",
        "missing",
    );
    assert_single_error(
        &target("kind = \"https\"\nurl = \"http://203.0.113.10/\"\n"),
        "flowpin.toml:11: health.target[0].url: ",
        "does not match",
    );
    assert_single_error(
        &target("kind = \"http\"\nurl = \"http://203.0.113.10/\"\nexpect_status = \"600\"\n"),
        "flowpin.toml:12: health.target[0].expect_status: ",
        "100-599",
    );
    assert_single_error(
        &target("kind = \"http\"\nurl = \"http://203.0.113.10/\"\nport = 81\n"),
        "flowpin.toml:12: health.target[0].port: ",
        "differs from the url's port 80",
    );
    assert_single_error(
        &target("kind = \"icmp\"\naddress = \"203.0.113.10\"\nurl = \"http://a.test/\"\n"),
        "flowpin.toml:12: health.target[0].url: ",
        "only http and https",
    );
    assert_single_error(
        &target("kind = \"http\"\n"),
        "flowpin.toml:9: health.target[0].url: ",
        "missing",
    );
    assert_single_error(
        &target(
            "kind = \"https\"\nurl = \"https://203.0.113.10/\"\nca_file = \"/nonexistent/ca.pem\"\n",
        ),
        "flowpin.toml:12: health.target[0].ca_file: ",
        "cannot read",
    );
}

#[test]
fn a_ca_file_must_be_a_regular_file() {
    let text =
        target("kind = \"https\"\nurl = \"https://203.0.113.10/\"\nca_file = \"/dev/zero\"\n");
    assert_single_error(
        &text,
        "flowpin.toml:12: health.target[0].ca_file: ",
        "not a regular file",
    );
}

#[test]
fn a_ca_file_must_hold_a_pem_certificate() {
    let path = std::env::temp_dir().join(format!("flowpin-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate\n").unwrap();
    let text = target(&format!(
        "kind = \"https\"\nurl = \"https://203.0.113.10/\"\nca_file = \"{}\"\n",
        path.display()
    ));
    assert_single_error(
        &text,
        "flowpin.toml:12: health.target[0].ca_file: ",
        "no PEM certificate",
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn hooks_default_to_none_with_a_ten_second_timeout_and_are_checked() {
    let config = parse(BASE, "flowpin.toml", None).unwrap();
    assert_eq!(
        (
            config.health.hooks_dir.as_ref(),
            config.health.hook_timeout_ms
        ),
        (None, 10_000)
    );
    let text =
        format!("{BASE}[health]\nhooks_dir = \"/etc/flowpin/hooks.d\"\nhook_timeout_ms = 2000\n");
    let config = parse(&text, "flowpin.toml", None).unwrap();
    assert_eq!(
        config.health.hooks_dir.as_deref(),
        Some(std::path::Path::new("/etc/flowpin/hooks.d"))
    );
    assert_eq!(config.health.hook_timeout_ms, 2000);
    assert_eq!(
        parse(&config.to_toml(), "again.toml", None).unwrap(),
        config
    );
    assert_single_error(
        &format!("{BASE}[health]\nhooks_dir = \"hooks.d\"\n"),
        "flowpin.toml:10: health.hooks_dir: ",
        "absolute",
    );
    assert_single_error(
        &format!("{BASE}[health]\nhook_timeout_ms = 50\n"),
        "flowpin.toml:10: health.hook_timeout_ms: ",
        "100-600000",
    );
}

/// `BASE` with `table` as isp1's `[uplink.health]` (its first line is line 14), under a `[health]`
/// with hooks.
fn uplink_table(table: &str) -> String {
    let base = BASE.replacen(
        "[[uplink]]\n",
        "[health]\nhooks_dir = \"/etc/flowpin/hooks.d\"\nhook_timeout_ms = 2000\n\n[[uplink]]\n",
        1,
    );
    format!("{base}[uplink.health]\n{table}")
}

#[test]
fn an_uplink_takes_http_targets_of_its_own_and_keeps_the_global_hooks() {
    let text = uplink_table(
        "interval_ms = 2000\ntimeout_ms = 1500\n[[uplink.health.target]]\nkind = \"https\"\n\
         url = \"https://203.0.113.10/status\"\nexpect_status = \"200-204\"\n",
    );
    let config = parse(&text, "flowpin.toml", None).unwrap_or_else(|e| panic!("{e}"));
    let health = config.uplink_health(0);
    let [target] = &health.targets[..] else {
        panic!("one target: {:?}", health.targets)
    };
    assert_eq!((target.kind, target.port), (ProbeKind::Https, 443));
    assert_eq!(target.label(), "https://203.0.113.10/status");
    assert_eq!(target.http.as_ref().unwrap().expect_status, (200, 204));
    assert_eq!(
        (health.hooks_dir.as_ref(), health.hook_timeout_ms),
        (config.health.hooks_dir.as_ref(), 2000),
        "the hooks are [health]'s"
    );
    let written = config.to_toml();
    assert_eq!(
        written.matches("hooks_dir").count(),
        1,
        "written once, in [health]:\n{written}"
    );
    assert_eq!(parse(&written, "again.toml", None).unwrap(), config);
}

#[test]
fn uplink_http_target_errors_name_the_uplink_table() {
    assert_single_error(
        &uplink_table("[[uplink.health.target]]\nkind = \"http\"\n"),
        "flowpin.toml:14: uplink[0].health.target[0].url: ",
        "missing",
    );
    assert_single_error(
        &uplink_table(
            "[[uplink.health.target]]\nkind = \"http\"\nurl = \"http://203.0.113.10/\"\n\
             expect_status = \"600\"\n",
        ),
        "flowpin.toml:17: uplink[0].health.target[0].expect_status: ",
        "100-599",
    );
    assert_single_error(
        &uplink_table(
            "[[uplink.health.target]]\nkind = \"icmp\"\naddress = \"203.0.113.10\"\n\
             [[uplink.health.target]]\nkind = \"dns\"\naddress = \"203.0.113.11\"\n\
             url = \"http://a.test/\"\nquery = \"example.com\"\n",
        ),
        "flowpin.toml:20: uplink[0].health.target[1].url: ",
        "only http and https",
    );
}

#[test]
fn hooks_are_refused_in_an_uplink_table() {
    assert_single_error(
        &uplink_table("hooks_dir = \"/etc/flowpin/isp1.d\"\n"),
        "flowpin.toml:14: uplink[0].health.hooks_dir: ",
        "hooks are global: set hooks_dir in [health]",
    );
    assert_single_error(
        &uplink_table("interval_ms = 2000\nhook_timeout_ms = 500\n"),
        "flowpin.toml:15: uplink[0].health.hook_timeout_ms: ",
        "hooks are global: set hook_timeout_ms in [health]",
    );
}
