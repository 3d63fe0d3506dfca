//! `flowpin run`: bring the forwarder up, keep its view of the kernel fresh, and take it down cleanly.
//!
//! Start order (each step fails with a message naming what is wrong):
//! 1. read and validate the configuration against the router's own `ip_local_port_range`;
//! 2. install the fail-closed forward guard (before anything is attached);
//! 3. learn the LAN and uplink interfaces and resolve the gateways' MACs;
//! 4. build the first snapshot and the flow table;
//! 5. load the XDP program, describe the interfaces to it, open every worker's AF_XDP sockets and
//!    register them, then attach the program to the LAN and every uplink;
//! 6. start the workers, the API server, the metrics endpoint, the prober, and the control loop (sweep
//!    expired flows and read every uplink's carrier every 100 ms; every second re-read interfaces and
//!    neighbours; apply each probe round; publish a new snapshot whenever eligibility changes).
//!
//! An uplink takes new flows when its gateway is resolved, its health state is `up` and the operator has
//! not drained it. When it goes down, its flows fail over per `[failover]` (see [`super::failover`]),
//! unless no other uplink is eligible (then nothing is evicted; they fail over once one is back).
//! SIGHUP and `flowpin reload` re-read the configuration (the daemon's `reload`: an invalid file is refused and the running configuration kept).
//!
//! SIGINT/SIGTERM stop the workers, detach the program, remove the socket and the probe routes; the
//! guard stays.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;

use super::api::{
    self, FlowEntry, FlowFilter, FlowsReport, Request, Response, StatusReport, UplinkAction,
    UplinkCommand,
};
use super::failover::{self, RstSender};
use super::guard::GuardSpec;
use super::health::{self, HealthState, ProbeSource, ProberInputs, UplinkHealth};
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
    /// The file `reload` re-reads.
    config_path: std::path::PathBuf,
    /// Per uplink slot: health, operator overrides and failover figures.
    uplinks: Vec<UplinkRuntime>,
    /// What the prober reads.
    prober: Arc<ProberInputs>,
    /// Raw socket for TCP resets (`None` if it could not be opened).
    rst: Option<RstSender>,
    /// Whether the per-uplink probe routes are installed.
    probe_routes: bool,
    reloads: u64,
    reloads_failed: u64,
}

/// The control plane's per-uplink state beyond the kernel facts.
#[derive(Debug)]
struct UplinkRuntime {
    health: UplinkHealth,
    drained: bool,
    weight_override: Option<u32>,
    /// When (daemon ms) it last became `up`.
    up_since_ms: u64,
    /// Failback already done for the current up period.
    failed_back: bool,
    failovers: u64,
    flows_failed_over: u64,
    flows_failed_back: u64,
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

    let prober = Arc::new(ProberInputs {
        settings: ArcSwap::from_pointee(config.health.clone()),
        sources: ArcSwap::from_pointee(Vec::new()),
    });
    let uplinks = facts
        .iter()
        .map(|f| UplinkRuntime {
            health: UplinkHealth::new(f.as_ref().is_some_and(|f| f.eligible)),
            drained: false,
            weight_override: None,
            up_since_ms: 0,
            failed_back: true,
            failovers: 0,
            flows_failed_over: 0,
            flows_failed_back: 0,
        })
        .collect();
    let rst = RstSender::open()
        .inspect_err(|e| tracing::warn!(error = %e, "no raw socket for TCP resets; reset flows are only removed"))
        .ok();
    let metrics_listener = match config.metrics.listen {
        Some(address) => Some(
            std::net::TcpListener::bind(address)
                .with_context(|| format!("binding the metrics endpoint {address}"))?,
        ),
        None => None,
    };
    let mut daemon = Daemon {
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
        config_path: config_path.to_path_buf(),
        uplinks,
        prober,
        rst,
        probe_routes: false,
        reloads: 0,
        reloads_failed: 0,
    };
    daemon.update_probing();
    let daemon = Arc::new(std::sync::Mutex::new(daemon));
    if let Some(listener) = metrics_listener {
        tracing::info!(address = %listener.local_addr()?, "metrics endpoint");
        let daemon = daemon.clone();
        std::thread::Builder::new()
            .name("flowpin-metrics".into())
            .spawn(move || {
                super::metrics::serve(listener, &|| {
                    super::metrics::render(&daemon.lock().expect("daemon lock").status())
                })
            })?;
    }
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
    let mut xdp = {
        let mut d = daemon.lock().expect("daemon lock");
        d.remove_probe_routes();
        d.xdp.take()
    };
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

/// A snapshot from `config` and `facts` as they are (`facts[i].eligible`: takes new flows).
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

/// Sweeps expired flows and reads carriers every 100 ms, refreshes the kernel facts every second, applies
/// probe rounds as they come, reloads on SIGHUP, until SIGINT/SIGTERM.
async fn control_loop(daemon: Arc<std::sync::Mutex<Daemon>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (round_tx, mut rounds) = tokio::sync::mpsc::channel(4);
    let inputs = daemon.lock().expect("daemon lock").prober.clone();
    let prober = tokio::spawn(health::run_prober(inputs, round_tx));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks: u64 = 0;
    let result = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = sighup.recv() => {
                let mut d = daemon.lock().expect("daemon lock");
                match d.reload() {
                    Ok(message) => tracing::info!(%message, "SIGHUP: configuration reloaded"),
                    Err(error) => tracing::error!(%error, "SIGHUP: configuration rejected; keeping the running one"),
                }
            }
            Some(round) = rounds.recv() => {
                daemon.lock().expect("daemon lock").apply_round(&round);
            }
            _ = tick.tick() => {
                ticks += 1;
                let mut d = daemon.lock().expect("daemon lock");
                d.sweep();
                d.check_carriers();
                if ticks.is_multiple_of(10) {
                    d.refresh();
                    d.fail_back();
                }
            }
        }
    };
    prober.abort();
    result
}

