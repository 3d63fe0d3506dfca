//! The `flowpin` command line.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::control::{api, guard, render, runtime};

/// The configuration file `run` and `check` read when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/flowpin/flowpin.toml";

/// What `flowpin --help` and flowpin(8) say about the exit status (see `service::exit_status`).
const EXIT_STATUS: &str = "Exit status: 0 done; 1 a runtime failure (an interface, the kernel, the \
daemon); 2 a command-line mistake; 6 a configuration file that cannot be read or is invalid (the \
systemd unit does not restart on it).";

/// flowpin: a flow-pinning multi-uplink packet forwarder on XDP and AF_XDP.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = EXIT_STATUS)]
pub struct Cli {
    /// Control socket of the daemon, for the commands that talk to it (status, flows, explain,
    /// reload, uplink); `run` listens where `[control] socket` says.
    #[arg(long, global = true, default_value = api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the forwarder in the foreground (SIGINT/SIGTERM stop it cleanly).
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Start with an empty flow table: set the saved state (flows, mappings, quarantines) aside
        /// as `/run/flowpin/<pin name>.state.discarded` instead of restoring it.
        #[arg(long)]
        fresh: bool,
    },
    /// Validate a configuration file and explain what it does.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The uplinks (state, since when, flows, rates, probe figures), then drops by reason.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Add the internals: addresses and NAT port pools, health and failover counters, refusals,
        /// XDP decisions, workers and their AF_XDP sockets, control surfaces.
        #[arg(short, long)]
        verbose: bool,
    },
    /// The flows in the table; `flows kill` removes chosen ones.
    Flows {
        /// Only flows pinned to this uplink.
        #[arg(long)]
        uplink: Option<String>,
        /// Only flows of this LAN host.
        #[arg(long)]
        host: Option<Ipv4Addr>,
        /// Only this protocol (tcp, udp, icmp).
        #[arg(long)]
        proto: Option<String>,
        /// At most this many flows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// An action on the flows instead of listing them.
        #[command(subcommand)]
        action: Option<FlowsCli>,
    },
    /// Why a flow is on its uplink: the policy rule it matched, its stickiness key, and the uplinks'
    /// states and weights when it was pinned (with --new: which uplink a new flow would take now). FLOW is `PROTO INTERNAL REMOTE` (the LAN-side 5-tuple,
    /// e.g. `udp 10.0.1.2:5000 203.0.113.10:7`) or `PROTO EXTERNAL` (its translated endpoint, e.g.
    /// `udp 198.51.100.2:10000`, which may name several flows); for ICMP the port is the echo id.
    Explain {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Not an existing flow: which uplink a new flow `PROTO SRC DST` from the LAN would take now,
        /// and why (creates nothing).
        #[arg(long)]
        new: bool,
        /// PROTO ENDPOINT (REMOTE optional).
        #[arg(required = true, num_args = 2..=3, value_name = "FLOW")]
        flow: Vec<String>,
    },
    /// Re-read the daemon's configuration file; an invalid file is refused and the running one kept.
    Reload,
    /// Operator actions on one uplink.
    Uplink {
        /// What to do.
        #[command(subcommand)]
        action: UplinkCli,
    },
    /// Remove the kernel forward guard flowpin installs and, with --pin-name, its pinned XDP links
    /// (only when decommissioning flowpin, with flowpin stopped).
    RemoveGuard {
        /// The instance whose pinned XDP links to remove too (`[datapath] pin_name`, by default the
        /// LAN interface's name): `/sys/fs/bpf/flowpin/NAME/` goes, and with it the XDP program.
        #[arg(long)]
        pin_name: Option<String>,
    },
}

/// `flowpin flows ...`.
#[derive(Debug, Subcommand)]
pub enum FlowsCli {
    /// Remove the flows matching every selector given (at least one of --uplink, --host, FLOW; given
    /// here or before `kill`), like `conntrack -D`: each live TCP connection gets an RST towards the
    /// LAN host and one towards the remote; the hosts' next packets open new flows.
    Kill {
        /// Only flows pinned to this uplink.
        #[arg(long)]
        uplink: Option<String>,
        /// Only flows of this LAN host.
        #[arg(long)]
        host: Option<Ipv4Addr>,
        /// Only this protocol (tcp, udp, icmp).
        #[arg(long)]
        proto: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// One flow, as `flowpin explain` takes it: `PROTO INTERNAL REMOTE` or `PROTO EXTERNAL`.
        #[arg(num_args = 2..=3, value_name = "FLOW")]
        flow: Vec<String>,
    },
}

/// `flowpin uplink ...`.
#[derive(Debug, Subcommand)]
pub enum UplinkCli {
    /// No new flows on NAME; its existing flows stay.
    Drain {
        /// Uplink name.
        name: String,
    },
    /// NAME takes new flows again.
    Undrain {
        /// Uplink name.
        name: String,
    },
    /// Override NAME's weight (no WEIGHT: back to the configured one).
    SetWeight {
        /// Uplink name.
        name: String,
        /// New weight.
        weight: Option<u32>,
    },
}

