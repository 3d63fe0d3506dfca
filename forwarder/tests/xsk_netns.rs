//! Root netns tests of the XDP program and the AF_XDP worker, on real veths.
//!
//! Topology, names unique per run:
//! ```text
//! ns A (LAN host)            ns R (router: XDP + AF_XDP)              ns B (far host)
//! a0 10.77.1.2/24 ─veth─ ra 10.77.1.1/24        rb 198.51.100.1/24 ─veth─ b0 198.51.100.2/24
//! ```
//! Each test re-executes itself inside ns R (`ip netns exec`) so that interface lookups, the
//! XDP attachment and the AF_XDP binds happen in R; the parent creates and always deletes the
//! namespaces. Without root or `ip` the tests FAIL, naming the missing prerequisite.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use flowpin::xdp::{AttachMode, DecisionCounters, XdpProgram};
use flowpin::xsk::{Frame, PortId, XskConfig, XskMode, XskWorker};
use flowpin_bpf::Decision;

const INNER_ENV: &str = "FLOWPIN_XSK_TEST_NETNS";
const MAC_A0: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const MAC_RA: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const MAC_RB: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const MAC_B0: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];
const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const ROUTER_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The three namespaces of one test run; deleted on drop.
struct Lab {
    a: String,
    r: String,
    b: String,
}

impl Lab {
    fn suffix(test: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            tag
        )
    }

    fn names(suffix: &str) -> Self {
        Self {
            a: format!("fpa-{suffix}"),
            r: format!("fpr-{suffix}"),
            b: format!("fpb-{suffix}"),
        }
    }

    fn create(test: &str) -> (Self, String) {
        require_root_and_tools();
        let suffix = Self::suffix(test);
        let lab = Self::names(&suffix);
        for ns in [&lab.a, &lab.r, &lab.b] {
            sh(&format!("ip netns add {ns}"));
            sh(&format!("ip -n {ns} link set lo up"));
        }
        let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
        let (a, r, b) = (&lab.a, &lab.r, &lab.b);
        sh(&format!(
            "ip link add a0 netns {a} address {} type veth peer name ra netns {r} address {}",
            mac(MAC_A0),
            mac(MAC_RA)
        ));
        sh(&format!(
            "ip link add b0 netns {b} address {} type veth peer name rb netns {r} address {}",
            mac(MAC_B0),
            mac(MAC_RB)
        ));
        sh(&format!("ip -n {a} addr add 10.77.1.2/24 dev a0"));
        sh(&format!("ip -n {r} addr add 10.77.1.1/24 dev ra"));
        sh(&format!("ip -n {r} addr add 198.51.100.1/24 dev rb"));
        sh(&format!("ip -n {b} addr add 198.51.100.2/24 dev b0"));
        for (ns, dev) in [(a, "a0"), (r, "ra"), (r, "rb"), (b, "b0")] {
            sh(&format!("ip -n {ns} link set {dev} up"));
            // The hosts' veths receive frames AF_XDP transmits: they need NAPI (GRO); their UDP
            // goes through AF_XDP, so checksums must be complete (no TX offload).
            sh(&format!(
                "ip netns exec {ns} ethtool -K {dev} gro on tx off"
            ));
        }
        sh(&format!("ip -n {a} route add default via 10.77.1.1"));
        sh(&format!(
            "ip -n {b} route add 10.77.1.0/24 via 198.51.100.1"
        ));
        sh(&format!(
            "ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1"
        ));
        // Static neighbours: the tests look at the IPv4 decisions, and ARP is exercised by the
        // router's own address (dynamic) below.
        sh(&format!(
            "ip -n {a} neigh replace 10.77.1.1 lladdr {} dev a0",
            mac(MAC_RA)
        ));
        sh(&format!(
            "ip -n {b} neigh replace 198.51.100.1 lladdr {} dev b0",
            mac(MAC_RB)
        ));
        (lab, suffix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn require_root_and_tools() {
    // The effective uid, from /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line");
    assert_eq!(
        euid, "0",
        "prerequisite missing: these netns/XDP tests must run as root"
    );
    for tool in ["ip", "ethtool", "ping", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        assert!(
            found.map(|o| o.status.success()).unwrap_or(false),
            "prerequisite missing: `{tool}` is not installed"
        );
    }
}

fn run(command: &str) -> Output {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("spawn sh")
}

fn sh(command: &str) {
    let output = run(command);
    assert!(
        output.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the named test again inside ns R with `INNER_ENV` set; panics if it failed.
fn run_inside_router(lab: &Lab, suffix: &str, test: &str) {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.r])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, suffix)
        .output()
        .expect("spawn the inner test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| line.starts_with("port ")) {
        eprintln!("{line}");
    }
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "inner test failed:\n{stdout}\n{stderr}"
    );
}

