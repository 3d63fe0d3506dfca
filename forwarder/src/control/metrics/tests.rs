//! The exposition checked line by line, and the server over loopback.

use super::*;
use crate::control::api::{UplinkStatus, WorkerStatus};
use crate::control::surface_counters::SurfaceCounters;
use std::io::{Read, Write};

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
            mss_clamped: 6,
            ..Default::default()
        }],
        drops: [("no_uplink".to_owned(), 9)].into(),
        workers: vec![WorkerStatus {
            index: 0,
            batches: 5,
            ..Default::default()
        }],
        guard_reinstalls: 2,
        ..Default::default()
    };
    let text = render(&status);
    assert!(text.contains("flowpin_guard_reinstalls_total{result=\"reinstalled\"} 2\n"));
    assert!(text.contains("flowpin_guard_reinstalls_total{result=\"failed\"} 0\n"));
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
        ("flowpin_uplink_mss_clamped_total", 6),
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
        flows_spilled: 4,
        fragments_followed: 5,
        fragments_held: 6,
        flow_hosts: 3,
        flow_share_pressure: 196_608,
        flow_fair_share: 65_536,
        icmp_suppressed: [
            ("net_unreachable".to_owned(), 4),
            ("port_exhausted".to_owned(), 6),
        ]
        .into(),
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
    assert!(text.contains("# TYPE flowpin_xsk_rx_ring_full_total counter\n"));
    assert!(text.contains("flowpin_xsk_rx_ring_full_total{worker=\"0\",port=\"lan\"} 100\n"));
    assert!(
        text.contains("flowpin_xsk_rx_fill_ring_empty_descs_total{worker=\"0\",port=\"lan\"} 20\n")
    );
    assert!(text.contains("flowpin_xsk_tx_ring_empty_descs_total{worker=\"0\",port=\"isp1\"} 3\n"));
    let families = text
        .lines()
        .filter(|l| l.starts_with("# TYPE flowpin_xsk_"))
        .count();
    assert_eq!(families, 6, "one family per kernel counter");
    let series = text
        .lines()
        .filter(|l| l.starts_with("flowpin_xsk_") && l.contains("_total{"))
        .count();
    assert_eq!(series, 12, "six counters for each of the two sockets");
    assert!(
        !text.contains("{worker=\"1\",port="),
        "a worker with no reading has no sample"
    );
    assert!(text.contains("# TYPE flowpin_flows_early_dropped_total counter\n"));
    assert!(text.contains("flowpin_flows_early_dropped_total 9\n"));
    assert!(text.contains("# TYPE flowpin_flows_spilled_total counter\n"));
    assert!(text.contains("flowpin_flows_spilled_total 4\n"));
    assert!(text.contains("flowpin_fragments_followed_total 5\n"));
    assert!(text.contains("flowpin_fragments_held_total 6\n"));
    assert!(text.contains("# TYPE flowpin_flow_hosts gauge\nflowpin_flow_hosts 3\n"));
    assert!(text.contains("flowpin_flow_share_pressure_flows 196608\n"));
    assert!(text.contains("flowpin_flow_fair_share_flows 65536\n"));
    assert!(text.contains("# TYPE flowpin_icmp_suppressed_total counter\n"));
    assert!(text.contains("flowpin_icmp_suppressed_total{kind=\"net_unreachable\"} 4\n"));
    assert!(text.contains("flowpin_icmp_suppressed_total{kind=\"port_exhausted\"} 6\n"));
}

#[test]
fn the_daemon_its_reloads_state_times_and_port_pools_have_families() {
    use crate::control::api::{LastReload, PortPoolStatus};
    let status = StatusReport {
        version: "1.2.3".into(),
        started_at_unix_s: 1_700_000_000.5,
        last_reload: LastReload {
            success: false,
            at_unix_s: 1_700_000_100.0,
            last_success_unix_s: 1_700_000_050.0,
        },
        flows_killed: 5,
        kill_resets_sent: 8,
        uplinks: vec![UplinkStatus {
            name: "isp1".into(),
            state_since_unix_s: 1_700_000_010.0,
            nat_ports: [
                (
                    "tcp".to_owned(),
                    PortPoolStatus {
                        in_use: 27_000,
                        size: 30_000,
                    },
                ),
                (
                    "udp".to_owned(),
                    PortPoolStatus {
                        in_use: 1,
                        size: 30_000,
                    },
                ),
            ]
            .into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let text = render(&status);
    assert_prometheus_text(&text);
    for sample in [
        "flowpin_build_info{version=\"1.2.3\"} 1\n",
        "process_start_time_seconds 1700000000.5\n",
        "flowpin_config_last_reload_successful 0\n",
        "flowpin_config_last_reload_timestamp_seconds 1700000100\n",
        "flowpin_config_last_reload_success_timestamp_seconds 1700000050\n",
        "flowpin_flows_killed_total 5\n",
        "flowpin_kill_resets_sent_total 8\n",
        "flowpin_uplink_state_change_timestamp_seconds{uplink=\"isp1\"} 1700000010\n",
        "flowpin_uplink_nat_ports_in_use{uplink=\"isp1\",proto=\"tcp\"} 27000\n",
        "flowpin_uplink_nat_ports{uplink=\"isp1\",proto=\"tcp\"} 30000\n",
        "flowpin_uplink_nat_ports_in_use{uplink=\"isp1\",proto=\"udp\"} 1\n",
    ] {
        assert!(text.contains(sample), "{sample} in {text}");
    }
}

/// Serves `text` as the metrics on loopback with `limits`, on a runtime thread of its own.
fn start(limits: server::Limits) -> (std::net::SocketAddr, std::sync::Arc<SurfaceCounters>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let counters = std::sync::Arc::new(SurfaceCounters::default());
    let served = counters.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let render: server::Render = std::sync::Arc::new(|_| "flowpin_flows 1\n".to_owned());
            server::serve(listener, limits, served, render).await;
        });
    });
    (address, counters)
}

