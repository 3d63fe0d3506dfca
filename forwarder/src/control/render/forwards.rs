//! `flowpin status`: the port forwards, one line per forward and uplink.

use std::fmt::Write as _;

use crate::control::api::StatusReport;

/// The forwards section (nothing without forwards).
pub(super) fn forwards(out: &mut String, s: &StatusReport) {
    if s.forwards.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{:<16} {:<5} {:<12} {:<22} {:<8} {:<6} {:>7}",
        "forward", "proto", "port", "to", "uplink", "opens", "flows"
    );
    for f in &s.forwards {
        for u in &f.uplinks {
            let _ = writeln!(
                out,
                "{:<16} {:<5} {:<12} {:<22} {:<8} {:<6} {:>7}",
                f.name,
                f.protocol,
                f.port,
                f.to,
                u.uplink,
                if u.open { "yes" } else { "no" },
                u.flows
            );
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{ForwardStatus, ForwardUplinkStatus};

    #[test]
    fn one_line_per_forward_and_uplink() {
        let s = StatusReport {
            forwards: vec![ForwardStatus {
                name: "web".into(),
                protocol: "tcp".into(),
                port: "8080".into(),
                to: "10.77.0.12:80".into(),
                uplinks: vec![
                    ForwardUplinkStatus {
                        uplink: "isp1".into(),
                        open: true,
                        flows: 3,
                    },
                    ForwardUplinkStatus {
                        uplink: "isp2".into(),
                        open: false,
                        flows: 0,
                    },
                ],
            }],
            ..Default::default()
        };
        let mut out = String::new();
        forwards(&mut out, &s);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].starts_with("web") && lines[1].contains("isp1") && lines[1].contains("yes")
        );
        assert!(lines[1].trim_end().ends_with('3'));
        assert!(lines[2].contains("isp2") && lines[2].contains(" no "));
    }
}
