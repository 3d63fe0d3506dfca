//! Teardown of the lab this command is building or demonstrating when the command is interrupted
//! (SIGINT, SIGTERM) or panics — the release profile aborts on panic, so `Drop` alone would not
//! run. The guarded lab's name is registered before anything is created, so an interruption in
//! the middle of `up` removes the partial lab.

use std::sync::Mutex;

use anyhow::{Context, Result};
use flowpin_lab::{Lab, LabSpec, destroy_lab};

/// Name of the lab to destroy if the command is interrupted.
static GUARDED_LAB: Mutex<Option<String>> = Mutex::new(None);

fn guarded() -> Option<String> {
    GUARDED_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn set_guarded(name: Option<String>) {
    *GUARDED_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
}

/// Destroys the guarded lab, if any, reporting on stderr.
fn destroy_guarded(reason: &str) {
    if let Some(name) = guarded() {
        eprintln!("flowpin-lab: {reason}: tearing down lab {name}");
        if let Err(error) = destroy_lab(&name) {
            eprintln!("flowpin-lab: teardown of {name} failed: {error:#}");
        }
    }
}

/// Installs the panic hook and the SIGINT/SIGTERM watcher (once per process).
fn install() -> Result<()> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        destroy_guarded("panic");
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal watcher")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signal-watcher".into())
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
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                destroy_guarded(name);
                std::process::exit(130);
            });
        })
        .context("spawning the signal watcher")?;
    ready_rx
        .recv()
        .context("signal watcher died")?
        .context("installing signal handlers")
}

/// Brings up `spec` (whose `name` must be set) with teardown on interruption armed.
pub fn up_guarded(spec: LabSpec) -> Result<Lab> {
    install()?;
    set_guarded(spec.name.clone());
    let lab = Lab::up(spec);
    if lab.is_err() {
        // `Lab::up` already removed what it built (or refused to touch a lab of the same name).
        set_guarded(None);
    }
    lab
}

/// Disarms the guard and keeps the lab running after the command exits; returns its name.
pub fn release(lab: Lab) -> String {
    set_guarded(None);
    lab.persist()
}

/// Tears the lab down and disarms the guard.
pub fn finish(lab: Lab) -> Result<()> {
    let result = lab.down();
    set_guarded(None);
    result
}
