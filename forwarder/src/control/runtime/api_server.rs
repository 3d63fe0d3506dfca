//! The tasks that answer from outside, on the daemon's tokio runtime: the control socket and the
//! metrics endpoint (their limits: [`control_socket`], [`metrics::server`]).
//!
//! Invariants: each request takes the daemon's lock only for what needs one consistent state —
//! never for a whole-table scan: `status`, `flows` and `explain` take what the scan needs under the
//! lock ([`FlowScan`]), scan the lock-free table without it, and lock again only to finish (status
//! counters, at most 100 explanations); typed errors become the API's error replies by their text.

use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};

use super::Daemon;
use super::flow_scan::FlowScan;
use crate::control::api::{Request, Response, StatusReport};
use crate::control::surface_counters::SurfaceCounters;
use crate::control::{control_socket, metrics};

/// Serves the control socket at `socket_path` on the current runtime.
pub(super) fn spawn_api(
    socket_path: &Path,
    daemon: &Arc<Mutex<Daemon>>,
    counters: &Arc<SurfaceCounters>,
) -> Result<()> {
    let bound = || -> std::io::Result<tokio::net::UnixListener> {
        let listener = control_socket::bind(socket_path)?;
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener)
    };
    let listener =
        bound().with_context(|| format!("binding the control socket {}", socket_path.display()))?;
    let daemon = daemon.clone();
    let handler: control_socket::Handler = Arc::new(move |request| answer(&daemon, request));
    tokio::spawn(control_socket::serve(
        listener,
        control_socket::Limits::DEFAULT,
        counters.clone(),
        handler,
    ));
    Ok(())
}

/// Serves the metrics endpoint on `listener` on the current runtime.
pub(super) fn spawn_metrics(
    listener: std::net::TcpListener,
    daemon: &Arc<Mutex<Daemon>>,
    counters: &Arc<SurfaceCounters>,
) -> Result<()> {
    tracing::info!(address = %listener.local_addr()?, "metrics endpoint");
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let daemon = daemon.clone();
    let render: metrics::server::Render = Arc::new(move |route| match route {
        metrics::http::Route::StatusJson { .. } => status_page_data(&daemon),
        _ => metrics::render(&status(&daemon)),
    });
    tokio::spawn(metrics::server::serve(
        listener,
        metrics::server::Limits::DEFAULT,
        counters.clone(),
        render,
    ));
    Ok(())
}

/// The daemon, locked.
fn lock(daemon: &Mutex<Daemon>) -> MutexGuard<'_, Daemon> {
    daemon.lock().expect("daemon lock")
}

/// `status`: the flow counts scanned without the lock, the rest under it.
fn status(daemon: &Mutex<Daemon>) -> StatusReport {
    let scan = lock(daemon).flow_scan();
    let counts = scan.counts();
    lock(daemon).status(counts)
}

/// How many flows per uplink the status page lists.
const STATUS_PAGE_TOP_FLOWS: usize = 5;

/// The status page's data: the status report and each uplink's busiest flows, as JSON (flows
/// scanned without the lock).
fn status_page_data(daemon: &Mutex<Daemon>) -> String {
    let scan = lock(daemon).flow_scan();
    let counts = scan.counts();
    let top_flows = scan.top_flows(STATUS_PAGE_TOP_FLOWS);
    let status = lock(daemon).status(counts);
    serde_json::json!({ "status": status, "top_flows": top_flows }).to_string()
}

/// The daemon's answer to one request (called on a blocking thread).
fn answer(daemon: &Mutex<Daemon>, request: Request) -> Response {
    match request {
        Request::Status => Response::Status(Box::new(status(daemon))),
        Request::Flows(filter) => {
            let scan: FlowScan = lock(daemon).flow_scan();
            Response::Flows(scan.flows(&filter))
        }
        Request::Explain(query) => {
            let scan = lock(daemon).flow_scan();
            let found = scan.matching(&query);
            Response::Explain(lock(daemon).explain(found))
        }
        Request::Reload => {
            let result = lock(daemon).reload();
            if let Err(error) = &result {
                tracing::error!(%error, "reload rejected; keeping the running configuration");
            }
            done(result)
        }
        Request::Uplink(command) => done(lock(daemon).uplink_command(&command)),
        Request::ExplainNew(query) => match lock(daemon).explain_new(&query) {
            Ok(explanation) => Response::ExplainNew(Box::new(explanation)),
            Err(message) => Response::Error { message },
        },
        Request::KillFlows(filter) => {
            let plan = lock(daemon).kill_plan(filter);
            match plan {
                Ok(plan) => {
                    let report = plan.run();
                    lock(daemon).count_kill(&report);
                    Response::Killed(report)
                }
                Err(refusal) => Response::Error {
                    message: refusal.to_string(),
                },
            }
        }
    }
}

/// A command's outcome as the API's reply: what was done, or why not.
fn done<E: Display>(result: Result<String, E>) -> Response {
    match result {
        Ok(message) => Response::Done { message },
        Err(error) => Response::Error {
            message: error.to_string(),
        },
    }
}
