//! The router's own traffic on the lab through `flowpin run`: a service on the router answers on the
//! uplink it was reached on, and the router's own clients follow uplink health.
//!
//! - A TCP service in the router namespace (socat), reached from `inet` on isp2's address with no
//!   probing at all (`probe_gateway = false`, no target), answers every connection through isp2 (the
//!   main table's default names isp1); isp1 carries none of it, and a LAN host still gets its answer
//!   from isp2's address over the LAN. After isp2's link goes down and up its source route is back;
//!   renumbered, its rules follow the new address and the service answers there through isp2.
//! - With the default `[router] default_route = "multipath"`, isp1 black-holed: once isp1 is down
//!   (within the documented bound: 3 rounds of 1 s plus the 800 ms timeout, plus polling slack) the
//!   router's own curl and UDP queries to `inet` all succeed through isp2; after isp1 recovers the
//!   route spans both again.
//! - On exit every rule and route flowpin added is gone and the main table's default is the one the
//!   lab put there.
//!
//! Every test asserts that no ISP saw a leaked or wrong-uplink source.

use std::time::Duration;

use flowpin_lab::{Fault, Lab, LabSpec, RouterKind};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean,
    flowpin_status, lab_up, renumber_uplink, uplink_state, wait_for_status,
};

/// The documented detection time of a dead gateway with the defaults: `down_after` (3) rounds of
/// `interval_ms` (1000 ms) after the first round the fault catches, plus that round's `timeout_ms`.
const DOCUMENTED_MS: u64 = 3 * 1000 + 800;
/// Slack for polling `flowpin status` on a loaded 2-core machine running other lab tests.
const POLL_SLACK_MS: u64 = 1_500;
/// The router's own TCP service port (outside the NAT range, so the XDP program passes it on).
const SERVICE_PORT: &str = "2222";
/// What the service answers.
const GREETING: &str = "flowpin-router-service";

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

/// `ip ARGS` in the router namespace.
fn router_ip(lab: &Lab, args: &[&str]) -> String {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    lab.exec_ok(&lab.router().ns, &argv)
        .unwrap_or_else(|e| panic!("ip {args:?}: {e:#}"))
}

