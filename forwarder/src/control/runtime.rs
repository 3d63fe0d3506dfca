//! `flowpin run`: bring the forwarder up, keep its view of the kernel fresh, and take it down cleanly.
//!
//! Start order (each step fails with a message naming what is wrong):
//! 1. read and validate the configuration against the router's own `ip_local_port_range`, and the worker
//!    count against every interface's queues (see [`super::queues`]);
//! 2. install the fail-closed forward guard (before anything is attached);
//! 3. learn the LAN and uplink interfaces and resolve the gateways' MACs;
//! 4. build the first snapshot and the flow table;
//! 5. load the XDP program, describe the interfaces and every address of the router's namespace to it,
//!    open every worker's AF_XDP sockets and register them, then attach the program to the LAN and
//!    every uplink;
//! 6. start the workers, the API server, the metrics endpoint, the prober, the rtnetlink watcher and the
//!    control loop (sweep expired flows every 100 ms; re-read carriers, interfaces and neighbours on every
//!    link or address event and every second, re-writing the XDP maps when an uplink's or the router's
//!    addresses changed and failing over the flows left on an uplink's old address; apply each probe
//!    round; publish a new snapshot whenever eligibility changes).
//!
//! An uplink takes new flows when its gateway is resolved, its health state is `up` and the operator has
//! not drained it. When it goes down, its flows fail over per `[failover]` (see [`super::failover`]),
//! unless no other uplink is eligible (then nothing is evicted; they fail over once one is back).
//! SIGHUP and `flowpin reload` re-read the configuration (the daemon's `reload`: an invalid file is refused and the running configuration kept).
//!
//! Uplink slots are stable for an uplink's whole life: its flows store the slot. A reload that adds or
//! removes uplinks keeps every remaining uplink in its slot (whatever the file order), leaves a removed
//! uplink's slot retired (no flows, no socket, no XDP) and gives an added one a slot retired by an earlier
//! reload or a new one. Because one AF_XDP UMEM serves all of a worker's sockets, the workers are stopped
//! and every socket reopened for the new set: a pause of tens of milliseconds (logged with its parts, and
//! reported by `flowpin reload`) during which arriving frames are dropped by XDP (the XSKMAP is empty),
//! never forwarded by the kernel. What a reload cannot apply (the LAN, the NAT port range, `[datapath]`,
//! the control socket, the metrics address, an uplink's interface, gateway or address) is refused with
//! what to do instead.
//!
//! Every published snapshot is remembered (the last 1024) with the uplink states and
//! weights it was built from; `flowpin explain` reconstructs a flow's decision from the generation its
//! record stores.
//!
//! SIGINT/SIGTERM stop the workers, detach the program, remove the socket and the probe routes; the
//! guard stays.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use super::queues;
use super::router_addresses;
use super::snapshot::{Moment, SnapshotBuilder, SnapshotHistory, UplinkFacts};
use crate::config::{self, Config, XdpMode};
use crate::datapath::PortId;
use crate::datapath::{DatapathCounters, Flows, LanView, Mac, Snapshot, SnapshotCell};
use crate::select::KeyHasher;
use crate::worker::{Clock, PortMap, WorkerPool};
use crate::xdp::{AttachMode, XdpProgram};
use crate::xsk::{XskConfig, XskMode, XskWorker};

/// Flow records the sweeper visits per 100 ms tick (bounded work per call).
const SWEEP_BATCH: usize = 16_384;

/// How long an I/O rebuild waits for the kernel to release the closed sockets' queues.
const QUEUE_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Published snapshots `flowpin explain` remembers (generation → uplink states and weights).
const SNAPSHOT_HISTORY: usize = 1024;

/// Reads `net.ipv4.ip_local_port_range` of the current network namespace.
pub fn local_port_range() -> Result<config::PortRange> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("cannot read /proc/sys/net/ipv4/ip_local_port_range")?;
    config::PortRange::parse_ip_local_port_range(&text)
        .map_err(|error| anyhow::anyhow!("ip_local_port_range `{}`: {error}", text.trim()))
}

/// Reads the online CPU ids (`/sys/devices/system/cpu/online`).
pub fn online_cpus() -> Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("cannot read /sys/devices/system/cpu/online")?;
    config::parse_cpu_list(&text).map_err(anyhow::Error::msg)
}

