//! The control plane: everything the forwarder does that is not per packet.
//!
//! It reads the configuration, learns interfaces and neighbours from the kernel, installs the
//! fail-closed forward guard, builds the immutable snapshots the workers load once per batch, sweeps
//! expired flows, fails flows over, and serves the local API and the metrics. [`runtime`] is the
//! daemon, in rooms by concern; the other modules are the parts it uses.
//!
//! Invariant: nothing here runs per packet; the workers see the control plane only through the
//! published snapshot, the shared flow table and their counters.

pub mod api;
pub mod control_socket;
pub mod decision_history;
pub mod environment;
pub mod failover;
pub mod flow_kill;
pub mod gateway_retry;
pub mod guard;
pub mod health;
pub mod link_events;
pub mod metrics;
pub mod netinfo;
pub mod new_flow_explanation;
pub mod queues;
pub mod render;
pub mod router_addresses;
pub mod router_route;
pub mod runtime;
pub mod snapshot;
pub mod source_routes;
pub mod surface_counters;
pub mod traffic_rates;