/// Runs the command line.
pub fn main(cli: Cli) -> Result<()> {
    let socket = cli.socket;
    match cli.command {
        Command::Run { config, fresh } => runtime::run(&config, fresh),
        Command::Check { config } => {
            let config = runtime::load_config(&config)?;
            print!("{}", crate::config::explain(&config));
            print_environment_warnings(&config);
            Ok(())
        }
        Command::Status { json, verbose } => match api::call(&socket, &api::Request::Status)? {
            api::Response::Status(s) if json => print_json(&s),
            api::Response::Status(s) => {
                print!("{}", render::status(&s, verbose));
                Ok(())
            }
            other => unexpected(other),
        },
        Command::Flows {
            uplink,
            host,
            proto,
            action: Some(action),
            ..
        } => flows_action(
            &socket,
            api::FlowFilter {
                uplink,
                host,
                proto,
                limit: None,
            },
            action,
        ),
        Command::Flows {
            uplink,
            host,
            proto,
            limit,
            json,
            action: None,
        } => {
            let filter = api::FlowFilter {
                uplink,
                host,
                proto,
                limit: Some(limit),
            };
            match api::call(&socket, &api::Request::Flows(filter))? {
                api::Response::Flows(f) if json => print_json(&f),
                api::Response::Flows(f) => {
                    print!("{}", render::flows(&f));
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Explain {
            json,
            new: true,
            flow,
        } => {
            let query = api::FlowQuery::parse(&flow).map_err(anyhow::Error::msg)?;
            if query.remote.is_none() {
                bail!(
                    "explain --new takes PROTO SRC DST: the LAN host's endpoint and the remote's"
                );
            }
            match api::call(&socket, &api::Request::ExplainNew(query))? {
                api::Response::ExplainNew(e) if json => print_json(&e),
                api::Response::ExplainNew(e) => {
                    print!("{}", render::explain_new(&e));
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Explain {
            json,
            new: false,
            flow,
        } => {
            let query = api::FlowQuery::parse(&flow).map_err(anyhow::Error::msg)?;
            match api::call(&socket, &api::Request::Explain(query))? {
                api::Response::Explain(e) if json => print_json(&e),
                api::Response::Explain(e) => {
                    print!("{}", render::explain(&e));
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Reload => done(api::call(&socket, &api::Request::Reload)?),
        Command::Uplink { action } => {
            let (name, action) = match action {
                UplinkCli::Drain { name } => (name, api::UplinkAction::Drain),
                UplinkCli::Undrain { name } => (name, api::UplinkAction::Undrain),
                UplinkCli::SetWeight { name, weight } => {
                    (name, api::UplinkAction::SetWeight { weight })
                }
            };
            let request = api::Request::Uplink(api::UplinkCommand { name, action });
            done(api::call(&socket, &request)?)
        }
        Command::RemoveGuard { pin_name } => {
            guard::remove()?;
            if let Some(name) = pin_name {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    bail!("--pin-name {name:?} is not one path component");
                }
                let pins =
                    crate::xdp::PinDir::under(std::path::Path::new(crate::xdp::BPFFS), &name);
                pins.remove_all().map_err(|error| {
                    anyhow::anyhow!("removing {}: {error}", pins.path().display())
                })?;
            }
            Ok(())
        }
    }
}

/// `flowpin [--socket S] flows [SELECTORS] kill [SELECTORS] [FLOW]`: the kill's own selectors, else
/// the ones given before `kill`.
fn flows_action(socket: &std::path::Path, before: api::FlowFilter, action: FlowsCli) -> Result<()> {
    let FlowsCli::Kill {
        uplink,
        host,
        proto,
        json,
        flow,
    } = action;
    let (uplink, host, proto) = (
        uplink.or(before.uplink),
        host.or(before.host),
        proto.or(before.proto),
    );
    let flow = match flow.as_slice() {
        [] => None,
        words => Some(api::FlowQuery::parse(words).map_err(anyhow::Error::msg)?),
    };
    let filter = api::KillFilter {
        uplink,
        host,
        proto: proto.map(|p| p.to_ascii_lowercase()),
        flow,
    };
    match api::call(socket, &api::Request::KillFlows(filter))? {
        api::Response::Killed(k) if json => print_json(&k),
        api::Response::Killed(k) => {
            println!(
                "killed {} flows; {} TCP connections reset ({} RSTs to LAN hosts, {} to remotes)",
                k.killed, k.tcp_reset, k.resets_to_hosts, k.resets_to_remotes
            );
            Ok(())
        }
        other => unexpected(other),
    }
}

/// `flowpin check`'s warnings about the machine (none: a line saying so).
fn print_environment_warnings(config: &crate::config::Config) {
    let warnings =
        crate::control::environment::warnings(config, &crate::control::environment::read(config));
    if warnings.is_empty() {
        println!(
            "\nenvironment: no pitfall seen (veth offloads, NAT range vs local ports, rp_filter)"
        );
    }
    for warning in warnings {
        println!("\nwarning: {warning}");
    }
}

fn done(response: api::Response) -> Result<()> {
    match response {
        api::Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        other => unexpected(other),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn unexpected(response: api::Response) -> Result<()> {
    match response {
        api::Response::Error { message } => bail!("the daemon refused: {message}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::exit_status::{CONFIG_INVALID, RUNTIME_FAILURE};
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_tells_the_exit_codes_it_uses() {
        Cli::command().debug_assert();
        assert!(EXIT_STATUS.contains(&format!("{RUNTIME_FAILURE} a runtime failure")));
        assert!(EXIT_STATUS.contains(&format!("{CONFIG_INVALID} a configuration file")));
    }

    #[test]
    fn socket_is_global_and_config_has_a_default() {
        let cli = Cli::try_parse_from(["flowpin", "--socket", "/tmp/a.sock", "status"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/a.sock"));
        let cli =
            Cli::try_parse_from(["flowpin", "uplink", "--socket", "/tmp/b.sock", "drain", "x"])
                .unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/b.sock"));
        let cli = Cli::try_parse_from(["flowpin", "check"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from(api::DEFAULT_SOCKET));
        match cli.command {
            Command::Check { config } => assert_eq!(config, PathBuf::from(DEFAULT_CONFIG)),
            other => panic!("{other:?}"),
        }
    }
}
