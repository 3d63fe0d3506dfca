//! Fail closed, watched: the forward guard comes back after `nft flush ruleset`, and with the kernel
//! forwarding (ip_forward=1) and no ruleset at all, a `kill -9` of flowpin leaks nothing because the
//! pinned XDP links stay attached (transit from an uplink to the LAN included: the program drops it
//! itself); a restart takes them over. Every test also asserts that no ISP saw
//! a private (leaked) or another uplink's source address.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use flowpin_lab::traffic;
use flowpin_lab::{IspCounters, Lab, LabProcess, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up,
};

/// The guard's rules, by their comments (as `flowpin` writes them).
const GUARD_COMMENTS: [&str; 3] = [
    "flowpin: LAN to uplink transit is flowpin's, never the kernel's",
    "flowpin: uplink to LAN transit is flowpin's, never the kernel's",
    "flowpin: only an uplink's own address leaves that uplink",
];

fn flowpin_lab() -> Lab {
    lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    })
}

fn counters(lab: &Lab) -> Vec<IspCounters> {
    lab.isp_counters().expect("reading the ISP counters")
}

/// The pid of this lab's forwarder (`pgrep -f` on its configuration file: other labs' forwarders
/// run in parallel tests).
fn flowpin_pid(lab: &Lab) -> String {
    let config = lab.flowpin_files().expect("flowpin files").config;
    let pattern = format!("run -c {}", config.display());
    let pids = lab
        .exec_ok(&lab.router().ns, &["pgrep", "-f", &pattern])
        .expect("flowpin is running");
    pids.lines().next().expect("a pid").trim().to_owned()
}

/// A UDP flood from LAN host 0 to the first server: 6,000 packets over about 3 s.
fn udp_flood(lab: &Lab) -> LabProcess {
    let server = lab.inet().server_addrs[0].to_string();
    lab.spawn(
        &lab.lan_hosts()[0].ns,
        &[
            "hping3", "-q", "-2", "-p", "7777", "-i", "u500", "-c", "6000", &server,
        ],
    )
    .expect("hping3 starts")
}

/// The router namespace's interfaces that have an XDP program attached.
fn interfaces_with_xdp(lab: &Lab) -> Vec<String> {
    let links = lab
        .exec_ok(&lab.router().ns, &["ip", "-j", "link", "show"])
        .expect("ip link");
    let links: serde_json::Value = serde_json::from_str(&links).expect("ip -j output");
    links
        .as_array()
        .expect("links")
        .iter()
        .filter(|link| link.get("xdp").is_some())
        .map(|link| link["ifname"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// How many of 5 datagrams sent from namespace `sender` to LAN host 0 that host received.
fn datagrams_to_lan_host(lab: &Lab, sender: &str) -> u64 {
    const PORT: &str = "7788";
    let host = &lab.lan_hosts()[0];
    let receiver = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0',{PORT}))\ns.settimeout(2)\nn=0\ntry:\n    while True:\n        \
         s.recv(2048); n+=1\nexcept socket.timeout:\n    pass\nprint(n)"
    );
    let receiver = lab
        .spawn(&host.ns, &["python3", "-c", &receiver])
        .expect("the LAN host's receiver starts");
    std::thread::sleep(Duration::from_millis(500));
    let send = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(5):\n    s.sendto(b'inbound',('{}',{PORT})); time.sleep(0.05)",
        host.addr
    );
    lab.exec_ok(sender, &["python3", "-c", &send])
        .expect("the sender sends");
    let received = receiver
        .wait_success(Duration::from_secs(20))
        .expect("the receiver reports");
    received.trim().parse().expect("a count")
}

/// Datagrams from the first ISP's namespace straight to LAN host 0's address, routed at the router's
/// uplink address: transit from an uplink to the LAN, which no flow ever receives (return traffic
/// is addressed to an uplink's NAT address). Returns how many of 5 the LAN host received; the same
/// from LAN host 1 (no router in between) must all arrive, so the receiver is known to work.
fn inbound_transit_to_lan(lab: &Lab) -> u64 {
    let uplink = &lab.uplinks()[0];
    let target = format!("{}/32", lab.lan_hosts()[0].addr);
    let via = uplink.router_addr.to_string();
    lab.exec_ok(
        &uplink.isp_ns,
        &["ip", "route", "replace", &target, "via", &via],
    )
    .expect("a route to the LAN host through the router");
    assert_eq!(
        datagrams_to_lan_host(lab, &lab.lan_hosts()[1].ns),
        5,
        "the LAN host's receiver works"
    );
    datagrams_to_lan_host(lab, &uplink.isp_ns)
}

/// The lab's pin files (the host's bpffs), by name, with their inodes.
fn pins(lab: &Lab) -> Vec<(String, u64)> {
    let dir = flowpin_lab::state::pin_dir(lab.prefix());
    let mut pins: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("pin entry");
            let inode = entry.metadata().expect("pin metadata").ino();
            (entry.file_name().to_string_lossy().into_owned(), inode)
        })
        .collect();
    pins.sort();
    pins
}

