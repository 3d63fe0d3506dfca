//! Teardown of every lab this process owns when the process is interrupted (SIGINT, SIGTERM) or,
//! in builds that abort on panic, panics — cases where `Drop` never runs.
//!
//! Invariants:
//! - a lab is registered by [`Lab::up`](crate::Lab::up) before anything of it is created, and
//!   unregistered only once it has been torn down or handed over ([`Lab::persist`](crate::Lab::persist)),
//!   so an interruption in the middle of `up` removes the partial lab too;
//! - the watcher is installed once per process, on the first `Lab::up`; on SIGINT or SIGTERM it
//!   destroys every registered lab and exits with status 130 (the shell's "interrupted");
//! - with `panic = "abort"` (the release profile) a panic hook destroys every registered lab before
//!   the process aborts. With unwinding (tests), a panic unwinds through `Lab`'s `Drop` instead, and
//!   the hook is not installed: a panicking test must not tear down the labs of the tests running
//!   beside it in the same process.

use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result, anyhow};

use crate::teardown::destroy_lab;

/// Prefixes of the labs this process owns and has not torn down.
static LIVE_LABS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The outcome of installing the watcher, kept so every later `arm` reports the same.
static ARMED: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the signal watcher (and, when panics abort, the panic hook) once per process.
///
/// # Errors
/// The watcher thread or the signal handlers could not be set up.
pub(crate) fn arm() -> Result<()> {
    ARMED
        .get_or_init(|| install().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(|error| anyhow!("arming lab teardown on interruption: {error}"))
}

/// Registers `prefix` as a lab to destroy on interruption.
pub(crate) fn register(prefix: &str) {
    let mut live = LIVE_LABS.lock().unwrap_or_else(PoisonError::into_inner);
    if !live.iter().any(|name| name == prefix) {
        live.push(prefix.to_owned());
    }
}

/// Forgets `prefix` (torn down, or handed over to outlive this process).
pub(crate) fn unregister(prefix: &str) {
    LIVE_LABS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|name| name != prefix);
}

/// Destroys every registered lab, reporting on stderr.
fn destroy_live_labs(reason: &str) {
    let live = std::mem::take(&mut *LIVE_LABS.lock().unwrap_or_else(PoisonError::into_inner));
    for name in live {
        eprintln!("flowpin-lab: {reason}: tearing down lab {name}");
        if let Err(error) = destroy_lab(&name) {
            eprintln!("flowpin-lab: teardown of {name} failed: {error:#}");
        }
    }
}

fn install() -> Result<()> {
    if cfg!(panic = "abort") {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            destroy_live_labs("panic");
        }));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal watcher")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lab-signal-watcher".into())
        .spawn(move || {
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let streams = signal(SignalKind::interrupt())
                    .and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
                let (mut interrupt, mut terminate) = match streams {
                    Ok(streams) => {
                        let _ignored = ready_tx.send(Ok(()));
                        streams
                    }
                    Err(error) => {
                        let _ignored = ready_tx.send(Err(error));
                        return;
                    }
                };
                let reason = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                destroy_live_labs(reason);
                std::process::exit(130);
            });
        })
        .context("spawning the signal watcher")?;
    ready_rx
        .recv()
        .context("signal watcher died")?
        .context("installing signal handlers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_a_set_and_unregister_forgets() {
        register("ut-interrupt-a");
        register("ut-interrupt-a");
        register("ut-interrupt-b");
        let count = |name: &str| {
            LIVE_LABS
                .lock()
                .unwrap()
                .iter()
                .filter(|live| live.as_str() == name)
                .count()
        };
        assert_eq!(count("ut-interrupt-a"), 1);
        unregister("ut-interrupt-a");
        assert_eq!(count("ut-interrupt-a"), 0);
        assert_eq!(count("ut-interrupt-b"), 1);
        unregister("ut-interrupt-b");
    }
}
