//! The sink and redirect programs as a line-driven service, so a process in another network namespace
//! (`ip netns exec NS flowpin-bench sink ...`) can be read by the lab runner: every line on stdin
//! makes it print one JSON [`SinkReading`] line (summed over its interfaces); end of input detaches
//! and exits.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};

use crate::xdp_programs::{AttachedXdp, BenchProgram, SinkReading};

/// Attaches the sink to every interface of `interfaces` (counting frames to `destination`, or all
/// IPv4 frames; frames to `watched_port` counted apart and passed on) and serves readings until stdin
/// closes.
pub fn serve_sink(
    interfaces: &[String],
    destination: Option<std::net::Ipv4Addr>,
    watched_port: Option<u16>,
) -> Result<()> {
    let sinks = interfaces
        .iter()
        .map(|name| {
            let mut sink = AttachedXdp::attach(BenchProgram::Sink, name)?;
            if let Some(destination) = destination {
                sink.set_sink_destination(destination)?;
            }
            if let Some(port) = watched_port {
                sink.set_sink_watched_port(port)?;
            }
            Ok(sink)
        })
        .collect::<Result<Vec<_>>>()?;
    serve(&sinks)
}

/// Attaches the redirect program to `from`, sending everything to `to` with the given MACs, and serves
/// its packet count until stdin closes.
pub fn serve_redirect(from: &str, to: &str, destination: [u8; 6], source: [u8; 6]) -> Result<()> {
    let mut program = AttachedXdp::attach(BenchProgram::Redirect, from)?;
    program.set_redirect(to, destination, source)?;
    serve(std::slice::from_ref(&program))
}

fn serve(programs: &[AttachedXdp]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line.context("reading stdin")?;
        let mut total = SinkReading::default();
        for program in programs {
            total.add(&program.read()?);
        }
        writeln!(out, "{}", serde_json::to_string(&total)?)?;
        out.flush()?;
    }
    Ok(())
}

/// Parses `02:77:00:00:01:02`.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "MAC {text:?} does not have six parts");
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text:?}"))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_reject_garbage() {
        assert_eq!(
            parse_mac("02:77:0a:00:ff:02").unwrap(),
            [2, 0x77, 10, 0, 255, 2]
        );
        assert!(parse_mac("02:77:0a:00:ff").is_err());
        assert!(parse_mac("02:77:0a:00:ff:zz").is_err());
    }
}
