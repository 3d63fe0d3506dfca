//! The control socket's server side: binding the root-only Unix socket, and serving newline-delimited
//! JSON requests on the daemon's tokio runtime within fixed limits.
//!
//! Limits ([`Limits::DEFAULT`]): at most 64 connections hold a slot ([`connection_slots`]: a new one
//! displaces the longest-waiting one, and is refused with a one-line error only when every slot is
//! serving a request); a request line is at most 16 KiB ([`request_lines`]: a longer one gets an
//! error line and the connection is closed); a request must arrive whole within 10 s of the
//! connection starting to wait for it, and an answer must be written within 10 s, else the
//! connection is closed. Every refusal is counted in [`SurfaceCounters`].
//!
//! Invariants: the socket file is mode 0600; its directory's mode is changed (to 0700) only when
//! flowpin created that directory; a request is answered by `handler` on a blocking thread, so a
//! slow answer (a whole-table scan, a reload) never stalls the runtime or the other connections.

pub mod connection_slots;
pub mod request_lines;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

use crate::control::api::{Request, Response};
use crate::control::surface_counters::{SurfaceCounters, bump};
use connection_slots::{Admission, ConnectionSlots};
use request_lines::{RequestError, RequestLines, parse_request};

/// The control socket's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections holding a slot at once.
    pub max_connections: usize,
    /// The longest request line, in bytes.
    pub max_line: usize,
    /// How long a connection may take to deliver a whole request line once it waits for one.
    pub request_timeout: Duration,
    /// How long writing one answer may take.
    pub write_timeout: Duration,
}

impl Limits {
    /// The limits the daemon serves with.
    pub const DEFAULT: Limits = Limits {
        max_connections: 64,
        max_line: request_lines::MAX_REQUEST_LINE,
        request_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
    };
}

