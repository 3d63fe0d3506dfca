//! `flowpin run`: bring the forwarder up, keep its view of the kernel fresh, and take it down cleanly.
//!
//! Start order (each step fails with a message naming what is wrong):
//! 1. read and validate the configuration against the router's own `ip_local_port_range`;
//! 2. install the fail-closed forward guard (before anything is attached);
//! 3. learn the LAN and uplink interfaces and resolve the gateways' MACs;
//! 4. build the first snapshot and the flow table;
//! 5. load the XDP program, describe the interfaces to it, open every worker's AF_XDP sockets and
//!    register them, then attach the program to the LAN and every uplink;
//! 6. start the workers, the API server, and the control loop (sweep expired flows every 100 ms; every
//!    second re-read interfaces and neighbours and publish a new snapshot when anything changed).
//!
//! SIGINT/SIGTERM stop the workers, detach the program and remove the socket; the guard stays.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;

use super::api::{self, FlowEntry, FlowFilter, FlowsReport, Request, Response, StatusReport};
use super::guard::GuardSpec;
use super::netinfo::{self, InterfaceInfo};
use super::snapshot::{SnapshotBuilder, UplinkFacts};
use crate::config::{self, Config, XdpMode};
use crate::datapath::{DatapathCounters, Flows, LanView, Mac, Snapshot, SnapshotCell};
use crate::select::KeyHasher;
use crate::worker::{self, Clock, WorkerShared};
use crate::xdp::{AttachMode, XdpProgram};
use crate::xsk::{XskConfig, XskMode, XskWorker};

/// Flow records the sweeper visits per 100 ms tick (bounded work per call).
const SWEEP_BATCH: usize = 16_384;

/// Reads `net.ipv4.ip_local_port_range` of the current network namespace.
pub fn local_port_range() -> Result<config::PortRange> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("cannot read /proc/sys/net/ipv4/ip_local_port_range")?;
    config::PortRange::from_proc_local_port_range(&text).map_err(anyhow::Error::msg)
}

