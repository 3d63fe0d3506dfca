//! `flowpin-lab`: bring labs up and down, show their ISP counters, and run the live demo.
//!
//! A lab brought up by `up` persists after the command exits (its spec is in
//! `/run/flowpin-lab/<name>/lab.json`) until `down`. While `up` or `demo` runs, SIGINT, SIGTERM and
//! a panic tear down the lab being built or demonstrated (see [`guard`]).
#![deny(unsafe_code)]

mod demo;
mod demo_failover;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use flowpin_lab::{IspCounters, Lab, LabSpec, RouterKind, destroy_lab, list_labs, name, spec};

/// Network-namespace lab for flowpin: LAN hosts, a router, one ISP per uplink, an internet with
/// servers, and per-ISP leak counters.
#[derive(Debug, Parser)]
#[command(name = "flowpin-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Shape options shared by `up` and `demo`.
#[derive(Debug, clap::Args)]
struct ShapeArgs {
    /// Number of LAN hosts.
    #[arg(long, default_value_t = 2)]
    hosts: usize,
    /// Comma-separated uplink weights, one per uplink (e.g. 3,1).
    #[arg(long, default_value = "1,1")]
    uplinks: String,
    /// Uplinks (1-based, comma-separated, e.g. 2) reached over a tun device pair and a relay
    /// instead of a veth: an uplink without a link layer, as PPPoE, WireGuard or raw-IP LTE are.
    #[arg(long, value_delimiter = ',')]
    tun_uplinks: Vec<usize>,
    /// Who routes: `kernel` (the reference router), `flowpin` (the forwarder of this workspace) or `none` (empty router).
    #[arg(long, default_value = "kernel")]
    router: RouterKind,
    /// Lab name (namespace prefix); generated when absent.
    #[arg(long)]
    name: Option<String>,
    /// RX and TX queues of the router's veths (lan0, wanK and their peers); flowpin runs one worker per queue.
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// How the uplinks reach their ISPs: `separate` (a veth each), `shared` (every uplink on the router's one `wan1`) or `macvlan` (a macvlan each on the router's one `wan0`).
    #[arg(long, default_value = "separate")]
    wiring: flowpin_lab::UplinkWiring,
}

impl ShapeArgs {
    fn spec(&self) -> Result<LabSpec> {
        let spec = LabSpec {
            lan_hosts: self.hosts,
            uplinks: spec::parse_weights(&self.uplinks)?
                .into_iter()
                .enumerate()
                .map(|(index, weight)| flowpin_lab::UplinkSpec {
                    weight,
                    tun: self.tun_uplinks.contains(&(index + 1)),
                })
                .collect(),
            router: self.router,
            name: Some(self.name.clone().unwrap_or_else(name::generate_prefix)),
            queues: self.queues,
            wiring: self.wiring,
            ..LabSpec::default()
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a lab and leave it running; prints its name and addresses.
    Up(ShapeArgs),
    /// Destroy a lab (its processes, namespaces and state).
    Down {
        /// Name of the lab to destroy.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Destroy every lab on this machine.
        #[arg(long)]
        all: bool,
    },
    /// Show the per-ISP packet counters of one lab, or of every lab.
    Status {
        /// Name of the lab; every lab when absent.
        #[arg(long)]
        name: Option<String>,
    },
    /// Bring a lab up, drive live traffic from the LAN hosts while printing a per-uplink table
    /// every second, then tear it down.
    Demo {
        #[command(flatten)]
        shape: ShapeArgs,
        /// How long the traffic runs, in seconds (isp1 is black-holed half-way, back at three quarters).
        #[arg(long, default_value_t = 40)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("flowpin-lab: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(shape) => up(&shape),
        Command::Down { name, all } => down(name.as_deref(), all),
        Command::Status { name } => status(name.as_deref()),
        Command::Demo { shape, seconds } => demo::run(&shape.spec()?, Duration::from_secs(seconds)),
    }
}

fn up(shape: &ShapeArgs) -> Result<()> {
    let spec = shape.spec()?;
    let lab = Lab::up(spec)?;
    print_topology(&lab);
    let name = lab.persist();
    println!("lab {name} is up; `flowpin-lab down --name {name}` destroys it");
    Ok(())
}

fn down(name: Option<&str>, all: bool) -> Result<()> {
    let names = if all {
        list_labs()?
    } else {
        name.map(str::to_owned).into_iter().collect()
    };
    for name in &names {
        name::validate_prefix(name)?;
        destroy_lab(name)?;
        println!("lab {name} is down");
    }
    Ok(())
}

fn status(name: Option<&str>) -> Result<()> {
    let names = match name {
        Some(name) => vec![name.to_owned()],
        None => list_labs()?,
    };
    if names.is_empty() {
        println!("no lab is up");
    }
    for name in &names {
        let lab = Lab::attach(name)?;
        let alive = flowpin_lab::teardown::lab_namespaces(name)?.len();
        let expected = lab.topology().namespaces().len();
        if alive != expected {
            bail!(
                "lab {name} is broken: {alive} of {expected} namespaces exist (`down --name {name}`)"
            );
        }
        println!(
            "lab {name} ({:?} router, {} LAN hosts)",
            lab.spec().router,
            lab.lan_hosts().len()
        );
        print_counter_table(&lab, &lab.isp_counters()?);
    }
    Ok(())
}

/// Prints the namespaces and addresses of `lab`.
pub fn print_topology(lab: &Lab) {
    let router = lab.router();
    println!(
        "lab {} — router {} ({:?}), lan0 {}/{}",
        lab.prefix(),
        router.ns,
        router.kind,
        router.lan_addr,
        router.lan_prefix_len
    );
    for host in lab.lan_hosts() {
        println!(
            "  LAN host {:<12} {} via {}",
            host.ns, host.addr, host.gateway
        );
    }
    for uplink in lab.uplinks() {
        println!(
            "  uplink   {:<5} {}/{} (weight {}) gateway {} in {}",
            uplink.router_iface,
            uplink.router_addr,
            uplink.prefix_len,
            uplink.weight,
            uplink.gateway,
            uplink.isp_ns
        );
    }
    let servers: Vec<String> = lab
        .inet()
        .server_addrs
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "  servers  {} in {}: http :{}, echo tcp+udp :{}, iperf3 {:?}",
        servers.join(", "),
        lab.inet().ns,
        lab.inet().http_port,
        lab.inet().echo_port,
        lab.inet().iperf_servers
    );
}

/// Prints one row per uplink with its ISP's counters.
pub fn print_counter_table(lab: &Lab, counters: &[IspCounters]) {
    println!(
        "  {:<6} {:>6} {:>12} {:>8} {:>8}",
        "uplink", "weight", "good pkts", "leak", "wrong"
    );
    for (uplink, counter) in lab.uplinks().iter().zip(counters) {
        println!(
            "  {:<6} {:>6} {:>12} {:>8} {:>8}",
            uplink.router_iface, uplink.weight, counter.good, counter.leak, counter.wrong_uplink
        );
    }
}
