//! netsniff-ng's trafgen as the third generator: the same [`GeneratorSpec`] and the same frames as the
//! AF_XDP generator (every frame is written by the generator's own frame writer, then listed in a
//! trafgen configuration), measured from the sending interface's counters.
//!
//! Invariants:
//! - established-flow workloads list flow `0..flows` of the spec's [`FlowSet`] as one trafgen packet
//!   each, byte for byte the frames the AF_XDP generator sends (trafgen sends them round robin);
//! - the new-flow-per-packet workload lists every internal endpoint of the set once, with the low byte
//!   of the destination port a trafgen runtime counter (`dinc`) and the high byte 1, so each pass over
//!   the list is 256 destination ports further and every packet is a flow not seen in the last 255
//!   passes; TCP SYNs get their checksum from trafgen at runtime (`csumtcp`), UDP carries none.
//!   trafgen's `csumtcp` takes the segment length from the frame length, so a SYN padded with an
//!   Ethernet trailer would get a wrong checksum: new-flow SYNs are sent as 54-byte frames without the
//!   trailer (a NIC pads them to the 60-byte minimum on the wire; veth does not need it);
//! - trafgen runs with `-P 1` (one process, which pins itself to CPU 0 and ignores taskset),
//!   `--no-sock-mem` (it cannot tune socket memory inside a network namespace; Debian's build rejects
//!   the short `-A`), `--notouch-irq` and the qdisc bypass (its default);
//! - what was offered is what the sending veth handed on or dropped (`tx_packets + tx_dropped`, so a
//!   frame the router's ring refused counts as offered and lost); the window starts at the first
//!   transmitted frame, after trafgen has compiled its configuration;
//! - trafgen runs in its own process group, which is what is stopped (SIGINT) at the end of the window;
//! - there are no timestamps: latency is measured with the AF_XDP generator only; `first_flow` is
//!   ignored (trafgen's counters restart with every run).

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::flow_set::FlowSet;
use crate::generator::{FrameWriter, GenProtocol, GeneratorReport, GeneratorSpec, L4};

/// The trafgen binary.
pub const TRAFGEN: &str = "trafgen";
/// A TCP header without options.
const TCP_HEADER: usize = 20;
/// Destination port high byte of new-flow packets (ports 256..=511).
const NEW_FLOW_PORT_HIGH: u8 = 1;
/// How long trafgen may take to compile its configuration and send its first frame.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether trafgen is installed (on `PATH`).
pub fn available() -> Result<()> {
    match flowpin_lab::command::find_tool(TRAFGEN) {
        Some(_) => Ok(()),
        None => bail!("missing prerequisite: trafgen (apt-get install netsniff-ng) is not on PATH"),
    }
}

/// The trafgen configuration sending `spec`'s frames.
pub fn config_text(spec: &GeneratorSpec) -> String {
    let writer = FrameWriter::new(spec);
    let flows = if spec.new_flow_per_packet {
        let all = FlowSet::with_addressing(u32::MAX, spec.addressing);
        FlowSet::with_addressing(all.endpoints(), spec.addressing)
    } else {
        FlowSet::with_addressing(spec.flows, spec.addressing)
    };
    let mut frame = vec![0u8; writer.len()];
    let mut text = String::with_capacity(flows.len() as usize * writer.len() * 6);
    let _ = writeln!(
        text,
        "# flowpin-bench: {} flows, {} bytes, {:?}{}",
        flows.len(),
        writer.len(),
        spec.protocol,
        if spec.new_flow_per_packet {
            ", new flow per packet"
        } else {
            ""
        }
    );
    // See the module docs: no trailer behind a SYN whose checksum trafgen computes.
    let sent_len = if spec.new_flow_per_packet && spec.protocol == GenProtocol::TcpSyn {
        L4 + TCP_HEADER
    } else {
        writer.len()
    };
    for index in 0..flows.len() {
        writer.write(&mut frame, &flows.flow(index), 0);
        text.push('{');
        for (offset, byte) in frame[..sent_len].iter().enumerate() {
            let element = if spec.new_flow_per_packet && offset == L4 + 2 {
                format!("{NEW_FLOW_PORT_HIGH:#04x}")
            } else if spec.new_flow_per_packet && offset == L4 + 3 {
                "dinc(0,255,1)".into()
            } else if spec.new_flow_per_packet
                && spec.protocol == GenProtocol::TcpSyn
                && offset == L4 + 16
            {
                format!("csumtcp({},{L4})", L4 - 20)
            } else if spec.new_flow_per_packet
                && spec.protocol == GenProtocol::TcpSyn
                && offset == L4 + 17
            {
                continue; // the two checksum bytes are one csumtcp element
            } else {
                format!("{byte:#04x}")
            };
            if offset > 0 {
                text.push(',');
            }
            text.push_str(&element);
        }
        text.push_str("}\n");
    }
    text
}

/// Sending-side counters of an interface (in the current namespace).
fn tx_counter(interface: &str) -> Result<u64> {
    let read = |name: &str| -> Result<u64> {
        let path = format!("/sys/class/net/{interface}/statistics/{name}");
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {path}"))
    };
    Ok(read("tx_packets")? + read("tx_dropped")?)
}