fn ask(address: std::net::SocketAddr, request: &str) -> String {
    let mut conn = std::net::TcpStream::connect(address).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    // A refused client may see a reset after its answer: what arrived is what counts.
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_server_answers_metrics_404_and_405_on_loopback() {
    let (address, counters) = start(server::Limits::DEFAULT);
    let answer = ask(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("version=0.0.4"));
    assert!(answer.ends_with("\r\n\r\nflowpin_flows 1\n"), "{answer}");
    let answer = ask(address, "GET /other HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    let answer = ask(address, "DELETE /metrics HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    let report = counters.report();
    assert_eq!(
        (
            report.metrics_ok,
            report.metrics_not_found,
            report.metrics_bad_method
        ),
        (1, 1, 1)
    );
}

#[test]
fn slow_clients_are_cut_at_the_deadline_and_extra_ones_get_503() {
    let limits = server::Limits {
        max_clients: 2,
        read_timeout: std::time::Duration::from_secs(2),
        ..server::Limits::DEFAULT
    };
    let (address, counters) = start(limits);
    // Two slow-loris clients take both slots, sending the head one byte at a time.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut conn = std::net::TcpStream::connect(address).unwrap();
            conn.write_all(b"GET /metr").unwrap();
            conn
        })
        .collect();
    // A third is refused at once rather than queued behind them... once both hold their slot.
    let start = std::time::Instant::now();
    let refused = loop {
        let answer = ask(address, "GET /metrics HTTP/1.1\r\n\r\n");
        if answer.starts_with("HTTP/1.1 503 ") {
            break answer;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "never refused"
        );
    };
    assert!(refused.contains("Retry-After"), "{refused}");
    // The slow clients are closed at the read deadline, with nothing answered.
    for mut conn in slow {
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{answer:?}");
    }
    let report = counters.report();
    assert_eq!(report.metrics_timeouts, 2);
    assert!(report.metrics_refused >= 1);
    // Then a normal client is served again.
    let start = std::time::Instant::now();
    loop {
        let answer = ask(address, "GET /metrics HTTP/1.1\r\n\r\n");
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{answer}"
        );
    }
}

#[test]
fn probe_targets_are_labelled_by_uplink_and_target_and_hooks_by_result() {
    let status = StatusReport {
        uplinks: vec![UplinkStatus {
            name: "isp1".into(),
            probe_targets: vec![crate::control::api::ProbeTargetStatus {
                target: "dns 192.0.2.53:53".into(),
                loss_percent: 25.0,
                rtt_ms: Some(12.0),
                jitter_ms: None,
                last_failure: Some("DNS answered SERVFAIL".into()),
            }],
            ..UplinkStatus::default()
        }],
        hooks: crate::control::health::hooks::HookStatus {
            events: 4,
            succeeded: 3,
            failed: 1,
            timed_out: 2,
            dropped: 1,
            waiting: 0,
        },
        ..StatusReport::default()
    };
    let text = render(&status);
    assert_prometheus_text(&text);
    let labels = "{uplink=\"isp1\",target=\"dns 192.0.2.53:53\"}";
    assert!(text.contains(&format!("flowpin_probe_target_loss_ratio{labels} 0.25\n")));
    assert!(text.contains(&format!("flowpin_probe_target_rtt_seconds{labels} 0.012\n")));
    assert!(
        !text.contains("flowpin_probe_target_jitter_seconds{"),
        "no jitter sample below two answers"
    );
    assert!(text.contains("flowpin_hook_runs_total{result=\"timed_out\"} 2\n"));
    assert!(text.contains("flowpin_hook_runs_total{result=\"failed\"} 1\n"));
    assert!(text.contains("flowpin_hook_events_dropped_total 1\n"));
}

#[test]
fn forwards_render_their_flows_and_whether_they_open_per_uplink() {
    use crate::control::api::{ForwardStatus, ForwardUplinkStatus};
    let uplink = |name: &str, open, flows| ForwardUplinkStatus {
        uplink: name.into(),
        open,
        flows,
    };
    let status = StatusReport {
        forwards: vec![ForwardStatus {
            name: "web".into(),
            protocol: "tcp".into(),
            port: "8080".into(),
            to: "10.77.0.12:80".into(),
            uplinks: vec![uplink("isp1", true, 3), uplink("isp2", false, 0)],
        }],
        ..Default::default()
    };
    let text = render(&status);
    assert_prometheus_text(&text);
    assert!(
        text.contains("flowpin_forward_flows{forward=\"web\",uplink=\"isp1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("flowpin_forward_open{forward=\"web\",uplink=\"isp2\"} 0\n"),
        "{text}"
    );
    assert!(!render(&StatusReport::default()).contains("flowpin_forward_"));
}
