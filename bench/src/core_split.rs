//! Giving every configuration the same split of the machine's cores: the generator on
//! [`GENERATOR_CPU`], the router's work on [`ROUTER_CPU`].
//!
//! On veth, the receive side of a frame (its NAPI poll, and native XDP with it) runs on the CPU that
//! sent into the veth, so without help the router would share the generator's core. Each configuration
//! moves its work with the mechanism that applies to it:
//! - kernel forwarding (K0, K1): RPS on the router's LAN port ([`steer_rps`]): the sender's CPU only
//!   enqueues; the IP stack, conntrack, NAT and the transmit into the uplink veth run on `ROUTER_CPU`;
//! - XDP programs (G's sink, X's redirect, flowpin's XSK redirect): threaded NAPI on the port the program
//!   is attached to, its NAPI kthread pinned to `ROUTER_CPU` ([`thread_napi`]); the sender's CPU only
//!   queues the frame on the veth's ring and wakes that thread;
//! - flowpin (O): additionally its datapath worker thread pinned to `ROUTER_CPU` ([`pin_threads`]), since
//!   the daemon pins worker `i` to core `i % ncores` (worker 0 would share the generator's core).
//!
//! Priority: RPS work runs in softirq context, ahead of every task on its CPU, while a NAPI kthread or
//! a worker thread is an ordinary task that other load (the machine is shared) can preempt. So that the
//! configurations compete on equal terms, the threads this module pins also get the real-time policy
//! `SCHED_FIFO` at [`ROUTER_PRIORITY`] (the kernel's real-time throttling still leaves 5 % to other
//! tasks). The generator keeps the normal policy in every configuration; its ceiling is measured in
//! every trial.
//!
//! Invariants: each function either did what it says or returns an error naming what failed; nothing
//! here changes anything outside the namespace it is given except the CPU affinity of the threads it
//! names (NAPI kthreads live in the root pid namespace, identified as the threads that appeared when
//! threaded NAPI was switched on for the named port).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The core the generator runs on.
pub const GENERATOR_CPU: usize = 0;
/// The core the router's work is moved to.
pub const ROUTER_CPU: usize = 1;
/// The `SCHED_FIFO` priority of the router threads this module pins.
pub const ROUTER_PRIORITY: u8 = 50;

/// Whether this machine has the two cores the split needs.
pub fn available() -> Result<()> {
    let cores = std::thread::available_parallelism()
        .context("counting cores")?
        .get();
    ensure!(
        cores > ROUTER_CPU,
        "the benchmark's core split needs at least {} cores (generator on CPU {GENERATOR_CPU}, router on \
         CPU {ROUTER_CPU}); this machine has {cores}",
        ROUTER_CPU + 1
    );
    Ok(())
}

/// The hexadecimal CPU mask of `cpu` as sysfs wants it.
pub fn cpu_mask(cpu: usize) -> String {
    format!("{:x}", 1u64 << cpu)
}

/// Steers receive processing of `iface` (in namespace `ns`) to `cpu` with RPS.
pub fn steer_rps(ns: &str, iface: &str, cpu: usize) -> Result<()> {
    let path = format!("/sys/class/net/{iface}/queues/rx-0/rps_cpus");
    write_sysfs(ns, &path, &cpu_mask(cpu))
}

