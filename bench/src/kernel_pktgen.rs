//! Kernel pktgen (`/proc/net/pktgen`), the usual generator on a real router box: where the module is
//! loaded, the runner can drive it with the same knobs as flowpin's own generator; where it is not (this
//! machine's kernel has `CONFIG_NET_PKTGEN` off), [`availability`] says so plainly and the runner uses
//! the AF_XDP generator instead — it never pretends.

use std::fmt::Write as _;
use std::path::Path;

use crate::generator::GeneratorSpec;

/// `Ok` when pktgen's control files exist under `root`, else why not.
pub fn availability(root: &Path) -> Result<(), String> {
    let control = root.join("pgctrl");
    if !root.is_dir() {
        return Err(format!(
            "{} does not exist: the kernel has no pktgen module loaded (CONFIG_NET_PKTGEN; try `modprobe pktgen`)",
            root.display()
        ));
    }
    if !control.exists() {
        return Err(format!("{} is missing", control.display()));
    }
    Ok(())
}

/// The `pgset` commands for one device on thread 0 that send `spec`'s traffic (UDP only; pktgen
/// varies the source address over `source_hosts` and the source port over 128 ports, like the
/// [`crate::flow_set::FlowSet`] endpoints), as (file, command) pairs in the order to write them.
pub fn commands(spec: &GeneratorSpec, packets: u64) -> Vec<(String, String)> {
    let dev = spec.interface.as_str();
    let a = &spec.addressing;
    let last_source =
        std::net::Ipv4Addr::from(u32::from(a.first_source) + a.source_hosts.max(1) - 1);
    let mac = |m: [u8; 6]| {
        let mut s = String::new();
        for (i, b) in m.iter().enumerate() {
            let _ = write!(s, "{}{b:02x}", if i == 0 { "" } else { ":" });
        }
        s
    };
    let mut out = vec![
        ("kpktgend_0".to_owned(), "rem_device_all".to_owned()),
        ("kpktgend_0".to_owned(), format!("add_device {dev}")),
    ];
    let mut set = |cmd: String| out.push((dev.to_owned(), cmd));
    set(format!("count {packets}"));
    // pktgen's pkt_size includes the 4-byte FCS.
    set(format!("pkt_size {}", spec.frame_len + 4));
    set(format!("dst {}", a.first_destination));
    set(format!("dst_mac {}", mac(spec.destination_mac)));
    set(format!("src_min {}", a.first_source));
    set(format!("src_max {last_source}"));
    set("udp_src_min 10000".to_owned());
    set("udp_src_max 10127".to_owned());
    set("udp_dst_min 9".to_owned());
    set("udp_dst_max 9".to_owned());
    set("flag UDPSRC_RND".to_owned());
    set("flag IPSRC_RND".to_owned());
    set(match spec.rate_pps {
        Some(rate) => format!("ratep {rate}"),
        None => "delay 0".to_owned(),
    });
    out.push(("pgctrl".to_owned(), "start".to_owned()));
    out
}

/// Sends `packets` packets with pktgen under `root` (blocks until pktgen is done).
pub fn run(root: &Path, spec: &GeneratorSpec, packets: u64) -> anyhow::Result<()> {
    availability(root).map_err(anyhow::Error::msg)?;
    for (file, command) in commands(spec, packets) {
        std::fs::write(root.join(&file), format!("{command}\n"))
            .map_err(|e| anyhow::anyhow!("pktgen {file}: {command}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flow_set::Addressing;
    use crate::generator::GenProtocol;

    #[test]
    fn missing_pktgen_is_reported_not_faked() {
        let why = availability(Path::new("/nonexistent/pktgen")).unwrap_err();
        assert!(why.contains("CONFIG_NET_PKTGEN"), "{why}");
    }

    #[test]
    fn commands_carry_the_knobs() {
        let spec = GeneratorSpec {
            interface: "eth0".into(),
            frame_len: 60,
            rate_pps: Some(250_000),
            flows: 1000,
            addressing: Addressing {
                first_source: "10.77.0.100".parse().unwrap(),
                source_hosts: 8,
                first_destination: "203.0.113.200".parse().unwrap(),
                destinations: 1,
            },
            duration: Duration::from_secs(1),
            new_flow_per_packet: false,
            first_flow: 0,
            protocol: GenProtocol::Udp,
            timestamps: false,
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0x77, 0, 0, 0, 0xab],
            copy_mode: true,
        };
        let cmds: Vec<String> = commands(&spec, 1000)
            .into_iter()
            .map(|(f, c)| format!("{f}: {c}"))
            .collect();
        for expected in [
            "kpktgend_0: add_device eth0",
            "eth0: pkt_size 64",
            "eth0: src_max 10.77.0.107",
            "eth0: dst_mac 02:77:00:00:00:ab",
            "eth0: ratep 250000",
            "pgctrl: start",
        ] {
            assert!(
                cmds.iter().any(|c| c == expected),
                "{expected} missing from {cmds:?}"
            );
        }
    }
}