/// Loads and validates a configuration file the way `run` and `check` do: against this machine's
/// `ip_local_port_range` and online CPUs (each checked only when readable).
pub fn load_config(path: &Path) -> Result<Config> {
    let host = config::Host {
        local_port_range: local_port_range().ok(),
        online_cpus: online_cpus().ok(),
    };
    config::load(path, &host).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The CPUs workers are pinned to, round robin: `[datapath] cpus`, or every CPU the daemon may run on.
fn worker_cores(config: &Config) -> Vec<core_affinity::CoreId> {
    if config.datapath.cpus.is_empty() {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        config
            .datapath
            .cpus
            .iter()
            .map(|&id| core_affinity::CoreId { id: id as usize })
            .collect()
    }
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
    /// The running workers (`None` only while the I/O is rebuilt and after shutdown).
    workers: Option<WorkerPool>,
    /// The receive queues served (one worker each).
    queues: Vec<u32>,
    /// The AF_XDP settings every worker is opened with.
    xsk_config: XskConfig,
    /// The cores workers are pinned to (round robin; `[datapath] cpus`, fixed until restart).
    cores: Vec<core_affinity::CoreId>,
    /// The last published snapshots, for `flowpin explain`.
    history: SnapshotHistory,
    /// How long the last I/O rebuild paused the workers.
    last_io_pause: Option<Duration>,
    /// The configuration the current snapshot was built from (operator weights applied).
    published_config: Arc<Config>,
    /// The file `reload` re-reads.
    config_path: std::path::PathBuf,
    /// Per uplink slot: health, operator overrides and failover figures.
    uplinks: Vec<UplinkRuntime>,
    /// By uplink slot: its datapath counters when its current uplink took it (see [`SlotTotals`]).
    slot_baselines: Vec<SlotTotals>,
    /// What the prober reads.
    prober: Arc<ProberInputs>,
    /// Raw socket for TCP resets (`None` if it could not be opened).
    rst: Option<RstSender>,
    /// Uplinks whose address changed at the last refresh: their old-address flows are looked for once
    /// more at the next one (see [`Daemon::fail_over_renumbered`]).
    renumbered: Vec<usize>,
    /// Whether the per-uplink probe routes are installed.
    probe_routes: bool,
    reloads: u64,
    reloads_failed: u64,
}

/// The control plane's per-uplink state beyond the kernel facts.
#[derive(Debug)]
struct UplinkRuntime {
    /// The slot's uplink was removed by a reload: it keeps the slot number taken (so other uplinks'
    /// flows keep theirs) but takes no flows, has no socket and no XDP attachment.
    retired: bool,
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

impl UplinkRuntime {
    /// A live uplink, `up` when `up` (its carrier and gateway are there), else down.
    fn new(up: bool) -> Self {
        Self {
            retired: false,
            health: UplinkHealth::new(up),
            drained: false,
            weight_override: None,
            up_since_ms: 0,
            failed_back: true,
            failovers: 0,
            flows_failed_over: 0,
            flows_failed_back: 0,
        }
    }

    /// The `state` word status and explain show.
    fn state_name(&self, fact: Option<&UplinkFacts>) -> &'static str {
        match fact {
            _ if self.retired => "removed",
            Some(f) if f.gateway_mac.is_none() => "down",
            None => "down",
            _ if self.drained && self.health.state() == HealthState::Up => "draining",
            _ => self.health.state().name(),
        }
    }
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let config = load_config(config_path)?;
    let queues = worker_queues(&config)?;
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
    xdp.set_host_addresses(&host_addresses(lan_address).unwrap_or_default())?;
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

    let xsk_config = XskConfig {
        frame_count: config.datapath.frames_per_worker,
        mode: match config.datapath.mode {
            XdpMode::Auto => XskMode::Auto,
            XdpMode::Copy => XskMode::Copy,
            XdpMode::Zerocopy => XskMode::ZeroCopy,
        },
        ..XskConfig::default()
    };
    let live = vec![false; config.uplinks.len()];
    let sockets = open_io(&config, &live, &mut xdp, &queues, &xsk_config)?;
    let interfaces = std::iter::once(config.lan.interface.clone())
        .chain(config.uplinks.iter().map(|u| u.interface.clone()));
    for name in interfaces {
        let mode = xdp.attach(&name, AttachMode::Auto)?;
        tracing::info!(interface = %name, ?mode, "XDP attached");
    }

    let clock = Clock::start();
    let cores = worker_cores(&config);
    let counters: Vec<Arc<DatapathCounters>> = queues
        .iter()
        .map(|_| Arc::new(DatapathCounters::default()))
        .collect();
    let workers = WorkerPool::start(
        sockets,
        &cell,
        &flows,
        clock,
        &counters,
        config.datapath.idle,
        &cores,
    )?;
    tracing::info!(workers = workers.len(), "forwarding");

    let prober = Arc::new(ProberInputs {
        settings: ArcSwap::from_pointee(config.health.clone()),
        sources: ArcSwap::from_pointee(Vec::new()),
    });
    let uplinks = facts
        .iter()
        .map(|f| UplinkRuntime::new(f.as_ref().is_some_and(|f| f.eligible)))
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
    let published_config = Arc::new(config.clone());
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
        workers: Some(workers),
        queues,
        xsk_config,
        cores,
        history: SnapshotHistory::new(SNAPSHOT_HISTORY),
        last_io_pause: None,
        published_config,
        config_path: config_path.to_path_buf(),
        uplinks,
        slot_baselines: Vec::new(),
        prober,
        rst,
        renumbered: Vec::new(),
        probe_routes: false,
        reloads: 0,
        reloads_failed: 0,
    };
    daemon.update_probing();
    daemon.record_history();
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
    let (mut xdp, workers) = {
        let mut d = daemon.lock().expect("daemon lock");
        d.remove_probe_routes();
        (d.xdp.take(), d.workers.take())
    };
    if let Some(workers) = workers {
        for xsk in workers.stop()? {
            if let Some(xdp) = xdp.as_mut() {
                let _ = xdp.unregister_worker(&xsk);
            }
        }
    }
    drop(xdp);
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped; XDP detached, forward guard left in place");
    Ok(())
}

/// Opens every worker's AF_XDP sockets for the LAN and every live uplink slot (`retired[slot]` false)
/// and registers them in the program's XSKMAP. Port order: the LAN, then the live slots in slot order.
fn open_io(
    config: &Config,
    retired: &[bool],
    xdp: &mut XdpProgram,
    queues: &[u32],
    xsk_config: &XskConfig,
) -> Result<Vec<(XskWorker, PortMap)>> {
    let live: Vec<(usize, &config::Uplink)> = config
        .uplinks
        .iter()
        .enumerate()
        .filter(|(slot, _)| !retired.get(*slot).copied().unwrap_or(false))
        .collect();
    let datapath_ports: Vec<PortId> = std::iter::once(PortId(0))
        .chain(live.iter().map(|(slot, _)| PortId(1 + *slot as u8)))
        .collect();
    let mut workers = Vec::with_capacity(queues.len());
    for queue in queues {
        let ports: Vec<(&str, u32)> = std::iter::once(config.lan.interface.as_str())
            .chain(live.iter().map(|(_, u)| u.interface.as_str()))
            .map(|name| (name, *queue))
            .collect();
        // Right after the previous sockets closed (an I/O rebuild) the kernel may still be releasing
        // their queues: retry a busy bind for a while.
        let deadline = Instant::now() + QUEUE_RELEASE_WAIT;
        let worker = loop {
            match XskWorker::new(xsk_config, &ports) {
                Err(e) if e.is_queue_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                result => {
                    break result
                        .with_context(|| format!("opening AF_XDP sockets for queue {queue}"))?;
                }
            }
        };
        xdp.register_worker(&worker)?;
        workers.push((worker, PortMap::new(&datapath_ports)));
    }
    Ok(workers)
}

/// The receive queues to serve, one worker each: see [`super::queues`] for the rule every attached
/// interface must meet.
fn worker_queues(config: &Config) -> Result<Vec<u32>> {
    let interfaces: Vec<&str> = std::iter::once(config.lan.interface.as_str())
        .chain(config.uplinks.iter().map(|u| u.interface.as_str()))
        .collect();
    Ok(queues::worker_queues(config.datapath.workers, &interfaces)?)
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
            let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
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

/// The LAN neighbours with a usable MAC (hairpin and originated packets find LAN hosts by them), over
/// rtnetlink; an unreadable table reads as empty until the next refresh.
fn lan_neighbours(interface: &str) -> Vec<(Ipv4Addr, Mac)> {
    netinfo::neighbours(interface).unwrap_or_else(|error| {
        tracing::debug!(%error, interface, "reading the LAN's neighbour table failed");
        Vec::new()
    })
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

/// Sweeps expired flows every 100 ms, re-reads carriers and the kernel facts on every rtnetlink link or
/// address event and every second, applies probe rounds as they come, reloads on SIGHUP, until
/// SIGINT/SIGTERM.
async fn control_loop(daemon: Arc<std::sync::Mutex<Daemon>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (round_tx, mut rounds) = tokio::sync::mpsc::channel(4);
    let inputs = daemon.lock().expect("daemon lock").prober.clone();
    let prober = tokio::spawn(health::run_prober(inputs, round_tx));
    let link_changed = super::link_events::watch()?;
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
            () = link_changed.notified() => {
                let mut d = daemon.lock().expect("daemon lock");
                d.check_carriers();
                d.refresh();
            }
            _ = tick.tick() => {
                ticks += 1;
                let mut d = daemon.lock().expect("daemon lock");
                d.sweep();
                d.check_handshakes();
                if ticks.is_multiple_of(10) {
                    // The safety net behind the rtnetlink events.
                    d.check_carriers();
                    d.refresh();
                    d.fail_back();
                }
            }
        }
    };
    prober.abort();
    result
}

