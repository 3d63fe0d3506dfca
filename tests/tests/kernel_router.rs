//! The lab with the kernel reference router, end to end: real clients on the LAN hosts (curl,
//! iperf3, an echo client) against real servers in inet, through a weighted multipath route,
//! conntrack and masquerade, with the ISPs counting what the router sends them. Also: two labs at
//! once, teardown on panic, and the ISP counters' classification (through the router-less mode).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{Footprint, Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, lab_up, on_every_host_at_once,
};

const HTTP_REQUESTS: usize = 100;
/// Most UDP datagrams iperf3 may lose at 20 Mbit/s through the router (2 CPUs shared by everything).
const MAX_UDP_LOSS_PERCENT: u64 = 5;

fn uplink_addrs(lab: &Lab) -> BTreeSet<Ipv4Addr> {
    lab.uplinks()
        .iter()
        .map(|uplink| uplink.router_addr)
        .collect()
}

#[test]
fn kernel_router_carries_curl_iperf3_and_echo_from_every_lan_host_without_leaks() {
    let lab = lab_up(LabSpec::default());
    let servers = &lab.inet().iperf_servers;
    on_every_host_at_once(&lab, |_, host| {
        let http = traffic::http_get(&lab, host, HTTP_REQUESTS).expect("curl runs");
        assert_eq!(
            http.ok, HTTP_REQUESTS,
            "{}: failed HTTP requests {:?}",
            host.ns, http.failed_codes
        );
    });
    on_every_host_at_once(&lab, |index, host| {
        let tcp = traffic::iperf3(&lab, host, servers[index], IperfMode::Tcp { streams: 4 }, 2)
            .unwrap_or_else(|e| panic!("iperf3 TCP from {}: {e:#}", host.ns));
        assert!(
            tcp.received_bytes > 1_000_000,
            "{}: TCP moved only {tcp:?}",
            host.ns
        );
    });
    on_every_host_at_once(&lab, |index, host| {
        let udp_mode = IperfMode::Udp {
            bits_per_second: 20_000_000,
        };
        let udp = traffic::iperf3(&lab, host, servers[index + 2], udp_mode, 2)
            .unwrap_or_else(|e| panic!("iperf3 UDP from {}: {e:#}", host.ns));
        let (packets, lost) = udp.udp_packets.expect("UDP report has packet counts");
        assert!(
            packets > 1000,
            "{}: only {packets} UDP datagrams sent",
            host.ns
        );
        assert!(
            lost * 100 <= packets * MAX_UDP_LOSS_PERCENT,
            "{}: lost {lost} of {packets}",
            host.ns
        );
    });
    let masquerade_addrs = uplink_addrs(&lab);
    on_every_host_at_once(&lab, |_, host| {
        for protocol in [EchoProtocol::Udp, EchoProtocol::Tcp] {
            let replies = traffic::echo(&lab, host, protocol, &lab.inet().server_addrs)
                .expect("echo client runs");
            assert_eq!(replies.len(), lab.inet().server_addrs.len());
            for reply in replies {
                let seen = reply.seen_as.unwrap_or_else(|| {
                    panic!("{}: no {protocol:?} echo from {}", host.ns, reply.server)
                });
                assert!(
                    masquerade_addrs.contains(seen.ip()),
                    "{}: server saw {seen}, not an uplink address",
                    host.ns
                );
            }
        }
    });
    let counters = lab.isp_counters().expect("reading ISP counters");
    for (uplink, counter) in lab.uplinks().iter().zip(&counters) {
        assert!(
            counter.good > 1000,
            "{} carried only {counter:?}",
            uplink.router_iface
        );
    }
    assert_no_leak_or_wrong_uplink(&lab, &counters);
    down_and_assert_clean(lab);
}

#[test]
fn two_labs_up_at_once_do_not_clash() {
    let first = lab_up(LabSpec::default());
    let second = lab_up(LabSpec {
        lan_hosts: 1,
        ..LabSpec::with_weights(&[2, 1, 1])
    });
    assert_ne!(first.prefix(), second.prefix());
    // Traffic in the second lab only: the first lab's ISPs must see nothing at all.
    let host = &second.lan_hosts()[0];
    let http = traffic::http_get(&second, host, 20).expect("curl runs");
    assert_eq!(http.ok, 20, "failed: {:?}", http.failed_codes);
    let replies = traffic::echo(
        &second,
        host,
        EchoProtocol::Tcp,
        &second.inet().server_addrs,
    )
    .expect("echo runs");
    assert!(
        replies.iter().all(|reply| reply.seen_as.is_some()),
        "{replies:?}"
    );
    let first_counters = first.isp_counters().expect("first lab's counters");
    assert!(
        first_counters.iter().all(|counter| counter.total() == 0),
        "traffic of lab {} reached lab {}: {first_counters:?}",
        second.prefix(),
        first.prefix()
    );
    let second_counters = second.isp_counters().expect("second lab's counters");
    assert_eq!(second_counters.len(), 3);
    assert!(second_counters.iter().map(|c| c.good).sum::<u64>() > 0);
    assert_no_leak_or_wrong_uplink(&second, &second_counters);
    // The first lab still works, then both go away cleanly.
    let replies = traffic::echo(
        &first,
        &first.lan_hosts()[1],
        EchoProtocol::Udp,
        &first.inet().server_addrs[..1],
    )
    .expect("echo runs");
    assert!(replies[0].seen_as.is_some(), "{replies:?}");
    down_and_assert_clean(second);
    down_and_assert_clean(first);
}

