//! flowpin installs and removes an uplink's probe source route and rule over rtnetlink.
//!
//! On a thread moved into a fresh network namespace (gone when the thread ends) with one veth pair,
//! `up0` 192.0.2.2/24 to `up1`: `install` puts `default via 192.0.2.1 dev up0` in table 7401 and the
//! rule `from 192.0.2.2 oif up0 lookup 7401` at priority 7401, exactly as `ip` lists them; installing again
//! leaves one of each; `remove` deletes both and is fine when nothing is left; a refused request is an
//! error naming it and the errno. Needs root.

use std::process::Command;

use flowpin::control::health::routes;

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

/// A network namespace of this test run (`ip netns add`), deleted when dropped, also when an assertion
/// fails half-way.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        let name = format!("flowpin-probe-routes-{}", std::process::id());
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

/// The probe rules at priority 7401 (`ip rule` lines).
fn probe_rules() -> Vec<String> {
    ip(&["rule", "show"])
        .lines()
        .filter(|line| line.starts_with("7401:"))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The routes of table 7401 (`ip route` lines).
fn probe_routes() -> Vec<String> {
    ip(&["route", "show", "table", "7401"])
        .lines()
        .map(|line| line.trim().to_owned())
        .collect()
}

#[test]
fn a_probe_route_and_rule_are_installed_and_removed_over_rtnetlink() {
    in_fresh_namespace(|| {
        ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        ip(&["addr", "add", "192.0.2.2/24", "dev", "up0"]);
        ip(&["link", "set", "up0", "up"]);
        ip(&["link", "set", "up1", "up"]);
        let address = "192.0.2.2".parse().unwrap();
        let gateway = "192.0.2.1".parse().unwrap();

        routes::install(1, address, gateway, "up0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe_routes(), ["default via 192.0.2.1 dev up0"]);
        assert_eq!(probe_rules(), ["7401: from 192.0.2.2 oif up0 lookup 7401"]);

        routes::install(1, address, gateway, "up0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe_routes(), ["default via 192.0.2.1 dev up0"]);
        assert_eq!(probe_rules(), ["7401: from 192.0.2.2 oif up0 lookup 7401"]);

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
