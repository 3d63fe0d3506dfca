//! flowpin: a userspace flow-pinning multi-uplink packet forwarder on XDP and AF_XDP.
//!
//! Module map (see `docs/architecture.md`):
//! - [`xsk`]: AF_XDP sockets, UMEM and rings — the only module with `unsafe` code.
//! - [`xdp`]: loads and attaches the XDP program of `flowpin-bpf` with aya, manages its maps.
//! - [`config`]: the TOML configuration, validated, with errors naming file, line and field.
//! - [`select`]: policy classification and weighted, sticky uplink choice (crate
//!   `flowpin-datapath`).
//! - [`control`]: the control plane (guard, kernel info, local API, rendering).
//! - [`link_kind`]: Ethernet or L3 (tun, PPP, raw-IP) interfaces.
//! - [`datapath`]: the sans-IO pipeline, flow state and counters (crate `flowpin-datapath`).
//! - [`worker`]: a worker thread's batch loop joining `xsk` and `datapath`.
//! - [`service`]: what systemd and journald see: log format, sd_notify, exit codes.
//! - [`cli`]: the `flowpin` command line.

#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod control;
pub mod link_kind;
pub mod service;
pub mod state;
pub mod worker;
pub mod xdp;
pub mod xsk;

pub use flowpin_datapath::{datapath, select};
