//! flowpin does not take away what it does not replace: IPv6 forwarding that the admin configured keeps
//! working with flowpin running.
//!
//! The test gives the lab IPv6 on the LAN, isp1 and inet (documentation prefixes, 2001:db8::/32): the
//! router forwards with `net.ipv6.conf.all.forwarding=1` and a default via isp1, the ISP routes the
//! LAN's /64 back to the router, inet routes it to the ISP and serves HTTP on its own IPv6 address.
//! With flowpin's forward guard in place, a LAN host's `ping -6` and `curl -6` to inet succeed, and
//! IPv4 from the same host is still translated by flowpin with no leaked or wrong-uplink source.

use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{assert_no_leak_or_wrong_uplink, down_and_assert_clean, lab_up};

const LAN_ROUTER: &str = "2001:db8:77::1";
const LAN_HOST: &str = "2001:db8:77::11";
const LAN_NET: &str = "2001:db8:77::/64";
const UPLINK_ROUTER: &str = "2001:db8:1::2";
const UPLINK_GATEWAY: &str = "2001:db8:1::1";
const UPLINK_NET: &str = "2001:db8:1::/64";
const TRANSIT_ISP: &str = "2001:db8:f1::1";
const TRANSIT_INET: &str = "2001:db8:f1::2";
const SERVER: &str = "2001:db8:ff::10";
const HTTP_PORT: &str = "8080";

/// `ip -6 ARGS` in `ns`.
fn ip6(lab: &Lab, ns: &str, args: &[&str]) {
    let mut argv = vec!["ip", "-6"];
    argv.extend_from_slice(args);
    lab.exec_ok(ns, &argv)
        .unwrap_or_else(|e| panic!("ip -6 {args:?} in {ns}: {e:#}"));
}

/// An address without duplicate address detection, so it is usable at once.
fn address(lab: &Lab, ns: &str, cidr: &str, dev: &str) {
    ip6(lab, ns, &["addr", "add", cidr, "dev", dev, "nodad"]);
}

/// IPv6 as an admin would configure it on a dual-stack router behind isp1.
fn configure_ipv6(lab: &Lab) {
    let router = &lab.router().ns;
    let host = &lab.lan_hosts()[0];
    let isp1 = &lab.uplinks()[0];
    let inet = &lab.inet().ns;
    lab.exec_ok(router, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        .expect("router IPv6 forwarding");
    address(
        lab,
        router,
        &format!("{LAN_ROUTER}/64"),
        &lab.router().lan_iface,
    );
    address(
        lab,
        router,
        &format!("{UPLINK_ROUTER}/64"),
        &isp1.router_iface,
    );
    ip6(
        lab,
        router,
        &["route", "add", "default", "via", UPLINK_GATEWAY],
    );

    address(lab, &host.ns, &format!("{LAN_HOST}/64"), &host.iface);
    ip6(
        lab,
        &host.ns,
        &["route", "add", "default", "via", LAN_ROUTER],
    );

    let isp = &isp1.isp_ns;
    lab.exec_ok(isp, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        .expect("ISP IPv6 forwarding");
    address(
        lab,
        isp,
        &format!("{UPLINK_GATEWAY}/64"),
        &isp1.isp_router_iface,
    );
    address(lab, isp, &format!("{TRANSIT_ISP}/64"), &isp1.isp_inet_iface);
    ip6(lab, isp, &["route", "add", "default", "via", TRANSIT_INET]);
    ip6(lab, isp, &["route", "add", LAN_NET, "via", UPLINK_ROUTER]);

    address(lab, inet, &format!("{TRANSIT_INET}/64"), &isp1.inet_iface);
    address(lab, inet, &format!("{SERVER}/128"), "lo");
    for net in [LAN_NET, UPLINK_NET] {
        ip6(lab, inet, &["route", "add", net, "via", TRANSIT_ISP]);
    }
}

/// Starts an HTTP server on inet's IPv6 address and waits until it listens.
fn start_http6(lab: &Lab) {
    let inet = &lab.inet().ns;
    let root = lab.dir().join("www");
    let root = root.to_string_lossy();
    lab.spawn(
        inet,
        &[
            "python3",
            "-m",
            "http.server",
            HTTP_PORT,
            "--bind",
            SERVER,
            "--directory",
            &root,
        ],
    )
    .expect("starting the IPv6 HTTP server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !lab
        .exec_ok(inet, &["ss", "-Hltn6"])
        .unwrap_or_default()
        .contains(&format!("[{SERVER}]:{HTTP_PORT}"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "IPv6 HTTP server not listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn ipv6_transit_the_admin_configured_keeps_working_beside_flowpin() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let router = lab.router().ns.clone();
    let guard = lab
        .exec_ok(&router, &["nft", "list", "table", "inet", "flowpin_guard"])
        .expect("flowpin's forward guard is installed");
    assert!(guard.contains("hook forward"), "{guard}");
    configure_ipv6(&lab);
    start_http6(&lab);
    let host = lab.lan_hosts()[0].ns.clone();

    let ping = lab
        .exec(
            &host,
            &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", SERVER],
        )
        .expect("ping runs");
    assert!(
        ping.status.success(),
        "ping -6 from the LAN to inet: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    let url = format!("http://[{SERVER}]:{HTTP_PORT}/");
    for attempt in 0..5 {
        let page = lab
            .exec_ok(
                &host,
                &["curl", "-6", "-s", "--max-time", "5", "--fail", &url],
            )
            .unwrap_or_else(|e| panic!("curl -6 {attempt} from the LAN: {e:#}"));
        assert_eq!(page, flowpin_lab::HTTP_PAGE, "curl -6 {attempt}");
    }

    // IPv4 from the same host is still flowpin's: translated, nothing leaked.
    let v4 = format!(
        "http://{}:{}/",
        lab.inet().server_addrs[0],
        lab.inet().http_port
    );
    let before = lab.isp_counters().unwrap();
    let page = lab
        .exec_ok(
            &host,
            &["curl", "-4", "-s", "--max-time", "5", "--fail", &v4],
        )
        .expect("IPv4 curl through flowpin");
    assert_eq!(page, flowpin_lab::HTTP_PAGE);
    let after = lab.isp_counters().unwrap();
    let translated: u64 = (after.iter().zip(&before))
        .map(|(a, b)| a.since(b).good)
        .sum();
    assert!(
        translated >= 5,
        "the ISPs saw the curl from an uplink address: {translated}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());
    down_and_assert_clean(lab);
}
