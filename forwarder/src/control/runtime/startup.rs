//! Start order and shutdown of `flowpin run`.
//!
//! Start order (each step fails with a message naming what is wrong):
//! 1. read and validate the configuration against the router's own `ip_local_port_range`, and the
//!    worker count against every interface's queues (see [`crate::control::queues`]);
//! 2. install the fail-closed forward guard (before anything is attached);
//! 3. learn the LAN and uplink interfaces and resolve the gateways' MACs;
//! 4. read the saved state (`/run/flowpin/<pin name>.state`, unless `--fresh`), build the first
//!    snapshot with its secrets and the flow table, and restore the saved flows into it, checked
//!    against this configuration (see [`crate::state`]);
//! 5. load the XDP program, describe the interfaces and every address of the router's namespace to
//!    it, open every worker's AF_XDP sockets and register them, attach the program to the LAN and
//!    every uplink (links pinned in bpffs; a link an earlier flowpin left pinned gets the new program
//!    in place, atomically; the pins of interfaces no longer configured are removed), and start the
//!    workers;
//! 6. bind the metrics endpoint, install the source routes, serve the metrics and the control socket
//!    on the control loop's tokio runtime, tell systemd `READY=1` (when it asked, see
//!    [`crate::service::notify`]), run the control loop until SIGINT or SIGTERM.
//!
//! Shutdown stops the workers (closing their sockets empties the XSKMAP), saves the state, removes
//! the control socket and the source routes. The pinned XDP links and the guard stay: a stopped
//! flowpin fails closed like a crashed one (the flows' packets are dropped at the XDP hook, so the
//! kernel answers none of them), and the next start takes the links and the flows over
//! (`flowpin remove-guard` removes the links and the guard).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::{
    Daemon, RouterRoute, UplinkRuntime, api_server, checkpoint, control_loop, io, kernel, publish,
};
use crate::config::{self, Config};
use crate::control::decision_history::DecisionHistory;
use crate::control::failover::RstSender;
use crate::control::guard::{self, GuardSpec};
use crate::control::health::ProberInputs;
use crate::control::health::hooks::{HookRunner, Hooks};
use crate::control::netinfo::{self, InterfaceInfo};
use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
use crate::datapath::{DatapathCounters, Flows, SnapshotCell};
use crate::service::exit_status::ConfigRejected;
use crate::service::notify::Notifier;
use crate::state::StateFile;
use crate::worker::{Clock, WorkerPool};
use crate::xdp::{AttachMode, PinDir, XdpProgram};
use crate::xsk::XskConfig;

/// How long start-up waits for the gateways' MACs before going on without them.
const GATEWAY_WAIT: Duration = Duration::from_secs(5);

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
    config::load(path, &host).map_err(|e| anyhow::Error::new(ConfigRejected(e.to_string())))
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM; `fresh` sets the saved state aside
/// and starts with an empty flow table.
pub fn run(config_path: &Path, fresh: bool) -> Result<()> {
    // 1. The configuration and the queues the workers serve.
    let config = load_config(config_path)?;
    let queues = io::worker_queues(&config)?;
    // 2. The guard, before anything is attached.
    install_guard(&config)?;
    // 3.-5. The kernel's view, the first snapshot, the program, the sockets and the workers.
    let (mut daemon, hook_runner) = start_datapath(config_path, config, queues, fresh)?;
    daemon.notifier = Notifier::from_env();
    // 6. The endpoints and the control loop.
    let metrics = bind_metrics(&daemon.config)?;
    daemon.update_probing();
    daemon.update_router_route();
    daemon.record_history();
    let socket_path = daemon.config.control.socket.clone();
    let surfaces = daemon.surfaces.clone();
    let daemon = Arc::new(Mutex::new(daemon));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    {
        let _in_runtime = runtime.enter();
        if let Some(listener) = metrics {
            api_server::spawn_metrics(listener, &daemon, &surfaces)?;
        }
        api_server::spawn_api(&socket_path, &daemon, &surfaces)?;
        tokio::spawn(hook_runner.run());
    }
    {
        let d = daemon.lock().expect("daemon lock");
        let live = d.uplinks.iter().filter(|u| !u.retired).count();
        d.notifier.ready(&format!(
            "forwarding: {live} uplinks, {} workers",
            d.queues.len()
        ));
    }
    runtime.block_on(control_loop::run(daemon.clone()))?;
    shut_down(&daemon, &socket_path)
}

