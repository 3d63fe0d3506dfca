//! `flowpin run`: the daemon that keeps the datapath fed, in rooms by concern (one file each).
//!
//! | room | owns |
//! |---|---|
//! | `startup` | start order and shutdown; `run`, `load_config` |
//! | `io` | the workers' AF_XDP sockets and queues, opened at start and at a rebuild |
//! | `kernel` | what the kernel says about the LAN and the uplinks (facts, carriers, addresses) |
//! | `publish` | the one door to a new snapshot, the history `explain` reads, the router's default route |
//! | `refresh` | re-reading the kernel; XDP addresses and renumbered uplinks |
//! | `uplink_state` | health changes, failover, failback, probe sources, uplink source routes |
//! | `guard_watch` | re-installing the forward guard when it is gone |
//! | `operator` | `flowpin uplink` drain, undrain, set-weight |
//! | `reload` | re-reading the file: slot plan, what needs a restart, I/O rebuild |
//! | `slot_totals` | per-slot counters that restart at 0 when a slot gets a new uplink |
//! | `reports` | `status`, `explain` |
//! | `checkpoint` | saving the state file each second and at shutdown, restoring it at start |
//! | `observed` | rates, state times, last reload, kills: figures kept only to show the admin |
//! | `flow_kill` | `flowpin flows kill`: planned under the lock, done without it |
//! | `flow_scan` | scans of the flow table for `status`, `flows`, `explain`, without the lock |
//! | `control_loop` | the loop that only dispatches signals, ticks, events and probe rounds |
//! | `api_server` | the tasks serving the control socket and the metrics endpoint |
//!
//! Invariants:
//! - one `Daemon` behind one mutex; every room works on it under that lock, none per packet;
//! - uplink slots are stable for an uplink's whole life (its flows store the slot); a retired slot
//!   keeps its number, takes no flows and has no socket and no XDP attachment;
//! - an uplink takes new flows only when its gateway is resolved, its health is `up` and it is not
//!   drained (`Daemon::eligible`);
//! - workers see a change only through a published snapshot (`publish`);
//! - systemd hears `READY=1` only once the workers forward and the control socket listens, and
//!   watchdog keep-alives only from the control loop holding the daemon's lock.

mod api_server;
mod checkpoint;
mod control_loop;
mod flow_kill;
mod flow_scan;
mod forwards;
mod guard_watch;
mod io;
mod kernel;
mod observed;
mod operator;
mod publish;
mod refresh;
mod reload;
mod reports;
mod slot_totals;
mod startup;
mod uplink_state;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

pub use operator::UplinkCommandError;
pub use reload::{AddedUplinkFault, IoReopenError, ReloadError};
pub use startup::{load_config, local_port_range, online_cpus, run};

use super::decision_history::DecisionHistory;
use super::failover::RstSender;
use super::gateway_retry::GatewayRetry;
use super::health::hooks::Hooks;
use super::health::{HealthState, ProberInputs, TargetStats, UplinkHealth};
use super::netinfo::InterfaceInfo;
use super::router_route::RouterRoute;
use super::snapshot::{SnapshotBuilder, UplinkFacts};
use super::surface_counters::SurfaceCounters;
use crate::config::{self, Config};
use crate::datapath::{DatapathCounters, Flows, SnapshotCell};
use crate::service::notify::Notifier;
use crate::worker::{Clock, WorkerPool};
use crate::xdp::XdpProgram;
use crate::xsk::XskConfig;
use slot_totals::SlotTotals;

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
    history: DecisionHistory,
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
    /// By uplink slot: what its source routes were installed for (`None`: none installed).
    source_routes: Vec<Option<uplink_state::SourceRouteKey>>,
    /// The router's own default route (`[router] default_route`).
    router_route: RouterRoute,
    reloads: u64,
    reloads_failed: u64,
    /// What the control socket and the metrics endpoint refused, displaced or timed out.
    surfaces: Arc<SurfaceCounters>,
    /// Times the forward guard was found gone and re-installed.
    guard_repairs: guard_watch::GuardRepairs,
    /// Runs `[health] hooks_dir` on state changes, off the control loop.
    hooks: Hooks,
    /// Tells systemd readiness, reloads, shutdown and watchdog keep-alives (no-op without it).
    notifier: Notifier,
    /// Rates, state times, the last reload and kills, kept for the admin.
    observed: observed::Observed,
    /// Where the flows, mappings and secrets are saved for the next start (`checkpoint`).
    state: Arc<crate::state::StateFile>,
}

/// The control plane's per-uplink state beyond the kernel facts.
#[derive(Debug)]
struct UplinkRuntime {
    /// The slot's uplink was removed by a reload: it keeps the slot number taken (so other uplinks'
    /// flows keep theirs) but takes no flows, has no socket and no XDP attachment.
    retired: bool,
    health: UplinkHealth,
    /// The state the last change reported (hooks get it as the old state).
    reported_state: HealthState,
    /// Per probe target: loss, RTT, jitter over the window.
    targets: TargetStats,
    drained: bool,
    weight_override: Option<u32>,
    /// When (daemon ms) it last became `up`.
    up_since_ms: u64,
    /// Failback already done for the current up period.
    failed_back: bool,
    failovers: u64,
    flows_failed_over: u64,
    flows_failed_back: u64,
    /// When to ask for its gateway again while the link works and the gateway is unresolved.
    gateway_retry: GatewayRetry,
    /// The state word status showed at the last note (empty before the first).
    shown_state: &'static str,
    /// When that state began (or the uplink was set up).
    state_since: std::time::SystemTime,
}

impl UplinkRuntime {
    /// A live uplink, `up` when `up` (its carrier and gateway are there), else down.
    fn new(up: bool) -> Self {
        Self {
            retired: false,
            health: UplinkHealth::new(up),
            reported_state: UplinkHealth::new(up).state(),
            targets: TargetStats::default(),
            drained: false,
            weight_override: None,
            up_since_ms: 0,
            failed_back: true,
            failovers: 0,
            flows_failed_over: 0,
            flows_failed_back: 0,
            gateway_retry: GatewayRetry::default(),
            shown_state: "",
            state_since: std::time::SystemTime::now(),
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

impl Daemon {
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

    /// The name of the uplink in `slot` (`?` when none).
    fn uplink_name(&self, slot: u8) -> &str {
        self.config
            .uplinks
            .get(usize::from(slot))
            .map_or("?", |u| u.name.as_str())
    }
}
