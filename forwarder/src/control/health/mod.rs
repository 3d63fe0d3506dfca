//! Uplink health: active probes through each uplink, the per-uplink state machine, and the source routes
//! that make probes leave by the uplink they test.
//!
//! - [`state`]: the pure verdict (`up` / `down` / `probing`) from probe rounds, carrier and the passive
//!   signal;
//! - [`passive`]: new TCP flows answered by a SYN-ACK or not, per uplink, from the datapath's counters;
//! - [`probe`]: ICMP echo, TCP connect and DNS probes bound to an uplink's interface and address;
//! - [`routes`]: per-uplink source routing tables for the router's own traffic;
//! - [`run_prober`]: the task that probes every uplink's targets once per interval and reports rounds.
//!
//! Invariants: probes never use a source port or echo id inside the NAT range (so the XDP program
//! passes their replies to the kernel and no flow is created); a round ends before the next starts
//! (`timeout_ms < interval_ms`); settings are re-read each round, so a reload takes effect at the next.

pub mod passive;
pub mod probe;
pub mod routes;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use passive::{HandshakeCounts, PassiveSignal};
pub use probe::ProbeSource;
pub use state::{HealthState, RoundResult, UplinkHealth};

use crate::config::Health;

/// One finished round: per uplink slot with a probe source, what it measured.
pub type Round = Vec<(u8, RoundResult)>;

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
    loop {
        let settings = inputs.settings.load_full();
        let interval = Duration::from_millis(u64::from(settings.interval_ms.max(10)));
        let next = tokio::time::Instant::now() + interval;
        if !settings.targets.is_empty() {
            sequence = sequence.wrapping_add(1);
            let round = probe_round(&settings, &inputs.sources.load(), sequence).await;
            if rounds.send(round).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(next).await;
    }
}

async fn probe_round(settings: &Health, sources: &[Option<ProbeSource>], sequence: u16) -> Round {
    let timeout = Duration::from_millis(u64::from(settings.timeout_ms));
    let mut probes = tokio::task::JoinSet::new();
    for (slot, source) in sources.iter().enumerate() {
        let Some(source) = source else { continue };
        let slot = slot as u8;
        for target in &settings.targets {
            let (target, source) = (target.clone(), source.clone());
            probes.spawn(async move {
                let rtt = probe::probe(&target, &source, slot, sequence, timeout).await;
                (slot, rtt)
            });
        }
    }
    let mut results: Vec<(u8, RoundResult)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_some())
        .map(|(slot, _)| {
            (
                slot as u8,
                RoundResult {
                    sent: settings.targets.len() as u32,
                    answered: 0,
                    rtt_sum_us: 0,
                },
            )
        })
        .collect();
    while let Some(done) = probes.join_next().await {
        let Ok((slot, Some(rtt))) = done else {
            continue;
        };
        if let Some((_, r)) = results.iter_mut().find(|(s, _)| *s == slot) {
            r.answered += 1;
            r.rtt_sum_us += rtt.as_micros() as u64;
        }
    }
    results
}