/// The uplinks that are not retired, with their slot and configuration.
fn live_uplinks<'a>(
    config: &'a Config,
    uplinks: &'a mut [UplinkRuntime],
) -> impl Iterator<Item = (usize, &'a config::Uplink, &'a mut UplinkRuntime)> {
    config
        .uplinks
        .iter()
        .zip(uplinks.iter_mut())
        .enumerate()
        .filter(|(_, (_, runtime))| !runtime.retired)
        .map(|(slot, (u, runtime))| (slot, u, runtime))
}

/// Whether interface `name` carries packets now (carrier and operational, over rtnetlink; see
/// `netinfo::entries::operational`; unreadable = no carrier).
fn carrier(name: &str) -> bool {
    netinfo::interface(name).is_ok_and(|info| info.carrier)
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
            |value| snapshot.release_mapping(value, now),
        );
    }

    /// Re-reads interfaces and neighbours; publishes a new snapshot when anything changed.
    fn refresh(&mut self) {
        let facts: Vec<Option<UplinkFacts>> = self
            .config
            .uplinks
            .iter()
            .zip(&self.uplinks)
            .map(|(u, runtime)| match uplink_facts(u) {
                _ if runtime.retired => None,
                Ok(f) => {
                    // Only a link that carries packets: a request sent earlier is dropped and the
                    // kernel asks again only a second later.
                    if f.gateway_mac.is_none() && f.eligible {
                        let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
                    }
                    Some(f)
                }
                Err(e) => {
                    tracing::warn!(uplink = %u.name, error = %e, "uplink unavailable");
                    None
                }
            })
            .collect();
        // The maps first: return traffic to a new address must reach AF_XDP before flows use it.
        let renumbered = self.sync_xdp_addresses(&facts);
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
        // After the publish: a moved flow's next packet must open its new flow on the new address.
        self.fail_over_renumbered(renumbered);
    }

    /// Fails over, per `[failover]` (`keep` as `move`), the flows that the uplinks in `renumbered`
    /// (their address just changed) still carry with an old address, and ends the quarantines of their
    /// port pools (they guarded the old address's ports). The uplinks renumbered at the previous
    /// refresh are looked at once more: a worker may have opened a flow from the snapshot it loaded
    /// before the publish while the first pass ran. Logged once per renumbering, at info; counted as a
    /// failover of the uplink.
    fn fail_over_renumbered(&mut self, renumbered: Vec<usize>) {
        let previous = std::mem::replace(&mut self.renumbered, renumbered.clone());
        if renumbered.is_empty() && previous.is_empty() {
            return;
        }
        let snapshot = self.cell.load();
        let now = self.clock.now_ms();
        let again = previous
            .into_iter()
            .filter(|slot| !renumbered.contains(slot));
        let passes = renumbered.iter().map(|&slot| (slot, true));
        for (slot, first_pass) in passes.chain(again.map(|slot| (slot, false))) {
            let Some(uplink) = snapshot.uplink(slot as u8) else {
                continue;
            };
            let unquarantined = if first_pass {
                uplink.nat.end_quarantines(now)
            } else {
                0
            };
            let report = failover::fail_over_renumbered(
                &self.flows,
                &snapshot,
                slot as u8,
                &self.config.failover,
                self.rst.as_ref(),
                now,
            );
            let failed_over = report.moved + report.reset;
            if failed_over > 0 {
                let u = &mut self.uplinks[slot];
                u.failovers += 1;
                u.flows_failed_over += failed_over;
            }
            if first_pass || failed_over > 0 {
                tracing::info!(
                    uplink = %self.config.uplinks[slot].name,
                    address = %uplink.address,
                    moved = report.moved,
                    reset = report.reset,
                    ports_unquarantined = unquarantined,
                    "uplink address changed: flows on the old address failed over"
                );
            }
        }
    }

    /// Keeps the XDP maps in step with the kernel's addresses (every refresh, so on every rtnetlink address
    /// event and every second): an uplink whose address changed (a DHCP renewal with a new address) is
    /// reconfigured with it, so return traffic to the new address reaches flowpin; the router's host
    /// addresses (every address of its namespace) are re-set. Each change is logged once, at info.
    /// Returns the slots of the uplinks reconfigured with a new address.
    fn sync_xdp_addresses(&mut self, facts: &[Option<UplinkFacts>]) -> Vec<usize> {
        let mut renumbered = Vec::new();
        let Some(xdp) = self.xdp.as_mut() else {
            return renumbered;
        };
        let ports = self.config.nat.port_range;
        for (slot, (u, fact)) in self.config.uplinks.iter().zip(facts).enumerate() {
            // Retired or without an address now: the map keeps the last address until a new one.
            let Some(fact) = fact else { continue };
            let Some(previous) = xdp.uplink_address(&u.interface) else {
                continue;
            };
            if previous == fact.address {
                continue;
            }
            match xdp.configure_uplink(&u.interface, fact.address, ports.first()..=ports.last()) {
                Ok(_) => {
                    renumbered.push(slot);
                    tracing::info!(
                        uplink = %u.name,
                        from = %previous,
                        to = %fact.address,
                        "uplink address changed: return traffic to the new address goes to flowpin"
                    );
                }
                Err(error) => {
                    tracing::warn!(uplink = %u.name, %error, "configuring XDP for the uplink's new address");
                }
            }
        }
        let Some(addresses) = host_addresses(self.lan_address) else {
            return renumbered;
        };
        match xdp.set_host_addresses(&addresses) {
            Ok(change) if change.is_empty() => {}
            Ok(change) => tracing::info!(
                added = ?change.added,
                removed = ?change.removed,
                "router addresses changed: XDP passes traffic to them to the kernel"
            ),
            Err(error) => {
                tracing::warn!(%error, "updating the router's addresses in the XDP map");
            }
        }
        renumbered
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
        let live = |slot: usize| !self.uplinks[slot].retired;
        if config
            .uplinks
            .iter()
            .enumerate()
            .all(|(slot, u)| !live(slot) || u.weight == 0)
        {
            // Every weight overridden to 0: treat all as standby with equal weights.
            config
                .uplinks
                .iter_mut()
                .enumerate()
                .filter(|(slot, _)| live(*slot))
                .for_each(|(_, u)| u.weight = 1);
        }
        let snapshot = build_snapshot(
            &mut self.builder,
            &config,
            &self.lan,
            self.lan_address,
            &facts,
        );
        self.cell.store(Arc::new(snapshot));
        self.published_config = Arc::new(config);
        self.record_history();
    }

    /// Remembers the current snapshot with the uplink states and weights it was built from.
    fn record_history(&mut self) {
        let uplinks = (0..self.uplinks.len())
            .map(|slot| {
                let runtime = &self.uplinks[slot];
                (!runtime.retired).then(|| api::UplinkAtDecision {
                    name: self.config.uplinks[slot].name.clone(),
                    state: runtime
                        .state_name(self.facts.get(slot).and_then(Option::as_ref))
                        .to_owned(),
                    weight: self.published_config.uplinks[slot].weight,
                    eligible: self.eligible(slot),
                })
            })
            .collect();
        self.history.record(Moment {
            at_ms: self.clock.now_ms(),
            config: self.published_config.clone(),
            uplinks,
            snapshot: self.cell.load_full(),
        });
    }

    /// Whether uplink `slot` takes new flows under the current facts, health and drain.
    fn eligible(&self, slot: usize) -> bool {
        let runtime = &self.uplinks[slot];
        !runtime.retired
            && self
                .facts
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

    /// Feeds every uplink's carrier to its health tracker (on every rtnetlink link or address event, and
    /// every second as the safety net).
    fn check_carriers(&mut self) {
        let settings = &self.config.health;
        let changes = live_uplinks(&self.config, &mut self.uplinks)
            .map(|(slot, u, runtime)| {
                (
                    slot,
                    runtime.health.carrier(carrier(&u.interface), settings),
                )
            })
            .collect();
        self.apply_changes(changes);
    }

    /// Feeds every uplink's passive handshake counts to its health tracker (every 100 ms tick, so the
    /// passive trigger acts within a tick of its window).
    fn check_handshakes(&mut self) {
        let now = self.clock.now_ms();
        let settings = &self.config.health;
        let counters = &self.counters;
        let changes = live_uplinks(&self.config, &mut self.uplinks)
            .map(|(slot, _, runtime)| {
                let counts = health::HandshakeCounts::sum(counters, slot);
                (slot, runtime.health.handshakes(now, counts, settings))
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
            if !self.uplinks[slot].retired && self.uplinks[slot].health.state() != HealthState::Up {
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
    ///
    /// Uplinks added or removed change the I/O: see [`Self::apply_uplink_set`].
    pub fn reload(&mut self) -> std::result::Result<String, String> {
        let current: Vec<(config::Uplink, bool)> = self
            .config
            .uplinks
            .iter()
            .cloned()
            .zip(self.uplinks.iter().map(|u| u.retired))
            .collect();
        let result = load_config(&self.config_path)
            .map_err(|e| format!("{e:#}"))
            .and_then(|new| {
                restart_needed(&self.config, &new).map_or(Ok(new), |what| {
                    Err(format!("{what} changed: restart flowpin to apply it"))
                })
            })
            .and_then(|new| plan_slots(&current, new));
        let result = result.and_then(|plan| {
            if plan.added.is_empty() && plan.removed.is_empty() {
                self.config = plan.config;
                self.update_probing();
                self.publish();
                Ok(format!("reloaded {}", self.config_path.display()))
            } else {
                self.apply_uplink_set(plan)
            }
        });
        match result {
            Ok(message) => {
                self.reloads += 1;
                Ok(message)
            }
            Err(message) => {
                self.reloads_failed += 1;
                Err(message)
            }
        }
    }

    /// Applies a reload that adds or removes uplinks. Before anything changes, the added uplinks'
    /// interfaces are read and must have one receive queue per worker (see [`super::queues`]; an error
    /// refuses the reload) and the forward guard is re-installed for the
    /// new uplink set. Then the workers are stopped (the pause starts), the removed uplinks' flows fail
    /// over per class (`keep` acts as `move`: the uplink is gone), their XDP is detached and their
    /// sockets closed with all the others; the new layout is published, every worker's sockets are
    /// opened for the new set, the workers restart (the pause ends) and the added uplinks' XDP is
    /// attached. Flows on other uplinks keep their slot, uplink and external address:port (the flow
    /// table and the port pools live in the process, untouched).
    fn apply_uplink_set(&mut self, plan: SlotPlan) -> std::result::Result<String, String> {
        let added_facts: Vec<(usize, UplinkFacts)> = plan
            .added
            .iter()
            .map(|&slot| {
                let u = &plan.config.uplinks[slot];
                let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
                queues::check_added(&u.interface, self.queues.len() as u32)
                    .map_err(|e| format!("uplink {}: {e}", u.name))?;
                uplink_facts(u)
                    .map(|f| (slot, f))
                    .map_err(|e| format!("{e:#}"))
            })
            .collect::<std::result::Result<_, _>>()?;
        let guard = GuardSpec {
            lan: plan.config.lan.interface.clone(),
            uplinks: plan
                .config
                .uplinks
                .iter()
                .zip(&plan.retired)
                .filter(|(_, retired)| !**retired)
                .map(|(u, _)| u.interface.clone())
                .collect(),
        };
        guard.install().map_err(|e| {
            format!("re-installing the forward guard for the new uplink set: {e:#}")
        })?;
        let Some(mut xdp) = self.xdp.take() else {
            return Err("the XDP program is gone (shutting down)".to_owned());
        };
        let result = self.rebuild_io(&mut xdp, plan, added_facts);
        self.xdp = Some(xdp);
        result
    }

    /// The part of [`Self::apply_uplink_set`] that runs with the workers stopped.
    fn rebuild_io(
        &mut self,
        xdp: &mut XdpProgram,
        plan: SlotPlan,
        added_facts: Vec<(usize, UplinkFacts)>,
    ) -> std::result::Result<String, String> {
        let paused = Instant::now();
        if let Some(workers) = self.workers.take() {
            for xsk in workers.stop().map_err(|e| format!("{e:#}"))? {
                let _ = xdp.unregister_worker(&xsk);
            }
        }
        let stopped = paused.elapsed();
        // No worker runs: no flow can be pinned to a removed uplink behind the failover's back.
        let old_snapshot = self.cell.load_full();
        let now = self.clock.now_ms();
        let policy = self.config.failover.keep_as_move();
        let mut failed_over = 0;
        for &slot in &plan.removed {
            let name = self.config.uplinks[slot].name.clone();
            let report = failover::fail_over(
                &self.flows,
                &old_snapshot,
                slot as u8,
                &policy,
                self.rst.as_ref(),
                now,
            );
            let hairpins = remove_remaining_flows(&self.flows, &old_snapshot, slot as u8, now);
            failed_over += report.moved + report.reset + hairpins;
            tracing::info!(uplink = %name, moved = report.moved, reset = report.reset, hairpin = hairpins, "uplink removed: its flows failed over");
            if let Err(error) = xdp.remove_interface(&self.config.uplinks[slot].interface) {
                tracing::warn!(uplink = %name, %error, "detaching XDP from the removed uplink");
            }
            if self.probe_routes {
                health::routes::remove(slot as u8);
            }
            self.builder.forget(&name);
        }
        // A slot given to a new uplink still counts its earlier uplink's traffic: the new one starts
        // at 0 (read while no worker counts).
        rebase_slots(&mut self.slot_baselines, &self.counters, &plan.added);
        // The new layout: slots kept keep their runtime; slots (re)filled start fresh.
        let mut uplinks = Vec::with_capacity(plan.config.uplinks.len());
        let mut facts = Vec::with_capacity(plan.config.uplinks.len());
        let mut old_uplinks: Vec<Option<UplinkRuntime>> = std::mem::take(&mut self.uplinks)
            .into_iter()
            .map(Some)
            .collect();
        for slot in 0..plan.config.uplinks.len() {
            let added = added_facts.iter().find(|(s, _)| *s == slot);
            let kept = old_uplinks
                .get_mut(slot)
                .and_then(Option::take)
                .filter(|_| added.is_none() && !plan.removed.contains(&slot));
            let mut runtime = match (kept, added) {
                (Some(runtime), _) => runtime,
                (None, Some((_, f))) => UplinkRuntime::new(f.eligible),
                (None, None) => UplinkRuntime::new(false),
            };
            runtime.retired = plan.retired[slot];
            uplinks.push(runtime);
            facts.push(match added {
                Some((_, f)) => Some(f.clone()),
                None if plan.retired[slot] => None,
                None => self.facts.get(slot).cloned().flatten(),
            });
        }
        self.uplinks = uplinks;
        self.facts = facts;
        self.config = plan.config;
        let ports = self.config.nat.port_range;
        let mut errors = Vec::new();
        for (slot, fact) in &added_facts {
            let u = &self.config.uplinks[*slot];
            if let Err(e) =
                xdp.configure_uplink(&u.interface, fact.address, ports.first()..=ports.last())
            {
                errors.push(format!("uplink {}: {e}", u.name));
            }
        }
        self.publish();
        let retired: Vec<bool> = self.uplinks.iter().map(|u| u.retired).collect();
        let reorganised = paused.elapsed();
        let opened = open_io(&self.config, &retired, xdp, &self.queues, &self.xsk_config)
            .map_err(|e| format!("{e:#}"))
            .and_then(|sockets| {
                WorkerPool::start(
                    sockets,
                    &self.cell,
                    &self.flows,
                    self.clock,
                    &self.counters,
                    self.config.datapath.idle,
                    &self.cores,
                )
                .map_err(|e| format!("starting the workers: {e}"))
            });
        let pause = paused.elapsed();
        match opened {
            Ok(workers) => self.workers = Some(workers),
            Err(error) => {
                tracing::error!(%error, "the new uplink set's I/O could not be opened; forwarding is stopped");
                return Err(format!(
                    "{error} (forwarding is stopped: fix the cause and reload, or restart flowpin)"
                ));
            }
        }
        for (slot, _) in &added_facts {
            let u = &self.config.uplinks[*slot];
            match xdp.attach(&u.interface, AttachMode::Auto) {
                Ok(mode) => {
                    tracing::info!(uplink = %u.name, interface = %u.interface, ?mode, "uplink added: XDP attached")
                }
                Err(e) => errors.push(format!(
                    "uplink {}: attaching XDP to {}: {e}",
                    u.name, u.interface
                )),
            }
        }
        self.update_probing();
        self.last_io_pause = Some(pause);
        tracing::info!(
            pause_ms = pause.as_secs_f64() * 1000.0,
            stop_ms = stopped.as_secs_f64() * 1000.0,
            failover_and_publish_ms = (reorganised - stopped).as_secs_f64() * 1000.0,
            open_ms = (pause - reorganised).as_secs_f64() * 1000.0,
            failed_over,
            "uplink set changed: I/O rebuilt"
        );
        let names = |slots: &[usize], config: &Config| {
            slots
                .iter()
                .map(|&s| config.uplinks[s].name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut message = format!("reloaded {}", self.config_path.display());
        if !plan.added.is_empty() {
            let _ = write!(message, "; added {}", names(&plan.added, &self.config));
        }
        if !plan.removed.is_empty() {
            let _ = write!(
                message,
                "; removed {} ({failed_over} flows failed over)",
                plan.removed_names.join(", ")
            );
        }
        let _ = write!(
            message,
            "; workers paused {:.1} ms while the I/O was rebuilt",
            pause.as_secs_f64() * 1000.0
        );
        if errors.is_empty() {
            Ok(message)
        } else {
            Err(format!("{message}, but: {}", errors.join("; ")))
        }
    }

    /// `flowpin uplink drain|undrain|set-weight`.
    fn uplink_command(&mut self, command: &UplinkCommand) -> std::result::Result<String, String> {
        let Some(slot) = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .position(|(slot, u)| u.name == command.name && !self.uplinks[slot].retired)
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
            .filter(|(i, _)| !self.uplinks[*i].retired)
            .map(|(i, u)| {
                let totals = SlotTotals::sum(&self.counters, i)
                    .since(self.slot_baselines.get(i).copied().unwrap_or_default());
                let fact = self.facts.get(i).and_then(Option::as_ref);
                api::UplinkStatus {
                    name: u.name.clone(),
                    interface: u.interface.clone(),
                    address: snapshot
                        .uplink(i as u8)
                        .map(|v| v.address.to_string())
                        .unwrap_or_default(),
                    state: self.uplinks[i].state_name(fact).to_owned(),
                    eligible: self.eligible(i),
                    weight: self.uplinks[i].weight_override.unwrap_or(u.weight),
                    probe_loss_percent: (!self.config.health.targets.is_empty())
                        .then(|| self.uplinks[i].health.loss_percent()),
                    probe_rtt_ms: self.uplinks[i].health.rtt_ms(),
                    state_changes: self.uplinks[i].health.transitions,
                    failovers: self.uplinks[i].failovers,
                    flows_failed_over: self.uplinks[i].flows_failed_over,
                    flows_failed_back: self.uplinks[i].flows_failed_back,
                    flows_created: totals.flows_created,
                    flows: flows_per_uplink[i],
                    tx_packets: totals.tx_packets,
                    tx_bytes: totals.tx_bytes,
                    rx_packets: totals.rx_packets,
                    rx_bytes: totals.rx_bytes,
                    tcp_handshakes_started: totals.tcp_handshakes_started,
                    tcp_handshakes_answered: totals.tcp_handshakes_answered,
                    tcp_handshakes_unanswered_in_a_row: self.uplinks[i]
                        .health
                        .passive()
                        .unanswered_in_a_row(),
                    passive_downs: self.uplinks[i].health.passive_downs,
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
            flows_early_dropped: self
                .counters
                .iter()
                .map(|c| c.flows_early_dropped.get())
                .sum(),
            icmp_suppressed: {
                let mut sums: Vec<(String, u64)> = Vec::new();
                for counters in &self.counters {
                    for (index, (kind, n)) in counters.answers_suppressed().into_iter().enumerate()
                    {
                        match sums.get_mut(index) {
                            Some((_, sum)) => *sum += n,
                            None => sums.push((kind.to_owned(), n)),
                        }
                    }
                }
                sums
            },
            workers: {
                let frames = self
                    .workers
                    .as_ref()
                    .map(WorkerPool::frame_states)
                    .unwrap_or_default();
                let mut sockets = self
                    .workers
                    .as_ref()
                    .map(WorkerPool::kernel_stats)
                    .unwrap_or_default();
                self.counters
                    .iter()
                    .enumerate()
                    .map(|(index, c)| api::WorkerStatus {
                        index,
                        rx_frames: c.frames.get(),
                        tx_frames: c.transmitted(),
                        batches: c.batches.get(),
                        outbound_packets: c.translated().outbound_packets,
                        inbound_packets: c.translated().inbound_packets,
                        flows_created: c.translated().flows_created,
                        frames: frames.get(index).copied().flatten(),
                        sockets: sockets
                            .get_mut(index)
                            .map(std::mem::take)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(port, stats)| {
                                let name = match port.0.checked_sub(1) {
                                    None => "lan",
                                    Some(slot) => self.uplink_name(slot),
                                };
                                api::XskSocketStatus {
                                    port: name.to_owned(),
                                    kernel: stats,
                                }
                            })
                            .collect(),
                    })
                    .collect()
            },
        }
    }

    fn flows(&self, filter: &FlowFilter) -> FlowsReport {
        let now = self.clock.now_ms();
        let limit = filter.limit.unwrap_or(1000);
        let mut report = FlowsReport::default();
        for f in self.flows.table.snapshot(now) {
            let v = &f.value;
            let (ip, _) = v.internal_endpoint();
            if filter
                .uplink
                .as_deref()
                .is_some_and(|u| u != self.uplink_name(v.uplink))
                || filter.host.is_some_and(|h| h != ip)
                || filter
                    .proto
                    .as_deref()
                    .is_some_and(|p| p != api::protocol_name(v.protocol()))
            {
                continue;
            }
            report.matched += 1;
            if report.flows.len() < limit {
                report.flows.push(self.flow_entry(&f, now));
            }
        }
        report
    }

    /// The name of the uplink in `slot` (`?` when none).
    fn uplink_name(&self, slot: u8) -> &str {
        self.config
            .uplinks
            .get(usize::from(slot))
            .map_or("?", |u| u.name.as_str())
    }

    /// One flow as `flowpin flows` shows it.
    fn flow_entry(
        &self,
        f: &flowpin_flowtable::FlowSnapshot<flowpin_nat::FlowKey, crate::datapath::FlowValue>,
        now: u64,
    ) -> FlowEntry {
        let v = &f.value;
        let (ip, port) = v.internal_endpoint();
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
        FlowEntry {
            proto: api::protocol_name(v.protocol()).to_owned(),
            internal: format!("{ip}:{port}"),
            external: format!("{eip}:{eport}"),
            remote: format!("{}:{}", remote.destination, remote.destination_port),
            uplink: self.uplink_name(v.uplink).to_owned(),
            state,
            idle_ms: now.saturating_sub(f.last_seen_ms),
            packets_out: f.counters.packets[0],
            packets_in: f.counters.packets[1],
        }
    }

    /// `flowpin explain`: why each flow matching `query` is on its uplink (at most 100 flows).
    fn explain(&self, query: &api::FlowQuery) -> api::ExplainReport {
        let now = self.clock.now_ms();
        let flows = self
            .flows
            .table
            .snapshot(now)
            .filter(|f| {
                let (ip, port) = f.value.external_endpoint();
                query.matches(&f.value.lan_key(), std::net::SocketAddrV4::new(ip, port))
            })
            .take(100)
            .map(|f| {
                super::snapshot::explain(
                    &f.value,
                    self.flow_entry(&f, now),
                    self.history.find(f.value.generation),
                    &self.config,
                    now,
                )
            })
            .collect();
        api::ExplainReport {
            flows,
            history: self.history.len(),
            oldest_generation: self.history.oldest_generation(),
        }
    }
}

/// Removes the flows still pinned to `slot` after its failover (hairpin flows through its address),
/// giving their ports back to the pools of `snapshot`. Returns how many.
fn remove_remaining_flows(flows: &Flows, snapshot: &Snapshot, slot: u8, now_ms: u64) -> u64 {
    let mut removed = 0;
    for flow in flows.table.snapshot(now_ms) {
        if flow.value.uplink != slot {
            continue;
        }
        let Some(value) = flows.table.remove(flow.handle) else {
            continue;
        };
        removed += 1;
        snapshot.release_mapping(&value, now_ms);
    }
    removed
}

/// The router's host addresses for the XDP program: every address of its namespace
/// ([`router_addresses::read`]), and always the LAN address the snapshot uses (`None` when the
/// interfaces cannot be listed).
fn host_addresses(lan_address: Ipv4Addr) -> Option<std::collections::BTreeSet<Ipv4Addr>> {
    let mut addresses = router_addresses::read()?;
    addresses.insert(lan_address);
    Some(addresses)
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
                        Request::Explain(query) => Response::Explain(d.explain(&query)),
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

/// An uplink slot's datapath counters summed over the workers.
///
/// The counters are per slot and only grow, but a reload can give a retired slot (or one past the
/// end, dropped earlier) to a new uplink: the control plane then keeps the slot's totals at that
/// moment as its baseline and reports the totals since, so the new uplink's series (labelled by its
/// name) start at 0 and never go backwards. The passive health signal reads the raw sums: it only
/// uses their differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SlotTotals {
    tx_packets: u64,
    tx_bytes: u64,
    rx_packets: u64,
    rx_bytes: u64,
    flows_created: u64,
    tcp_handshakes_started: u64,
    tcp_handshakes_answered: u64,
}

impl SlotTotals {
    /// Slot `slot`'s counters summed over `workers`.
    fn sum(workers: &[Arc<DatapathCounters>], slot: usize) -> Self {
        workers
            .iter()
            .filter_map(|w| w.uplinks.get(slot))
            .fold(Self::default(), |t, c| Self {
                tx_packets: t.tx_packets + c.tx_packets.get(),
                tx_bytes: t.tx_bytes + c.tx_bytes.get(),
                rx_packets: t.rx_packets + c.rx_packets.get(),
                rx_bytes: t.rx_bytes + c.rx_bytes.get(),
                flows_created: t.flows_created + c.flows_created.get(),
                tcp_handshakes_started: t.tcp_handshakes_started + c.tcp_handshakes_started.get(),
                tcp_handshakes_answered: t.tcp_handshakes_answered
                    + c.tcp_handshakes_answered.get(),
            })
    }

    /// The totals counted since `baseline` was taken.
    fn since(self, baseline: Self) -> Self {
        Self {
            tx_packets: self.tx_packets.saturating_sub(baseline.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(baseline.tx_bytes),
            rx_packets: self.rx_packets.saturating_sub(baseline.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(baseline.rx_bytes),
            flows_created: self.flows_created.saturating_sub(baseline.flows_created),
            tcp_handshakes_started: self
                .tcp_handshakes_started
                .saturating_sub(baseline.tcp_handshakes_started),
            tcp_handshakes_answered: self
                .tcp_handshakes_answered
                .saturating_sub(baseline.tcp_handshakes_answered),
        }
    }
}

/// Makes `slots` (given to new uplinks) count from 0: their baselines become their totals now. Call
/// with the workers stopped.
fn rebase_slots(
    baselines: &mut Vec<SlotTotals>,
    counters: &[Arc<DatapathCounters>],
    slots: &[usize],
) {
    for &slot in slots {
        if baselines.len() <= slot {
            baselines.resize(slot + 1, SlotTotals::default());
        }
        baselines[slot] = SlotTotals::sum(counters, slot);
    }
}

/// What differs between `old` and `new` that a reload cannot apply (`None`: reloadable).
fn restart_needed(old: &Config, new: &Config) -> Option<&'static str> {
    if old.lan != new.lan {
        Some("[lan]")
    } else if old.nat.port_range != new.nat.port_range {
        Some("nat.port_range")
    } else if old.nat.ports_per_host != new.nat.ports_per_host {
        // The port pools live across reloads: a new quota would apply to new uplinks only.
        Some("nat.ports_per_host")
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

/// How a reloaded configuration's uplinks map onto the running slots.
#[derive(Debug, Clone)]
struct SlotPlan {
    /// The new configuration with its uplinks in slot order (retired slots hold their old uplink with
    /// weight 0) and its policies' uplink indices turned into slots.
    config: Config,
    /// By slot: no uplink there any more.
    retired: Vec<bool>,
    /// Slots that get a new uplink.
    added: Vec<usize>,
    /// Slots whose uplink this reload removes.
    removed: Vec<usize>,
    /// Their names.
    removed_names: Vec<String>,
}

/// Lays the uplinks of `new` onto the running slots `current` (uplink, retired) so that every uplink
/// that stays keeps its slot, a removed one leaves its slot retired, and an added one takes a slot
/// retired by an *earlier* reload (its flows are long gone) or a new one. Trailing retired slots are
/// dropped. An uplink whose interface, gateway or address changed, or an interface passed from one
/// uplink to another, is refused (two reloads, remove then add, or a restart apply it).
fn plan_slots(
    current: &[(config::Uplink, bool)],
    new: Config,
) -> std::result::Result<SlotPlan, String> {
    let live = |name: &str| {
        current
            .iter()
            .position(|(u, retired)| !retired && u.name == name)
    };
    for u in &new.uplinks {
        if let Some(slot) = live(&u.name) {
            let old = &current[slot].0;
            let changed = if old.interface != u.interface {
                Some(format!("interface ({} → {})", old.interface, u.interface))
            } else if old.gateway != u.gateway {
                Some(format!("gateway ({} → {})", old.gateway, u.gateway))
            } else if old.address != u.address {
                Some(format!("address ({:?} → {:?})", old.address, u.address))
            } else {
                None
            };
            if let Some(what) = changed {
                return Err(format!(
                    "uplink {}: its {what} changed: that needs its flows re-pinned; remove the uplink in one reload and add it back in another, or restart flowpin",
                    u.name
                ));
            }
        } else if let Some((old, _)) = current
            .iter()
            .find(|(old, retired)| !retired && old.interface == u.interface)
        {
            return Err(format!(
                "interface {} passes from uplink {} to uplink {}: remove {} in one reload and add {} in another, or restart flowpin",
                u.interface, old.name, u.name, old.name, u.name
            ));
        }
    }
    let mut slots: Vec<Option<config::Uplink>> = current
        .iter()
        .map(|(u, retired)| (!retired).then(|| u.clone()))
        .collect();
    let mut retired: Vec<bool> = current.iter().map(|(_, r)| *r).collect();
    let mut removed = Vec::new();
    let mut removed_names = Vec::new();
    for (slot, (u, was_retired)) in current.iter().enumerate() {
        if !was_retired && !new.uplinks.iter().any(|n| n.name == u.name) {
            removed.push(slot);
            removed_names.push(u.name.clone());
            retired[slot] = true;
        }
    }
    let mut added = Vec::new();
    let mut slot_of = HashMap::new();
    for u in &new.uplinks {
        let slot = match live(&u.name) {
            Some(slot) => slot,
            None => {
                let reusable = (0..retired.len()).find(|s| {
                    retired[*s] && current.get(*s).is_some_and(|(_, r)| *r) && !added.contains(s)
                });
                let slot = reusable.unwrap_or_else(|| {
                    retired.push(false);
                    slots.push(None);
                    retired.len() - 1
                });
                if slot >= crate::datapath::MAX_UPLINKS {
                    return Err(format!(
                        "uplink {}: no free uplink slot (at most {} uplinks, counting slots of uplinks removed earlier whose flows are gone only after a restart)",
                        u.name,
                        crate::datapath::MAX_UPLINKS
                    ));
                }
                added.push(slot);
                retired[slot] = false;
                slot
            }
        };
        slots[slot] = Some(u.clone());
        slot_of.insert(u.name.clone(), slot);
    }
    // Retired slots keep their last uplink (weight 0, never eligible) as a placeholder.
    let mut uplinks: Vec<config::Uplink> = Vec::with_capacity(slots.len());
    for (slot, u) in slots.into_iter().enumerate() {
        uplinks.push(match u {
            Some(u) if !retired[slot] => u,
            _ => config::Uplink {
                weight: 0,
                ..current[slot].0.clone()
            },
        });
    }
    while retired.last() == Some(&true) {
        retired.pop();
        uplinks.pop();
    }
    let mut config = new;
    for policy in &mut config.policies {
        for member in &mut policy.uplinks {
            member.index = slot_of[&member.name];
        }
    }
    config.uplinks = uplinks;
    Ok(SlotPlan {
        config,
        retired,
        added,
        removed,
        removed_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(n: u8) -> String {
        format!(
            "[[uplink]]\nname = \"isp{n}\"\ninterface = \"wan{n}\"\ngateway = \"198.51.100.{n}\"\nweight = {n}\n"
        )
    }

    fn config(uplinks: &[u8], policy_on: Option<u8>) -> Config {
        let mut text = "[lan]\ninterface = \"lan0\"\nprefixes = [\"10.77.0.0/24\"]\n".to_owned();
        for n in uplinks {
            text.push_str(&uplink(*n));
        }
        if let Some(n) = policy_on {
            text.push_str(&format!(
                "[[policy]]\nname = \"web\"\nuplinks = [\"isp{n}\"]\n[policy.match]\nproto = \"tcp\"\n"
            ));
        }
        text.push_str("[nat]\nport_range = \"20000-29999\"\n");
        config::parse(&text, "t.toml", None).expect("valid test config")
    }

    fn running(plan: &SlotPlan) -> Vec<(config::Uplink, bool)> {
        plan.config
            .uplinks
            .iter()
            .cloned()
            .zip(plan.retired.iter().copied())
            .collect()
    }

    fn names(plan: &SlotPlan) -> Vec<String> {
        plan.config
            .uplinks
            .iter()
            .zip(&plan.retired)
            .map(|(u, r)| {
                if *r {
                    format!("({})", u.name)
                } else {
                    u.name.clone()
                }
            })
            .collect()
    }

    #[test]
    fn uplinks_that_stay_keep_their_slots_whatever_the_file_order() {
        let start = running(&plan_slots(&[], config(&[1, 2, 3], None)).unwrap());
        let plan = plan_slots(&start, config(&[3, 1], Some(3))).unwrap();
        // isp2 leaves slot 1 retired (isp3 keeps slot 2), nothing is added.
        assert_eq!(names(&plan), ["isp1", "(isp2)", "isp3"]);
        assert_eq!(plan.removed, [1]);
        assert_eq!(plan.removed_names, ["isp2"]);
        assert!(plan.added.is_empty());
        assert_eq!(
            plan.config.uplinks[1].weight, 0,
            "a retired slot takes no flows"
        );
        // The policy names isp3: its member index is isp3's slot, not its file position (0).
        assert_eq!(plan.config.policies[0].uplinks[0].index, 2);

        // Next reload adds isp4: it takes the slot retired earlier, not a new one.
        let plan = plan_slots(&running(&plan), config(&[1, 3, 4], None)).unwrap();
        assert_eq!(names(&plan), ["isp1", "isp4", "isp3"]);
        assert_eq!(plan.added, [1]);
        assert!(plan.removed.is_empty());
    }

    #[test]
    fn a_slot_removed_by_this_reload_is_not_reused_by_it_and_trailing_ones_go() {
        let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
        let plan = plan_slots(&start, config(&[1, 3], None)).unwrap();
        // isp2's flows still hold slot 1 while this reload fails them over: isp3 gets slot 2.
        assert_eq!(names(&plan), ["isp1", "(isp2)", "isp3"]);
        assert_eq!(
            (plan.added.as_slice(), plan.removed.as_slice()),
            (&[2][..], &[1][..])
        );

        let plan = plan_slots(&running(&plan), config(&[1], None)).unwrap();
        // isp3 removed: slots 1 and 2 are retired and trailing, so they are dropped.
        assert_eq!(names(&plan), ["isp1"]);
        assert_eq!(plan.removed, [2]);
    }

    #[test]
    fn a_slot_given_to_a_new_uplink_counts_from_zero_and_the_others_keep_counting() {
        let counters: Vec<Arc<DatapathCounters>> = (0..2)
            .map(|_| Arc::new(DatapathCounters::default()))
            .collect();
        let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
        // isp1 (slot 0) and isp2 (slot 1) carry traffic on both workers.
        for c in &counters {
            c.uplinks[0].tx_packets.add(10);
            c.uplinks[1].tx_packets.add(7);
            c.uplinks[1].rx_bytes.add(1500);
            c.uplinks[1].flows_created.add(3);
            c.uplinks[1].tcp_handshakes_started.add(2);
        }
        let mut baselines = Vec::new();
        let view = |baselines: &Vec<SlotTotals>, slot: usize| {
            SlotTotals::sum(&counters, slot).since(baselines.get(slot).copied().unwrap_or_default())
        };
        assert_eq!(view(&baselines, 1).tx_packets, 14);
        // isp2 removed, then isp3 added: it takes slot 1.
        let removed = plan_slots(&start, config(&[1], None)).unwrap();
        let plan = plan_slots(&running(&removed), config(&[1, 3], None)).unwrap();
        assert_eq!(plan.added, vec![1]);
        assert_eq!(names(&plan)[1], "isp3");
        rebase_slots(&mut baselines, &counters, &plan.added);
        assert_eq!(
            view(&baselines, 1),
            SlotTotals::default(),
            "isp3 starts at 0"
        );
        assert_eq!(view(&baselines, 0).tx_packets, 20, "isp1 keeps its totals");
        counters[1].uplinks[1].tx_packets.add(5);
        counters[0].uplinks[1].flows_created.add(1);
        let isp3 = view(&baselines, 1);
        assert_eq!((isp3.tx_packets, isp3.flows_created), (5, 1));
        assert_eq!(isp3.rx_bytes, 0);
        assert_eq!(view(&baselines, 0).tx_packets, 20);
    }

    #[test]
    fn changed_uplink_definitions_and_moved_interfaces_are_refused_with_the_reason() {
        let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
        let mut moved = config(&[1, 2], None);
        moved.uplinks[1].gateway = "198.51.100.77".parse().unwrap();
        let error = plan_slots(&start, moved).unwrap_err();
        assert!(
            error.contains("uplink isp2: its gateway (198.51.100.2 → 198.51.100.77) changed"),
            "{error}"
        );

        let mut renamed = config(&[1, 2], None);
        renamed.uplinks[1].name = "isp9".into();
        let error = plan_slots(&start, renamed).unwrap_err();
        assert!(
            error.contains("interface wan2 passes from uplink isp2 to uplink isp9"),
            "{error}"
        );
    }

    #[test]
    fn restart_is_still_needed_for_the_lan_the_port_range_and_the_datapath() {
        let old = config(&[1, 2], None);
        let mut new = config(&[1], None);
        assert_eq!(restart_needed(&old, &new), None, "the uplink set reloads");
        new.lan.interface = "lan9".into();
        assert_eq!(restart_needed(&old, &new), Some("[lan]"));
        let mut new = config(&[1, 2], None);
        new.datapath.flow_capacity += 1;
        assert_eq!(restart_needed(&old, &new), Some("[datapath]"));
        let mut new = config(&[1, 2], None);
        new.nat.ports_per_host = 10;
        assert_eq!(restart_needed(&old, &new), Some("nat.ports_per_host"));
    }
}