/// Switches `iface` (in namespace `ns`) to threaded NAPI and pins its NAPI kthreads to `cpu` (at
/// [`ROUTER_PRIORITY`]); returns
/// their thread ids. The port must have NAPI active (an XDP program attached, or GRO on). Threaded
/// NAPI is switched off first, so calling it again (e.g. after the XDP program was re-attached) pins
/// the port's current kthreads.
pub fn thread_napi(ns: &str, iface: &str, cpu: usize) -> Result<Vec<u32>> {
    let prefix = format!("napi/{iface}-");
    let path = format!("/sys/class/net/{iface}/threaded");
    write_sysfs(ns, &path, "0").with_context(|| format!("plain NAPI on {iface}"))?;
    let before = threads_named(|comm| comm.starts_with(&prefix))?;
    write_sysfs(ns, &path, "1")
        .with_context(|| format!("threaded NAPI on {iface} (is an XDP program attached?)"))?;
    // The kthread is created by the write; give the scheduler a moment to make it visible.
    let deadline = Instant::now() + Duration::from_secs(2);
    let ours = loop {
        let now: BTreeSet<u32> = threads_named(|comm| comm.starts_with(&prefix))?;
        let new: Vec<u32> = now.difference(&before).copied().collect();
        if !new.is_empty() {
            break new;
        }
        if Instant::now() >= deadline {
            bail!("no {prefix}* kthread appeared after enabling threaded NAPI on {iface} in {ns}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for &tid in &ours {
        pin_thread(tid, cpu)?;
    }
    Ok(ours)
}

/// Pins every thread named `comm` of the processes in namespace `ns` to `cpu` (at [`ROUTER_PRIORITY`]);
/// returns how many.
pub fn pin_threads(ns: &str, comm: &str, cpu: usize) -> Result<usize> {
    let pids = flowpin_lab::command::run(&["ip", "netns", "pids", ns])?;
    let mut pinned = 0;
    for pid in pids.split_whitespace() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // exited meanwhile
        };
        for task in tasks.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if name.trim_end() == comm {
                let tid: u32 = task
                    .file_name()
                    .to_string_lossy()
                    .parse()
                    .context("thread id")?;
                pin_thread(tid, cpu)?;
                pinned += 1;
            }
        }
    }
    ensure!(pinned > 0, "no thread named {comm:?} runs in {ns}");
    Ok(pinned)
}

/// The CPUs thread `tid` may run on, as the kernel reports them (`Cpus_allowed_list`).
pub fn allowed_cpus(tid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .with_context(|| format!("reading /proc/{tid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .context("no Cpus_allowed_list")
}

fn pin_thread(tid: u32, cpu: usize) -> Result<()> {
    let tid_text = tid.to_string();
    flowpin_lab::command::run(&["taskset", "-pc", &cpu.to_string(), &tid_text])?;
    let allowed = allowed_cpus(tid)?;
    ensure!(
        allowed == cpu.to_string(),
        "thread {tid} still runs on CPUs {allowed} after pinning it to {cpu}"
    );
    flowpin_lab::command::run(&["chrt", "-f", "-p", &ROUTER_PRIORITY.to_string(), &tid_text])?;
    let policy = flowpin_lab::command::run(&["chrt", "-p", &tid_text])?;
    ensure!(
        policy.contains("SCHED_FIFO"),
        "thread {tid} is not SCHED_FIFO after chrt: {policy}"
    );
    Ok(())
}

fn write_sysfs(ns: &str, path: &str, value: &str) -> Result<()> {
    flowpin_lab::command::run_in(ns, &["sh", "-c", &format!("echo {value} > {path}")])
        .with_context(|| format!("writing {value} to {path} in {ns}"))?;
    Ok(())
}

/// Thread ids of every thread on the machine whose name satisfies `wanted`.
fn threads_named(wanted: impl Fn(&str) -> bool) -> Result<BTreeSet<u32>> {
    let mut found = BTreeSet::new();
    for process in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Ok(tasks) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            if wanted(name.trim_end())
                && let Ok(tid) = task.file_name().to_string_lossy().parse()
            {
                found.insert(tid);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_name_one_cpu() {
        assert_eq!(cpu_mask(0), "1");
        assert_eq!(cpu_mask(1), "2");
        assert_eq!(cpu_mask(5), "20");
    }

    #[test]
    fn this_thread_is_found_by_name_and_its_affinity_read() {
        // The new thread names itself before its closure runs: wait for the closure to start.
        let (started, running) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("fpb-probe-thr".into())
            .spawn(move || {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            })
            .unwrap();
        running.recv().unwrap();
        let found = threads_named(|c| c == "fpb-probe-thr").unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let tid = *found.iter().next().unwrap();
        assert!(!allowed_cpus(tid).unwrap().is_empty());
        handle.join().unwrap();
    }
}