/// Loads and validates a configuration file the way `run` and `check` do.
pub fn load_config(path: &Path) -> Result<Config> {
    let local = local_port_range().ok();
    config::load(path, local).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Everything the control plane keeps about the running datapath.
struct Daemon {
    config: Config,
    clock: Clock,
    builder: SnapshotBuilder,
    cell: Arc<SnapshotCell>,
    flows: Arc<Flows>,
    counters: Vec<Arc<DatapathCounters>>,
    lan: InterfaceInfo,
    lan_address: Ipv4Addr,
    facts: Vec<Option<UplinkFacts>>,
    /// The attached program (detached when dropped at shutdown).
    xdp: Option<XdpProgram>,
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let config = load_config(config_path)?;
    let guard = GuardSpec {
        lan: config.lan.interface.clone(),
        uplinks: config.uplinks.iter().map(|u| u.interface.clone()).collect(),
    };
    guard
        .install()
        .context("installing the fail-closed forward guard")?;
    tracing::info!(table = super::guard::GUARD_TABLE, "forward guard installed");

    let lan = netinfo::interface(&config.lan.interface)?;
    let lan_address = lan
        .ipv4
        .first()
        .map(|(a, _)| *a)
        .with_context(|| format!("LAN interface {} has no IPv4 address", lan.name))?;
    let facts = resolve_uplinks(&config, Duration::from_secs(5))?;
    let mut builder = SnapshotBuilder::new(KeyHasher::random());
    let snapshot = build_snapshot(&mut builder, &config, &lan, lan_address, &facts);
    let cell = Arc::new(ArcSwap::from_pointee(snapshot));
    let flows = Arc::new(
        Flows::with_capacity(config.datapath.flow_capacity as usize)
            .context("allocating the flow table")?,
    );

    let mut xdp = XdpProgram::load().context("loading the XDP program")?;
    xdp.configure_lan(&config.lan.interface)?;
    xdp.add_local_address(lan_address)?;
    for (uplink, fact) in config.uplinks.iter().zip(&facts) {
        let fact = fact.as_ref().expect("resolve_uplinks returns every uplink");
        let range = config.nat.port_range;
        let ports =
            flowpin_nat::PortRange::new(range.first(), range.last()).expect("validated range");
        xdp.configure_uplink(
            &uplink.interface,
            fact.address,
            ports.first()..=ports.last(),
        )?;
    }

    let queues = worker_queues(&config)?;
    let xsk_config = XskConfig {
        frame_count: config.datapath.frames_per_worker,
        mode: match config.datapath.mode {
            XdpMode::Auto => XskMode::Auto,
            XdpMode::Copy => XskMode::Copy,
            XdpMode::Zerocopy => XskMode::ZeroCopy,
        },
        ..XskConfig::default()
    };
    let mut sockets = Vec::new();
    for queue in &queues {
        let mut ports: Vec<(&str, u32)> = vec![(config.lan.interface.as_str(), *queue)];
        ports.extend(
            config
                .uplinks
                .iter()
                .map(|u| (u.interface.as_str(), *queue)),
        );
        let worker = XskWorker::new(&xsk_config, &ports)
            .with_context(|| format!("opening AF_XDP sockets for queue {queue}"))?;
        xdp.register_worker(&worker)?;
        sockets.push(worker);
    }
    let interfaces = std::iter::once(config.lan.interface.clone())
        .chain(config.uplinks.iter().map(|u| u.interface.clone()));
    for name in interfaces {
        let mode = xdp.attach(&name, AttachMode::Auto)?;
        tracing::info!(interface = %name, ?mode, "XDP attached");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clock = Clock::start();
    let shared = WorkerShared {
        snapshot: cell.clone(),
        flows: flows.clone(),
        stop: stop.clone(),
        clock,
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let c = Arc::new(DatapathCounters::default());
        counters.push(c.clone());
        let shared = shared.clone();
        let idle = config.datapath.idle;
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        threads.push(
            std::thread::Builder::new()
                .name(format!("flowpin-w{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker::run(socket, shared, c, idle)
                })?,
        );
    }
    tracing::info!(workers = threads.len(), "forwarding");

    let daemon = Arc::new(std::sync::Mutex::new(Daemon {
        config,
        clock,
        builder,
        cell,
        flows,
        counters,
        lan,
        lan_address,
        facts,
        xdp: Some(xdp),
    }));
    let socket_path = daemon
        .lock()
        .expect("daemon lock")
        .config
        .control
        .socket
        .clone();
    let listener = api::bind(&socket_path)
        .with_context(|| format!("binding the control socket {}", socket_path.display()))?;
    {
        let daemon = daemon.clone();
        std::thread::Builder::new()
            .name("flowpin-api".into())
            .spawn(move || serve_api(listener, daemon))?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(control_loop(daemon.clone()))?;

    tracing::info!("stopping");
    stop.store(true, Ordering::Relaxed);
    let mut xdp = daemon.lock().expect("daemon lock").xdp.take();
    for t in threads {
        let xsk = t.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        if let Some(xdp) = xdp.as_mut() {
            let _ = xdp.unregister_worker(&xsk);
        }
    }
    drop(xdp);
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped; XDP detached, forward guard left in place");
    Ok(())
}

/// The receive queues to serve: one worker per queue of the LAN interface, or the configured count.
fn worker_queues(config: &Config) -> Result<Vec<u32>> {
    let count = match config.datapath.workers {
        config::Workers::Count(n) => u32::from(n.get()),
        config::Workers::Auto => rx_queue_count(&config.lan.interface).max(1),
    };
    Ok((0..count).collect())
}

fn rx_queue_count(interface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
}

/// Learns every uplink's interface and gateway MAC, waiting up to `wait` for the gateways to resolve.
fn resolve_uplinks(config: &Config, wait: Duration) -> Result<Vec<Option<UplinkFacts>>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let facts = config
            .uplinks
            .iter()
            .map(uplink_facts)
            .collect::<Result<Vec<_>>>()?;
        let unresolved: Vec<_> = config
            .uplinks
            .iter()
            .zip(&facts)
            .filter(|(_, f)| f.gateway_mac.is_none())
            .map(|(u, _)| u)
            .collect();
        if unresolved.is_empty() || std::time::Instant::now() >= deadline {
            for u in unresolved {
                tracing::warn!(uplink = %u.name, gateway = %u.gateway, "gateway not resolved yet; the uplink takes no flows until it is");
            }
            return Ok(facts.into_iter().map(Some).collect());
        }
        for u in unresolved {
            let _ = netinfo::solicit_neighbour(u.gateway);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn uplink_facts(u: &config::Uplink) -> Result<UplinkFacts> {
    let info = netinfo::interface(&u.interface)
        .with_context(|| format!("uplink {}: interface {}", u.name, u.interface))?;
    let address = match u.address {
        Some(a) => a,
        None => match info.ipv4.first() {
            Some((a, _)) => *a,
            None => bail!(
                "uplink {}: interface {} has no IPv4 address and none is configured",
                u.name,
                u.interface
            ),
        },
    };
    let gateway_mac = netinfo::neighbour(&u.interface, u.gateway)?;
    Ok(UplinkFacts {
        address,
        mac: info.mac,
        gateway_mac,
        mtu: u16::try_from(info.mtu).unwrap_or(u16::MAX),
        eligible: info.carrier,
    })
}

fn lan_neighbours(interface: &str) -> Vec<(Ipv4Addr, Mac)> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-4", "neigh", "show", "dev", interface])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let Ok(entries) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let ip = e.get("dst")?.as_str()?.parse().ok()?;
            let mac = netinfo::parse_mac(e.get("lladdr")?.as_str()?).ok()?;
            Some((ip, mac))
        })
        .collect()
}

fn build_snapshot(
    builder: &mut SnapshotBuilder,
    config: &Config,
    lan: &InterfaceInfo,
    lan_address: Ipv4Addr,
    facts: &[Option<UplinkFacts>],
) -> Snapshot {
    let view = LanView {
        mac: lan.mac,
        address: lan_address,
        mtu: u16::try_from(lan.mtu).unwrap_or(u16::MAX),
        prefixes: config.lan.prefixes.clone(),
    };
    builder.build(config, view, facts, lan_neighbours(&lan.name))
}

/// Sweeps expired flows every 100 ms and refreshes the kernel facts every second, until a signal.
async fn control_loop(daemon: Arc<std::sync::Mutex<Daemon>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            _ = tick.tick() => {
                ticks += 1;
                let mut d = daemon.lock().expect("daemon lock");
                d.sweep();
                if ticks.is_multiple_of(10) {
                    d.refresh();
                }
            }
        }
    }
}

