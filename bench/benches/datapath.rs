//! The full datapath pipeline (parse → lookup → policy/uplink/port/insert on a miss → rewrite → verdict)
//! on batches of synthetic 64-byte UDP frames, in memory, on one core.
//!
//! - `hit/{outbound,inbound}/{1k,100k,1M}`: established flows, LAN → uplink and the replies uplink → LAN,
//!   4096 flows per batch sampled evenly over a table holding that many flows (so lookups hit a table
//!   of realistic size, not a cache-resident handful);
//! - `miss/new_flow`: every frame the first of a new flow (flow setup rate: policy, uplink choice, NAT
//!   port allocation, two-key insert); between batches (untimed) the flows are removed and their ports
//!   released, as expiry would, and the rig's clock moves past the ports' quarantine (RFC 6888 REQ-8,
//!   120 s), so the same batch is new again, the table never fills and the pools never run dry.
//!
//! Every timed pass asserts that every frame was transmitted (naming the first drop reason otherwise):
//! a figure measured on a pipeline that drops would be a figure of the drop path.
//!
//! Throughput is in elements (frames): criterion prints ns per frame and Melem/s = Mpps per core.
//! Run: `cargo bench -p flowpin-bench --bench datapath` (about a minute).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use flowpin_bench::datapath_rig::{DatapathRig, FrameBatch};
use flowpin_bench::flow_set::FlowSet;

/// Frames per measured batch.
const BATCH: usize = 4096;
/// A minimum-size ("64-byte" with FCS) frame.
const FRAME_LEN: usize = 60;

fn hit_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("hit");
    for (label, flows) in [("1k", 1_000u32), ("100k", 100_000), ("1M", 1_000_000)] {
        let capacity = (flows as usize * 5 / 4).max(4096);
        let rig = DatapathRig::new(capacity).expect("rig");
        let mut batches = rig
            .establish(FlowSet::new(flows), BATCH, FRAME_LEN)
            .expect("flows established");
        let pipeline = rig.pipeline();
        // A set smaller than a batch is replayed whole.
        group.throughput(Throughput::Elements(batches.outbound.len() as u64));
        group.bench_function(format!("outbound/{label}"), |b| {
            b.iter(|| {
                black_box(batches.outbound.run(&pipeline)).assert_all_transmitted("hit outbound")
            });
        });
        group.bench_function(format!("inbound/{label}"), |b| {
            b.iter(|| {
                black_box(batches.inbound.run(&pipeline)).assert_all_transmitted("hit inbound")
            });
        });
    }
    group.finish();
}

fn miss_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("miss");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut batch = FrameBatch::new_flows(FlowSet::new(BATCH as u32), 0, BATCH as u32, FRAME_LEN);
    let rig = DatapathRig::new(BATCH * 2).expect("rig");
    let past_quarantine = rig.quarantine_ms() + 1;
    group.bench_function("new_flow", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                let pipeline = rig.pipeline();
                let start = Instant::now();
                let outcome = batch.run(&pipeline);
                timed += start.elapsed();
                if !outcome.all_transmitted() {
                    panic!(
                        "every new flow must be forwarded: {outcome:?}; drops so far: {}",
                        rig.drop_summary()
                    );
                }
                assert_eq!(rig.remove_all_flows(), BATCH);
                rig.advance_clock(past_quarantine);
            }
            timed
        });
    });
    group.finish();
}

fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = configured();
    targets = hit_path, miss_path
}

fn main() {
    // criterion draws its plots with plotters, whose text needs a registered font in this build.
    flowpin_bench::plot::register_font().expect("a font for criterion's plots");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
