//! The threads that answer from outside: the control socket (one thread per connection) and the
//! metrics endpoint.
//!
//! Invariants: each request is served under the daemon's lock, so it sees one consistent state and
//! never races the control loop; typed errors become the API's error replies by their text.

use std::fmt::Display;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::Daemon;
use crate::control::api::{self, Request, Response};
use crate::control::metrics;

/// Serves the control socket at `socket_path` on a thread of its own.
pub(super) fn spawn_api(socket_path: &Path, daemon: &Arc<Mutex<Daemon>>) -> Result<()> {
    let listener = api::bind(socket_path)
        .with_context(|| format!("binding the control socket {}", socket_path.display()))?;
    let daemon = daemon.clone();
    std::thread::Builder::new()
        .name("flowpin-api".into())
        .spawn(move || serve_api(listener, daemon))?;
    Ok(())
}

/// Serves the metrics endpoint on `listener` on a thread of its own.
pub(super) fn spawn_metrics(
    listener: std::net::TcpListener,
    daemon: &Arc<Mutex<Daemon>>,
) -> Result<()> {
    tracing::info!(address = %listener.local_addr()?, "metrics endpoint");
    let daemon = daemon.clone();
    std::thread::Builder::new()
        .name("flowpin-metrics".into())
        .spawn(move || {
            metrics::serve(listener, &|| {
                metrics::render(&daemon.lock().expect("daemon lock").status())
            })
        })?;
    Ok(())
}

/// Accepts connections, each served on a thread of its own.
fn serve_api(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let daemon = daemon.clone();
        let _ = std::thread::Builder::new()
            .name("flowpin-api-conn".into())
            .spawn(move || {
                let _ = api::serve_connection(conn, &|request| answer(&daemon, request));
            });
    }
}

/// The daemon's answer to one request.
fn answer(daemon: &Mutex<Daemon>, request: Request) -> Response {
    let mut d = daemon.lock().expect("daemon lock");
    match request {
        Request::Status => Response::Status(d.status()),
        Request::Flows(filter) => Response::Flows(d.flows(&filter)),
        Request::Explain(query) => Response::Explain(d.explain(&query)),
        Request::Reload => {
            let result = d.reload();
            if let Err(error) = &result {
                tracing::error!(%error, "reload rejected; keeping the running configuration");
            }
            done(result)
        }
        Request::Uplink(command) => done(d.uplink_command(&command)),
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
