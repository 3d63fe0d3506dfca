//! The Prometheus text exposition (format 0.0.4) of a [`StatusReport`], and the tiny HTTP server that
//! serves it on the configured address (loopback by default).
//!
//! Invariants: every sample belongs to a family announced by `# HELP` and `# TYPE` lines; label values
//! are escaped; counters only grow for the life of the daemon, except the kernel's AF_XDP socket
//! counters (`flowpin_xsk_kernel_total`), which restart from 0 when a reload reopens the sockets (a
//! counter reset, which `rate()` handles); the server answers every request path
//! with the metrics (it has nothing else) and closes the connection after each answer.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::api::StatusReport;

/// A family being written: its samples follow its HELP/TYPE header.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    Family { out, name }
}

/// The metrics text of `status`.
pub fn render(status: &StatusReport) -> String {
    let mut out = String::new();
    const STATES: [&str; 4] = ["up", "down", "probing", "draining"];
    let mut f = family(
        &mut out,
        "flowpin_uplink_state",
        "gauge",
        "1 for the uplink's current state (up, down, probing, draining).",
    );
    for u in &status.uplinks {
        for state in STATES {
            let on = if u.state == state { 1.0 } else { 0.0 };
            f.sample(&[("uplink", &u.name), ("state", state)], on);
        }
    }
    type Field = fn(&super::api::UplinkStatus) -> Option<f64>;
    let per_uplink: [(&'static str, &str, &str, Field); 18] = [
        (
            "flowpin_uplink_eligible",
            "gauge",
            "1 when the uplink takes new flows.",
            |u| Some(f64::from(u8::from(u.eligible))),
        ),
        ("flowpin_uplink_weight", "gauge", "Weight in force.", |u| {
            Some(f64::from(u.weight))
        }),
        (
            "flowpin_uplink_probe_loss_ratio",
            "gauge",
            "Probe loss over the health window (0-1).",
            |u| u.probe_loss_percent.map(|p| p / 100.0),
        ),
        (
            "flowpin_uplink_probe_rtt_seconds",
            "gauge",
            "Mean probe RTT over the health window.",
            |u| u.probe_rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "flowpin_uplink_flows",
            "gauge",
            "Live flows pinned to the uplink.",
            |u| Some(u.flows as f64),
        ),
        (
            "flowpin_uplink_flows_created_total",
            "counter",
            "Flows created on the uplink (its rate is the uplink's new flows per second).",
            |u| Some(u.flows_created as f64),
        ),
        (
            "flowpin_uplink_tx_packets_total",
            "counter",
            "Packets sent out of the uplink (LAN to internet).",
            |u| Some(u.tx_packets as f64),
        ),
        (
            "flowpin_uplink_tx_bytes_total",
            "counter",
            "Bytes sent out of the uplink.",
            |u| Some(u.tx_bytes as f64),
        ),
        (
            "flowpin_uplink_rx_packets_total",
            "counter",
            "Packets received on the uplink and delivered to the LAN.",
            |u| Some(u.rx_packets as f64),
        ),
        (
            "flowpin_uplink_rx_bytes_total",
            "counter",
            "Bytes received on the uplink and delivered to the LAN.",
            |u| Some(u.rx_bytes as f64),
        ),
        (
            "flowpin_uplink_state_changes_total",
            "counter",
            "Health state changes.",
            |u| Some(u.state_changes as f64),
        ),
        (
            "flowpin_uplink_failovers_total",
            "counter",
            "Times the uplink's flows were failed over.",
            |u| Some(u.failovers as f64),
        ),
        (
            "flowpin_uplink_flows_failed_over_total",
            "counter",
            "Flows moved or reset away by failover.",
            |u| Some(u.flows_failed_over as f64),
        ),
        (
            "flowpin_uplink_flows_failed_back_total",
            "counter",
            "Flows moved back by failback.",
            |u| Some(u.flows_failed_back as f64),
        ),
        (
            "flowpin_uplink_tcp_handshakes_started_total",
            "counter",
            "New TCP flows opened on the uplink by a SYN (passive health signal).",
            |u| Some(u.tcp_handshakes_started as f64),
        ),
        (
            "flowpin_uplink_tcp_handshakes_answered_total",
            "counter",
            "New TCP flows on the uplink whose SYN-ACK came back (passive health signal).",
            |u| Some(u.tcp_handshakes_answered as f64),
        ),
        (
            "flowpin_uplink_tcp_handshakes_unanswered_in_a_row",
            "gauge",
            "New TCP flows in a row since the last SYN-ACK that got none within the answer window.",
            |u| Some(u.tcp_handshakes_unanswered_in_a_row as f64),
        ),
        (
            "flowpin_uplink_passive_downs_total",
            "counter",
            "Times the passive handshake trigger took the uplink down.",
            |u| Some(u.passive_downs as f64),
        ),
    ];
    for (name, kind, help, field) in per_uplink {
        let mut f = family(&mut out, name, kind, help);
        for u in &status.uplinks {
            if let Some(value) = field(u) {
                f.sample(&[("uplink", &u.name)], value);
            }
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_flows",
        "gauge",
        "Live flows in the table.",
    );
    f.sample(&[], status.flows as f64);
    let mut f = family(
        &mut out,
        "flowpin_flow_capacity",
        "gauge",
        "Capacity of the flow table.",
    );
    f.sample(&[], status.flow_capacity as f64);
    let mut f = family(
        &mut out,
        "flowpin_flows_early_dropped_total",
        "counter",
        "Flows that never got a reply, removed to make room for a new flow while the table was full.",
    );
    f.sample(&[], status.flows_early_dropped as f64);
    let mut f = family(
        &mut out,
        "flowpin_icmp_suppressed_total",
        "counter",
        "ICMP answers to refused new flows that the per-worker rate limit suppressed, by kind.",
    );
    for (kind, n) in &status.icmp_suppressed {
        f.sample(&[("kind", kind)], *n as f64);
    }
    let mut f = family(
        &mut out,
        "flowpin_drops_total",
        "counter",
        "Frames the datapath dropped, by reason.",
    );
    for (reason, n) in &status.drops {
        f.sample(&[("reason", reason)], *n as f64);
    }
    let mut f = family(
        &mut out,
        "flowpin_xdp_decisions_total",
        "counter",
        "The XDP program's decisions, in packets.",
    );
    for (decision, n) in &status.xdp {
        f.sample(&[("decision", decision)], *n as f64);
    }
    type WorkerField = fn(&super::api::WorkerStatus) -> u64;
    let per_worker: [(&'static str, &str, WorkerField); 6] = [
        (
            "flowpin_worker_rx_frames_total",
            "Frames the worker received.",
            |w| w.rx_frames,
        ),
        (
            "flowpin_worker_tx_frames_total",
            "Frames the worker queued for transmission (refused ones are counted as drops).",
            |w| w.tx_frames,
        ),
        (
            "flowpin_worker_batches_total",
            "Batches the worker processed.",
            |w| w.batches,
        ),
        (
            "flowpin_worker_outbound_packets_total",
            "Packets the worker received on the LAN and translated out of an uplink.",
            |w| w.outbound_packets,
        ),
        (
            "flowpin_worker_inbound_packets_total",
            "Packets the worker received on an uplink and translated to the LAN (replies arrive on the queue the uplink's RSS picks, whichever worker created the flow).",
            |w| w.inbound_packets,
        ),
        (
            "flowpin_worker_flows_created_total",
            "Flows the worker created.",
            |w| w.flows_created,
        ),
    ];
    for (name, help, field) in per_worker {
        let mut f = family(&mut out, name, "counter", help);
        for w in &status.workers {
            f.sample(&[("worker", &w.index.to_string())], field(w) as f64);
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_worker_batch_size_mean",
        "gauge",
        "Mean frames per received batch since start; rate(flowpin_worker_rx_frames_total) / rate(flowpin_worker_batches_total) gives it over any window.",
    );
    for w in &status.workers {
        if let Some(mean) = mean_batch_size(w) {
            f.sample(&[("worker", &w.index.to_string())], mean);
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_worker_frames",
        "gauge",
        "UMEM frames of the worker in each state (free, fill, rx, in_flight, tx, completion; they sum to flowpin_worker_umem_frames), as the worker last published them (every 64 batches and when idle).",
    );
    for w in &status.workers {
        if let Some(frames) = &w.frames {
            let worker = w.index.to_string();
            for (state, n) in frames.states() {
                f.sample(&[("worker", &worker), ("state", state)], n as f64);
            }
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_worker_umem_frames",
        "gauge",
        "Frames in the worker's UMEM.",
    );
    for w in &status.workers {
        if let Some(frames) = &w.frames {
            f.sample(&[("worker", &w.index.to_string())], frames.total as f64);
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_xsk_kernel_total",
        "counter",
        "The kernel's counters of each worker's AF_XDP socket per port (lan or uplink name), as the worker last read them (every 64 batches and when idle): rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full (frames lost: the worker did not drain the RX ring in time), rx_fill_ring_empty_descs (frames lost: no UMEM frame in the fill ring), tx_ring_empty_descs. They restart from 0 when a reload reopens the sockets.",
    );
    for w in &status.workers {
        let worker = w.index.to_string();
        for socket in &w.sockets {
            for (counter, n) in socket.counters() {
                f.sample(
                    &[
                        ("worker", &worker),
                        ("port", &socket.port),
                        ("counter", counter),
                    ],
                    n as f64,
                );
            }
        }
    }
    let mut f = family(
        &mut out,
        "flowpin_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    f.sample(&[("result", "applied")], status.reloads as f64);
    f.sample(&[("result", "rejected")], status.reloads_failed as f64);
    let mut f = family(
        &mut out,
        "flowpin_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    f.sample(&[], status.uptime_s as f64);
    out
}

/// A worker's mean batch size since start: every frame it received was processed in one of its
/// batches. `None` before its first batch.
fn mean_batch_size(worker: &super::api::WorkerStatus) -> Option<f64> {
    (worker.batches > 0).then(|| worker.rx_frames as f64 / worker.batches as f64)
}

/// Serves `metrics()` to every HTTP request on `listener`, one connection at a time, forever.
pub fn serve(listener: TcpListener, metrics: &dyn Fn() -> String) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = [0u8; 2048];
        let mut read = 0;
        // Read the request head (we need nothing from it).
        while read < request.len() {
            match conn.read(&mut request[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    read += n;
                    if request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        let body = metrics();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{UplinkStatus, WorkerStatus};

    /// Every line is a comment or `name{labels} value` with a parsable value, and each sample's family
    /// was announced before it.
    pub fn assert_prometheus_text(text: &str) {
        let mut announced = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.insert(rest.split(' ').next().unwrap().to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            value.parse::<f64>().expect(line);
            let name = series.split('{').next().unwrap();
            assert!(announced.contains(name), "{name} sampled before its TYPE");
            assert!(!series.contains('{') || series.ends_with('}'), "{line}");
        }
    }

    #[test]
    fn status_renders_as_prometheus_text_with_escaped_labels() {
        let status = StatusReport {
            flows: 3,
            uplinks: vec![UplinkStatus {
                name: "isp\"1".into(),
                state: "down".into(),
                probe_loss_percent: Some(50.0),
                tx_packets: 42,
                tcp_handshakes_started: 12,
                tcp_handshakes_answered: 4,
                tcp_handshakes_unanswered_in_a_row: 8,
                passive_downs: 1,
                ..Default::default()
            }],
            drops: vec![("no_uplink".into(), 9)],
            workers: vec![WorkerStatus {
                index: 0,
                batches: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&status);
        assert_prometheus_text(&text);
        assert!(
            text.contains("flowpin_uplink_state{uplink=\"isp\\\"1\",state=\"down\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("flowpin_uplink_state{uplink=\"isp\\\"1\",state=\"up\"} 0\n"));
        assert!(text.contains("flowpin_uplink_tx_packets_total{uplink=\"isp\\\"1\"} 42\n"));
        assert!(text.contains("flowpin_uplink_probe_loss_ratio{uplink=\"isp\\\"1\"} 0.5\n"));
        assert!(
            !text.contains("flowpin_uplink_probe_rtt_seconds{"),
            "no RTT without answers"
        );
        assert!(text.contains("flowpin_drops_total{reason=\"no_uplink\"} 9\n"));
        for (family, value) in [
            ("flowpin_uplink_tcp_handshakes_started_total", 12),
            ("flowpin_uplink_tcp_handshakes_answered_total", 4),
            ("flowpin_uplink_tcp_handshakes_unanswered_in_a_row", 8),
            ("flowpin_uplink_passive_downs_total", 1),
        ] {
            let sample = format!("{family}{{uplink=\"isp\\\"1\"}} {value}\n");
            assert!(text.contains(&sample), "{sample} in {text}");
        }
        assert!(text.contains("flowpin_worker_batches_total{worker=\"0\"} 5\n"));
    }

    #[test]
    fn new_flows_per_uplink_and_batch_sizes_per_worker_are_exported() {
        let status = StatusReport {
            uplinks: vec![
                UplinkStatus {
                    name: "isp1".into(),
                    flows_created: 17,
                    ..Default::default()
                },
                UplinkStatus {
                    name: "isp2".into(),
                    flows_created: 0,
                    ..Default::default()
                },
            ],
            workers: vec![
                WorkerStatus {
                    index: 0,
                    rx_frames: 96,
                    batches: 32,
                    inbound_packets: 40,
                    ..Default::default()
                },
                WorkerStatus {
                    index: 1,
                    rx_frames: 0,
                    batches: 0,
                    ..Default::default()
                },
                WorkerStatus {
                    index: 2,
                    rx_frames: 5,
                    batches: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = render(&status);
        assert_prometheus_text(&text);
        // New flows per second is the rate of a counter, one series per uplink.
        assert!(text.contains("# TYPE flowpin_uplink_flows_created_total counter\n"));
        assert!(text.contains("flowpin_uplink_flows_created_total{uplink=\"isp1\"} 17\n"));
        assert!(text.contains("flowpin_uplink_flows_created_total{uplink=\"isp2\"} 0\n"));
        // The mean batch size is frames per batch; a worker with no batch yet has no sample.
        assert!(text.contains("# TYPE flowpin_worker_batch_size_mean gauge\n"));
        assert!(
            text.contains("flowpin_worker_batch_size_mean{worker=\"0\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("flowpin_worker_batch_size_mean{worker=\"2\"} 2.5\n"));
        assert!(!text.contains("flowpin_worker_batch_size_mean{worker=\"1\"}"));
        assert!(text.contains("flowpin_worker_batches_total{worker=\"1\"} 0\n"));
        // Per-worker translations: a worker translates replies of flows other workers created.
        assert!(text.contains("# TYPE flowpin_worker_inbound_packets_total counter\n"));
        assert!(text.contains("flowpin_worker_inbound_packets_total{worker=\"0\"} 40\n"));
        assert!(text.contains("flowpin_worker_outbound_packets_total{worker=\"2\"} 0\n"));
        assert!(text.contains("flowpin_worker_flows_created_total{worker=\"1\"} 0\n"));
    }

    #[test]
    fn frames_per_state_are_exported_per_worker_and_sum_to_the_umem() {
        use crate::xsk::FrameAccounting;
        let frames = FrameAccounting {
            total: 4096,
            free: 1000,
            fill: 2900,
            rx: 60,
            in_flight: 0,
            tx: 100,
            completion: 36,
        };
        let status = StatusReport {
            workers: vec![
                WorkerStatus {
                    index: 0,
                    frames: Some(frames),
                    ..Default::default()
                },
                WorkerStatus {
                    index: 1,
                    frames: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = render(&status);
        assert_prometheus_text(&text);
        assert!(text.contains("# TYPE flowpin_worker_frames gauge\n"));
        let mut sum = 0.0;
        for state in ["free", "fill", "rx", "in_flight", "tx", "completion"] {
            let prefix = format!("flowpin_worker_frames{{worker=\"0\",state=\"{state}\"}} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {text}"));
            sum += line[prefix.len()..].parse::<f64>().unwrap();
        }
        assert_eq!(sum, 4096.0, "the states sum to the UMEM");
        assert!(text.contains("flowpin_worker_frames{worker=\"0\",state=\"fill\"} 2900\n"));
        assert!(text.contains("flowpin_worker_umem_frames{worker=\"0\"} 4096\n"));
        assert!(
            !text.contains("flowpin_worker_frames{worker=\"1\""),
            "a worker that has not published has no sample"
        );
    }

    #[test]
    fn kernel_socket_counters_are_exported_per_worker_port_and_counter() {
        use crate::control::api::XskSocketStatus;
        let status = StatusReport {
            flows_early_dropped: 9,
            icmp_suppressed: vec![("net_unreachable".into(), 4), ("port_exhausted".into(), 6)],
            workers: vec![
                WorkerStatus {
                    index: 0,
                    sockets: vec![
                        XskSocketStatus {
                            port: "lan".into(),
                            kernel: crate::xsk::KernelSocketStats {
                                rx_dropped: 120,
                                rx_ring_full: 100,
                                rx_fill_ring_empty_descs: 20,
                                ..Default::default()
                            },
                        },
                        XskSocketStatus {
                            port: "isp1".into(),
                            kernel: crate::xsk::KernelSocketStats {
                                tx_ring_empty_descs: 3,
                                ..Default::default()
                            },
                        },
                    ],
                    ..Default::default()
                },
                WorkerStatus {
                    index: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = render(&status);
        assert_prometheus_text(&text);
        assert!(text.contains("# TYPE flowpin_xsk_kernel_total counter\n"));
        assert!(text.contains(
            "flowpin_xsk_kernel_total{worker=\"0\",port=\"lan\",counter=\"rx_ring_full\"} 100\n"
        ));
        assert!(text.contains(
            "flowpin_xsk_kernel_total{worker=\"0\",port=\"lan\",counter=\"rx_fill_ring_empty_descs\"} 20\n"
        ));
        assert!(text.contains(
            "flowpin_xsk_kernel_total{worker=\"0\",port=\"isp1\",counter=\"tx_ring_empty_descs\"} 3\n"
        ));
        let series = text
            .lines()
            .filter(|l| l.starts_with("flowpin_xsk_kernel_total{"))
            .count();
        assert_eq!(series, 12, "six counters for each of the two sockets");
        assert!(
            !text.contains("flowpin_xsk_kernel_total{worker=\"1\""),
            "a worker with no reading has no sample"
        );
        assert!(text.contains("# TYPE flowpin_flows_early_dropped_total counter\n"));
        assert!(text.contains("flowpin_flows_early_dropped_total 9\n"));
        assert!(text.contains("# TYPE flowpin_icmp_suppressed_total counter\n"));
        assert!(text.contains("flowpin_icmp_suppressed_total{kind=\"net_unreachable\"} 4\n"));
        assert!(text.contains("flowpin_icmp_suppressed_total{kind=\"port_exhausted\"} 6\n"));
    }

    #[test]
    fn the_server_answers_http_on_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, &|| "flowpin_flows 1\n".to_owned()));
        let mut conn = std::net::TcpStream::connect(address).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("version=0.0.4"));
        assert!(answer.ends_with("\r\n\r\nflowpin_flows 1\n"), "{answer}");
    }
}
