//! The TOML configuration: parsed, defaulted, validated, explained.
//!
//! Owns [`load`] and [`parse_on`] (a file or a text to a validated [`Config`] or
//! [`ConfigErrors`]), [`explain`] (what `flowpin check -c FILE` prints) and [`Config::to_toml`].
//! The reference of every key is `docs/configuration.md`.
//!
//! Layers: `raw` (the file as written, every value with its span) → `validate` (one file per
//! concern) → [`model`] and [`resilience`] (the validated types); `locate` names the field of an
//! error the parser raised. Types the NAT core shares ([`PortRange`], [`Timeouts`]) are
//! `flowpin_nat`'s.
//!
//! Invariants:
//! - every error names the file, the line and the field (`flowpin.toml:14: uplink[1].weight:
//!   ...`); only a table missing from the whole file, or a file that cannot be read, has no line;
//! - unknown keys are errors at every level (a typo never silently becomes a default);
//! - a [`Config`] that exists is valid ([`model`] lists the guarantees); nothing downstream
//!   re-checks it;
//! - [`Config::to_toml`] writes a file that parses back to an equal [`Config`];
//! - no I/O but reading the file in [`load`] and the CA files that `https` probe targets name
//!   (`ca_file`: regular files only, bounded, see [`http_probe::read_ca_file`]): the machine facts a file is checked against
//!   ([`Host`]: the router's `ip_local_port_range`, read with
//!   [`PortRange::parse_ip_local_port_range`]; the online CPUs, read with [`parse_cpu_list`])
//!   are an argument.

mod cpus;
mod error;
mod explain;
pub mod http_probe;
mod locate;
pub mod model;
pub mod mss_clamp;
mod raw;
pub mod resilience;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_forwards;
#[cfg(test)]
mod tests_probes;

use std::path::Path;

pub use cpus::{CpuListError, Host, format_cpu_list, parse_cpu_list};
pub use error::{ConfigError, ConfigErrors};
pub use explain::{explain, weight_shares};
pub use flowpin_datapath::{Ipv4Prefix, Protocol, Stickiness};
pub use flowpin_nat::{PortRange, Timeouts};
pub use http_probe::HttpCheck;
pub use model::{
    Config, Control, Datapath, DefaultRoute, Filtering, Forward, ForwardProtocol, IdleStrategy,
    Lan, Nat, Policy, PolicyMatch, PolicyUplink, Router, Uplink, Workers, XdpMode,
};
pub use mss_clamp::MssClamp;
pub use resilience::{
    Failback, FailbackMode, Failover, FailoverAction, Health, Metrics, ProbeKind, ProbeTarget,
};
pub use validate::{
    DEFAULT_NAT_PORT_RANGE, FLOW_CAPACITY_RANGE, FRAMES_PER_WORKER_RANGE, MAX_WEIGHT, MIN_NAT_PORT,
};

use locate::Source;

/// Reads and validates the configuration file at `path` against the machine facts `host` (see
/// [`parse_on`]). Errors name the file as `path` displays.
pub fn load(path: &Path, host: &Host) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: file.clone(),
        line: None,
        field: String::new(),
        message: format!("cannot read: {error}"),
    })?;
    parse_on(&text, &file, host)
}

/// Validates configuration `text`; `file` is the name errors show. `local_port_range` is the
/// router's `net.ipv4.ip_local_port_range`; when given, a NAT port range overlapping it is an
/// error. The CPUs of `[datapath] cpus` are not checked against the machine (see [`parse_on`]).
pub fn parse(
    text: &str,
    file: &str,
    local_port_range: Option<PortRange>,
) -> Result<Config, ConfigErrors> {
    let host = Host {
        local_port_range,
        online_cpus: None,
    };
    parse_on(text, file, &host)
}

/// Validates configuration `text` against the machine facts `host`: a NAT port range overlapping
/// `host.local_port_range`, or a `[datapath] cpus` id outside `host.online_cpus`, is an error
/// (facts that are `None` are not checked). `file` is the name errors show.
pub fn parse_on(text: &str, file: &str, host: &Host) -> Result<Config, ConfigErrors> {
    let source = Source { file, text };
    let raw: raw::RawConfig = toml::from_str(text).map_err(|error| {
        let (line, field) = match error.span() {
            Some(span) => (
                Some(source.line_of(span.start)),
                source.field_at(span.start),
            ),
            None => (None, String::new()),
        };
        ConfigError {
            file: file.to_owned(),
            line,
            field,
            message: error.message().trim().to_owned(),
        }
    })?;
    validate::validate(source, raw, host)
}
