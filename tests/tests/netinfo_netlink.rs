//! flowpin reads the kernel's link, address and neighbour tables over rtnetlink, follows neighbour
//! changes by events, and makes the kernel resolve a missing gateway out of each uplink's own device.
//!
//! In a throwaway namespace `R` with two uplinks, `wan1` and `wan2`, both on 192.0.2.0/24 and both with
//! their gateway at 192.0.2.1 (each in its own namespace, with its own MAC), and static neighbour entries
//! on `wan1`, the test calls flowpin's `netinfo` and `link_events` from a thread moved into `R` and
//! asserts that they see exactly what `ip` set up:
//! - `interface` reads index, MAC, MTU, carrier and both IPv4 addresses in kernel order;
//! - `neighbour`/`neighbours` give the usable entries of the device asked for, and nothing else;
//! - a neighbour's new MAC wakes the `link_events` watcher (and a re-read sees it), while the same MAC
//!   changing state does not;
//! - `solicit_neighbour` resolves the shared gateway address on both uplinks, each to its own gateway.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowpin::control::netinfo::{self, InterfaceInfo, Mac};
use flowpin::control::{link_events, netinfo::parse_mac};
use flowpin_lab::command::{run, run_in, running_as_root};
use flowpin_lab::name::{Role, generate_prefix};
use flowpin_lab::teardown::{NETNS_DIR, destroy_lab};
use tokio::sync::Notify;

const GATEWAY: &str = "192.0.2.1";
const WAN1_MAC: &str = "02:00:00:00:01:01";
const WAN2_MAC: &str = "02:00:00:00:02:01";
const GW1_MAC: &str = "02:00:00:00:0a:01";
const GW2_MAC: &str = "02:00:00:00:0a:02";

/// The namespaces of one run, named like a lab's (`<prefix>-<role>`), so the lab's teardown removes
/// them — also when an assertion fails half-way.
struct Namespaces {
    prefix: String,
}

impl Namespaces {
    fn name(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.suffix())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Err(error) = destroy_lab(&self.prefix) {
            eprintln!("tearing down {}: {error:#}", self.prefix);
        }
    }
}

fn ip(ns: &str, args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run_in(ns, &argv).unwrap_or_else(|e| panic!("{e:#}"));
}

/// `R` with `wan1`/`wan2`, each a veth to its own gateway namespace where the peer is `192.0.2.1/24`.
fn set_up() -> Namespaces {
    assert!(
        running_as_root().expect("reading /proc/self/status"),
        "missing prerequisite: root (the test creates network namespaces; run as root)"
    );
    let namespaces = Namespaces {
        prefix: generate_prefix(),
    };
    let router = namespaces.name(Role::Router);
    for role in [Role::Router, Role::Isp(1), Role::Isp(2)] {
        let ns = namespaces.name(role);
        run(&["ip", "netns", "add", &ns]).unwrap_or_else(|e| panic!("{e:#}"));
        ip(&ns, &["link", "set", "lo", "up"]);
    }
    for (k, wan_mac, gw_mac) in [(1, WAN1_MAC, GW1_MAC), (2, WAN2_MAC, GW2_MAC)] {
        let isp = namespaces.name(Role::Isp(k));
        let wan = format!("wan{k}");
        ip(
            &router,
            &[
                "link", "add", &wan, "address", wan_mac, "type", "veth", "peer", "name", "gw",
                "address", gw_mac, "netns", &isp,
            ],
        );
        ip(
            &isp,
            &["addr", "add", &format!("{GATEWAY}/24"), "dev", "gw"],
        );
        ip(&isp, &["link", "set", "gw", "up"]);
        ip(&router, &["link", "set", &wan, "up"]);
    }
    ip(&router, &["link", "set", "wan1", "mtu", "1400"]);
    ip(&router, &["addr", "add", "192.0.2.2/24", "dev", "wan1"]);
    ip(&router, &["addr", "add", "198.51.100.9/32", "dev", "wan1"]);
    ip(&router, &["addr", "add", "192.0.2.3/24", "dev", "wan2"]);
    namespaces
}

/// Runs `f` on a thread moved into namespace `ns` (threads it starts stay there); panics propagate.
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let handle = File::open(Path::new(NETNS_DIR).join(ns))
        .unwrap_or_else(|e| panic!("opening namespace {ns}: {e}"));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn mac(s: &str) -> Mac {
    parse_mac(s).expect("a MAC")
}

/// Whether the watcher wakes within `limit`.
fn woken(runtime: &tokio::runtime::Runtime, watcher: &Arc<Notify>, limit: Duration) -> bool {
    runtime
        .block_on(async { tokio::time::timeout(limit, watcher.notified()).await })
        .is_ok()
}

