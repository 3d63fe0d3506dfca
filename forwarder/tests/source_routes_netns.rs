//! flowpin installs and removes an uplink's source route and rules, and the router's default route,
//! over rtnetlink.
//!
//! On a thread moved into a fresh network namespace (gone when the thread ends) with veth pairs
//! `up0` 192.0.2.2/24 and `upb0` 198.51.100.2/24: `install` puts `default via 192.0.2.1 dev up0` in
//! table 7401 and at priority 7401 the rules `from 192.0.2.2 lookup main suppress_prefixlength 0` and
//! `from 192.0.2.2 lookup 7401`, exactly as `ip` lists them, and the kernel then routes the uplink's
//! address to the internet by its gateway and to a directly connected network directly; installing
//! again leaves one of each; `remove` deletes them and is fine when nothing is left; a refused request
//! is an error naming it and the errno. The router's default route follows the uplinks' state and
//! leaves the main table's default and an admin's rule alone. Needs root.

use std::process::Command;

use flowpin::config::DefaultRoute;
use flowpin::control::router_route::{Candidate, RouterRoute};
use flowpin::control::source_routes as routes;

/// `ip ARGS` in the calling thread's namespace: its standard output, or a panic naming the command.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {}: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).expect("ip prints UTF-8")
}

/// Tells the namespaces of one test run apart.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A network namespace of this test run (`ip netns add`), deleted when dropped, also when an assertion
/// fails half-way.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        let name = format!(
            "flowpin-source-routes-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Runs `f` on a thread moved into a new, empty network namespace; panics propagate.
fn in_fresh_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let namespace = Namespace::new();
    let handle = std::fs::File::open(format!("/run/netns/{}", namespace.0))
        .unwrap_or_else(|e| panic!("opening namespace {}: {e}", namespace.0));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&handle),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("entering the test's network namespace (needs root)");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The rules at priority `priority` (`ip rule` lines).