/// Is the fail-closed forward guard in place for the LAN and every uplink?
fn install_guard(config: &Config) -> Result<()> {
    let guard = GuardSpec {
        lan: config.lan.interface.clone(),
        uplinks: config.uplinks.iter().map(|u| u.interface.clone()).collect(),
    };
    guard
        .install()
        .context("installing the fail-closed forward guard")?;
    tracing::info!(table = guard::GUARD_TABLE, "forward guard installed");
    Ok(())
}

/// What the LAN interface is and which of its addresses the router uses.
fn learn_lan(config: &Config) -> Result<(InterfaceInfo, Ipv4Addr)> {
    let lan = netinfo::interface(&config.lan.interface)?;
    let lan_address = lan
        .ipv4
        .first()
        .map(|(a, _)| *a)
        .with_context(|| format!("LAN interface {} has no IPv4 address", lan.name))?;
    Ok((lan, lan_address))
}

/// The running datapath: program, workers and what they were started with.
struct Forwarding {
    xdp: XdpProgram,
    workers: WorkerPool,
    xsk_config: XskConfig,
    clock: Clock,
    cores: Vec<core_affinity::CoreId>,
    counters: Vec<Arc<DatapathCounters>>,
}

/// Steps 3 to 5: the daemon with its workers forwarding.
fn start_datapath(
    config_path: &Path,
    config: Config,
    queues: Vec<u32>,
    fresh: bool,
) -> Result<(Daemon, HookRunner)> {
    let (lan, lan_address) = learn_lan(&config)?;
    let facts = kernel::resolve_uplinks(&config, GATEWAY_WAIT)?;
    io::check_mtus(&config, &lan, &facts, &io::xsk_config(&config))?;
    let state = StateFile::for_pin_name(config.datapath.pin_name(&config.lan.interface));
    let resumed = checkpoint::resume(&state, fresh);
    let mut builder = SnapshotBuilder::new(resumed.seed, resumed.secrets);
    let snapshot = publish::build_snapshot(&mut builder, &config, &lan, lan_address, &facts);
    let flows = Arc::new(
        Flows::with_capacity(config.datapath.flow_capacity as usize)
            .context("allocating the flow table")?,
    );
    let to_reset = resumed.saved.as_ref().map_or_else(Vec::new, |saved| {
        checkpoint::restore_flows(saved, &snapshot, &flows, Clock::start().now_ms())
    });
    let cell = Arc::new(ArcSwap::from_pointee(snapshot));
    let forwarding = start_forwarding(&config, &queues, lan_address, &facts, &cell, &flows)?;
    let uplinks = facts
        .iter()
        .map(|f| UplinkRuntime::new(f.as_ref().is_some_and(|f| f.eligible)))
        .collect();
    let (hooks, hook_runner) = Hooks::new();
    let rst = RstSender::open()
        .inspect_err(|e| tracing::warn!(error = %e, "no raw socket for TCP resets; reset flows are only removed"))
        .ok();
    let daemon = Daemon {
        prober: Arc::new(ProberInputs {
            settings: ArcSwap::from_pointee(Vec::new()),
            sources: ArcSwap::from_pointee(Vec::new()),
        }),
        published_config: Arc::new(config.clone()),
        config,
        clock: forwarding.clock,
        builder,
        cell,
        flows,
        counters: forwarding.counters,
        lan,
        lan_address,
        facts,
        xdp: Some(forwarding.xdp),
        workers: Some(forwarding.workers),
        queues,
        xsk_config: forwarding.xsk_config,
        cores: forwarding.cores,
        history: DecisionHistory::new(SNAPSHOT_HISTORY),
        last_io_pause: None,
        config_path: config_path.to_path_buf(),
        uplinks,
        slot_baselines: Vec::new(),
        rst,
        renumbered: Vec::new(),
        source_routes: Vec::new(),
        router_route: RouterRoute::default(),
        reloads: 0,
        reloads_failed: 0,
        surfaces: Arc::default(),
        guard_repairs: Default::default(),
        hooks,
        notifier: Notifier::disabled(),
        observed: super::observed::Observed::starting(),
        state,
    };
    daemon.reset_dropped(&to_reset);
    Ok((daemon, hook_runner))
}