/// In the parent: creates the lab, re-runs `test` inside ns R and returns `None`. Inside R: the
/// lab's names (the parent owns the namespaces, so they are never torn down here).
fn inside_router(test: &str) -> Option<std::mem::ManuallyDrop<Lab>> {
    let Ok(suffix) = std::env::var(INNER_ENV) else {
        let (lab, suffix) = Lab::create(test);
        run_inside_router(&lab, &suffix, test);
        return None;
    };
    Some(std::mem::ManuallyDrop::new(Lab::names(&suffix)))
}

/// The XDP program set up as a router: `ra` the LAN, `rb` an uplink with NAT range
/// 20000–29999, the router's LAN address local; not attached yet.
fn lan_and_uplink_program() -> XdpProgram {
    let mut program = XdpProgram::load().expect("load the XDP program");
    program.configure_lan("ra").expect("configure ra");
    program
        .configure_uplink("rb", "isp", ROUTER_UPLINK, 20000..=29999)
        .expect("configure rb");
    program
        .add_local_address(ROUTER_LAN)
        .expect("local address");
    program
}

/// Python run in a namespace: sends `count` UDP datagrams to `dst:port` from `src_port`.
fn udp_send(ns: &str, dst: &str, port: u16, count: u32) -> String {
    format!(
        "ip netns exec {ns} python3 -c \"import socket,time\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
for i in range({count}):\n    s.sendto(b'flowpin-%06d'%i,('{dst}',{port}))\n    time.sleep(0.001) if i%50==0 else None\""
    )
}

/// Python run in a namespace: counts UDP datagrams on `port` until `timeout` seconds of silence.
fn udp_count(ns: &str, port: u16, timeout: f32) -> String {
    format!(
        "ip netns exec {ns} python3 -c \"import socket\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.setsockopt(socket.SOL_SOCKET,33,1<<23)\n\
s.bind(('0.0.0.0',{port}))\n\
s.settimeout({timeout})\n\
n=0\n\
try:\n    while True:\n        s.recv(2048); n+=1\n\
except socket.timeout:\n    pass\n\
print(n)\""
    )
}

/// Python run in a namespace: sends one raw IPv4 packet of protocol 47 (GRE) to `dst`.
fn gre_send(ns: &str, dst: &str) -> String {
    format!(
        "ip netns exec {ns} python3 -c \"import socket\n\
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,47)\n\
[s.sendto(b'\\x00\\x00\\x08\\x00'+b'x'*40,('{dst}',0)) for _ in range(3)]\""
    )
}

/// Python run in a namespace: counts GRE packets received within `timeout` seconds.
fn gre_count(ns: &str, timeout: f32) -> String {
    format!(
        "ip netns exec {ns} python3 -c \"import socket\n\
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,47)\n\
s.settimeout({timeout})\n\
n=0\n\
try:\n    while True:\n        s.recv(2048); n+=1\n\
except socket.timeout:\n    pass\n\
print(n)\""
    )
}