/// `nft flush ruleset` while traffic flows: flowpin notices within its one-second check,
/// re-installs the guard with its three rules, counts it, and nothing leaks.
#[test]
fn a_flushed_ruleset_gets_the_guard_back_within_a_second_or_two() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    assert_eq!(traffic::http_get(&lab, host, 5).expect("curl runs").ok, 5);
    assert_eq!(flowpin_status(&lab)["guard_reinstalls"], 0);
    let flood = udp_flood(&lab);
    std::thread::sleep(Duration::from_millis(500));
    let router = &lab.router().ns;
    lab.exec_ok(router, &["nft", "flush", "ruleset"])
        .expect("nft flush ruleset");
    let flushed = Instant::now();
    let deadline = flushed + Duration::from_secs(5);
    while flowpin_status(&lab)["guard_reinstalls"].as_u64() < Some(1) {
        assert!(
            Instant::now() < deadline,
            "the guard was not re-installed within 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back_after = flushed.elapsed();
    eprintln!("guard re-installed {back_after:?} after the flush");
    assert!(
        back_after < Duration::from_millis(2500),
        "re-installed only after {back_after:?} (the check runs every second)"
    );
    let listing = lab
        .exec_ok(router, &["nft", "list", "table", "inet", "flowpin_guard"])
        .expect("the guard table is back");
    for comment in GUARD_COMMENTS {
        assert!(listing.contains(comment), "{comment} missing: {listing}");
    }
    let _ = flood.wait(Duration::from_secs(20));
    assert_eq!(
        traffic::http_get(&lab, host, 10).expect("curl runs").ok,
        10,
        "forwarding went on"
    );
    let status = flowpin_status(&lab);
    assert_eq!(status["guard_reinstalls"], 1, "one flush, one re-install");
    assert_eq!(status["guard_reinstalls_failed"], 0);
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// With the kernel forwarding and no ruleset at all (flushed right before and right after the kill,
/// so no guard exists), `kill -9` of flowpin during a UDP flood and new connections leaks nothing:
/// the pinned XDP links stay attached and drop transit at the empty XSKMAP, while the router's own
/// traffic (ping to each gateway) goes on.
#[test]
fn kill_9_with_the_kernel_forwarding_and_no_ruleset_leaks_nothing() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    let router = lab.router().ns.clone();
    assert_eq!(traffic::http_get(&lab, host, 5).expect("curl runs").ok, 5);
    let forwarding = lab
        .exec_ok(&router, &["sysctl", "-n", "net.ipv4.ip_forward"])
        .expect("sysctl");
    assert_eq!(forwarding.trim(), "1", "the kernel forwards in this lab");
    let attached = interfaces_with_xdp(&lab);
    assert_eq!(attached.len(), 3, "lan0, wan1, wan2: {attached:?}");
    let flood = udp_flood(&lab);
    std::thread::sleep(Duration::from_millis(500));
    let pid = flowpin_pid(&lab);
    let script = format!("nft flush ruleset && kill -9 {pid} && nft flush ruleset");
    lab.exec_ok(&router, &["sh", "-c", &script])
        .expect("flush, kill -9, flush");
    let ruleset = lab
        .exec_ok(&router, &["nft", "list", "ruleset"])
        .expect("nft list ruleset");
    assert!(ruleset.trim().is_empty(), "no ruleset left: {ruleset}");
    // New connections while the flood goes on: none may get through.
    let dead = traffic::http_get(&lab, host, 3).expect("curl runs");
    assert_eq!(dead.ok, 0, "nothing may be forwarded while flowpin is dead");
    // Nor inbound: transit from an uplink to the LAN is dropped by the pinned program itself.
    assert_eq!(
        inbound_transit_to_lan(&lab),
        0,
        "uplink transit reached the LAN with flowpin dead and no ruleset"
    );
    assert_eq!(
        interfaces_with_xdp(&lab),
        attached,
        "the pinned links stay attached"
    );
    // The router's own traffic: a ping to each gateway (with an identifier outside the NAT range,
    // whose echo replies are flowpin's) and an HTTP request to the internet by the default route.
    for uplink in lab.uplinks() {
        let gateway = uplink.gateway.to_string();
        let argv = [
            "ping", "-c", "2", "-i", "0.2", "-W", "2", "-e", "40000", &gateway,
        ];
        lab.exec_ok(&router, &argv)
            .unwrap_or_else(|e| panic!("the router's own ping to {gateway} failed: {e}"));
    }
    let url = format!(
        "http://{}:{}/",
        lab.inet().server_addrs[0],
        lab.inet().http_port
    );
    lab.exec_ok(
        &router,
        &["curl", "-sf", "-m", "5", "-o", "/dev/null", &url],
    )
    .expect("the router's own HTTP request goes through");
    let _ = flood.wait(Duration::from_secs(20));
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

/// A restart after `kill -9` puts the new program into the very links the dead process pinned (the
/// pin files keep their inodes, the program changes) and forwards again.
#[test]
fn a_restart_after_kill_9_takes_the_pinned_links_over() {
    let lab = flowpin_lab();
    let host = &lab.lan_hosts()[0];
    let router = lab.router().ns.clone();
    assert_eq!(traffic::http_get(&lab, host, 5).expect("curl runs").ok, 5);
    let before = pins(&lab);
    let names: Vec<&str> = before.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["link_lan0", "link_wan1", "link_wan2"]);
    let program_before = lab
        .exec_ok(&router, &["ip", "-j", "link", "show", "lan0"])
        .expect("ip link");
    let pid = flowpin_pid(&lab);
    lab.exec_ok(&router, &["kill", "-9", &pid])
        .expect("kill -9");
    assert_eq!(
        traffic::http_get(&lab, host, 2).expect("curl runs").ok,
        0,
        "closed while dead"
    );
    lab.start_flowpin().expect("flowpin restarts");
    assert_eq!(pins(&lab), before, "the same pinned links, taken over");
    let program_after = lab
        .exec_ok(&router, &["ip", "-j", "link", "show", "lan0"])
        .expect("ip link");
    let prog_id = |text: &str| -> u64 {
        let link: serde_json::Value = serde_json::from_str(text).expect("ip -j output");
        link[0]["xdp"]["prog"]["id"]
            .as_u64()
            .expect("an XDP program")
    };
    assert_ne!(
        prog_id(&program_before),
        prog_id(&program_after),
        "the restarted flowpin's program runs in the link"
    );
    assert_eq!(
        traffic::http_get(&lab, host, 10).expect("curl runs").ok,
        10,
        "forwarding again"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}