/// The router's rules at flowpin's priorities, whitespace-normalised.
fn flowpin_rules(lab: &Lab) -> Vec<String> {
    router_ip(lab, &["-4", "rule", "show"])
        .lines()
        .filter(|line| {
            ["7400:", "7401:", "32764:", "32765:"]
                .iter()
                .any(|p| line.starts_with(p))
        })
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Table 7399's routes, whitespace-normalised into one line.
fn router_table(lab: &Lab) -> String {
    router_ip(lab, &["-4", "route", "show", "table", "7399"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends SIGTERM to this lab's forwarder and waits until it exited.
fn stop_flowpin(lab: &Lab) {
    let flowpin = lab
        .processes()
        .into_iter()
        .find(|p| p.description().contains(" run -c "))
        .expect("the lab started flowpin");
    flowpin.signal("TERM").expect("SIGTERM");
    flowpin
        .wait(Duration::from_secs(10))
        .expect("flowpin stops on SIGTERM");
}

/// Asserts that flowpin's rules and tables are gone and the main default is the lab's (via isp1).
fn assert_routes_restored(lab: &Lab) {
    assert_eq!(flowpin_rules(lab), Vec::<String>::new());
    assert_eq!(router_table(lab), "");
    for table in ["7400", "7401"] {
        let routes = router_ip(lab, &["-4", "route", "show", "table", table]);
        assert_eq!(routes.trim(), "", "table {table}");
    }
    let main = router_ip(lab, &["-4", "route", "show", "default"]);
    let isp1 = &lab.uplinks()[0];
    assert_eq!(
        main.split_whitespace().collect::<Vec<_>>().join(" "),
        format!("default via {} dev {}", isp1.gateway, isp1.router_iface),
        "the main table's default is the lab's, untouched"
    );
}

#[test]
fn a_service_on_the_router_answers_on_the_uplink_it_was_reached_on_without_probes() {
    let lab = flowpin_lab();
    append_config_and_reload(&lab, "[health]\nprobe_gateway = false\n");
    let router = lab.router().ns.clone();
    let (isp1, isp2) = (&lab.uplinks()[0], &lab.uplinks()[1]);
    let rules = flowpin_rules(&lab);
    for (slot, uplink) in [(7400, isp1), (7401, isp2)] {
        for rule in [
            format!(
                "{slot}: from {} lookup main suppress_prefixlength 0",
                uplink.router_addr
            ),
            format!("{slot}: from {} lookup {slot}", uplink.router_addr),
        ] {
            assert!(rules.contains(&rule), "{rule} missing from {rules:#?}");
        }
    }
    let reply = format!("SYSTEM:echo {GREETING}");
    let listen = format!("TCP4-LISTEN:{SERVICE_PORT},reuseaddr,fork");
    lab.spawn(&router, &["socat", &listen, &reply])
        .expect("starting the router's service");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lab
        .exec_ok(&router, &["ss", "-Hltn", "sport", "=", ":2222"])
        .unwrap_or_default()
        .contains(SERVICE_PORT)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "service not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let before = lab.isp_counters().unwrap();
    let target = format!("TCP4:{}:{SERVICE_PORT},connect-timeout=3", isp2.router_addr);
    for attempt in 0..20 {
        let answer = lab
            .exec_ok(
                &lab.inet().ns,
                &["socat", "-t", "3", "-T", "3", "-", &target],
            )
            .unwrap_or_else(|e| panic!("connection {attempt} via isp2 failed: {e:#}"));
        assert_eq!(answer.trim(), GREETING, "connection {attempt}");
    }
    let after = lab.isp_counters().unwrap();
    let (on_isp1, on_isp2) = (after[0].since(&before[0]), after[1].since(&before[1]));
    // Each connection: SYN-ACK, the greeting, FIN and ACKs from the router: at least 3 packets.
    assert!(
        on_isp2.good >= 20 * 3,
        "the answers left by isp2: {on_isp2:?}"
    );
    assert_eq!(on_isp1.total(), 0, "isp1 carried none of it: {on_isp1:?}");

    // The router's answer to a LAN host from isp2's address stays on the LAN.
    let host = &lab.lan_hosts()[0];
    let target = format!("TCP4:{}:{SERVICE_PORT},connect-timeout=3", isp2.router_addr);
    let answer = lab
        .exec_ok(&host.ns, &["socat", "-t", "3", "-T", "3", "-", &target])
        .expect("the LAN reaches the service on isp2's address");
    assert_eq!(answer.trim(), GREETING);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());

    // isp2's link goes down and up (the kernel flushes the routes through it meanwhile): once it
    // carries packets again its source route is back and the service answers through isp2.
    let wan2 = isp2.router_iface.clone();
    for action in ["down", "up"] {
        router_ip(&lab, &["link", "set", &wan2, action]);
    }
    let route = format!("default via {} dev {wan2}", isp2.gateway);
    wait_for_status(&lab, Duration::from_secs(10), |s| {
        uplink_state(s, 1) == "up"
            && router_ip(&lab, &["-4", "route", "show", "table", "7401"]).trim() == route
    })
    .unwrap_or_else(|s| panic!("isp2's source route not back after the link returned: {s:#}"));
    let before = lab.isp_counters().unwrap();
    let target = format!("TCP4:{}:{SERVICE_PORT},connect-timeout=3", isp2.router_addr);
    let answer = lab
        .exec_ok(
            &lab.inet().ns,
            &["socat", "-t", "3", "-T", "3", "-", &target],
        )
        .expect("the service after isp2's link returned");
    assert_eq!(answer.trim(), GREETING);
    let after = lab.isp_counters().unwrap();
    assert!(after[1].since(&before[1]).good >= 3, "{:?}", after[1]);
    assert_eq!(after[0].since(&before[0]).total(), 0);

    // isp2 is renumbered (a DHCP renewal with another address): its rules follow the address, and
    // the service answers on the new one through isp2.
    let renumbered = std::net::Ipv4Addr::from(isp2.router_addr.to_bits() + 3);
    renumber_uplink(&lab, 1, renumbered);
    let new_rule = format!("7401: from {renumbered} lookup 7401");
    wait_for_status(&lab, Duration::from_secs(5), |_| {
        let rules = flowpin_rules(&lab);
        rules.contains(&new_rule)
            && !rules
                .iter()
                .any(|r| r.contains(&isp2.router_addr.to_string()))
    })
    .unwrap_or_else(|_| panic!("rules did not follow: {:#?}", flowpin_rules(&lab)));
    let before = lab.isp_counters().unwrap();
    let target = format!("TCP4:{renumbered}:{SERVICE_PORT},connect-timeout=3");
    for attempt in 0..5 {
        let answer = lab
            .exec_ok(
                &lab.inet().ns,
                &["socat", "-t", "3", "-T", "3", "-", &target],
            )
            .unwrap_or_else(|e| panic!("connection {attempt} to {renumbered} failed: {e:#}"));
        assert_eq!(answer.trim(), GREETING, "connection {attempt}");
    }
    let after = lab.isp_counters().unwrap();
    assert!(after[1].since(&before[1]).good >= 5 * 3, "{:?}", after[1]);
    assert_eq!(after[0].since(&before[0]).total(), 0);
    assert_no_leak_or_wrong_uplink(&lab, &after);

    stop_flowpin(&lab);
    assert_routes_restored(&lab);
    down_and_assert_clean(lab);
}

/// The router's own curl to the first server through the default route: the HTTP code.
fn router_curl(lab: &Lab) -> String {
    let url = format!(
        "http://{}:{}/",
        lab.inet().server_addrs[0],
        lab.inet().http_port
    );
    let out = lab
        .exec(
            &lab.router().ns,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--connect-timeout",
                "2",
                "--max-time",
                "3",
                "-w",
                "%{http_code}",
                &url,
            ],
        )
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A one-datagram UDP client: sends to `argv[1]:argv[2]`, prints the answer (2 s timeout).
const UDP_QUERY_PY: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b'query', (sys.argv[1], int(sys.argv[2])))
print(s.recv(100).decode().strip())
";

/// The router's own UDP query to the echo: the address the server saw it as, or why it failed.
fn router_udp_query(lab: &Lab) -> Result<String, String> {
    let (server, port) = (lab.inet().server_addrs[1], lab.inet().echo_port);
    let out = lab
        .exec(
            &lab.router().ns,
            &[
                "python3",
                "-c",
                UDP_QUERY_PY,
                &server.to_string(),
                &port.to_string(),
            ],
        )
        .expect("python3 runs");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.split(':').next() {
        Some(seen) if out.status.success() && !seen.is_empty() => Ok(seen.to_owned()),
        _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn the_routers_own_traffic_follows_uplink_health() {
    let lab = flowpin_lab();
    let (isp1, isp2) = (lab.uplinks()[0].clone(), lab.uplinks()[1].clone());
    let both = format!(
        "default nexthop via {} dev {} weight 1 nexthop via {} dev {} weight 1",
        isp1.gateway, isp1.router_iface, isp2.gateway, isp2.router_iface
    );
    wait_for_status(&lab, Duration::from_secs(10), |_| {
        router_table(&lab) == both
    })
    .unwrap_or_else(|s| panic!("no multipath default: {}\n{s:#}", router_table(&lab)));
    assert_eq!(
        flowpin_rules(&lab)
            .iter()
            .filter(|r| r.starts_with("3276"))
            .collect::<Vec<_>>(),
        [
            "32764: from all lookup main suppress_prefixlength 0",
            "32765: from all lookup 7399"
        ]
    );
    for uplink in 0..2 {
        lab.inject_fault(uplink, Fault::None).unwrap();
    }

    lab.inject_fault(0, Fault::Blackhole).unwrap();
    let bound = Duration::from_millis(DOCUMENTED_MS + POLL_SLACK_MS);
    let took = wait_for_status(&lab, bound, |s| uplink_state(s, 0) == "down")
        .unwrap_or_else(|s| panic!("isp1 not down within {bound:?}: {s:#}"));
    eprintln!("isp1 down {took:?} after the black hole (documented {DOCUMENTED_MS} ms)");
    let only_isp2 = format!("default via {} dev {}", isp2.gateway, isp2.router_iface);
    assert_eq!(router_table(&lab), only_isp2, "the route follows at once");
    let status = flowpin_status(&lab);
    assert_eq!(status["router_default_route"], "multipath", "{status:#}");
    assert_eq!(
        status["router_default_via"],
        serde_json::json!([format!("{} 1", isp2.router_iface)]),
        "{status:#}"
    );
    let before = lab.isp_counters().unwrap();
    for attempt in 0..10 {
        assert_eq!(
            router_curl(&lab),
            "200",
            "router curl {attempt} during the outage"
        );
        assert_eq!(
            router_udp_query(&lab),
            Ok(isp2.router_addr.to_string()),
            "router UDP query {attempt} during the outage"
        );
    }
    let during = lab.isp_counters().unwrap()[1].since(&before[1]);
    assert!(during.good >= 10 * 5, "isp2 carried them: {during:?}");

    lab.inject_fault(0, Fault::None).unwrap();
    let took = wait_for_status(&lab, Duration::from_secs(30), |s| {
        uplink_state(s, 0) == "up"
    })
    .unwrap_or_else(|s| panic!("isp1 did not come back: {s:#}"));
    eprintln!("isp1 back up {took:?} after the black hole ended");
    wait_for_status(&lab, Duration::from_secs(2), |_| router_table(&lab) == both)
        .unwrap_or_else(|_| panic!("route not restored: {}", router_table(&lab)));
    let mut seen = std::collections::BTreeSet::new();
    for attempt in 0..10 {
        assert_eq!(
            router_curl(&lab),
            "200",
            "router curl {attempt} after recovery"
        );
        // Different servers hash to either nexthop; any answer must come back.
        let query = router_udp_query(&lab);
        assert!(query.is_ok(), "router UDP query {attempt}: {query:?}");
        seen.insert(query.unwrap());
    }
    assert!(
        seen.iter()
            .all(|s| *s == isp1.router_addr.to_string() || *s == isp2.router_addr.to_string()),
        "{seen:?}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().unwrap());

    stop_flowpin(&lab);
    assert_routes_restored(&lab);
    down_and_assert_clean(lab);
}