/// Waits until a socket matching `ss_args` (e.g. `-Hlun sport = :9000`) exists in `ns`, so a sender
/// never races a receiver that a loaded machine has not started yet.
fn wait_for_socket(ns: &str, ss_args: &str) {
    for _ in 0..1000 {
        let listed = run(&format!("ip netns exec {ns} ss {ss_args}"));
        if !listed.stdout.is_empty() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("no socket `ss {ss_args}` in {ns} after 10 s");
}

fn delta(program: &XdpProgram, before: &DecisionCounters, decision: Decision) -> u64 {
    program
        .counters()
        .expect("read counters")
        .since(before)
        .packets(decision)
}

fn stdout_number(output: &Output) -> u64 {
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "expected a number, got {:?} / {:?}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// The test's forwarding loop: frames from port 0 (ra) go out port 1 (rb) and back, with only
/// the Ethernet addresses rewritten.
fn forward(worker: &mut XskWorker, stop: &AtomicBool) {
    let mut batch: Vec<Frame> = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) {
        let received = worker.receive(64, &mut batch);
        for mut frame in batch.drain(..) {
            let from = frame.rx_port().expect("received frames have a port");
            let (out, dst, src) = if from == PortId(0) {
                (PortId(1), MAC_B0, MAC_RB)
            } else {
                (PortId(0), MAC_A0, MAC_RA)
            };
            let bytes = worker.data_mut(&mut frame);
            if bytes.len() < 14 {
                worker.recycle(frame);
                continue;
            }
            bytes[..6].copy_from_slice(&dst);
            bytes[6..12].copy_from_slice(&src);
            // A refused frame is recycled and counted by the worker, as before.
            let _ = worker.transmit(frame, out);
        }
        worker.flush();
        if received == 0 {
            worker.wait(5).expect("poll");
        }
    }
    // Let the last transmissions complete.
    for _ in 0..200 {
        worker.flush();
        if !worker.tx_outstanding() {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn xsk_forwards_by_descriptor_and_xdp_passes_the_routers_own_traffic() {
    let Some(lab) =
        inside_router("xsk_forwards_by_descriptor_and_xdp_passes_the_routers_own_traffic")
    else {
        return;
    };

    let mut program = XdpProgram::load().expect("load the XDP program");
    // Both router interfaces as LAN: transit in both directions goes to AF_XDP.
    program.configure_lan("ra").expect("configure ra");
    program.configure_lan("rb").expect("configure rb");
    program
        .add_local_address(ROUTER_LAN)
        .expect("local address");
    program
        .add_local_address(ROUTER_UPLINK)
        .expect("local address");
    let config = XskConfig {
        mode: XskMode::Copy,
        ..XskConfig::default()
    };
    let mut worker = XskWorker::new(&config, &[("ra", 0), ("rb", 0)]).expect("AF_XDP worker");
    assert!(
        worker.ports().all(|port| !port.zerocopy),
        "veth runs copy mode"
    );
    let initial = worker.accounting();
    assert!(initial.is_consistent(), "{initial:?}");
    assert_eq!(initial.total, u64::from(config.frame_count));
    assert!(initial.fill > 0, "fill rings are stocked: {initial:?}");
    program.register_worker(&worker).expect("register sockets");
    for interface in ["ra", "rb"] {
        program
            .attach(interface, AttachMode::Native)
            .expect("native XDP on veth");
    }
    let before = program.counters().expect("counters");

    let stop = Arc::new(AtomicBool::new(false));
    let forwarder = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            forward(&mut worker, &stop);
            worker
        })
    };

    // ICMP both ways through AF_XDP.
    let ping = run(&format!(
        "ip netns exec {} ping -c 5 -i 0.1 -W 2 198.51.100.2",
        lab.a
    ));
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    // UDP: a burst larger than one copy-mode sendto() budget of 32.
    let receiver = thread::spawn({
        let command = udp_count(&lab.b, 9000, 1.5);
        move || run(&command)
    });
    wait_for_socket(&lab.b, "-Hlun sport = :9000");
    sh(&udp_send(&lab.a, "198.51.100.2", 9000, 2000));
    let udp_received = stdout_number(&receiver.join().expect("receiver"));
    // The router's own address, with dynamic ARP: both must reach R's kernel.
    sh(&format!("ip -n {} neigh flush dev a0", lab.a));
    let own = run(&format!(
        "ip netns exec {} ping -c 2 -i 0.1 -W 2 10.77.1.1",
        lab.a
    ));
    // TTL 1 transit: the kernel answers with Time Exceeded.
    let ttl = run(&format!(
        "ip netns exec {} ping -c 1 -t 1 -W 2 198.51.100.2",
        lab.a
    ));
    // GRE from the LAN: dropped, never forwarded by the kernel (ip_forward is 1).
    let gre_receiver = thread::spawn({
        let command = gre_count(&lab.b, 1.5);
        move || run(&command)
    });
    wait_for_socket(&lab.b, "-Hwan sport = :47");
    sh(&gre_send(&lab.a, "198.51.100.2"));
    let gre_received = stdout_number(&gre_receiver.join().expect("gre receiver"));

    stop.store(true, Ordering::Relaxed);
    let worker = forwarder.join().expect("forwarding thread");
    let counters = program.counters().expect("counters");
    let moved = |decision| counters.since(&before).packets(decision);

    assert!(
        ping.status.success(),
        "ping through AF_XDP failed:\n{ping_out}"
    );
    assert!(ping_out.contains("5 received"), "{ping_out}");
    let (ra, rb) = (
        worker.port_counters(PortId(0)),
        worker.port_counters(PortId(1)),
    );
    let stats = (
        worker.kernel_stats(PortId(0)),
        worker.kernel_stats(PortId(1)),
    );
    let host_b = run(&format!(
        "ip -n {0} -s link show b0; ip netns exec {0} nstat -az UdpRcvbufErrors UdpInErrors",
        lab.b
    ));
    let host_b = String::from_utf8_lossy(&host_b.stdout);
    // Every datagram is delivered, or counted by the kernel as dropped before the fast path
    // (fill ring empty while this test shares two CPUs with others); never lost silently.
    let dropped_before = stats.0.as_ref().map(|s| s.rx_dropped).unwrap_or(0);
    assert!(
        udp_received + dropped_before == 2000 && udp_received >= 1900,
        "UDP delivered {udp_received} of 2000; ra {ra:?} rb {rb:?} kernel {stats:?}\n{host_b}"
    );
    assert!(
        own.status.success(),
        "the router's own address is unreachable while attached"
    );
    let ttl_out = String::from_utf8_lossy(&ttl.stdout);
    assert!(
        ttl_out.contains("Time to live exceeded"),
        "no Time Exceeded:\n{ttl_out}"
    );
    assert_eq!(gre_received, 0, "GRE from the LAN crossed the router");

    assert!(
        moved(Decision::RedirectLanTransit) >= 10 + 1990,
        "{counters:?}"
    );
    assert!(moved(Decision::PassLocal) >= 2, "{counters:?}");
    assert!(
        moved(Decision::PassNotIpv4) >= 1,
        "ARP reached no counter: {counters:?}"
    );
    assert!(moved(Decision::PassTtl) >= 1, "{counters:?}");
    assert_eq!(moved(Decision::DropUntranslatable), 3, "{counters:?}");
    assert_eq!(moved(Decision::DropNoSocket), 0, "{counters:?}");

    assert!(
        ra.rx_packets >= 2000 && rb.tx_packets >= 2000,
        "{ra:?} {rb:?}"
    );
    assert!(rb.rx_packets >= 5 && ra.tx_packets >= 5, "{ra:?} {rb:?}");
    assert_eq!(ra.tx_completed, ra.tx_packets, "{ra:?}");
    assert_eq!(rb.tx_completed, rb.tx_packets, "{rb:?}");
    let accounting = worker.accounting();
    assert!(accounting.is_consistent(), "{accounting:?}");
    assert_eq!(accounting.in_flight, 0, "{accounting:?}");
    assert_eq!(accounting.tx + accounting.completion, 0, "{accounting:?}");
    assert_eq!(accounting.total, u64::from(config.frame_count));
    for port in worker.ports() {
        assert!(port.tx_budget >= 32, "{port:?}");
        eprintln!(
            "port {} queue {}: tx budget {}",
            port.interface, port.queue, port.tx_budget
        );
    }
    drop(worker);
    drop(program);
    // After detaching (program dropped), the kernel forwards again: proof the drop was ours.
    let after = run(&format!(
        "ip netns exec {} ping -c 1 -W 2 198.51.100.2",
        lab.a
    ));
    assert!(after.status.success(), "no kernel forwarding after detach");
}

#[test]
fn xdp_fails_closed_without_sockets_and_passes_uplink_own_traffic() {
    let Some(lab) = inside_router("xdp_fails_closed_without_sockets_and_passes_uplink_own_traffic")
    else {
        return;
    };

    let mut program = lan_and_uplink_program();
    program.attach("ra", AttachMode::Auto).expect("attach ra");
    program.attach("rb", AttachMode::Auto).expect("attach rb");
    let before = program.counters().expect("counters");

    // LAN transit with no socket: dropped although ip_forward=1 and FORWARD accepts.
    let transit = run(&format!(
        "ip netns exec {} ping -c 3 -i 0.2 -W 1 198.51.100.2",
        lab.a
    ));
    assert!(
        !transit.status.success(),
        "transit crossed without a socket (fail open)"
    );
    assert!(delta(&program, &before, Decision::DropNoSocket) >= 3);
    // The router itself still answers on the LAN.
    sh(&format!(
        "ip netns exec {} ping -c 2 -i 0.2 -W 2 10.77.1.1",
        lab.a
    ));
    assert!(delta(&program, &before, Decision::PassLocal) >= 2);

    // Uplink: inside the NAT range → AF_XDP (no socket → dropped); outside → the kernel.
    let before_uplink = program.counters().expect("counters");
    sh(&udp_send(&lab.b, "198.51.100.1", 25000, 4));
    let receiver = thread::spawn({
        let command = udp_count(&lab.r, 5000, 1.5);
        move || run(&command)
    });
    wait_for_socket(&lab.r, "-Hlun sport = :5000");
    sh(&udp_send(&lab.b, "198.51.100.1", 5000, 4));
    let own_received = stdout_number(&receiver.join().expect("receiver"));
    assert_eq!(
        own_received, 4,
        "the router's own UDP port outside the range must reach it"
    );
    let counters = program.counters().expect("counters").since(&before_uplink);
    assert!(
        counters.packets(Decision::DropNoSocket) >= 4,
        "{counters:?}"
    );
    assert!(
        counters.packets(Decision::PassUplinkOwn) >= 4,
        "{counters:?}"
    );
    assert_eq!(
        counters.packets(Decision::RedirectUplinkReturn),
        0,
        "{counters:?}"
    );

    // Dropping the program detaches it: the kernel forwards again.
    drop(program);
    sh(&format!(
        "ip netns exec {} ping -c 1 -W 2 198.51.100.2",
        lab.a
    ));
}

/// Python run in a namespace: sends `count` TCP segments with `flags` (0x02 SYN, 0x10 ACK, 0x12
/// SYN+ACK) from `sport` to `dst:dport` through a raw socket (no connection state in the sender).
fn tcp_send(ns: &str, dst: &str, sport: u16, dport: u16, flags: u8, count: u32) -> String {
    format!(
        "ip netns exec {ns} python3 -c \"import socket,struct\n\
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP)\n\
for i in range({count}):\n    s.sendto(struct.pack('!HHIIBBHHH',{sport}+i,{dport},i,0,0x50,{flags},1024,0,0),('{dst}',0))\""
    )
}

#[test]
fn xdp_admits_syns_within_their_budgets_and_drops_uplink_transit_to_the_lan() {
    let Some(lab) =
        inside_router("xdp_admits_syns_within_their_budgets_and_drops_uplink_transit_to_the_lan")
    else {
        return;
    };

    let mut program = lan_and_uplink_program();
    let lan = flowpin::config::Ipv4Prefix::new(Ipv4Addr::new(10, 77, 1, 0), 24).expect("prefix");
    program.set_lan_prefixes(&[lan]).expect("LAN prefixes");
    // One SYN a second after a burst of 5 per sender, 3 inbound; no LAN-wide budget.
    let budget = |per_s, burst| flowpin_bpf::Budget { per_s, burst };
    program
        .set_admission(&flowpin_bpf::Admission {
            host: budget(1, 5),
            lan: budget(0, 0),
            inbound: budget(1, 3),
        })
        .expect("admission");
    program.attach("ra", AttachMode::Auto).expect("attach ra");
    program.attach("rb", AttachMode::Auto).expect("attach rb");
    // No sockets: what is admitted meets the XSKMAP miss (drop_no_socket), so the two counters
    // split every SYN between admitted and refused.

    // 1. LAN SYNs: the sender's burst passes, the rest is refused; the clock bounds the refill.
    let started = std::time::Instant::now();
    let before = program.counters().expect("counters");
    sh(&tcp_send(&lab.a, "198.51.100.2", 40000, 80, 0x02, 40));
    let elapsed = started.elapsed().as_secs();
    let counters = program.counters().expect("counters").since(&before);
    let admitted = counters.packets(Decision::DropNoSocket);
    let refused = counters.packets(Decision::DropAdmissionHost);
    assert_eq!(admitted + refused, 40, "{counters:?}");
    assert!(
        (5..=5 + elapsed + 1 + 2).contains(&admitted),
        "admitted {admitted} of 40 in {elapsed} s with a burst of 5 at 1/s: {counters:?}"
    );
    assert_eq!(counters.packets(Decision::DropAdmissionLan), 0);

    // 2. Segments that are not a bare SYN never touch the budget, spent as it is.
    let before = program.counters().expect("counters");
    sh(&tcp_send(&lab.a, "198.51.100.2", 41000, 80, 0x10, 20));
    sh(&tcp_send(&lab.a, "198.51.100.2", 41000, 80, 0x12, 20));
    let counters = program.counters().expect("counters").since(&before);
    assert_eq!(counters.packets(Decision::DropNoSocket), 40, "{counters:?}");
    assert_eq!(counters.packets(Decision::DropAdmissionHost), 0);

    // 3. Inbound SYNs to the NAT range pass the inbound budget; a SYN+ACK (return traffic) never.
    let started = std::time::Instant::now();
    let before = program.counters().expect("counters");
    sh(&tcp_send(&lab.b, "198.51.100.1", 80, 25000, 0x02, 20));
    let elapsed = started.elapsed().as_secs();
    sh(&tcp_send(&lab.b, "198.51.100.1", 80, 25000, 0x12, 10));
    let counters = program.counters().expect("counters").since(&before);
    let admitted = counters.packets(Decision::DropNoSocket);
    let refused = counters.packets(Decision::DropAdmissionInbound);
    assert_eq!(admitted + refused, 30, "{counters:?}");
    assert!(
        (3 + 10..=3 + elapsed + 1 + 2 + 10).contains(&admitted),
        "admitted {admitted} (10 SYN+ACKs among them) in {elapsed} s: {counters:?}"
    );

    // 4. Uplink transit to the LAN prefix is dropped in XDP although the kernel would forward it
    //    (ip_forward=1, no firewall in the router namespace).
    let before = program.counters().expect("counters");
    let receiver = thread::spawn({
        let command = udp_count(&lab.a, 6000, 1.5);
        move || run(&command)
    });
    wait_for_socket(&lab.a, "-Hlun sport = :6000");
    sh(&udp_send(&lab.b, "10.77.1.2", 6000, 4));
    let received = stdout_number(&receiver.join().expect("receiver"));
    assert_eq!(received, 0, "uplink transit reached the LAN host");
    let counters = program.counters().expect("counters").since(&before);
    assert_eq!(
        counters.packets(Decision::DropUplinkToLan),
        4,
        "{counters:?}"
    );
    // Transit elsewhere stays the kernel's.
    assert_eq!(
        counters.packets(Decision::PassUplinkTransit),
        0,
        "{counters:?}"
    );
}

#[test]
fn xdp_tells_uplinks_on_one_interface_apart_by_their_address() {
    let Some(lab) = inside_router("xdp_tells_uplinks_on_one_interface_apart_by_their_address")
    else {
        return;
    };
    // A second uplink on `rb`, with an address and a NAT range of its own.
    const SECOND: &str = "198.51.100.5";
    sh(&format!("ip addr add {SECOND}/24 dev rb"));
    sh(&format!(
        "ip -n {} neigh replace {SECOND} lladdr {} dev b0",
        lab.b,
        MAC_RB.map(|b| format!("{b:02x}")).join(":")
    ));
    let mut program = lan_and_uplink_program();
    program
        .configure_uplink("rb", "isp-b", SECOND.parse().unwrap(), 30000..=39999)
        .expect("configure the second uplink on rb");
    assert_eq!(program.interfaces().count(), 2, "rb is one interface");
    program.attach("ra", AttachMode::Auto).expect("attach ra");
    program.attach("rb", AttachMode::Auto).expect("attach rb");

    // Each address's own range goes to AF_XDP (no socket here: dropped, fail closed); the other
    // uplink's range on that address is the router's own traffic.
    let step = |program: &XdpProgram, dst: &str, port: u16| {
        let before = program.counters().expect("counters");
        sh(&udp_send(&lab.b, dst, port, 4));
        thread::sleep(Duration::from_millis(200));
        program.counters().expect("counters").since(&before)
    };
    let second_in_range = step(&program, SECOND, 35000);
    assert_eq!(
        second_in_range.packets(Decision::DropNoSocket),
        4,
        "{second_in_range:?}"
    );
    let second_other_range = step(&program, SECOND, 25000);
    assert_eq!(
        second_other_range.packets(Decision::PassUplinkOwn),
        4,
        "{second_other_range:?}"
    );
    assert_eq!(
        second_other_range.packets(Decision::DropNoSocket),
        0,
        "{second_other_range:?}"
    );
    let first_in_range = step(&program, "198.51.100.1", 25000);
    assert_eq!(
        first_in_range.packets(Decision::DropNoSocket),
        4,
        "{first_in_range:?}"
    );

    // Removing one uplink keeps the interface (and its attachment) for the other.
    program
        .remove_uplink("isp-b")
        .expect("remove the second uplink");
    assert_eq!(program.uplink_address("isp-b"), None);
    assert_eq!(program.uplink_address("isp"), Some(ROUTER_UPLINK));
    let gone = step(&program, SECOND, 35000);
    assert_eq!(gone.packets(Decision::DropNoSocket), 0, "{gone:?}");
    assert_eq!(gone.packets(Decision::PassUplinkTransit), 4, "{gone:?}");
    let kept = step(&program, "198.51.100.1", 25000);
    assert_eq!(kept.packets(Decision::DropNoSocket), 4, "{kept:?}");
}
