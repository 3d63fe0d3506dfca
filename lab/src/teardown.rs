//! Finding and destroying labs by prefix alone, so teardown works from a `Drop`, a panic hook, a
//! signal handler or another process (`flowpin-lab down`), with or without the `Lab` value.
//!
//! Teardown order: kill (SIGKILL) every process whose network namespace belongs to the lab, until
//! none is left; delete the namespaces (which destroys every veth and bridge in them, and with a
//! veth its peer); remove the lab's directory. Every step tolerates "already gone", so teardown is
//! idempotent.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::command::run;
use crate::name::{belongs_to_lab, lab_prefix_of};
use crate::state::{lab_dir, list_lab_dirs};

/// How long teardown keeps killing processes that appear in the lab's namespaces.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// Names of every network namespace on the host (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    let listing = run(&["ip", "netns", "list"])?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Namespaces of the lab `prefix` that exist now.
pub fn lab_namespaces(prefix: &str) -> Result<Vec<String>> {
    Ok(list_namespaces()?
        .into_iter()
        .filter(|ns| belongs_to_lab(ns, prefix))
        .collect())
}

/// Prefixes of every lab on the host: those with namespaces and those with a state directory.
pub fn list_labs() -> Result<Vec<String>> {
    let mut prefixes: Vec<String> = list_namespaces()?
        .iter()
        .filter_map(|ns| lab_prefix_of(ns))
        .map(str::to_owned)
        .chain(list_lab_dirs())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    Ok(prefixes)
}

/// Process ids running in namespace `ns` (`ip netns pids`); empty if the namespace is gone.
pub fn namespace_pids(ns: &str) -> Vec<u32> {
    run(&["ip", "netns", "pids", ns])
        .map(|listing| {
            listing
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Destroys the lab `prefix` (see the module documentation). Safe to call again, or on a lab
/// that never finished coming up.
pub fn destroy_lab(prefix: &str) -> Result<()> {
    let namespaces = lab_namespaces(prefix)?;
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        let pids: Vec<String> = namespaces
            .iter()
            .flat_map(|ns| namespace_pids(ns))
            .map(|pid| pid.to_string())
            .collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!("processes {pids:?} of lab {prefix} survive SIGKILL");
        }
        let mut argv = vec!["kill", "-s", "KILL"];
        argv.extend(pids.iter().map(String::as_str));
        // Some may have exited between listing and killing; the next round re-lists.
        let _ignored = run(&argv);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut failures = Vec::new();
    for ns in namespaces.iter().rev() {
        if let Err(error) = run(&["ip", "netns", "delete", ns])
            && lab_namespaces(prefix)?.contains(ns)
        {
            failures.push(error.to_string());
        }
    }
    let dir = lab_dir(prefix);
    if dir.exists()
        && let Err(error) = std::fs::remove_dir_all(&dir)
    {
        failures.push(format!("removing {}: {error}", dir.display()));
    }
    if !failures.is_empty() {
        bail!("tearing down lab {prefix}: {}", failures.join("; "));
    }
    Ok(())
}
