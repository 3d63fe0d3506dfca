//! Port forwards (`[[forward]]`) end to end: a LAN server behind flowpin reached from inet through
//! each uplink's address, each connection answered through the ISP it arrived from whatever the
//! weights say (split access), and reached from a LAN host through an uplink's address
//! (hairpin), TCP and UDP. Every test asserts that no ISP saw a leaked or another uplink's source.

use std::net::Ipv4Addr;
use std::time::Duration;

use flowpin_lab::kernel_forwards::{KernelForward, add_forward};
use flowpin_lab::traffic::{self, EchoProtocol};
use flowpin_lab::{IspCounters, Lab, LabSpec, RouterKind};
use flowpin_tests::{
    append_config_and_reload, assert_no_leak_or_wrong_uplink, down_and_assert_clean, flowpin_flows,
    flowpin_status, lab_up, pin_new_flows_to, reload_with, status_drops,
};

/// The forwarded port, TCP and UDP, on every uplink.
const PORT: u16 = 8080;
/// The LAN server's port.
const SERVER_PORT: u16 = 8000;

/// The LAN server: TCP and UDP on `SERVER_PORT`, each answering with the peer `address:port` it
/// saw (TCP: one line, then close; UDP: one datagram back per datagram).
const SERVER_PY: &str = r#"import socket, sys, threading
port = int(sys.argv[1])
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(("%s:%d\n" % peer).encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(512)
while True:
    c, peer = t.accept()
    try:
        c.sendall(("%s:%d\n" % peer).encode())
    finally:
        c.close()
"#;

/// The client: `count` TCP connections, then `count / 10` UDP exchanges (at least one), to each
/// `address` on `port`. Prints `tcp ADDRESS LOCAL SEEN` and `udp ADDRESS SEEN` per answer (SEEN:
/// the `address:port` the server saw), `error ...` per failure, and `total ADDRESS TCP UDP`.
const CLIENT_PY: &str = r#"import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
for address in sys.argv[3:]:
    tcp_ok = udp_ok = 0
    for _ in range(count):
        try:
            c = socket.create_connection((address, port), 5)
            local = c.getsockname()
            data = b""
            while chunk := c.recv(512):
                data += chunk
            c.close()
            print("tcp", address, local[0], data.decode().strip(), flush=True)
            tcp_ok += 1
        except OSError as e:
            print("error", address, "tcp", e, flush=True)
    for _ in range(max(1, count // 10)):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1.0)
        for attempt in range(3):
            try:
                u.sendto(b"x", (address, port))
                print("udp", address, u.recvfrom(512)[0].decode().strip(), flush=True)
                udp_ok += 1
                break
            except OSError:
                pass
        else:
            print("error", address, "udp", flush=True)
        u.close()
    print("total", address, tcp_ok, udp_ok, flush=True)
"#;

fn forward_config() -> String {
    format!(
        "[[forward]]\nname = \"web\"\nuplinks = \"all\"\nprotocol = \"both\"\nport = {PORT}\n\
         to = \"10.77.0.12\"\nto_port = {SERVER_PORT}\n"
    )
}

/// The lab with the LAN server on host 2 and the forward configured: flowpin's `[[forward]]`, or
/// the kernel reference router's DNAT and connmark reply routing.
fn lab_with_forward(router: RouterKind) -> Lab {
    let lab = lab_up(LabSpec {
        router,
        ..LabSpec::with_weights(&[1, 1])
    });
    let server = &lab.lan_hosts()[1];
    lab.spawn(
        &server.ns,
        &["python3", "-c", SERVER_PY, &SERVER_PORT.to_string()],
    )
    .expect("the LAN server starts");
    wait_listening(&lab, &server.ns);
    match router {
        RouterKind::Flowpin => append_config_and_reload(&lab, &forward_config()),
        _ => add_forward(
            lab.topology(),
            &KernelForward {
                port: PORT,
                to: server.addr,
                to_port: SERVER_PORT,
            },
        )
        .expect("the kernel router's forward"),
    }
    lab
}

fn wait_listening(lab: &Lab, ns: &str) {
    for _ in 0..100 {
        let ss = lab.exec_ok(ns, &["ss", "-ltnH"]).unwrap_or_default();
        if ss.contains(&format!(":{SERVER_PORT}")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the LAN server does not listen");
}

/// What the client saw per address: (tcp_ok, udp_ok), and every other line it printed.
fn run_client(
    lab: &Lab,
    ns: &str,
    addresses: &[Ipv4Addr],
    count: usize,
) -> (Vec<(u64, u64)>, Vec<String>) {
    let port = PORT.to_string();
    let count = count.to_string();
    let addresses: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
    let mut argv = vec!["python3", "-c", CLIENT_PY, &port, &count];
    argv.extend(addresses.iter().map(String::as_str));
    let out = lab.exec_ok(ns, &argv).expect("the client runs");
    let mut totals = Vec::new();
    let mut other = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["total", _, tcp, udp] => totals.push((tcp.parse().unwrap(), udp.parse().unwrap())),
            _ => other.push(line.to_owned()),
        }
    }
    (totals, other)
}

fn counters(lab: &Lab) -> Vec<IspCounters> {
    lab.isp_counters().expect("reading the ISP counters")
}

/// Waits until flowpin knows the LAN server's MAC (it solicits forward targets once a second):
/// one UDP exchange through uplink 1 answers.
fn wait_forward_ready(lab: &Lab) {
    let inet = lab.inet().ns.clone();
    let address = lab.uplinks()[0].router_addr;
    for _ in 0..50 {
        let (totals, _) = run_client(lab, &inet, &[address], 0);
        if totals.first().is_some_and(|&(_, udp)| udp == 1) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the forward never answered through {address}");
}

/// The address part of every `tcp`/`udp` answer line (what the server saw as the source).
fn seen_addresses(lines: &[String]) -> Vec<Ipv4Addr> {
    lines
        .iter()
        .filter(|l| l.starts_with("tcp ") || l.starts_with("udp "))
        .map(|l| {
            let seen = l.split_whitespace().last().expect("a reply");
            seen.split(':').next().unwrap().parse().expect("an address")
        })
        .collect()
}

/// 200 TCP connections and 20 UDP exchanges from inet through each uplink's address: every one
/// answered, each through the ISP it arrived from, and the LAN server sees the client's own
/// address. `pin`: a policy sends every new flow to isp1 (weights 1:0 for new flows) first.
fn forward_answers_through_each_isp(router: RouterKind, pin: Option<&str>) {
    let lab = lab_with_forward(router);
    if let Some(uplink) = pin {
        pin_new_flows_to(&lab, uplink);
    }
    wait_forward_ready(&lab);
    let inet = lab.inet().ns.clone();
    let addresses: Vec<Ipv4Addr> = lab.uplinks().iter().map(|u| u.router_addr).collect();
    for (index, &address) in addresses.iter().enumerate() {
        let before = counters(&lab);
        let (totals, lines) = run_client(&lab, &inet, &[address], 200);
        let after = counters(&lab);
        assert_eq!(
            totals,
            [(200, 20)],
            "{router:?} {pin:?}: through {address}: {lines:#?}"
        );
        // The client's address towards this uplink (inet's address on the link to its ISP).
        let client: Ipv4Addr = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("tcp ")?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .expect("a TCP answer");
        let seen = seen_addresses(&lines);
        assert_eq!(seen.len(), 220);
        assert!(
            seen.iter().all(|&a| a == client),
            "{router:?} {pin:?}: the LAN server sees the remote's own address {client}: {lines:#?}"
        );
        let answered: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.good - b.good)
            .collect();
        // Per TCP connection at least SYN-ACK, data and FIN leave towards the client.
        assert!(
            answered[index] >= 600,
            "{router:?} {pin:?}: the answers through {address} left by its ISP: {answered:?}"
        );
        assert!(
            answered[1 - index] < 50,
            "{router:?} {pin:?}: the other ISP carried answers to {address}: {answered:?}"
        );
        assert_no_leak_or_wrong_uplink(&lab, &after);
    }
    if router == RouterKind::Flowpin {
        let status = flowpin_status(&lab);
        assert_eq!(
            status_drops(&status, "forward_uplink_closed"),
            0,
            "{status:#}"
        );
        let per_uplink = status["forwards"][0]["uplinks"]
            .as_array()
            .expect("the forward");
        for (index, u) in per_uplink.iter().enumerate() {
            assert_eq!(u["open"], true, "{status:#}");
            assert!(
                u["flows"].as_u64().expect("flows") >= 200,
                "status counts the forward's flows through uplink {index}: {status:#}"
            );
        }
        let flows = flowpin_flows(&lab);
        let forwarded = flows["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .filter(|f| f["forward"] == "web")
            .count();
        assert!(
            forwarded >= 400,
            "flows lists the forwarded flows: {forwarded}"
        );
    }
    down_and_assert_clean(lab);
}

#[test]
fn a_forward_on_both_uplinks_answers_each_connection_through_its_own_isp() {
    forward_answers_through_each_isp(RouterKind::Flowpin, None);
}

#[test]
fn a_forward_answers_through_the_isp_it_arrived_from_while_new_flows_go_to_the_other() {
    forward_answers_through_each_isp(RouterKind::Flowpin, Some("isp1"));
}

#[test]
fn the_kernel_reference_router_answers_a_forward_through_each_isp() {
    forward_answers_through_each_isp(RouterKind::Kernel, None);
}

/// Hairpin: a LAN host reaches the LAN server through each uplink's address and the forwarded
/// port, TCP and UDP. Through flowpin the server sees the host's external address, an uplink's
/// (RFC 5382 REQ-8, RFC 4787 REQ-9); through the kernel router, masqueraded, the router's LAN
/// address. Either way its answers come back through the router.
fn lan_host_reaches_the_forward(router: RouterKind) {
    let lab = lab_with_forward(router);
    wait_forward_ready(&lab);
    let host = lab.lan_hosts()[0].ns.clone();
    let addresses: Vec<Ipv4Addr> = lab.uplinks().iter().map(|u| u.router_addr).collect();
    let (totals, lines) = run_client(&lab, &host, &addresses, 20);
    assert_eq!(totals, [(20, 2), (20, 2)], "{router:?}: {lines:#?}");
    let seen = seen_addresses(&lines);
    assert_eq!(seen.len(), 44);
    let expected: Vec<Ipv4Addr> = match router {
        RouterKind::Flowpin => addresses.clone(),
        _ => vec![lab.router().lan_addr],
    };
    assert!(
        seen.iter().all(|a| expected.contains(a)),
        "{router:?}: the server sees {expected:?} as the source: {lines:#?}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}

#[test]
fn a_lan_host_reaches_the_forward_through_each_uplink_address() {
    lan_host_reaches_the_forward(RouterKind::Flowpin);
}

#[test]
fn a_lan_host_reaches_the_kernel_routers_forward_through_each_uplink_address() {
    lan_host_reaches_the_forward(RouterKind::Kernel);
}

/// A reload that removes the forward removes its flows and its port (inet gets no answer any
/// more), and leaves the other flows as they were.
#[test]
fn a_reload_without_the_forward_removes_its_flows_and_nothing_else() {
    let lab = lab_with_forward(RouterKind::Flowpin);
    wait_forward_ready(&lab);
    let inet = lab.inet().ns.clone();
    let address = lab.uplinks()[0].router_addr;
    let (totals, lines) = run_client(&lab, &inet, &[address], 20);
    assert_eq!(totals, [(20, 2)], "{lines:#?}");
    // An outbound flow of host 1 that must survive the reload.
    let host = &lab.lan_hosts()[0];
    let echo = traffic::echo(&lab, host, EchoProtocol::Udp, &lab.inet().server_addrs[..1])
        .expect("the echo runs");
    assert!(echo[0].seen_as.is_some(), "{echo:?}");
    let host_flows = |flows: &serde_json::Value| {
        (flows["flows"].as_array().expect("flows").iter())
            .filter(|f| {
                f["internal"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("10.77.0.11:")
            })
            .count()
    };
    let before = flowpin_flows(&lab);
    assert!(host_flows(&before) >= 1, "{before:#}");
    let files = lab.flowpin_files().expect("flowpin files");
    let text = std::fs::read_to_string(&files.config).expect("the config");
    let without = text.replace(&forward_config(), "");
    assert_ne!(without, text, "the forward is in the file");
    let (applied, said) = reload_with(&lab, &without);
    assert!(applied, "{said}");
    let after = flowpin_flows(&lab);
    let forwarded = (after["flows"].as_array().expect("flows").iter())
        .filter(|f| f.get("forward").is_some())
        .count();
    assert_eq!(forwarded, 0, "the forward's flows are gone: {after:#}");
    assert_eq!(host_flows(&after), host_flows(&before), "{after:#}");
    let status = flowpin_status(&lab);
    assert!(
        status
            .get("forwards")
            .is_none_or(|f| f.as_array().is_some_and(Vec::is_empty))
    );
    let (totals, lines) = run_client(&lab, &inet, &[address], 2);
    assert_eq!(totals, [(0, 0)], "the port is closed: {lines:#?}");
    assert_no_leak_or_wrong_uplink(&lab, &counters(&lab));
    down_and_assert_clean(lab);
}