/// Step 5: program loaded and described, sockets opened and registered, XDP attached, workers running.
fn start_forwarding(
    config: &Config,
    queues: &[u32],
    lan_address: Ipv4Addr,
    facts: &[Option<UplinkFacts>],
    cell: &Arc<SnapshotCell>,
    flows: &Arc<Flows>,
) -> Result<Forwarding> {
    let mut xdp = load_program(config, lan_address, facts)?;
    let xsk_config = io::xsk_config(config);
    let live = vec![false; config.uplinks.len()];
    let sockets = io::open_io(config, &live, &mut xdp, queues, &xsk_config)?;
    attach_everywhere(config, &mut xdp)?;
    let clock = Clock::start();
    let cores = io::worker_cores(config);
    let counters: Vec<Arc<DatapathCounters>> = queues
        .iter()
        .map(|_| Arc::new(DatapathCounters::default()))
        .collect();
    let workers = WorkerPool::start(
        sockets,
        cell,
        flows,
        clock,
        &counters,
        &config.datapath,
        &cores,
    )?;
    tracing::info!(workers = workers.len(), "forwarding");
    Ok(Forwarding {
        xdp,
        workers,
        xsk_config,
        clock,
        cores,
        counters,
    })
}

/// The XDP program, told the LAN, the router's addresses and every uplink's address and ports.
fn load_program(
    config: &Config,
    lan_address: Ipv4Addr,
    facts: &[Option<UplinkFacts>],
) -> Result<XdpProgram> {
    let mut xdp = XdpProgram::load().context("loading the XDP program")?;
    let pins = PinDir::prepare(config.datapath.pin_name(&config.lan.interface))
        .context("preparing the bpffs directory the XDP links are pinned in")?;
    tracing::info!(dir = %pins.path().display(), "XDP links are pinned here");
    xdp.pin_links(pins);
    xdp.configure_lan(&config.lan.interface)?;
    xdp.set_lan_prefixes(&config.lan.prefixes)?;
    xdp.set_admission(&config.datapath.admission())?;
    xdp.set_host_addresses(&kernel::host_addresses(lan_address).unwrap_or_default())?;
    for (uplink, fact) in config.uplinks.iter().zip(facts) {
        let fact = fact.as_ref().expect("resolve_uplinks returns every uplink");
        let range = config.nat.port_range;
        let ports =
            flowpin_nat::PortRange::new(range.first(), range.last()).expect("validated range");
        xdp.configure_uplink(
            &uplink.interface,
            &uplink.name,
            fact.address,
            ports.first()..=ports.last(),
        )?;
    }
    super::forwards::set_forward_ports(&mut xdp, config)?;
    Ok(xdp)
}

/// Is the program attached to the LAN and every uplink?
fn attach_everywhere(config: &Config, xdp: &mut XdpProgram) -> Result<()> {
    let interfaces = std::iter::once(config.lan.interface.clone())
        .chain(config.uplinks.iter().map(|u| u.interface.clone()));
    for name in interfaces {
        let mode = xdp.attach(&name, AttachMode::Auto)?;
        tracing::info!(interface = %name, ?mode, "XDP attached");
    }
    for interface in xdp.unpin_unattached() {
        tracing::info!(%interface, "no longer configured: its pinned XDP link removed (detached)");
    }
    Ok(())
}

/// The metrics endpoint's listener, when one is configured.
fn bind_metrics(config: &Config) -> Result<Option<std::net::TcpListener>> {
    config
        .metrics
        .listen
        .map(|address| {
            std::net::TcpListener::bind(address)
                .with_context(|| format!("binding the metrics endpoint {address}"))
        })
        .transpose()
}

/// Stops the workers, removes the socket, the source routes and the router's default route; the
/// pinned links stay attached.
fn shut_down(daemon: &Mutex<Daemon>, socket_path: &Path) -> Result<()> {
    tracing::info!("stopping");
    let (mut xdp, workers) = {
        let mut d = daemon.lock().expect("daemon lock");
        d.notifier.stopping();
        d.remove_source_routes();
        d.router_route.remove();
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
    daemon.lock().expect("daemon lock").save_state();
    let _ = std::fs::remove_file(socket_path);
    tracing::info!(
        "stopped; XDP links left pinned (transit dropped until the next start), forward guard left in place"
    );
    Ok(())
}
