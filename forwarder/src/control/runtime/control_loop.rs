//! The control loop: waits for signals, ticks, kernel events and probe rounds, and dispatches each to
//! the daemon under its lock. It decides nothing itself.
//!
//! Cadence: every 100 ms the flow sweep, the passive handshake check and the gateway re-asks; every
//! second the safety net behind the rtnetlink events (carriers, kernel refresh, failback, the routes
//! flowpin installed) and the state file's checkpoint; on every
//! link, address or neighbour event the carriers and the kernel refresh; probe rounds as they come;
//! SIGHUP reloads; SIGINT and SIGTERM end the loop; systemd's watchdog gets its keep-alive at half its
//! timeout, under the daemon's lock, so a loop or lock that hangs lets systemd restart flowpin. The forward guard's check runs beside it, on a
//! task of its own (`guard_watch`), because it starts a process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use super::Daemon;
use crate::control::{health, link_events};

/// The sweep and passive-check period.
const TICK: Duration = Duration::from_millis(100);

/// Ticks per safety-net refresh (one second).
const TICKS_PER_REFRESH: u64 = 10;

/// Runs until SIGINT or SIGTERM.
pub(super) async fn run(daemon: Arc<Mutex<Daemon>>) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (round_tx, mut rounds) = tokio::sync::mpsc::channel(4);
    let inputs = lock(&daemon).prober.clone();
    let prober = tokio::spawn(health::run_prober(inputs, round_tx));
    let guard_watch = tokio::spawn(super::guard_watch::watch(Arc::clone(&daemon)));
    let link_changed = link_events::watch()?;
    let mut tick = tokio::time::interval(TICK);
    let keep_alive = lock(&daemon).notifier.keep_alive_interval();
    let mut watchdog = tokio::time::interval(keep_alive.unwrap_or(Duration::from_secs(3600)));
    let mut ticks: u64 = 0;
    let result = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = sighup.recv() => on_sighup(&mut lock(&daemon)),
            _ = watchdog.tick(), if keep_alive.is_some() => lock(&daemon).notifier.keep_alive(),
            Some(round) = rounds.recv() => lock(&daemon).apply_round(&round),
            () = link_changed.notified() => on_kernel_event(&mut lock(&daemon)),
            _ = tick.tick() => {
                ticks += 1;
                on_tick(&mut lock(&daemon), ticks.is_multiple_of(TICKS_PER_REFRESH));
            }
        }
    };
    prober.abort();
    guard_watch.abort();
    result
}

/// The daemon, locked.
fn lock(daemon: &Mutex<Daemon>) -> std::sync::MutexGuard<'_, Daemon> {
    daemon.lock().expect("daemon lock")
}

/// SIGHUP: reload, logged either way.
fn on_sighup(d: &mut Daemon) {
    match d.reload() {
        Ok(message) => tracing::info!(%message, "SIGHUP: configuration reloaded"),
        Err(error) => {
            tracing::error!(%error, "SIGHUP: configuration rejected; keeping the running one")
        }
    }
}

/// A link, address or neighbour event: carriers and the kernel's view now.
fn on_kernel_event(d: &mut Daemon) {
    d.check_carriers();
    d.refresh();
}

/// A tick: the sweep, the passive check and the gateway re-asks; with `refresh`, the safety net behind
/// the events.
fn on_tick(d: &mut Daemon, refresh: bool) {
    d.sweep();
    d.check_handshakes();
    d.ask_gateways_again();
    if refresh {
        d.check_carriers();
        d.refresh();
        d.fail_back();
        d.repair_routes();
        d.checkpoint();
    }
}
