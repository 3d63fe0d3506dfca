//! The control plane: everything the forwarder does that is not per packet.
//!
//! It reads the configuration, learns interfaces and neighbours from the kernel, installs the fail-closed
//! forward guard, builds the immutable snapshots the workers load once per batch, sweeps expired flows,
//! and serves the local API. Nothing here runs per packet.
#![forbid(unsafe_code)]

pub mod api;
pub mod decision_history;
pub mod failover;
pub mod gateway_retry;
pub mod guard;
pub mod health;
pub mod link_events;
pub mod metrics;
pub mod netinfo;
pub mod queues;
pub mod render;
pub mod router_addresses;
pub mod runtime;
pub mod snapshot;
