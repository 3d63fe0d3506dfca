//! State-change hooks: on every uplink health change, every executable in `[health] hooks_dir`
//! runs, in name order, with the change in its environment (the `mwan3.user` / VyOS hook
//! contract; `docs/operations.md` lists the variables).
//!
//! Invariants:
//! - the control loop only queues an event ([`Hooks::notify`] never waits): hooks run on a task of
//!   their own, one event at a time, one hook at a time, so every hook sees changes in order;
//! - the queue holds [`QUEUE_CAPACITY`] events; a change while hooks run waits in it, and one that
//!   finds it full is dropped and counted (`dropped`), never blocking the loop;
//! - a hook runs in a process group of its own, with a cleared environment, stdin from /dev/null;
//!   still running at `hook_timeout_ms`, its whole group is killed and it counts as timed out;
//! - its output (at most [`OUTPUT_LIMIT`] bytes per stream) is logged line by line;
//! - the directory is listed when an event is run (a reload or a new file takes effect at the next
//!   change): regular files (or links to them) with an execute bit, not hidden, not ending in `~`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Events waiting for their hooks at most.
pub const QUEUE_CAPACITY: usize = 256;
/// The most of a hook's stdout (and of its stderr) that is logged.
pub const OUTPUT_LIMIT: usize = 16 * 1024;
/// The `PATH` hooks run with.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One uplink state change, and how to run its hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// The uplink's name.
    pub uplink: String,
    /// Its interface.
    pub interface: String,
    /// The state it left (`up`, `down`, `probing`).
    pub old_state: &'static str,
    /// The state it entered.
    pub new_state: &'static str,
    /// Why, in words (`carrier lost`, `probes: 3/3 lost, loss 100 %`...).
    pub reason: String,
    /// The uplink's tier.
    pub tier: u8,
    /// The tier new flows (of the default group) use once the change is published; `None`: no
    /// uplink is eligible.
    pub tier_in_use: Option<u8>,
    /// When the change was seen.
    pub time: SystemTime,
    /// The directory whose executables run.
    pub dir: PathBuf,
    /// How long each may run.
    pub timeout: Duration,
}

/// Hook runs by outcome, and events dropped.
#[derive(Debug, Default)]
pub struct HookCounters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
    events: AtomicU64,
}

/// What `flowpin status` shows of the hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// State changes handed to the hooks since start.
    pub events: u64,
    /// Hook runs that exited 0.
    pub succeeded: u64,
    /// Hook runs that exited non-zero, were killed by a signal, or could not start.
    pub failed: u64,
    /// Hook runs killed at `hook_timeout_ms`.
    pub timed_out: u64,
    /// State changes dropped because the queue was full (their hooks never ran).
    pub dropped: u64,
    /// State changes waiting for their hooks now.
    pub waiting: u64,
}

/// The control plane's handle: queues events for the hook task.
#[derive(Debug)]
pub struct Hooks {
    queue: mpsc::Sender<(u64, HookEvent)>,
    counters: Arc<HookCounters>,
}

/// The task that runs queued events' hooks; spawn [`HookRunner::run`] on the control runtime.
#[derive(Debug)]
pub struct HookRunner {
    events: mpsc::Receiver<(u64, HookEvent)>,
    counters: Arc<HookCounters>,
}

impl HookRunner {
    /// Runs every queued event's hooks, in order, until the [`Hooks`] handle is dropped.
    pub async fn run(self) {
        run_events(self.events, self.counters).await;
    }
}

impl Hooks {
    /// The handle and the task it feeds (events queue until the task runs).
    pub fn new() -> (Self, HookRunner) {
        let (queue, events) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(HookCounters::default());
        let runner = HookRunner {
            events,
            counters: counters.clone(),
        };
        (Self { queue, counters }, runner)
    }

    /// The handle, its task spawned on the current tokio runtime.
    pub fn start() -> Self {
        let (hooks, runner) = Self::new();
        tokio::spawn(runner.run());
        hooks
    }

    /// Queues `event` (never waits); when the queue is full it is dropped and counted.
    pub fn notify(&self, event: HookEvent) {
        let sequence = self.counters.events.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(error) = self.queue.try_send((sequence, event)) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let (_, event) = match error {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            tracing::warn!(uplink = %event.uplink, state = event.new_state, "hook queue full: this change runs no hook");
        }
    }

    /// The counters, for status and the metrics.
    pub fn status(&self) -> HookStatus {
        let c = &self.counters;
        HookStatus {
            events: c.events.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            waiting: (QUEUE_CAPACITY - self.queue.capacity()) as u64,
        }
    }
}