/// A configuration file removed on drop.
struct ConfigFile(PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs trafgen for `spec` (in the current namespace) and reports what it offered.
pub fn run(spec: &GeneratorSpec) -> Result<GeneratorReport> {
    available()?;
    ensure!(
        !spec.timestamps,
        "trafgen cannot write send timestamps; measure latency with the AF_XDP generator"
    );
    let file = ConfigFile(
        std::env::temp_dir().join(format!("flowpin-bench-trafgen-{}.cfg", std::process::id())),
    );
    std::fs::write(&file.0, config_text(spec))
        .with_context(|| format!("writing {}", file.0.display()))?;
    let before = tx_counter(&spec.interface)?;
    let mut child = trafgen_command(&spec.interface, &file.0, spec.rate_pps)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting trafgen")?;
    let started = Instant::now();
    let first = loop {
        if let Some(status) = child.try_wait()? {
            let output = child.wait_with_output()?;
            bail!(
                "trafgen exited ({status}) before sending: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        if tx_counter(&spec.interface)? > before {
            break Instant::now();
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("trafgen sent nothing within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    std::thread::sleep(spec.duration.saturating_sub(first.elapsed()));
    // trafgen's sending processes are children of the one we started, all in its process group: stop
    // the group, as Ctrl-C would (signalling the parent alone leaves it waiting for a child that sends).
    Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .context("stopping trafgen")?;
    let output = child.wait_with_output()?;
    let seconds = first.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "trafgen failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let sent = tx_counter(&spec.interface)? - before;
    Ok(GeneratorReport {
        sent,
        seconds,
        pps: sent as f64 / seconds.max(1e-9),
        ring_full: 0,
    })
}

fn trafgen_command(interface: &str, config: &Path, rate_pps: Option<u64>) -> Command {
    let mut command = Command::new(TRAFGEN);
    command
        .args(["--dev", interface, "--conf"])
        .arg(config)
        .args([
            "-P",
            "1",
            "--no-sock-mem",
            "--notouch-irq",
            "--no-cpu-stats",
        ]);
    if let Some(rate) = rate_pps {
        command.args(["--rate", &format!("{rate}pps")]);
    }
    command
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::flow_set::Addressing;

    fn spec(protocol: GenProtocol, flows: u32, new_flow_per_packet: bool) -> GeneratorSpec {
        GeneratorSpec {
            interface: "lo".into(),
            frame_len: 60,
            rate_pps: None,
            flows,
            addressing: Addressing {
                first_source: Ipv4Addr::new(10, 77, 0, 100),
                source_hosts: 2,
                first_destination: Ipv4Addr::new(203, 0, 113, 200),
                destinations: 1,
            },
            duration: Duration::from_secs(1),
            new_flow_per_packet,
            first_flow: 0,
            protocol,
            timestamps: false,
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            copy_mode: true,
        }
    }

    fn packets(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                l.trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .map(|e| e.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .map(|elements| {
                // Re-join function arguments split at their commas.
                let mut joined: Vec<String> = Vec::new();
                for e in elements {
                    match joined.last_mut() {
                        Some(last) if last.contains('(') && !last.contains(')') => {
                            last.push(',');
                            last.push_str(&e);
                        }
                        _ => joined.push(e),
                    }
                }
                joined
            })
            .collect()
    }

    #[test]
    fn established_flows_are_the_generator_frames_byte_for_byte() {
        let spec = spec(GenProtocol::Udp, 100, false);
        let listed = packets(&config_text(&spec));
        assert_eq!(listed.len(), 100);
        let writer = FrameWriter::new(&spec);
        let flows = FlowSet::with_addressing(100, spec.addressing);
        let mut frame = vec![0u8; 60];
        for (i, packet) in listed.iter().enumerate() {
            writer.write(&mut frame, &flows.flow(i as u32), 0);
            let bytes: Vec<u8> = packet
                .iter()
                .map(|e| u8::from_str_radix(e.trim_start_matches("0x"), 16).unwrap())
                .collect();
            assert_eq!(bytes, frame, "packet {i}");
        }
    }

    #[test]
    fn new_flow_packets_count_the_destination_port_and_fix_tcp_checksums_at_runtime() {
        for protocol in [GenProtocol::Udp, GenProtocol::TcpSyn] {
            let listed = packets(&config_text(&spec(protocol, 1, true)));
            // Every endpoint of two hosts once.
            assert_eq!(listed.len(), 2 * crate::flow_set::PORTS_PER_HOST as usize);
            for packet in &listed {
                assert_eq!(packet[L4 + 2], "0x01");
                assert_eq!(packet[L4 + 3], "dinc(0,255,1)");
                if protocol == GenProtocol::TcpSyn {
                    assert_eq!(packet[L4 + 16], "csumtcp(14,34)");
                    assert_eq!(
                        packet.len(),
                        53,
                        "54 bytes without trailer; two checksum bytes are one element"
                    );
                } else {
                    assert_eq!(packet.len(), 60);
                }
            }
        }
    }
}