#[test]
fn netinfo_reads_the_kernel_tables_and_follows_neighbour_changes() {
    let namespaces = set_up();
    let router = namespaces.name(Role::Router);
    let link: serde_json::Value = serde_json::from_str(
        &run_in(&router, &["ip", "-j", "link", "show", "dev", "wan1"]).expect("ip link show"),
    )
    .expect("ip -j output");
    let wan1_index = u32::try_from(link[0]["ifindex"].as_u64().expect("ifindex")).unwrap();
    ip(
        &router,
        &[
            "neigh",
            "add",
            "192.0.2.50",
            "lladdr",
            "02:00:00:00:0b:50",
            "dev",
            "wan1",
            "nud",
            "permanent",
        ],
    );
    ip(
        &router,
        &[
            "neigh",
            "add",
            "192.0.2.51",
            "lladdr",
            "02:00:00:00:0b:51",
            "dev",
            "wan1",
            "nud",
            "stale",
        ],
    );
    ip(
        &router,
        &[
            "neigh",
            "add",
            "192.0.2.52",
            "dev",
            "wan1",
            "nud",
            "incomplete",
        ],
    );
    // A device without a link layer (tun: ARPHRD_NONE), nobody attached to it.
    ip(&router, &["tuntap", "add", "dev", "tun9", "mode", "tun"]);
    ip(&router, &["addr", "add", "100.64.9.2/30", "dev", "tun9"]);
    ip(&router, &["link", "set", "tun9", "up"]);
    let change = |args: &[&str]| {
        let mut argv = vec!["neigh", "replace"];
        argv.extend_from_slice(args);
        ip(&router, &argv);
    };

    in_namespace(&router, || {
        // What the tables hold.
        assert_eq!(
            netinfo::interface("wan1").expect("reading wan1"),
            InterfaceInfo {
                name: "wan1".into(),
                ifindex: wan1_index,
                mac: mac(WAN1_MAC),
                layer3: false,
                mtu: 1400,
                carrier: true,
                ipv4: vec![
                    ("192.0.2.2".parse().unwrap(), 24),
                    ("198.51.100.9".parse().unwrap(), 32)
                ],
            }
        );
        let tun = netinfo::interface("tun9").expect("reading tun9");
        assert!(tun.layer3, "{tun:?}");
        assert_eq!(tun.mac, [0; 6]);
        assert!(
            !tun.carrier,
            "no process holds the tun: no carrier ({tun:?})"
        );
        assert_eq!(tun.ipv4, vec![("100.64.9.2".parse().unwrap(), 30)]);
        let missing = netinfo::interface("nowhere0").expect_err("no such interface");
        assert!(
            format!("{missing:#}").contains("No such device"),
            "the error names the errno: {missing:#}"
        );
        let mut usable = netinfo::neighbours("wan1").expect("neighbours of wan1");
        usable.sort();
        assert_eq!(
            usable,
            vec![
                ("192.0.2.50".parse().unwrap(), mac("02:00:00:00:0b:50")),
                ("192.0.2.51".parse().unwrap(), mac("02:00:00:00:0b:51")),
            ],
            "the incomplete entry is not usable"
        );
        let n50 = "192.0.2.50".parse().unwrap();
        assert_eq!(
            netinfo::neighbour("wan1", n50).unwrap(),
            Some(mac("02:00:00:00:0b:50"))
        );
        assert_eq!(
            netinfo::neighbour("wan2", n50).unwrap(),
            None,
            "another device's entry"
        );

        // Events: a new MAC wakes the watcher, the same MAC changing state does not.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let watcher = link_events::watch().expect("watching rtnetlink");
        assert!(
            !woken(&runtime, &watcher, Duration::from_millis(300)),
            "woken with nothing changed"
        );
        change(&[
            "192.0.2.50",
            "lladdr",
            "02:00:00:00:0b:5f",
            "dev",
            "wan1",
            "nud",
            "permanent",
        ]);
        assert!(
            woken(&runtime, &watcher, Duration::from_secs(2)),
            "a gateway's new MAC must wake the control loop"
        );
        assert_eq!(
            netinfo::neighbour("wan1", n50).unwrap(),
            Some(mac("02:00:00:00:0b:5f"))
        );
        // First sight of .51 (wakes: the watcher did not know it), then only its state changes.
        change(&[
            "192.0.2.51",
            "lladdr",
            "02:00:00:00:0b:51",
            "dev",
            "wan1",
            "nud",
            "reachable",
        ]);
        assert!(
            woken(&runtime, &watcher, Duration::from_secs(2)),
            "first sight of .51"
        );
        change(&[
            "192.0.2.51",
            "lladdr",
            "02:00:00:00:0b:51",
            "dev",
            "wan1",
            "nud",
            "stale",
        ]);
        assert!(
            !woken(&runtime, &watcher, Duration::from_millis(300)),
            "a state change with the same MAC must not wake the control loop"
        );

        // Both uplinks resolve the gateway address they share, each to its own gateway.
        let gateway = GATEWAY.parse().unwrap();
        assert_eq!(netinfo::neighbour("wan1", gateway).unwrap(), None);
        assert_eq!(netinfo::neighbour("wan2", gateway).unwrap(), None);
        netinfo::solicit_neighbour(gateway).expect("soliciting the gateway");
        let start = Instant::now();
        let resolved = loop {
            let seen = (
                netinfo::neighbour("wan1", gateway).unwrap(),
                netinfo::neighbour("wan2", gateway).unwrap(),
            );
            if (seen.0.is_some() && seen.1.is_some()) || start.elapsed() > Duration::from_secs(3) {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            resolved,
            (Some(mac(GW1_MAC)), Some(mac(GW2_MAC))),
            "each uplink resolves its own gateway"
        );
    });
}