impl Daemon {
    /// Removes expired flows (bounded work) and gives their external ports back.
    fn sweep(&mut self) {
        let now = self.clock.now_ms();
        let snapshot = self.cell.load();
        let timeouts = snapshot.timeouts;
        self.flows.table.sweep(
            now,
            SWEEP_BATCH,
            |value, state, last_seen| {
                now >= crate::datapath::flows::deadline(&timeouts, value, state, last_seen)
            },
            |value| {
                if let Some(uplink) = snapshot.uplink(value.uplink) {
                    let (ip, port) = value.internal_endpoint();
                    let (_, external) = value.external_endpoint();
                    let _ = uplink
                        .nat
                        .pool(value.protocol())
                        .release(external, ip, port, now);
                }
            },
        );
    }

    /// Re-reads interfaces and neighbours; publishes a new snapshot when anything changed.
    fn refresh(&mut self) {
        let facts: Vec<Option<UplinkFacts>> = self
            .config
            .uplinks
            .iter()
            .map(|u| match uplink_facts(u) {
                Ok(f) => {
                    if f.gateway_mac.is_none() {
                        let _ = netinfo::solicit_neighbour(u.gateway);
                    }
                    Some(f)
                }
                Err(e) => {
                    tracing::warn!(uplink = %u.name, error = %e, "uplink unavailable");
                    None
                }
            })
            .collect();
        let neighbours = lan_neighbours(&self.lan.name);
        let current = self.cell.load();
        let changed = !same_facts(&facts, &self.facts) || {
            let mut sorted = neighbours.clone();
            sorted.sort_unstable_by_key(|(a, _)| *a);
            sorted.dedup_by_key(|(a, _)| *a);
            sorted != current.lan_neighbours
        };
        if changed {
            for (u, (new, old)) in self
                .config
                .uplinks
                .iter()
                .zip(facts.iter().zip(&self.facts))
            {
                let state = |f: &Option<UplinkFacts>| {
                    f.as_ref()
                        .map(|f| f.eligible && f.gateway_mac.is_some())
                        .unwrap_or(false)
                };
                if state(new) != state(old) {
                    tracing::info!(uplink = %u.name, up = state(new), "uplink state changed");
                }
            }
            self.facts = facts;
            let snapshot = build_snapshot(
                &mut self.builder,
                &self.config,
                &self.lan,
                self.lan_address,
                &self.facts,
            );
            self.cell.store(Arc::new(snapshot));
        }
    }

