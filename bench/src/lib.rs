//! flowpin-bench: the benchmark harness.
//!
//! - [`flow_set`]: the synthetic flow population shared by every generator and bench;
//! - [`datapath_rig`]: an in-memory router (real snapshot, flow table, NAT pools) for criterion benches;
//! - [`generator`]: flowpin's own AF_XDP packet generator; [`trafgen`]: netsniff-ng's trafgen with the
//!   same frames; [`kernel_pktgen`]: kernel pktgen where present;
//! - [`xdp_programs`], [`sink_service`], [`service`]: the XDP sink / redirect programs and their processes;
//! - [`stats`], [`rate_search`], [`cpu_time`]: the pure measurement math;
//! - [`core_split`]: the same generator/router core split for every configuration;
//! - [`lab_runner`], [`report`], [`report_markdown`], [`plot`]: the side-by-side lab benchmark, its
//!   report (Markdown and JSON) and PNG plot;
//!   [`router_config`]: the configurations it compares; [`workload`]: its traffic patterns;
//!   [`lab_rig`]: one configuration's lab and one trial through it;
//! - [`router_tables`]: flowpin's flow capacity and conntrack's limit, sized alike per workload;
//! - [`legit_traffic`]: the established flow and fresh connections that run beside a SYN flood.
#![deny(unsafe_code)]

pub mod core_split;
pub mod cpu_time;
pub mod datapath_rig;
pub mod flow_set;
pub mod generator;
pub mod kernel_pktgen;
pub mod lab_rig;
pub mod lab_runner;
pub mod legit_traffic;
pub mod plot;
pub mod rate_search;
pub mod report;
pub mod report_markdown;
pub mod router_config;
pub mod router_tables;
pub mod service;
pub mod sink_service;
pub mod stats;
pub mod trafgen;
pub mod workload;
pub mod xdp_programs;
