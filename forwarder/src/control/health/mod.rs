//! Uplink health: active probes through each uplink, the per-uplink state machine, and the source routes
//! that make probes leave by the uplink they test.
//!
//! - [`state`]: the pure verdict (`up` / `down` / `probing`) from probe rounds, carrier and the passive
//!   signal;
//! - [`passive`]: new TCP flows answered by a SYN-ACK or not, per uplink, from the datapath's counters;
//! - [`probe`]: ICMP echo, TCP connect and DNS probes bound to an uplink's interface and address;
//! - [`routes`]: per-uplink source routing tables for the router's own traffic;
//! - [`run_prober`]: the task that probes each uplink's targets once per its interval and reports
//!   rounds.
//!
//! Invariants: probes never use a source port or echo id inside the NAT range (so the XDP program
//! passes their replies to the kernel and no flow is created); each uplink has its own settings
//! (its `[uplink.health]` or `[health]`, with its gateway as the target when none is configured) and
//! its own schedule; one uplink's round ends before its next starts (`timeout_ms < interval_ms`);
//! settings are re-read every [`RESCHEDULE`] at most, so a reload takes effect at the next round.

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
    /// Per uplink slot, the health settings it is probed with (resolved: targets never empty
    /// unless it is not probed).
    pub settings: ArcSwap<Vec<Health>>,
    /// Per uplink slot, where its probes leave from (`None`: do not probe it).
    pub sources: ArcSwap<Vec<Option<ProbeSource>>>,
}

/// The longest the prober sleeps before it looks at its inputs again.
pub const RESCHEDULE: Duration = Duration::from_millis(100);

/// Probes every uplink's targets once per its interval, forever; sends each uplink's round to `rounds`
/// as it ends. Returns when the receiver is gone.
pub async fn run_prober(inputs: Arc<ProberInputs>, rounds: mpsc::Sender<Round>) {
    let mut due: Vec<Option<tokio::time::Instant>> = Vec::new();
    let mut sequence: u16 = 0;
    let mut running = tokio::task::JoinSet::new();
    loop {
        while let Some(sent) = running.try_join_next() {
            if matches!(sent, Ok(false)) {
                return;
            }
        }
        let now = tokio::time::Instant::now();
        let settings = inputs.settings.load_full();
        let sources = inputs.sources.load_full();
        due.resize(sources.len(), None);
        for (slot, source) in sources.iter().enumerate() {
            let Some((source, settings)) = source.as_ref().zip(settings.get(slot)) else {
                due[slot] = None;
                continue;
            };
            if settings.targets.is_empty() || due[slot].is_some_and(|at| at > now) {
                continue;
            }
            let interval = Duration::from_millis(u64::from(settings.interval_ms.max(10)));
            due[slot] = Some(now + interval);
            sequence = sequence.wrapping_add(1);
            let (settings, source, rounds) = (settings.clone(), source.clone(), rounds.clone());
            running.spawn(async move {
                let result = probe_uplink(&settings, &source, slot as u8, sequence).await;
                rounds.send(vec![(slot as u8, result)]).await.is_ok()
            });
        }
        let next = due.iter().flatten().min().copied();
        let wake = next.map_or(now + RESCHEDULE, |at| at.min(now + RESCHEDULE));
        tokio::time::sleep_until(wake).await;
    }
}

/// One round of one uplink: each of its targets probed once, concurrently.
async fn probe_uplink(
    settings: &Health,
    source: &ProbeSource,
    slot: u8,
    sequence: u16,
) -> RoundResult {
    let timeout = Duration::from_millis(u64::from(settings.timeout_ms));
    let mut probes = tokio::task::JoinSet::new();
    for target in &settings.targets {
        let (target, source) = (target.clone(), source.clone());
        probes.spawn(async move { probe::probe(&target, &source, slot, sequence, timeout).await });
    }
    let mut result = RoundResult {
        sent: settings.targets.len() as u32,
        answered: 0,
        rtt_sum_us: 0,
    };
    while let Some(done) = probes.join_next().await {
        if let Ok(Some(rtt)) = done {
            result.answered += 1;
            result.rtt_sum_us += rtt.as_micros() as u64;
        }
    }
    result
}
