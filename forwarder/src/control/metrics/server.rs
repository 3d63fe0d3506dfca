//! The metrics endpoint's server, on the daemon's tokio runtime.
//!
//! Limits ([`Limits::DEFAULT`]): at most 8 clients at once (another gets `503` and is closed); a
//! request head must arrive whole within 5 s and be at most 8 KiB; the answer must be written within
//! 10 s; then the connection is closed. So a slow or idle client holds a slot for at most 15 s and
//! never blocks the others or the daemon. Every refusal is counted in [`SurfaceCounters`].
//!
//! Invariant: the metrics are rendered on a blocking thread (`render` takes the daemon's lock).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::http::{self, Route};
use crate::control::surface_counters::{SurfaceCounters, bump};

/// The endpoint's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Clients served at once.
    pub max_clients: usize,
    /// How long the whole request head may take to arrive.
    pub read_timeout: Duration,
    /// How long writing the whole answer may take.
    pub write_timeout: Duration,
}

impl Limits {
    /// The limits the daemon serves with.
    pub const DEFAULT: Limits = Limits {
        max_clients: 8,
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(10),
    };
}

/// Renders the body of a route that has one: the metrics text for [`Route::Metrics`], the status
/// JSON for [`Route::StatusJson`] (called on a blocking thread).
pub type Render = Arc<dyn Fn(Route) -> String + Send + Sync>;

/// Serves `listener` forever on the current tokio runtime.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    counters: Arc<SurfaceCounters>,
    render: Render,
) {
    let clients = Arc::new(Semaphore::new(limits.max_clients));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            bump(&counters.metrics_refused);
            refuse(&stream);
            continue;
        };
        let counters = counters.clone();
        let render = render.clone();
        tokio::spawn(async move {
            client(stream, limits, &counters, render).await;
            drop(permit);
        });
    }
}

/// Answers `503` without waiting: what the client sent already is read first (so closing sends no
/// reset that could discard the answer), and a fresh socket's send buffer takes the answer whole.
fn refuse(stream: &TcpStream) {
    let mut sink = [0u8; 2048];
    for _ in 0..4 {
        if !matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = stream.try_write(http::busy());
}

/// Serves one client: its request head within the read deadline, the answer within the write one.
async fn client(mut stream: TcpStream, limits: Limits, counters: &SurfaceCounters, render: Render) {
    // 1. The head, or a 400 when it outgrows the limit.
    let head = match tokio::time::timeout(limits.read_timeout, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(_) => return bump(&counters.metrics_timeouts),
    };
    // 2. Where it goes, counted; the metrics are rendered only when asked for.
    let route = if head.len() > http::MAX_HEAD {
        Route::BadRequest
    } else {
        http::route(&head)
    };
    bump(counter_of(counters, route));
    let body = match route {
        Route::Metrics { .. } | Route::StatusJson { .. } => {
            tokio::task::spawn_blocking(move || render(route))
                .await
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    // 3. The answer, then close.
    let answer = http::answer(route, &body);
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if written.is_err() {
        bump(&counters.metrics_timeouts);
    }
}

/// Reads until the head is complete or over the limit (returned as is); `None` when the client
/// closed or the socket failed first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !http::head_complete(&head) && head.len() <= http::MAX_HEAD {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

/// The counter of answers to `route`.
fn counter_of(counters: &SurfaceCounters, route: Route) -> &AtomicU64 {
    match route {
        Route::Metrics { .. } | Route::Page { .. } | Route::StatusJson { .. } => {
            &counters.metrics_ok
        }
        Route::NotFound => &counters.metrics_not_found,
        Route::MethodNotAllowed => &counters.metrics_bad_method,
        Route::BadRequest => &counters.metrics_bad_request,
    }
}