fn rules_at(priority: &str) -> Vec<String> {
    let prefix = format!("{priority}:");
    ip(&["rule", "show"])
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The rules at priority 7401.
fn probe_rules() -> Vec<String> {
    rules_at("7401")
}

/// The routes of table `table` (`ip route` lines).
fn routes_of(table: &str) -> Vec<String> {
    ip(&["route", "show", "table", table])
        .lines()
        .map(|line| line.trim().to_owned())
        .collect()
}

/// The routes of table 7401.
fn probe_routes() -> Vec<String> {
    routes_of("7401")
}

/// The device and source the kernel picks for `to` from `from` (`ip route get`).
fn route_get(to: &str, from: &str) -> String {
    let line = ip(&["route", "get", to, "from", from]);
    let words: Vec<&str> = line.split_whitespace().collect();
    let dev = words.iter().position(|w| *w == "dev").map(|i| words[i + 1]);
    let via = words.iter().position(|w| *w == "via").map(|i| words[i + 1]);
    format!("{} via {}", dev.unwrap_or("?"), via.unwrap_or("-"))
}

const RULES: [&str; 2] = [
    "7401: from 192.0.2.2 lookup main suppress_prefixlength 0",
    "7401: from 192.0.2.2 lookup 7401",
];

#[test]
fn an_uplink_source_route_and_rules_are_installed_and_removed_over_rtnetlink() {
    in_fresh_namespace(|| {
        ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        ip(&["addr", "add", "192.0.2.2/24", "dev", "up0"]);
        ip(&["link", "set", "up0", "up"]);
        ip(&["link", "set", "up1", "up"]);
        ip(&[
            "link", "add", "upb0", "type", "veth", "peer", "name", "upb1",
        ]);
        ip(&["addr", "add", "198.51.100.2/24", "dev", "upb0"]);
        ip(&["link", "set", "upb0", "up"]);
        ip(&["link", "set", "upb1", "up"]);
        ip(&["route", "add", "default", "via", "198.51.100.1"]);
        let address = "192.0.2.2".parse().unwrap();
        let gateway = "192.0.2.1".parse().unwrap();

        // Without flowpin's rules, an answer from up0's address takes the main default (upb0).
        assert_eq!(
            route_get("203.0.113.9", "192.0.2.2"),
            "upb0 via 198.51.100.1"
        );

        routes::install(1, address, gateway, "up0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe_routes(), ["default via 192.0.2.1 dev up0"]);
        assert_eq!(probe_rules(), RULES);
        assert_eq!(route_get("203.0.113.9", "192.0.2.2"), "up0 via 192.0.2.1");
        // A directly connected network keeps its route, and other sources keep the main default.
        assert_eq!(route_get("198.51.100.7", "192.0.2.2"), "upb0 via -");
        assert_eq!(
            route_get("203.0.113.9", "198.51.100.2"),
            "upb0 via 198.51.100.1"
        );

        routes::install(1, address, gateway, "up0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe_routes(), ["default via 192.0.2.1 dev up0"]);
        assert_eq!(probe_rules(), RULES);

        let inventory = routes::RoutingInventory::read().unwrap();
        assert!(inventory.has_source_routes(1), "{inventory:?}");
        assert!(!inventory.has_source_routes(0), "{inventory:?}");
        // A link taken down loses its routes, and the inventory says so.
        ip(&["link", "set", "up0", "down"]);
        assert!(
            !routes::RoutingInventory::read()
                .unwrap()
                .has_source_routes(1)
        );
        ip(&["link", "set", "up0", "up"]);
        routes::install(1, address, gateway, "up0").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            routes::RoutingInventory::read()
                .unwrap()
                .has_source_routes(1)
        );

        routes::remove(1);
        assert!(probe_routes().is_empty());
        assert!(probe_rules().is_empty());
        routes::remove(1);

        let error = routes::install(1, address, gateway, "absent0").unwrap_err();
        assert!(error.to_string().contains("absent0"), "{error}");
        let off_link = "198.51.100.1".parse().unwrap();
        let error = routes::install(1, address, off_link, "up0")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("route replace default via 198.51.100.1 dev up0 table 7401")
                && error.contains("os error"),
            "the refusal names the request and the errno: {error}"
        );
    });
}

#[test]
fn the_router_default_route_follows_the_uplinks_and_leaves_the_main_table_alone() {
    in_fresh_namespace(|| {
        for (dev, peer, address) in [
            ("wan1", "isp1", "192.0.2.2/29"),
            ("wan2", "isp2", "192.0.2.10/29"),
        ] {
            ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
            ip(&["addr", "add", address, "dev", dev]);
            ip(&["link", "set", dev, "up"]);
            ip(&["link", "set", peer, "up"]);
        }
        ip(&["route", "add", "default", "via", "192.0.2.1"]);
        ip(&[
            "rule", "add", "pref", "32764", "from", "10.9.9.9", "lookup", "main",
        ]);
        let main_before = routes_of("main");
        let rules_before = ip(&["rule", "show"]);
        let mut uplinks = [
            Candidate {
                interface: "wan1".into(),
                gateway: "192.0.2.1".parse().unwrap(),
                weight: 1,
                tier: 1,
                eligible: true,
            },
            Candidate {
                interface: "wan2".into(),
                gateway: "192.0.2.9".parse().unwrap(),
                weight: 3,
                tier: 1,
                eligible: true,
            },
        ];
        let mut route = RouterRoute::default();
        route
            .update(DefaultRoute::Multipath, &uplinks)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let table: Vec<String> = routes_of("7399")
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            table.join(" "),
            "default nexthop via 192.0.2.1 dev wan1 weight 1 nexthop via 192.0.2.9 dev wan2 weight 3"
        );
        assert!(
            rules_at("32764")
                .contains(&"32764: from all lookup main suppress_prefixlength 0".into()),
            "{:?}",
            rules_at("32764")
        );
        assert_eq!(rules_at("32765"), ["32765: from all lookup 7399"]);

        // wan1 dies: the router's own traffic leaves by wan2 only.
        uplinks[0].eligible = false;
        route.update(DefaultRoute::Multipath, &uplinks).unwrap();
        assert_eq!(routes_of("7399"), ["default via 192.0.2.9 dev wan2"]);
        let got = ip(&["route", "get", "203.0.113.9"]);
        assert!(got.contains("via 192.0.2.9 dev wan2"), "{got}");
        // A directly connected destination keeps the main table's route.
        let got = ip(&["route", "get", "192.0.2.3"]);
        assert!(got.contains("dev wan1"), "{got}");

        // Back: best takes the heavier one; none usable: the main default is in force again.
        uplinks[0].eligible = true;
        route.update(DefaultRoute::Best, &uplinks).unwrap();
        assert_eq!(routes_of("7399"), ["default via 192.0.2.9 dev wan2"]);
        uplinks[0].eligible = false;
        uplinks[1].eligible = false;
        route.update(DefaultRoute::Best, &uplinks).unwrap();
        assert!(routes_of("7399").is_empty());
        let got = ip(&["route", "get", "203.0.113.9"]);
        assert!(got.contains("via 192.0.2.1 dev wan1"), "{got}");

        // Unmanaged (or exit): flowpin's rules and table are gone, the admin's rule and the main
        // table are as they were.
        route.update(DefaultRoute::Unmanaged, &uplinks).unwrap();
        assert_eq!(ip(&["rule", "show"]), rules_before);
        assert_eq!(routes_of("main"), main_before);
        route.update(DefaultRoute::Multipath, &uplinks).unwrap();
        route.remove();
        assert_eq!(ip(&["rule", "show"]), rules_before);
        assert_eq!(routes_of("main"), main_before);
        assert!(routes_of("7399").is_empty());
    });
}