async fn run_events(mut events: mpsc::Receiver<(u64, HookEvent)>, counters: Arc<HookCounters>) {
    while let Some((sequence, event)) = events.recv().await {
        let hooks = match list_hooks(&event.dir) {
            Ok(hooks) => hooks,
            Err(error) => {
                let dir = event.dir.display();
                tracing::warn!(%dir, %error, "listing the hooks directory");
                continue;
            }
        };
        for hook in hooks {
            let outcome = run_hook(&hook, &event, sequence).await;
            let counter = match outcome {
                HookOutcome::Succeeded => &counters.succeeded,
                HookOutcome::Failed => &counters.failed,
                HookOutcome::TimedOut => &counters.timed_out,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The executables of `dir`, by name.
pub fn list_hooks(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut hooks: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && !name.ends_with('~')
        })
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    hooks.sort();
    Ok(hooks)
}

/// The environment a hook gets for `event` (besides `PATH`).
pub fn environment(event: &HookEvent, sequence: u64) -> Vec<(&'static str, String)> {
    let unix = event
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let action = match event.new_state {
        "up" => "connected",
        "down" => "disconnected",
        other => other,
    };
    vec![
        ("FLOWPIN_UPLINK", event.uplink.clone()),
        ("FLOWPIN_INTERFACE", event.interface.clone()),
        ("FLOWPIN_OLD_STATE", event.old_state.to_owned()),
        ("FLOWPIN_NEW_STATE", event.new_state.to_owned()),
        ("FLOWPIN_ACTION", action.to_owned()),
        ("FLOWPIN_REASON", event.reason.clone()),
        ("FLOWPIN_TIER", event.tier.to_string()),
        (
            "FLOWPIN_TIER_IN_USE",
            event
                .tier_in_use
                .map_or_else(|| "none".to_owned(), |tier| tier.to_string()),
        ),
        ("FLOWPIN_TIME", rfc3339_utc(unix)),
        ("FLOWPIN_TIMESTAMP", unix.to_string()),
        ("FLOWPIN_EVENT_SEQUENCE", sequence.to_string()),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookOutcome {
    Succeeded,
    Failed,
    TimedOut,
}

async fn run_hook(hook: &Path, event: &HookEvent, sequence: u64) -> HookOutcome {
    let name = hook.display().to_string();
    let mut child = match tokio::process::Command::new(hook)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .envs(environment(event, sequence))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(hook = %name, %error, "hook could not start");
            return HookOutcome::Failed;
        }
    };
    let group = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = tokio::time::timeout(event.timeout, async {
        let (out, err, status) =
            tokio::join!(read_limited(stdout), read_limited(stderr), child.wait());
        log_output(&name, "stdout", &out);
        log_output(&name, "stderr", &err);
        status
    })
    .await;
    match finished {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(hook = %name, uplink = %event.uplink, state = event.new_state, "hook ran");
            HookOutcome::Succeeded
        }
        Ok(Ok(status)) => {
            tracing::warn!(hook = %name, uplink = %event.uplink, %status, "hook failed");
            HookOutcome::Failed
        }
        Ok(Err(error)) => {
            tracing::warn!(hook = %name, %error, "waiting for the hook");
            HookOutcome::Failed
        }
        Err(_) => {
            kill_group(group);
            let _ = child.kill().await;
            let timeout_ms = event.timeout.as_millis() as u64;
            tracing::warn!(hook = %name, uplink = %event.uplink, timeout_ms, "hook timed out: killed");
            HookOutcome::TimedOut
        }
    }
}

/// Kills every process of the hook's group (what it started in the background too).
fn kill_group(group: Option<u32>) {
    let pid = group.and_then(|id| rustix::process::Pid::from_raw(id as i32));
    if let Some(pid) = pid
        && let Err(error) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
    {
        tracing::debug!(%error, "killing a hook's process group");
    }
}

async fn read_limited(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(stream) = stream {
        let _ = stream.take(OUTPUT_LIMIT as u64).read_to_end(&mut out).await;
    }
    out
}

fn log_output(hook: &str, stream: &str, output: &[u8]) {
    for line in String::from_utf8_lossy(output)
        .lines()
        .filter(|l| !l.is_empty())
    {
        tracing::info!(hook, stream, "{line}");
    }
}

/// `unix` seconds as an RFC 3339 UTC time (`2026-12-07T17:33:56Z`).
pub fn rfc3339_utc(unix: u64) -> String {
    let (days, seconds) = (unix / 86_400, unix % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's days_to_civil).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests;
