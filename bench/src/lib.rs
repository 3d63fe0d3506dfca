//! flowpin-bench: the benchmark harness.
//!
//! - [`flow_set`]: the synthetic flow population shared by every generator and bench;
//! - [`datapath_rig`]: an in-memory router (real snapshot, flow table, NAT pools) for criterion benches;
//! - [`generator`]: flowpin's own AF_XDP packet generator; [`kernel_pktgen`]: kernel pktgen where present;
//! - [`xdp_programs`], [`sink_service`], [`service`]: the XDP sink / redirect programs and their processes;
//! - [`stats`], [`rate_search`], [`cpu_time`]: the pure measurement math;
//! - [`lab_runner`], [`report`]: the side-by-side lab benchmark and its report.
#![forbid(unsafe_code)]

pub mod cpu_time;
pub mod datapath_rig;
pub mod flow_set;
pub mod generator;
pub mod kernel_pktgen;
pub mod lab_runner;
pub mod rate_search;
pub mod report;
pub mod service;
pub mod sink_service;
pub mod stats;
pub mod xdp_programs;
