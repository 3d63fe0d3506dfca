//! Finding and destroying labs by prefix alone, so teardown works from a `Drop`, a panic hook, a
//! signal handler or another process (`flowpin-lab down`), with or without the `Lab` value.
//!
//! Teardown order: delete the namespaces' names (so nothing new can enter them by name), then kill
//! (SIGKILL) every process still inside one of them — found by namespace inode in `/proc`, each
//! namespace held open meanwhile so its inode cannot pass to another lab's new namespace — until
//! none is left; the kernel then destroys the namespaces with every veth and bridge in them (and
//! with a veth its peer); then remove the lab's flowpin pins from bpffs (the host's, which outlives the
//! namespaces: a pinned link holds its program and maps) and its flowpin state files; finally remove the lab's directory. Every step tolerates "already gone", so teardown is
//! idempotent.

use std::time::{Duration, Instant};

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result, bail};

use crate::command::run;
use crate::name::{belongs_to_lab, lab_prefix_of};
use crate::state::{flowpin_state_files, lab_dir, list_lab_dirs, pin_dir};

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

/// Where namespace names are bound (by `ip netns add`).
pub const NETNS_DIR: &str = "/run/netns";

/// The namespace `ns` opened (which keeps it, and so its inode number, alive while held) and its
/// inode.
pub(crate) fn open_namespace(ns: &str) -> Result<(u64, std::fs::File)> {
    let path = std::path::Path::new(NETNS_DIR).join(ns);
    let handle =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let inode = handle
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .ino();
    Ok((inode, handle))
}

/// Inode of the network namespace a process lives in, from `/proc/<pid>/ns/net` (`net:[N]`).
fn process_netns_inode(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether `pid` is a process that has not exited (zombies have released their namespaces).
pub fn is_live_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Live processes whose network namespace is one of `inodes`, with that inode.
pub fn processes_in_namespaces(inodes: &[u64]) -> Result<Vec<(u32, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let name = entry?.file_name();
        let Some(pid) = name.to_str() else { continue };
        let Ok(number) = pid.parse::<u32>() else {
            continue;
        };
        if let Some(inode) = process_netns_inode(pid)
            && inodes.contains(&inode)
            && is_live_process(number)
        {
            found.push((number, inode));
        }
    }
    Ok(found)
}

/// Destroys the lab `prefix` (see the module documentation). Safe to call again, or on a lab
/// that never finished coming up.
pub fn destroy_lab(prefix: &str) -> Result<()> {
    let namespaces = lab_namespaces(prefix)?;
    let mut inodes = Vec::new();
    // Held open until the kill loop is done: a namespace's inode number is free for a new namespace
    // (another lab's, coming up in parallel) as soon as the namespace is gone, and the loop must never
    // take that one's processes for ours.
    let mut held = Vec::new();
    let mut failures = Vec::new();
    for ns in namespaces.iter().rev() {
        // Unname first, so nothing new can enter by name (`ip netns exec`) while we kill.
        if let Ok((inode, handle)) = open_namespace(ns) {
            inodes.push(inode);
            held.push(handle);
        }
        if let Err(error) = run(&["ip", "netns", "delete", ns])
            && lab_namespaces(prefix)?.contains(ns)
        {
            failures.push(error.to_string());
        }
    }
    kill_until_empty(prefix, &inodes)?;
    drop(held);
    let pins = pin_dir(prefix);
    match std::fs::remove_dir_all(&pins) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            failures.push(format!("removing {}: {error}", pins.display()));
        }
        _ => {}
    }
    for file in flowpin_state_files(prefix) {
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                failures.push(format!("removing {}: {error}", file.display()));
            }
            _ => {}
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

/// SIGKILLs every process in the namespaces `inodes` until two scans in a row find none (a
/// process that opened a namespace just before its name went may still be entering it).
fn kill_until_empty(prefix: &str, inodes: &[u64]) -> Result<()> {
    let deadline = Instant::now() + KILL_DEADLINE;
    let mut empty_scans = 0;
    while empty_scans < 2 {
        let pids: Vec<String> = processes_in_namespaces(inodes)?
            .into_iter()
            .map(|(pid, _)| pid.to_string())
            .collect();
        if pids.is_empty() {
            empty_scans += 1;
        } else {
            empty_scans = 0;
            if Instant::now() >= deadline {
                bail!("processes {pids:?} of lab {prefix} survive SIGKILL");
            }
            let mut argv = vec!["kill", "-s", "KILL"];
            argv.extend(pids.iter().map(String::as_str));
            // Some may have exited between listing and killing; the next scan tells.
            let _ignored = run(&argv);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
