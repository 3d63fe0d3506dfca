//! `flowpin-bench`: the benchmark's one command.
//!
//! - `flowpin-bench run [--quick]`: the lab runner (X, K0, K1, O side by side; report to
//!   docs/benchmarks.md, JSON and a plot);
//! - `flowpin-bench gen [--tool afxdp|trafgen] ...`: a generator alone (prints a JSON report);
//! - `flowpin-bench sink ...` / `redirect ...`: the XDP sink and the X program as line-driven services;
//! - `flowpin-bench legit ...` / `reflect ...`: the legitimate traffic beside a SYN flood and its
//!   UDP reflector;
//! - `flowpin-bench pktgen-check`: whether kernel pktgen is available here.
#![deny(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use flowpin_bench::flow_set::Addressing;
use flowpin_bench::generator::{GenProtocol, GeneratorSpec, GeneratorTool};
use flowpin_bench::legit_traffic::{LegitSpec, serve_legit, serve_reflector};
use flowpin_bench::sink_service::{parse_mac, serve_redirect, serve_sink};
use flowpin_bench::{kernel_pktgen, lab_runner};

#[derive(Parser, Debug)]
#[command(name = "flowpin-bench", about = "flowpin's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the side-by-side lab benchmark and writes the report.
    Run(lab_runner::RunOptions),
    /// Sends traffic with a generator (run it inside the namespace of the interface).
    Gen(GenArgs),
    /// Counts (and drops) IPv4 frames arriving on interfaces; one JSON reading per stdin line.
    Sink {
        /// Interfaces (in the current namespace).
        #[arg(long = "interface", required = true)]
        interfaces: Vec<String>,
        /// Count only frames to this address (others pass to the kernel).
        #[arg(long)]
        destination: Option<Ipv4Addr>,
        /// Count TCP/UDP frames to this destination port apart and pass them on.
        #[arg(long)]
        watch_port: Option<u16>,
    },
    /// An established UDP flow to a reflector plus fresh TCP connections; one JSON reading per stdin line.
    Legit {
        /// The reflector of the established flow.
        #[arg(long)]
        established: SocketAddrV4,
        /// Datagrams per second of the established flow.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// The TCP server of the fresh connections.
        #[arg(long)]
        probe: SocketAddrV4,
        /// Milliseconds between fresh connections.
        #[arg(long, default_value_t = 100)]
        probe_interval_ms: u64,
        /// Milliseconds a fresh connection gets to complete.
        #[arg(long, default_value_t = 500)]
        probe_timeout_ms: u64,
        /// Seconds the established flow must have been answered before `ready`.
        #[arg(long, default_value_t = 3.0)]
        warm_up: f64,
    },
    /// Sends every UDP datagram arriving at an address back to its sender.
    Reflect {
        /// UDP address and port to serve (a server address of the namespace).
        #[arg(long)]
        address: SocketAddrV4,
    },
    /// The X configuration: redirects every frame from one interface to another.
    Redirect {
        /// Ingress interface.
        #[arg(long)]
        from: String,
        /// Egress interface.
        #[arg(long)]
        to: String,
        /// Destination MAC written into every frame.
        #[arg(long)]
        destination_mac: String,
        /// Source MAC written into every frame.
        #[arg(long)]
        source_mac: String,
    },
    /// Says whether kernel pktgen (/proc/net/pktgen) is available.
    PktgenCheck {
        /// Where pktgen lives.
        #[arg(long, default_value = "/proc/net/pktgen")]
        root: PathBuf,
    },
}

/// The options of `flowpin-bench gen`.
#[derive(clap::Args, Debug)]
struct GenArgs {
    /// The generator: flowpin's AF_XDP generator or netsniff-ng's trafgen.
    #[arg(long, value_enum, default_value_t = GeneratorTool::Afxdp)]
    tool: GeneratorTool,
    /// Interface to send on (queue 0).
    #[arg(long)]
    interface: String,
    /// Frame length without FCS (60 = "64-byte" frames, 1514 = "1518-byte" frames).
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
    /// Packets per second (omit: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Flows to cycle through.
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// A new flow on every packet.
    #[arg(long)]
    new_flow_per_packet: bool,
    /// The flow of the first packet (continue a previous run's flow sequence).
    #[arg(long, default_value_t = 0)]
    first_flow: u32,
    /// Seconds to send.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// First source address (hosts are consecutive from here).
    #[arg(long, default_value = "10.77.0.100")]
    first_source: Ipv4Addr,
    /// Number of source hosts.
    #[arg(long, default_value_t = 100)]
    source_hosts: u32,
    /// Destination address.
    #[arg(long, default_value = "203.0.113.200")]
    destination: Ipv4Addr,
    /// Source MAC.
    #[arg(long, default_value = "02:00:00:00:00:01")]
    source_mac: String,
    /// Destination MAC (the next hop).
    #[arg(long)]
    destination_mac: String,
    /// UDP or TCP SYN.
    #[arg(long, value_enum, default_value_t = GenProtocol::Udp)]
    protocol: GenProtocol,
    /// Put a send timestamp in every UDP payload (latency at the sink).
    #[arg(long)]
    timestamps: bool,
}

impl GenArgs {
    /// What to send, as the generator takes it.
    fn spec(&self) -> Result<GeneratorSpec> {
        Ok(GeneratorSpec {
            interface: self.interface.clone(),
            frame_len: self.frame_len,
            rate_pps: self.rate,
            flows: self.flows,
            addressing: Addressing {
                first_source: self.first_source,
                source_hosts: self.source_hosts,
                first_destination: self.destination,
                destinations: 1,
            },
            duration: Duration::from_secs_f64(self.duration),
            new_flow_per_packet: self.new_flow_per_packet,
            first_flow: self.first_flow,
            protocol: self.protocol,
            timestamps: self.timestamps,
            source_mac: parse_mac(&self.source_mac)?,
            destination_mac: parse_mac(&self.destination_mac)?,
            copy_mode: true,
        })
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(options) => lab_runner::run(&options),
        Command::Gen(args) => {
            let report = args.tool.run(&args.spec()?)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Sink {
            interfaces,
            destination,
            watch_port,
        } => serve_sink(&interfaces, destination, watch_port),
        Command::Legit {
            established,
            rate,
            probe,
            probe_interval_ms,
            probe_timeout_ms,
            warm_up,
        } => serve_legit(&LegitSpec {
            established_server: established,
            rate_pps: rate,
            probe_server: probe,
            probe_interval: Duration::from_millis(probe_interval_ms),
            probe_timeout: Duration::from_millis(probe_timeout_ms),
            warm_up: Duration::from_secs_f64(warm_up),
        }),
        Command::Reflect { address } => serve_reflector(address),
        Command::Redirect {
            from,
            to,
            destination_mac,
            source_mac,
        } => serve_redirect(
            &from,
            &to,
            parse_mac(&destination_mac)?,
            parse_mac(&source_mac)?,
        ),
        Command::PktgenCheck { root } => {
            match kernel_pktgen::availability(&root) {
                Ok(()) => println!("kernel pktgen available at {}", root.display()),
                Err(why) => println!("kernel pktgen unavailable: {why}"),
            }
            Ok(())
        }
    }
}
