//! flowpin with two receive queues per interface and two workers (design: one shared, lock-free flow
//! table). Worker `i` serves queue `i` of the LAN and of every uplink; which queue a packet arrives on
//! is the sender's choice (on a veth: the peer's transmit queue, picked per flow), so a flow's replies
//! often arrive on the other worker's queue than the one its first packet did. They must still be
//! translated: the other worker finds the flow in the shared table.
//!
//! Also: a worker count that does not match an interface's queues is refused at start and on a reload
//! that adds such an uplink, with a message naming the interface, its queues, the workers and the fix.

use flowpin_lab::flowpin_router::{self, config_for};
use flowpin_lab::traffic::{self, EchoProtocol, IperfMode};
use flowpin_lab::{Lab, LabSpec, RouterKind};
use flowpin_tests::{
    assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_status, lab_up,
    on_every_host_at_once, reload_with, status_drops,
};

const QUEUES: u16 = 2;

/// How many single-flow exchanges the cross-worker check makes.
const SINGLE_FLOWS: usize = 24;

/// One worker's translation counters from `flowpin status --json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WorkerFigures {
    outbound: u64,
    inbound: u64,
    flows_created: u64,
}

fn workers(status: &serde_json::Value) -> Vec<WorkerFigures> {
    status["workers"]
        .as_array()
        .expect("workers in the status")
        .iter()
        .map(|w| {
            let field = |name: &str| {
                w[name]
                    .as_u64()
                    .unwrap_or_else(|| panic!("worker field {name} in {w}"))
            };
            WorkerFigures {
                outbound: field("outbound_packets"),
                inbound: field("inbound_packets"),
                flows_created: field("flows_created"),
            }
        })
        .collect()
}

/// The XDP program's count of `decision` in a status report (0 when absent).
fn xdp_decision(status: &serde_json::Value, decision: &str) -> u64 {
    flowpin_tests::status_count(status, "xdp", decision)
}

/// The receive queues of `interface` in `ns`, as sysfs lists them.
fn rx_queues(lab: &Lab, ns: &str, interface: &str) -> usize {
    let listing = lab
        .exec_ok(ns, &["ls", &format!("/sys/class/net/{interface}/queues")])
        .expect("listing the queues");
    listing
        .split_whitespace()
        .filter(|q| q.starts_with("rx-"))
        .count()
}

#[test]
fn two_workers_translate_each_others_replies_through_the_shared_flow_table() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        queues: QUEUES,
        ..LabSpec::with_weights(&[1, 1])
    });
    let router = &lab.router().ns;
    for interface in ["lan0", "wan1", "wan2"] {
        assert_eq!(
            rx_queues(&lab, router, interface),
            usize::from(QUEUES),
            "{interface}"
        );
    }
    let start = flowpin_status(&lab);
    assert_eq!(workers(&start).len(), usize::from(QUEUES), "{start:#}");

    // One flow at a time: which worker created it (its first packet's LAN queue) and which worker
    // translated its reply (the uplink queue the ISP's transmit queue chose) are read from the
    // per-worker counters around each exchange.
    let server = lab.inet().server_addrs[0];
    let mut crossed = 0;
    let mut exchanges = Vec::new();
    for i in 0..SINGLE_FLOWS {
        let host = &lab.lan_hosts()[i % lab.lan_hosts().len()];
        let before = workers(&flowpin_status(&lab));
        let replies = traffic::echo(&lab, host, EchoProtocol::Udp, &[server]).expect("echo runs");
        assert!(
            replies.iter().all(|r| r.seen_as.is_some()),
            "{}: no echo reply {replies:?}",
            host.ns
        );
        let after = workers(&flowpin_status(&lab));
        let delta: Vec<(u64, u64)> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a.flows_created - b.flows_created, a.inbound - b.inbound))
            .collect();
        let creators: Vec<usize> = (0..delta.len()).filter(|&w| delta[w].0 > 0).collect();
        let repliers: Vec<usize> = (0..delta.len()).filter(|&w| delta[w].1 > 0).collect();
        assert_eq!(creators.len(), 1, "one flow, one creator: {delta:?}");
        assert!(!repliers.is_empty(), "the reply was translated: {delta:?}");
        if repliers.iter().any(|w| *w != creators[0]) {
            crossed += 1;
        }
        exchanges.push((creators[0], repliers));
    }
    eprintln!(
        "{crossed} of {SINGLE_FLOWS} flows had their reply translated by the other worker (creator, repliers): {exchanges:?}"
    );
    assert!(
        crossed > 0,
        "no flow had its reply translated by another worker than the one that created it: {exchanges:?}"
    );
    let creators: std::collections::BTreeSet<usize> = exchanges.iter().map(|e| e.0).collect();
    assert_eq!(
        creators.len(),
        usize::from(QUEUES),
        "both workers created flows: {exchanges:?}"
    );

    // Many flows at once from both hosts: 200 HTTP requests each, iperf3 with 8 TCP streams, UDP
    // echo to every server.
    let servers = lab.inet().iperf_servers.clone();
    on_every_host_at_once(&lab, |index, host| {
        let http = traffic::http_get(&lab, host, 200).expect("curl runs");
        assert_eq!(
            http.ok, 200,
            "{}: failed requests {:?}",
            host.ns, http.failed_codes
        );
        let tcp = traffic::iperf3(&lab, host, servers[index], IperfMode::Tcp { streams: 8 }, 3)
            .unwrap_or_else(|e| panic!("iperf3 TCP from {}: {e:#}", host.ns));
        assert!(
            tcp.received_bytes > 1_000_000,
            "{}: TCP moved only {tcp:?}",
            host.ns
        );
        let addresses = lab.inet().server_addrs.clone();
        let replies = traffic::echo(&lab, host, EchoProtocol::Udp, &addresses).expect("echo runs");
        assert_eq!(replies.len(), addresses.len(), "{}: {replies:?}", host.ns);
        assert!(
            replies.iter().all(|r| r.seen_as.is_some()),
            "{}: {replies:?}",
            host.ns
        );
    });

    let end = flowpin_status(&lab);
    let figures = workers(&end);
    eprintln!("per worker after the parallel traffic: {figures:?}");
    for (index, (now, then)) in figures.iter().zip(workers(&start)).enumerate() {
        assert!(
            now.outbound - then.outbound > 1000 && now.inbound - then.inbound > 1000,
            "worker {index} translated on both the LAN side and the uplink side: {figures:?}"
        );
    }
    // Every queue had a socket: nothing the XDP program redirected was lost for want of one.
    assert_eq!(xdp_decision(&end, "drop_no_socket"), 0, "{end:#}");
    assert_eq!(
        status_drops(&end, "unsolicited_inbound"),
        0,
        "a reply found no flow: {end:#}"
    );
    let counters = lab.isp_counters().expect("ISP counters");
    assert_no_leak_or_wrong_uplink(&lab, &counters);
    assert!(
        counters.iter().all(|c| c.good > 1000),
        "both uplinks carried the flows: {counters:?}"
    );
    down_and_assert_clean(lab);
}