#[test]
fn a_lab_is_torn_down_when_its_owner_panics() {
    let (footprint_tx, footprint_rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let lab = lab_up(LabSpec {
            lan_hosts: 1,
            ..LabSpec::default()
        });
        footprint_tx
            .send(Footprint::of(&lab).expect("footprint"))
            .expect("send");
        panic!("deliberate panic while lab {} is up", lab.prefix());
    })
    .join();
    assert!(outcome.is_err(), "the thread should have panicked");
    let footprint = footprint_rx
        .recv()
        .expect("the lab came up before the panic");
    let leftovers = footprint.leftovers().expect("inspecting the host");
    assert!(
        leftovers.is_empty(),
        "left behind after the panic: {leftovers:#?}"
    );
}

#[test]
fn bringing_up_a_taken_name_fails_and_leaves_the_existing_lab_working() {
    let name = flowpin_lab::name::generate_prefix();
    let existing = lab_up(LabSpec {
        name: Some(name.clone()),
        lan_hosts: 1,
        ..LabSpec::default()
    });
    let error = Lab::up(LabSpec {
        name: Some(name.clone()),
        ..LabSpec::default()
    })
    .map(|lab| lab.prefix().to_owned())
    .expect_err("a second lab with the same name must be refused");
    assert!(format!("{error:#}").contains("already exists"), "{error:#}");
    let replies = traffic::echo(
        &existing,
        &existing.lan_hosts()[0],
        EchoProtocol::Tcp,
        &existing.inet().server_addrs[..1],
    )
    .expect("echo runs");
    assert!(
        replies[0].seen_as.is_some(),
        "the existing lab broke: {replies:?}"
    );
    down_and_assert_clean(existing);
}

/// Without a router configuration, what leaves the router is classified by the ISPs: its own
/// traffic from its uplink address is good, a LAN host's packets forwarded un-NATed are leaks, and
/// the router's traffic with uplink 2's address sent out of uplink 1 is wrong-uplink.
#[test]
fn isp_counters_classify_good_leaked_and_wrong_uplink_packets() {
    let lab = lab_up(LabSpec {
        router: RouterKind::None,
        ..LabSpec::default()
    });
    let router = &lab.router().ns;
    let nft_tables = lab
        .exec_ok(router, &["nft", "list", "tables"])
        .expect("nft runs");
    assert!(
        nft_tables.trim().is_empty(),
        "router-less mode must not configure nft: {nft_tables}"
    );
    let forwarding = lab
        .exec_ok(router, &["sysctl", "-n", "net.ipv4.ip_forward"])
        .expect("sysctl runs");
    assert_eq!(forwarding.trim(), "1");
    let neighbours = lab
        .exec_ok(router, &["ip", "neigh", "show", "nud", "permanent"])
        .expect("ip runs");
    for uplink in lab.uplinks() {
        let entry = format!(
            "{} dev {} lladdr {}",
            uplink.gateway, uplink.router_iface, uplink.gateway_mac
        );
        assert!(
            neighbours.contains(&entry),
            "missing neighbour {entry:?} in {neighbours}"
        );
    }

    let server = format!("http://{}/", lab.inet().server_addrs[0]);
    let (wan1, wan2) = (
        lab.uplinks()[0].router_addr.to_string(),
        lab.uplinks()[1].router_addr.to_string(),
    );
    let own = lab
        .exec(
            router,
            &["curl", "-sf", "-m", "3", "--interface", &wan1, &server],
        )
        .expect("curl runs");
    assert!(
        own.status.success(),
        "router's own request failed: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    let spoofed = lab
        .exec(
            router,
            &["curl", "-sf", "-m", "1", "--interface", &wan2, &server],
        )
        .expect("curl runs");
    assert!(
        !spoofed.status.success(),
        "wan2's address must not get through uplink 1's ISP"
    );
    let leaked = lab
        .exec(&lab.lan_hosts()[0].ns, &["curl", "-sf", "-m", "1", &server])
        .expect("curl runs");
    assert!(
        !leaked.status.success(),
        "an un-NATed LAN request must not get an answer"
    );

    let counters = lab.isp_counters().expect("reading ISP counters");
    assert!(counters[0].good > 0, "uplink 1 ISP: {:?}", counters[0]);
    assert!(
        counters[0].wrong_uplink > 0,
        "uplink 1 ISP: {:?}",
        counters[0]
    );
    assert!(counters[0].leak > 0, "uplink 1 ISP: {:?}", counters[0]);
    assert_eq!(
        counters[1].total(),
        0,
        "nothing was routed to uplink 2: {:?}",
        counters[1]
    );
    down_and_assert_clean(lab);
}