    fn status(&self) -> StatusReport {
        let snapshot = self.cell.load();
        let now = self.clock.now_ms();
        let mut flows_per_uplink = vec![0u64; self.config.uplinks.len()];
        let mut flows = 0u64;
        for f in self.flows.table.snapshot(now) {
            flows += 1;
            if let Some(n) = flows_per_uplink.get_mut(usize::from(f.value.uplink)) {
                *n += 1;
            }
        }
        let mut drops = std::collections::BTreeMap::<String, u64>::new();
        for c in &self.counters {
            for (name, n) in c.nonzero_drops() {
                *drops.entry(name.to_owned()).or_default() += n;
            }
        }
        let uplinks = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let sum = |f: fn(&crate::datapath::counters::UplinkCounters) -> u64| {
                    self.counters.iter().map(|c| f(&c.uplinks[i])).sum()
                };
                let fact = self.facts.get(i).and_then(Option::as_ref);
                api::UplinkStatus {
                    name: u.name.clone(),
                    interface: u.interface.clone(),
                    address: snapshot
                        .uplink(i as u8)
                        .map(|v| v.address.to_string())
                        .unwrap_or_default(),
                    state: match fact {
                        Some(f) if f.eligible && f.gateway_mac.is_some() => "up",
                        _ => "down",
                    }
                    .to_owned(),
                    weight: u.weight,
                    flows: flows_per_uplink[i],
                    tx_packets: sum(|c| c.tx_packets.get()),
                    tx_bytes: sum(|c| c.tx_bytes.get()),
                    rx_packets: sum(|c| c.rx_packets.get()),
                    rx_bytes: sum(|c| c.rx_bytes.get()),
                }
            })
            .collect();
        let xdp = self
            .xdp
            .as_ref()
            .and_then(|x| x.counters().ok())
            .map(|c| {
                c.iter()
                    .filter(|(_, n)| n.packets > 0)
                    .map(|(d, n)| (d.name().to_owned(), n.packets))
                    .collect()
            })
            .unwrap_or_default();
        StatusReport {
            xdp,
            uptime_s: now / 1000,
            uplinks,
            flows,
            flow_capacity: self.flows.table.capacity() as u64,
            drops: drops.into_iter().collect(),
            workers: self
                .counters
                .iter()
                .enumerate()
                .map(|(index, c)| api::WorkerStatus {
                    index,
                    rx_frames: c.frames.get(),
                    tx_frames: c.forwarded.get(),
                    batches: c.batches.get(),
                })
                .collect(),
        }
    }

    fn flows(&self, filter: &FlowFilter) -> FlowsReport {
        let now = self.clock.now_ms();
        let limit = filter.limit.unwrap_or(1000);
        let mut report = FlowsReport::default();
        for f in self.flows.table.snapshot(now) {
            let v = &f.value;
            let uplink = self
                .config
                .uplinks
                .get(usize::from(v.uplink))
                .map(|u| u.name.as_str())
                .unwrap_or("?");
            let proto = match v.protocol() {
                flowpin_nat::IpProtocol::Tcp => "tcp",
                flowpin_nat::IpProtocol::Udp => "udp",
                flowpin_nat::IpProtocol::Icmp => "icmp",
            };
            let (ip, port) = v.internal_endpoint();
            if filter.uplink.as_deref().is_some_and(|u| u != uplink)
                || filter.host.is_some_and(|h| h != ip)
                || filter.proto.as_deref().is_some_and(|p| p != proto)
            {
                continue;
            }
            report.matched += 1;
            if report.flows.len() >= limit {
                continue;
            }
            let (eip, eport) = v.external_endpoint();
            let remote = v.lan_key();
            let state = if v.protocol() == flowpin_nat::IpProtocol::Tcp {
                format!(
                    "{:?}",
                    flowpin_nat::TcpTracker {
                        phase_word: f.protocol_state as u32,
                        inside: 0,
                        outside: 0,
                    }
                    .phase()
                )
                .to_lowercase()
            } else {
                "active".to_owned()
            };
            report.flows.push(FlowEntry {
                proto: proto.to_owned(),
                internal: format!("{ip}:{port}"),
                external: format!("{eip}:{eport}"),
                remote: format!("{}:{}", remote.destination, remote.destination_port),
                uplink: uplink.to_owned(),
                state,
                idle_ms: now.saturating_sub(f.last_seen_ms),
                packets_out: f.counters.packets[0],
                packets_in: f.counters.packets[1],
            });
        }
        report
    }
}

fn same_facts(a: &[Option<UplinkFacts>], b: &[Option<UplinkFacts>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => {
                x.address == y.address
                    && x.mac == y.mac
                    && x.gateway_mac == y.gateway_mac
                    && x.mtu == y.mtu
                    && x.eligible == y.eligible
            }
            (None, None) => true,
            _ => false,
        })
}

fn serve_api(listener: std::os::unix::net::UnixListener, daemon: Arc<std::sync::Mutex<Daemon>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let daemon = daemon.clone();
        let _ = std::thread::Builder::new()
            .name("flowpin-api-conn".into())
            .spawn(move || {
                let _ = api::serve_connection(conn, &|req| {
                    let d = daemon.lock().expect("daemon lock");
                    match req {
                        Request::Status => Response::Status(d.status()),
                        Request::Flows(filter) => Response::Flows(d.flows(&filter)),
                    }
                });
            });
    }
}
