//! From the file as written ([`super::raw`]) to the validated [`Config`]: defaults for absent
//! keys, required keys, and every semantic rule, one file per concern.
//!
//! Invariants: every problem is collected, not just the first, and reported in file order; each
//! is located at its value's line (or its table's, for a missing key) and named by its field
//! path; a [`Config`] is returned only when there is none.

mod admission;
mod datapath;
mod flow_share;
mod forwards;
mod fragments;
mod health;
mod hooks;
mod http_probe;
mod lan;
mod nat;
mod policies;
mod resilience;
mod tier;
mod uplink_health;
mod values;

use std::ops::Range;

use super::cpus::Host;
use super::locate::Source;
use super::model::{Config, Router};
use super::raw::{RawConfig, S};
use super::{ConfigError, ConfigErrors};

/// The highest weight an uplink or a policy member may have.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The lowest port the NAT may hand out (below are the well-known ports, RFC 4787 §4.2.1).
pub const MIN_NAT_PORT: u16 = 1024;
/// The NAT port range when `[nat] port_range` is absent: below Linux's default
/// `ip_local_port_range` (32768-60999).
pub const DEFAULT_NAT_PORT_RANGE: (u16, u16) = (10000, 32767);
/// Bounds of `[datapath] flow_capacity`.
pub const FLOW_CAPACITY_RANGE: (u32, u32) = (1024, 1 << 28);
/// Bounds of `[datapath] frames_per_worker` (a power of two).
pub const FRAMES_PER_WORKER_RANGE: (u32, u32) = (512, 1 << 20);

/// Checks `raw` against `host` and builds the [`Config`], or reports every problem found.
pub(super) fn validate(
    source: Source<'_>,
    mut raw: RawConfig,
    host: &Host,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        source,
        errors: Vec::new(),
    };
    // 1. Where packets come from and go to: the LAN, then the uplinks (not the LAN's interface).
    let uplink_health: Vec<_> = (raw.uplink.iter_mut())
        .map(|uplink| uplink.get_mut().health.take())
        .collect();
    let lan = checker.lan(raw.lan);
    let mut uplinks = checker.uplinks(raw.uplink, &lan);
    // 2. How flows are translated (the port range clear of the router's own ports).
    let nat = checker.nat(raw.nat, host.local_port_range);
    // 3. Which uplinks new flows may take (policies name uplinks, match LAN sources).
    let policies = checker.policies(raw.policy, &lan, &uplinks);
    // 3b. Which inbound ports go to LAN hosts (clear of the NAT range and of each other).
    let forwards = checker.forwards(raw.forward, &lan, &uplinks, &nat);
    // 4. The machinery: workers and their CPUs, the control socket.
    let datapath = checker.datapath(raw.datapath, host.online_cpus.as_deref());
    let control = checker.control(raw.control);
    // 5. Resilience: health checking, failover, failback; then the metrics endpoint.
    let health = checker.health(raw.health);
    checker.uplink_health(&mut uplinks, uplink_health, &health);
    let failover = checker.failover(raw.failover);
    let failback = checker.failback(raw.failback);
    let metrics = checker.metrics(raw.metrics);
    // 6. The router's own traffic.
    let router = Router {
        default_route: (raw.router)
            .and_then(|router| router.default_route)
            .unwrap_or_default(),
    };
    if !checker.errors.is_empty() {
        let mut errors = checker.errors;
        errors.sort_by_key(|error| error.line.unwrap_or(0));
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        lan,
        uplinks,
        nat,
        policies,
        datapath,
        control,
        health,
        failover,
        failback,
        metrics,
        router,
        forwards,
    })
}

/// The file being checked and the problems found so far. Each concern adds its `impl` block.
struct Checker<'a> {
    source: Source<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    /// Records a problem with `field`, located at the start of `span`.
    fn fail(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.errors.push(self.source.error(span, field, message));
    }

    /// Records a required table that is absent from the whole file (no line to blame).
    fn fail_missing_table(&mut self, field: &str, message: &str) {
        self.errors.push(ConfigError {
            file: self.source.file.to_owned(),
            line: None,
            field: field.to_owned(),
            message: message.to_owned(),
        });
    }

    /// `value`, or an error at the enclosing table when it is absent.
    fn required<T>(
        &mut self,
        value: Option<S<T>>,
        table: &Range<usize>,
        field: &str,
    ) -> Option<S<T>> {
        if value.is_none() {
            self.fail(table.clone(), field, "missing (required)");
        }
        value
    }
}