#[test]
fn a_worker_count_that_does_not_match_an_interfaces_queues_is_refused_naming_the_fix() {
    // No forwarder at first: flowpin is started by hand below.
    let lab = lab_up(LabSpec {
        router: RouterKind::None,
        queues: QUEUES,
        ..LabSpec::with_weights(&[1, 1])
    });
    let router = &lab.router().ns;
    // wan2 down to one queue (its peer sends on one queue too); lan0 and wan1 keep two.
    lab.exec_ok(router, &["ethtool", "-L", "wan2", "rx", "1", "tx", "1"])
        .expect("ethtool -L on a veth");
    assert_eq!(rx_queues(&lab, router, "wan2"), 1);
    let expected = [
        "interface wan2 has 1 RX and 1 TX queues but flowpin runs 2 workers ([datapath] workers)",
        "`ethtool -L wan2 combined 2`",
        "set [datapath] workers = 1",
    ];

    let error = format!(
        "{:#}",
        lab.start_flowpin()
            .expect_err("flowpin must refuse to start with a queue-count mismatch")
    );
    for needle in expected {
        assert!(error.contains(needle), "{needle:?} missing from: {error}");
    }

    // With the uplink whose queues match it runs; adding wan2 by a reload is refused the same way.
    let files = lab.flowpin_files().expect("flowpin files");
    let _flowpin = flowpin_router::start_with_uplinks(
        lab.topology(),
        &files,
        |ns, argv| lab.spawn(ns, argv),
        &[0],
    )
    .expect("flowpin starts on lan0 and wan1");
    let (ok, said) = reload_with(
        &lab,
        &config_for(lab.topology(), &files.socket, &[(0, 1), (1, 1)]),
    );
    assert!(!ok, "the reload must be refused: {said}");
    assert!(said.contains("uplink isp2: "), "{said}");
    for needle in expected {
        assert!(said.contains(needle), "{needle:?} missing from: {said}");
    }
    let status = flowpin_status(&lab);
    assert_eq!(
        status["uplinks"].as_array().map(Vec::len),
        Some(1),
        "the running uplink set is kept: {status:#}"
    );
    let http = traffic::http_get(&lab, &lab.lan_hosts()[0], 20).expect("curl runs");
    assert_eq!(http.ok, 20, "still forwarding: {:?}", http.failed_codes);
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    down_and_assert_clean(lab);
}