/// Answers one request (called on a blocking thread).
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Returns a listener on a socket file of mode 0600 at `path`, replacing a stale socket file. The
/// directory is created when missing, and only then made 0700: an existing directory (`/run`) keeps
/// its mode.
pub fn bind(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What every connection of one server shares.
struct Shared {
    slots: Mutex<ConnectionSlots<Arc<Notify>>>,
    limits: Limits,
    counters: Arc<SurfaceCounters>,
    handler: Handler,
}

/// Serves `listener` forever on the current tokio runtime.
pub async fn serve(
    listener: tokio::net::UnixListener,
    limits: Limits,
    counters: Arc<SurfaceCounters>,
    handler: Handler,
) {
    let shared = Arc::new(Shared {
        slots: Mutex::new(ConnectionSlots::new(limits.max_connections)),
        limits,
        counters,
        handler,
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: let connections end before accepting again.
                tracing::warn!(%error, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        admit(&shared, stream);
    }
}

/// Gives `stream` a slot (displacing the longest-waiting connection when full) or refuses it.
fn admit(shared: &Arc<Shared>, stream: UnixStream) {
    let displace = Arc::new(Notify::new());
    let admission = lock(&shared.slots).admit(Instant::now(), displace.clone());
    match admission {
        Admission::Refused => {
            bump(&shared.counters.api_connections_refused);
            let refusal = error_line(&format!(
                "too many control connections (all {} are answering a request); try again",
                shared.limits.max_connections
            ));
            // A fresh socket's buffer is empty: the line fits without waiting.
            let _ = stream.try_write(refusal.as_bytes());
        }
        Admission::Admitted { id, evicted } => {
            if let Some(evicted) = evicted {
                bump(&shared.counters.api_connections_displaced);
                evicted.notify_one();
            }
            bump(&shared.counters.api_connections_accepted);
            bump(&shared.counters.api_connections_open);
            let slot = SlotGuard {
                shared: shared.clone(),
                id,
            };
            tokio::spawn(connection(stream, slot, displace));
        }
    }
}

/// A connection's hold on its slot, released when the connection ends.
struct SlotGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl SlotGuard {
    /// Marks the connection serving (`true`) or waiting from now (`false`).
    fn set_serving(&self, serving: bool) {
        let mut slots = lock(&self.shared.slots);
        if serving {
            slots.serving(self.id);
        } else {
            slots.waiting(self.id, Instant::now());
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.shared.slots).release(self.id);
        self.shared
            .counters
            .api_connections_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why a connection stops reading.
enum Ending {
    /// The peer closed, or the socket failed.
    Closed,
    /// Another connection took its slot.
    Displaced,
    /// The request line did not arrive whole in time.
    TimedOut,
    /// The request line is over the limit.
    TooLong(RequestError),
}

/// Serves one connection: request lines in, one answer line each, until it ends.
async fn connection(stream: UnixStream, slot: SlotGuard, displaced: Arc<Notify>) {
    let shared = slot.shared.clone();
    let (mut reader, mut writer) = stream.into_split();
    let mut lines = RequestLines::new(shared.limits.max_line);
    loop {
        // 1. The next whole line, within the deadline, unless displaced.
        let line = match next_line(&mut reader, &mut lines, &shared.limits, &displaced).await {
            Ok(line) => line,
            Err(ending) => return end(&shared, &mut writer, ending).await,
        };
        // 2. Parse it; a bad line gets an error answer and the connection goes on.
        let response = match parse_request(&line) {
            Ok(None) => continue,
            Ok(Some(request)) => {
                // 3. Answer on a blocking thread, never displaced meanwhile.
                slot.set_serving(true);
                let handler = shared.handler.clone();
                let answer = tokio::task::spawn_blocking(move || handler(request)).await;
                answer.unwrap_or_else(|e| Response::Error {
                    message: format!("the daemon failed to answer: {e}"),
                })
            }
            Err(error) => Response::Error {
                message: error.to_string(),
            },
        };
        // 4. Write the answer within the deadline, then wait for the next request.
        let written = write_line(&mut writer, &response_line(&response), &shared.limits).await;
        slot.set_serving(false);
        if !written {
            bump(&shared.counters.api_timeouts);
            return;
        }
    }
}

/// Reads until `lines` holds a whole line.
async fn next_line(
    reader: &mut OwnedReadHalf,
    lines: &mut RequestLines,
    limits: &Limits,
    displaced: &Notify,
) -> Result<Vec<u8>, Ending> {
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(line) = lines.next_line().map_err(Ending::TooLong)? {
            return Ok(line);
        }
        tokio::select! {
            read = reader.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return Err(Ending::Closed),
                Ok(n) => lines.push(&chunk[..n]),
            },
            () = displaced.notified() => return Err(Ending::Displaced),
            () = tokio::time::sleep_until(deadline) => return Err(Ending::TimedOut),
        }
    }
}

/// Ends a connection that stopped reading: counted, and told why when it is not gone already.
async fn end(shared: &Shared, writer: &mut OwnedWriteHalf, ending: Ending) {
    let message = match ending {
        Ending::Closed => return,
        Ending::Displaced => {
            "closed: every control connection slot was taken and this one had waited longest"
                .to_owned()
        }
        Ending::TimedOut => {
            bump(&shared.counters.api_timeouts);
            format!(
                "closed: no whole request within {} s",
                shared.limits.request_timeout.as_secs()
            )
        }
        Ending::TooLong(error) => {
            bump(&shared.counters.api_requests_too_long);
            error.to_string()
        }
    };
    write_line(writer, &error_line(&message), &shared.limits).await;
    let _ = writer.shutdown().await;
}

/// Writes `line` within the write deadline; `false` when it failed or timed out.
async fn write_line(writer: &mut OwnedWriteHalf, line: &str, limits: &Limits) -> bool {
    matches!(
        tokio::time::timeout(limits.write_timeout, writer.write_all(line.as_bytes())).await,
        Ok(Ok(()))
    )
}

/// `response` as one JSON line.
fn response_line(response: &Response) -> String {
    let mut line = serde_json::to_string(response).unwrap_or_else(|e| {
        serde_json::to_string(&Response::Error {
            message: format!("cannot encode the answer: {e}"),
        })
        .unwrap_or_default()
    });
    line.push('\n');
    line
}

/// An error answer as one JSON line.
fn error_line(message: &str) -> String {
    response_line(&Response::Error {
        message: message.to_owned(),
    })
}

/// The slots, locked (a poisoned lock is still consistent: every change is one call).
fn lock<T>(slots: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
