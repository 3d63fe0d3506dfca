//! Uplink health: active probes through each uplink and the per-uplink state machine. Probes leave by
//! the uplink they test through its source routes ([`crate::control::source_routes`]).
//!
//! - [`state`]: the pure verdict (`up` / `down` / `probing`) from probe rounds, carrier and the passive
//!   signal;
//! - [`passive`]: new TCP flows answered by a SYN-ACK or not, per uplink, from the datapath's counters;
//! - [`probe`]: ICMP echo, TCP connect and DNS probes bound to an uplink's interface and address;
//! - [`http_probe`]: HTTP and HTTPS GET probes (rustls), and the TLS clients they share;
//! - [`target_stats`]: per target loss, RTT and jitter over the window;
//! - [`hooks`]: the executables run on every state change, off the control loop;
//! - [`run_prober`]: the task that probes each uplink's targets once per its interval and reports
//!   each uplink's round ([`UplinkRound`]).
//!
//! Invariants: probes never use a source port or echo id inside the NAT range (so the XDP program
//! passes their replies to the kernel and no flow is created); each uplink has its own settings
//! (its `[uplink.health]` or `[health]`, with its gateway as the target when none is configured) and
//! its own schedule; one uplink's round ends before its next starts (`timeout_ms < interval_ms`,
//! and the prober waits for it); settings are re-read every [`RESCHEDULE`] at most, so a reload
//! takes effect at the next round, due `interval_ms` (the new one) after the last one started.

pub mod hooks;
pub mod http_probe;
pub mod passive;
pub mod probe;
pub mod state;
pub mod target_stats;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use passive::{HandshakeCounts, PassiveSignal};
pub use probe::ProbeSource;
pub use state::{HealthState, RoundResult, UplinkHealth};
pub use target_stats::{TargetOutcome, TargetStats};

use crate::config::{Health, ProbeKind, ProbeTarget};
use http_probe::TlsClients;

/// What one round of one uplink measured: the sums the verdict reads, and each target's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkRound {
    /// The uplink's slot.
    pub slot: u8,
    /// Targets probed and answered, RTTs summed.
    pub result: RoundResult,
    /// Per target, in configuration order.
    pub targets: Vec<TargetOutcome>,
}

/// What the prober reads each round; the control plane swaps both on reload and address changes.
#[derive(Debug)]
pub struct ProberInputs {
    /// Per uplink slot, the health settings it is probed with (resolved: targets never empty
    /// unless it is not probed).
    pub settings: ArcSwap<Vec<Health>>,
    /// Per uplink slot, where its probes leave from (`None`: do not probe it).
    pub sources: ArcSwap<Vec<Option<ProbeSource>>>,
}

/// The longest the prober sleeps before it looks at its inputs again.
pub const RESCHEDULE: Duration = Duration::from_millis(100);

