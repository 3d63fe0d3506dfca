//! `flowpin check` warns about the machine around a valid configuration, on the lab's router: its
//! veths' peers (in other namespaces, so it says where to turn TX checksum offload off), strict
//! `rp_filter` on an uplink (and not once it is loose), and a local socket bound inside the NAT range.

use std::time::{Duration, Instant};

use flowpin_lab::{LabSpec, RouterKind};
use flowpin_tests::{down_and_assert_clean, lab_up};

#[test]
fn check_names_veth_peers_strict_rp_filter_and_sockets_in_the_nat_range() {
    let lab = lab_up(LabSpec {
        router: RouterKind::Flowpin,
        ..LabSpec::with_weights(&[1, 1])
    });
    let router = lab.router().ns.clone();
    let files = lab.flowpin_files().expect("flowpin files");
    let binary = files.binary.to_string_lossy().into_owned();
    let config = files.config.to_string_lossy().into_owned();
    let check = || {
        lab.exec_ok(&router, &[&binary, "check", "-c", &config])
            .unwrap_or_else(|e| panic!("flowpin check: {e:#}"))
    };
    let isp1 = lab.uplinks()[0].router_iface.clone();
    let rp_filter = |value: &str| {
        lab.exec_ok(
            &router,
            &[
                "sysctl",
                "-w",
                &format!("net.ipv4.conf.{isp1}.rp_filter={value}"),
            ],
        )
        .expect("sysctl");
    };
    lab.exec_ok(&router, &["sysctl", "-w", "net.ipv4.conf.all.rp_filter=0"])
        .expect("sysctl");

    rp_filter("1");
    // A UDP socket bound inside the lab's NAT range, held by a process in the router namespace.
    let text = std::fs::read_to_string(&files.config).expect("config");
    let range = text
        .lines()
        .find_map(|l| l.strip_prefix("port_range = \""))
        .and_then(|r| r.strip_suffix('"'))
        .expect("the lab's NAT range");
    let first: u16 = range.split('-').next().unwrap().parse().unwrap();
    let port = (first + 7).to_string();
    let holder = lab
        .spawn(
            &router,
            &[
                "python3",
                "-c",
                "import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', int(sys.argv[1])))\nprint('bound', flush=True)\ntime.sleep(60)",
                &port,
            ],
        )
        .expect("a socket holder");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holder.stdout().unwrap_or_default().contains("bound") {
        assert!(
            Instant::now() < deadline,
            "{}",
            holder.stderr().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let said = check();
    let lan = &lab.router().lan_iface;
    for expected in [
        format!("warning: {lan} (lan) is a veth whose peer is in another network namespace"),
        format!("warning: {isp1} (isp1) has strict reverse-path filtering (rp_filter 1)"),
        format!(
            "warning: a local udp socket is bound to port {port}, inside the NAT range {range}"
        ),
    ] {
        assert!(said.contains(&expected), "{expected}\nnot in:\n{said}");
    }
    let isp2 = &lab.uplinks()[1].router_iface;
    assert!(
        !said.contains(&format!("{isp2} (isp2) has strict")),
        "{said}"
    );

    rp_filter("2");
    holder.kill().expect("stopping the socket holder");
    let said = check();
    assert!(
        !said.contains("reverse-path"),
        "loose rp_filter is fine:\n{said}"
    );
    assert!(!said.contains("local udp socket"), "{said}");
    down_and_assert_clean(lab);
}
