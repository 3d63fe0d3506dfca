//! Uplink health: active probes through each uplink, the per-uplink state machine, and the source routes
//! that make probes leave by the uplink they test.
//!
//! - [`state`]: the pure verdict (`up` / `down` / `probing`) from probe rounds, carrier and the passive
//!   signal;
//! - [`passive`]: new TCP flows answered by a SYN-ACK or not, per uplink, from the datapath's counters;
//! - [`probe`]: ICMP echo, TCP connect and DNS probes bound to an uplink's interface and address;
//! - [`http_probe`]: HTTP and HTTPS GET probes (rustls), and the TLS clients they share;
//! - [`target_stats`]: per target loss, RTT and jitter over the window;
//! - [`hooks`]: the executables run on every state change, off the control loop;
//! - [`routes`]: per-uplink source routing tables for the router's own traffic;
//! - [`run_prober`]: the task that probes every uplink's targets once per interval and reports rounds.
//!
//! Invariants: probes never use a source port or echo id inside the NAT range (so the XDP program
//! passes their replies to the kernel and no flow is created); a round ends before the next starts
//! (`timeout_ms < interval_ms`); settings are re-read each round, so a reload takes effect at the next.

pub mod hooks;
pub mod http_probe;
pub mod passive;
pub mod probe;
pub mod routes;
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

/// What one round measured on one uplink: the sums the verdict reads, and each target's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkRound {
    /// The uplink's slot.
    pub slot: u8,
    /// Targets probed and answered, RTTs summed.
    pub result: RoundResult,
    /// Per target, in configuration order.
    pub targets: Vec<TargetOutcome>,
}

/// One finished round: per uplink slot with a probe source, what it measured.
pub type Round = Vec<UplinkRound>;

/// What the prober reads each round; the control plane swaps both on reload and address changes.
#[derive(Debug)]
pub struct ProberInputs {
    /// The health settings.
    pub settings: ArcSwap<Health>,
    /// Per uplink slot, where its probes leave from (`None`: do not probe it).
    pub sources: ArcSwap<Vec<Option<ProbeSource>>>,
}

/// Probes every uplink's targets once per interval, forever; sends each round to `rounds`. Returns when
/// the receiver is gone.
pub async fn run_prober(inputs: Arc<ProberInputs>, rounds: mpsc::Sender<Round>) {
    let mut sequence: u16 = 0;
    let mut tls = TlsClients::default();
    loop {
        let settings = inputs.settings.load_full();
        let https = settings.targets.iter().any(|t| t.kind == ProbeKind::Https);
        if https && !tls.has_system_roots() {
            // Reading the system's CA store takes a while: off the runtime's thread, once.
            tls = tokio::task::spawn_blocking(move || {
                tls.load_system_roots();
                tls
            })
            .await
            .unwrap_or_default();
        }
        let interval = Duration::from_millis(u64::from(settings.interval_ms.max(10)));
        let next = tokio::time::Instant::now() + interval;
        if !settings.targets.is_empty() {
            sequence = sequence.wrapping_add(1);
            let round = probe_round(&settings, &inputs.sources.load(), sequence, &mut tls).await;
            if rounds.send(round).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(next).await;
    }
}

async fn probe_round(
    settings: &Health,
    sources: &[Option<ProbeSource>],
    sequence: u16,
    tls: &mut TlsClients,
) -> Round {
    let timeout = Duration::from_millis(u64::from(settings.timeout_ms));
    let mut probes = tokio::task::JoinSet::new();
    for (slot, source) in sources.iter().enumerate() {
        let Some(source) = source else { continue };
        let slot = slot as u8;
        for (index, target) in settings.targets.iter().enumerate() {
            let (target, source) = (target.clone(), source.clone());
            let client = tls_client(&target, tls);
            probes.spawn(async move {
                let outcome = probe::probe(&target, &source, slot, sequence, timeout, client).await;
                (slot, index, outcome)
            });
        }
    }
    let mut results: Round = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_some())
        .map(|(slot, _)| UplinkRound {
            slot: slot as u8,
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
        })
        .collect();
    while let Some(done) = probes.join_next().await {
        let Ok((slot, index, outcome)) = done else {
            continue;
        };
        let Some(round) = results.iter_mut().find(|r| r.slot == slot) else {
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
    results
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