/// Probes every uplink's targets once per its interval, forever; sends each uplink's round to
/// `rounds` as it ends. Returns when the receiver is gone.
///
/// An uplink's next round is due its current `interval_ms` after its last one started, so a reload
/// that shortens the interval takes effect at once; it never starts while the last one still runs.
pub async fn run_prober(inputs: Arc<ProberInputs>, rounds: mpsc::Sender<UplinkRound>) {
    let mut schedule: Vec<SlotSchedule> = Vec::new();
    let mut sequence: u16 = 0;
    let mut tls = TlsClients::default();
    let mut running: tokio::task::JoinSet<(usize, bool)> = tokio::task::JoinSet::new();
    loop {
        while let Some(ended) = running.try_join_next() {
            match ended {
                Ok((_, false)) => return,
                Ok((slot, true)) => {
                    if let Some(slot) = schedule.get_mut(slot) {
                        slot.running = false;
                    }
                }
                // Only a panic (a bug; release builds abort on panic) ends a round's task early.
                Err(error) => tracing::error!(%error, "a probe round's task failed"),
            }
        }
        let settings = inputs.settings.load_full();
        let https = settings
            .iter()
            .flat_map(|s| &s.targets)
            .any(|t| t.kind == ProbeKind::Https);
        if https && !tls.has_system_roots() {
            // Reading the system's CA store takes a while: off the runtime's thread, once.
            tls = tokio::task::spawn_blocking(move || {
                tls.load_system_roots();
                tls
            })
            .await
            .unwrap_or_default();
        }
        let now = tokio::time::Instant::now();
        let sources = inputs.sources.load_full();
        schedule.resize(sources.len(), SlotSchedule::default());
        let mut next: Option<tokio::time::Instant> = None;
        for (slot, source) in sources.iter().enumerate() {
            let Some((source, settings)) = source.as_ref().zip(settings.get(slot)) else {
                schedule[slot].started = None;
                continue;
            };
            if settings.targets.is_empty() || schedule[slot].running {
                continue;
            }
            let interval = Duration::from_millis(u64::from(settings.interval_ms.max(10)));
            if let Some(due) = schedule[slot].started.map(|at| at + interval)
                && due > now
            {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            schedule[slot] = SlotSchedule {
                started: Some(now),
                running: true,
            };
            next = Some(next.map_or(now + interval, |n| n.min(now + interval)));
            sequence = sequence.wrapping_add(1);
            let clients = settings
                .targets
                .iter()
                .map(|t| tls_client(t, &mut tls))
                .collect();
            let (settings, source, rounds) = (settings.clone(), source.clone(), rounds.clone());
            running.spawn(async move {
                let round = probe_uplink(&settings, &source, slot as u8, sequence, clients).await;
                (slot, rounds.send(round).await.is_ok())
            });
        }
        let wake = next.map_or(now + RESCHEDULE, |at| at.min(now + RESCHEDULE));
        tokio::time::sleep_until(wake).await;
    }
}

/// When one uplink's last round started, and whether it still runs.
#[derive(Debug, Clone, Copy, Default)]
struct SlotSchedule {
    started: Option<tokio::time::Instant>,
    running: bool,
}

/// The TLS client of each target, in target order (see [`tls_client`]).
type TargetClients = Vec<Result<Option<Arc<rustls::ClientConfig>>, String>>;

/// One round of one uplink: each of its targets probed once, concurrently, with its outcome kept
/// for the per-target statistics.
async fn probe_uplink(
    settings: &Health,
    source: &ProbeSource,
    slot: u8,
    sequence: u16,
    clients: TargetClients,
) -> UplinkRound {
    let timeout = Duration::from_millis(u64::from(settings.timeout_ms));
    let mut probes = tokio::task::JoinSet::new();
    for ((index, target), client) in settings.targets.iter().enumerate().zip(clients) {
        let (target, source) = (target.clone(), source.clone());
        probes.spawn(async move {
            let outcome = probe::probe(&target, &source, slot, sequence, timeout, client).await;
            (index, outcome)
        });
    }
    let mut round = UplinkRound {
        slot,
        result: RoundResult {
            sent: settings.targets.len() as u32,
            answered: 0,
            rtt_sum_us: 0,
        },
        targets: settings
            .targets
            .iter()
            .map(|t| TargetOutcome {
                label: t.label(),
                outcome: Err("the probe task failed".into()),
            })
            .collect(),
    };
    while let Some(done) = probes.join_next().await {
        let Ok((index, outcome)) = done else {
            continue;
        };
        if let Ok(rtt) = &outcome {
            round.result.answered += 1;
            round.result.rtt_sum_us += rtt.as_micros() as u64;
        }
        if let Some(target) = round.targets.get_mut(index) {
            target.outcome = outcome
                .map(|rtt| rtt.as_micros() as u64)
                .map_err(|failure| failure.to_string());
        }
    }
    round
}

/// The TLS client an HTTPS target uses (`None` for other kinds; `Err` when its CA file cannot be
/// read any more).
fn tls_client(
    target: &ProbeTarget,
    tls: &mut TlsClients,
) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    match (&target.kind, &target.http) {
        (ProbeKind::Https, Some(check)) => tls.client(check.ca_file.as_ref()).map(Some),
        _ => Ok(None),
    }
}