/// Whether interface `name` has carrier now (`/sys/class/net/NAME/carrier`; unreadable = no carrier).
fn carrier(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
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
            self.facts = facts;
            self.update_probing();
            self.publish();
        }
    }

    /// The facts with `eligible` = gateway resolved, health `up`, not drained; the config with the
    /// operator's weights; published as the new snapshot.
    fn publish(&mut self) {
        let facts: Vec<Option<UplinkFacts>> = self
            .facts
            .iter()
            .zip(&self.uplinks)
            .map(|(f, u)| {
                f.clone().map(|mut f| {
                    f.eligible = f.gateway_mac.is_some()
                        && u.health.state() == HealthState::Up
                        && !u.drained;
                    f
                })
            })
            .collect();
        let mut config = self.config.clone();
        for (uplink, runtime) in config.uplinks.iter_mut().zip(&self.uplinks) {
            if let Some(weight) = runtime.weight_override {
                uplink.weight = weight;
            }
        }
        if config.uplinks.iter().all(|u| u.weight == 0) {
            // Every weight overridden to 0: treat all as standby with equal weights.
            config.uplinks.iter_mut().for_each(|u| u.weight = 1);
        }
        let snapshot = build_snapshot(
            &mut self.builder,
            &config,
            &self.lan,
            self.lan_address,
            &facts,
        );
        self.cell.store(Arc::new(snapshot));
    }

    /// Whether uplink `slot` takes new flows under the current facts, health and drain.
    fn eligible(&self, slot: usize) -> bool {
        let runtime = &self.uplinks[slot];
        self.facts
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|f| f.gateway_mac.is_some())
            && runtime.health.state() == HealthState::Up
            && !runtime.drained
    }

    /// Probe sources and settings for the prober; source routes when probing is on.
    fn update_probing(&mut self) {
        let probing = !self.config.health.targets.is_empty();
        let sources: Vec<Option<ProbeSource>> = self
            .config
            .uplinks
            .iter()
            .zip(&self.facts)
            .map(|(u, f)| {
                f.as_ref().map(|f| ProbeSource {
                    interface: u.interface.clone(),
                    address: f.address,
                })
            })
            .collect();
        let changed = **self.prober.sources.load() != sources;
        if probing && (changed || !self.probe_routes) {
            for (slot, (u, source)) in self.config.uplinks.iter().zip(&sources).enumerate() {
                let Some(source) = source else { continue };
                if let Err(error) =
                    health::routes::install(slot as u8, source.address, u.gateway, &u.interface)
                {
                    tracing::warn!(uplink = %u.name, %error, "installing the probe route");
                }
            }
            self.probe_routes = true;
        } else if !probing && self.probe_routes {
            self.remove_probe_routes();
        }
        self.prober.sources.store(Arc::new(sources));
        self.prober
            .settings
            .store(Arc::new(self.config.health.clone()));
    }

    fn remove_probe_routes(&mut self) {
        if self.probe_routes {
            for slot in 0..self.config.uplinks.len() {
                health::routes::remove(slot as u8);
            }
            self.probe_routes = false;
        }
    }

    /// Feeds every uplink's carrier to its health tracker (every 100 ms: link down acts at once).
    fn check_carriers(&mut self) {
        let changes: Vec<(usize, Option<HealthState>)> = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .map(|(slot, u)| {
                let up = carrier(&u.interface);
                (
                    slot,
                    self.uplinks[slot].health.carrier(up, &self.config.health),
                )
            })
            .collect();
        self.apply_changes(changes);
    }

    /// Applies one probe round.
    fn apply_round(&mut self, round: &health::Round) {
        let count = self.uplinks.len();
        let changes: Vec<(usize, Option<HealthState>)> = round
            .iter()
            .filter(|(slot, _)| usize::from(*slot) < count)
            .map(|(slot, result)| {
                let slot = usize::from(*slot);
                (
                    slot,
                    self.uplinks[slot]
                        .health
                        .round(*result, &self.config.health),
                )
            })
            .collect();
        self.apply_changes(changes);
    }

    /// Publishes a snapshot for state changes, then fails over uplinks that went down.
    fn apply_changes(&mut self, changes: Vec<(usize, Option<HealthState>)>) {
        let changed: Vec<(usize, HealthState)> = changes
            .into_iter()
            .filter_map(|(slot, change)| change.map(|state| (slot, state)))
            .collect();
        if changed.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        for (slot, state) in &changed {
            let u = &mut self.uplinks[*slot];
            tracing::info!(
                uplink = %self.config.uplinks[*slot].name,
                state = state.name(),
                loss_percent = u.health.loss_percent(),
                rtt_ms = u.health.rtt_ms().unwrap_or(0.0),
                "uplink health changed"
            );
            if *state == HealthState::Up {
                u.up_since_ms = now;
                u.failed_back = false;
            }
        }
        self.publish();
        // Every uplink not up gets its flows failed over (a no-op when it has none): the one that
        // just went down, and ones whose flows were kept while no uplink was healthy.
        for slot in 0..self.uplinks.len() {
            if self.uplinks[slot].health.state() != HealthState::Up {
                self.fail_over(slot);
            }
        }
    }

    /// Fails over uplink `slot`'s flows, unless no other uplink takes new flows (viability guard).
    fn fail_over(&mut self, slot: usize) {
        let others = (0..self.uplinks.len()).any(|other| other != slot && self.eligible(other));
        if !others {
            tracing::warn!(uplink = %self.config.uplinks[slot].name, "no healthy uplink left: its flows stay pinned");
            return;
        }
        let snapshot = self.cell.load();
        let report = failover::fail_over(
            &self.flows,
            &snapshot,
            slot as u8,
            &self.config.failover,
            self.rst.as_ref(),
            self.clock.now_ms(),
        );
        if report.moved + report.reset > 0 {
            let u = &mut self.uplinks[slot];
            u.failovers += 1;
            u.flows_failed_over += report.moved + report.reset;
            tracing::info!(
                uplink = %self.config.uplinks[slot].name,
                moved = report.moved,
                reset = report.reset,
                kept = report.kept,
                "flows failed over"
            );
        }
    }

    /// Failback `move-after`: once an uplink has been up long enough, moves its class back (once per up
    /// period).
    fn fail_back(&mut self) {
        let failback = self.config.failback;
        let now = self.clock.now_ms();
        for slot in 0..self.uplinks.len() {
            let u = &self.uplinks[slot];
            if u.failed_back
                || !self.eligible(slot)
                || now < u.up_since_ms + u64::from(failback.after_s) * 1000
            {
                continue;
            }
            let snapshot = self.cell.load();
            let moved = failover::move_back(&self.flows, &snapshot, slot as u8, &failback, now);
            let u = &mut self.uplinks[slot];
            u.failed_back = true;
            u.flows_failed_back += moved;
            if moved > 0 {
                tracing::info!(uplink = %self.config.uplinks[slot].name, moved, "flows failed back");
            }
        }
    }

    /// Re-reads the configuration file. Invalid, or changing what needs a restart: an error naming why,
    /// and the running configuration stays. Valid: weights, policies, health, failover, failback and
    /// timeouts are swapped in one snapshot; pinned flows keep their uplink and external address:port.
    pub fn reload(&mut self) -> std::result::Result<String, String> {
        let result = load_config(&self.config_path)
            .map_err(|e| format!("{e:#}"))
            .and_then(|new| {
                restart_needed(&self.config, &new).map_or(Ok(new), |what| {
                    Err(format!("{what} changed: restart flowpin to apply it"))
                })
            });
        match result {
            Ok(new) => {
                self.config = new;
                self.update_probing();
                self.publish();
                self.reloads += 1;
                Ok(format!("reloaded {}", self.config_path.display()))
            }
            Err(message) => {
                self.reloads_failed += 1;
                Err(message)
            }
        }
    }

    /// `flowpin uplink drain|undrain|set-weight`.
    fn uplink_command(&mut self, command: &UplinkCommand) -> std::result::Result<String, String> {
        let Some(slot) = self
            .config
            .uplinks
            .iter()
            .position(|u| u.name == command.name)
        else {
            return Err(format!("no uplink named `{}`", command.name));
        };
        let u = &mut self.uplinks[slot];
        let message = match command.action {
            UplinkAction::Drain => {
                u.drained = true;
                format!(
                    "{} drained: no new flows, existing flows stay",
                    command.name
                )
            }
            UplinkAction::Undrain => {
                u.drained = false;
                format!("{} undrained", command.name)
            }
            UplinkAction::SetWeight { weight } => {
                if weight.is_some_and(|w| w > config::MAX_WEIGHT) {
                    return Err(format!(
                        "weight above the maximum of {}",
                        config::MAX_WEIGHT
                    ));
                }
                u.weight_override = weight;
                match weight {
                    Some(w) => format!("{} weight set to {w}", command.name),
                    None => format!("{} back to its configured weight", command.name),
                }
            }
        };
        tracing::info!(%message, "operator");
        self.publish();
        Ok(message)
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
                    state: match (fact, &self.uplinks[i]) {
                        (Some(f), _) if f.gateway_mac.is_none() => "down",
                        (None, _) => "down",
                        (_, r) if r.drained && r.health.state() == HealthState::Up => "draining",
                        (_, r) => r.health.state().name(),
                    }
                    .to_owned(),
                    eligible: self.eligible(i),
                    weight: self.uplinks[i].weight_override.unwrap_or(u.weight),
                    probe_loss_percent: (!self.config.health.targets.is_empty())
                        .then(|| self.uplinks[i].health.loss_percent()),
                    probe_rtt_ms: self.uplinks[i].health.rtt_ms(),
                    state_changes: self.uplinks[i].health.transitions,
                    failovers: self.uplinks[i].failovers,
                    flows_failed_over: self.uplinks[i].flows_failed_over,
                    flows_failed_back: self.uplinks[i].flows_failed_back,
                    flows_created: sum(|c| c.flows_created.get()),
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
            reloads: self.reloads,
            reloads_failed: self.reloads_failed,
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
                    let mut d = daemon.lock().expect("daemon lock");
                    let done = |r: std::result::Result<String, String>| match r {
                        Ok(message) => Response::Done { message },
                        Err(message) => Response::Error { message },
                    };
                    match req {
                        Request::Status => Response::Status(d.status()),
                        Request::Flows(filter) => Response::Flows(d.flows(&filter)),
                        Request::Reload => {
                            let result = d.reload();
                            if let Err(error) = &result {
                                tracing::error!(%error, "reload rejected; keeping the running configuration");
                            }
                            done(result)
                        }
                        Request::Uplink(command) => done(d.uplink_command(&command)),
                    }
                });
            });
    }
}

/// What differs between `old` and `new` that a reload cannot apply (`None`: reloadable).
fn restart_needed(old: &Config, new: &Config) -> Option<&'static str> {
    let same_uplinks = old.uplinks.len() == new.uplinks.len()
        && old.uplinks.iter().zip(&new.uplinks).all(|(a, b)| {
            a.name == b.name
                && a.interface == b.interface
                && a.gateway == b.gateway
                && a.address == b.address
        });
    if old.lan != new.lan {
        Some("[lan]")
    } else if !same_uplinks {
        Some("the uplink set (names, interfaces, gateways, addresses, order)")
    } else if old.nat.port_range != new.nat.port_range {
        Some("nat.port_range")
    } else if old.datapath != new.datapath {
        Some("[datapath]")
    } else if old.control != new.control {
        Some("control.socket")
    } else if old.metrics != new.metrics {
        Some("metrics.listen")
    } else {
        None
    }
}
