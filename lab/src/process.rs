//! Processes started inside lab namespaces, tracked so teardown can stop and reap them.
//!
//! A [`LabProcess`] is a cheap clone of one shared handle: the lab keeps a clone so teardown can
//! kill and reap it, the caller keeps one to wait, signal or read output. Standard output and
//! error go to files in the lab's directory (never to pipes, so a chatty process cannot block on a
//! full pipe and its logs can be read while it runs).
//!
//! Invariants: a process started with `ip netns exec` *is* the program (`ip` execs it), so its pid
//! is the program's pid; every tracked child is reaped (waited for) by the time teardown returns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::command::{in_namespace, render, run};

/// How often waits poll a child for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Tracked {
    child: Child,
    status: Option<ExitStatus>,
}

/// A process running in a lab namespace (see the module documentation).
#[derive(Debug, Clone)]
pub struct LabProcess {
    tracked: Arc<Mutex<Tracked>>,
    pid: u32,
    description: Arc<str>,
    stdout_path: Arc<Path>,
    stderr_path: Arc<Path>,
}

/// Exit status and captured output of a finished process.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: String,
    /// Everything it wrote to standard error.
    pub stderr: String,
}

impl LabProcess {
    /// Starts `argv` in namespace `ns`; output goes to `<log_stem>.out` / `<log_stem>.err`.
    pub(crate) fn start(ns: &str, argv: &[&str], log_stem: &Path) -> Result<LabProcess> {
        let description: Arc<str> = format!("`{}` in {ns}", render(argv)).into();
        let stdout_path: PathBuf = log_stem.with_extension("out");
        let stderr_path: PathBuf = log_stem.with_extension("err");
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let child = in_namespace(ns, argv)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {description}"))?;
        Ok(LabProcess {
            pid: child.id(),
            tracked: Arc::new(Mutex::new(Tracked {
                child,
                status: None,
            })),
            description,
            stdout_path: stdout_path.into(),
            stderr_path: stderr_path.into(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        // A poisoned lock only means another thread panicked while polling; the child is intact.
        self.tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What was started, and where (for messages).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&self) -> Result<Option<ExitStatus>> {
        let mut tracked = self.lock();
        if tracked.status.is_none() {
            tracked.status = tracked
                .child
                .try_wait()
                .with_context(|| format!("polling {}", self.description))?;
        }
        Ok(tracked.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> Result<bool> {
        Ok(self.try_status()?.is_none())
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; stderr: {}",
                    self.description,
                    self.stderr_text()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its status and output.
    pub fn wait_output(&self, timeout: Duration) -> Result<ProcessOutput> {
        let status = self.wait(timeout)?;
        Ok(ProcessOutput {
            status,
            stdout: self.stdout()?,
            stderr: self.stderr()?,
        })
    }

    /// Like [`LabProcess::wait_output`], but fails (with the stderr) unless the exit status is 0.
    pub fn wait_success(&self, timeout: Duration) -> Result<String> {
        let output = self.wait_output(timeout)?;
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                self.description,
                output.status,
                output.stderr.trim()
            );
        }
        Ok(output.stdout)
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, ...) if the process still runs.
    pub fn signal(&self, signal: &str) -> Result<()> {
        if self.is_running()? {
            run(&["kill", "-s", signal, &self.pid.to_string()])?;
        }
        Ok(())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&self) -> Result<()> {
        let mut tracked = self.lock();
        if tracked.status.is_none() {
            // An error here means it already exited, which wait() below confirms.
            let _ignored = tracked.child.kill();
            let status = tracked
                .child
                .wait()
                .with_context(|| format!("reaping {}", self.description))?;
            tracked.status = Some(status);
        }
        Ok(())
    }

    /// Standard output written so far.
    pub fn stdout(&self) -> Result<String> {
        std::fs::read_to_string(&self.stdout_path)
            .map_err(|e| anyhow!("reading {}: {e}", self.stdout_path.display()))
    }

    /// Standard error written so far.
    pub fn stderr(&self) -> Result<String> {
        std::fs::read_to_string(&self.stderr_path)
            .map_err(|e| anyhow!("reading {}: {e}", self.stderr_path.display()))
    }

    fn stderr_text(&self) -> String {
        self.stderr()
            .unwrap_or_else(|error| error.to_string())
            .trim()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_stem(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowpin-lab-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    // These run in the root namespace through `ip netns exec`'s sibling: a plain Command. The
    // namespace path is exercised by the end-to-end tests; here we check the bookkeeping.
    fn start_plain(argv: &[&str], name: &str) -> LabProcess {
        let stem = temp_stem(name);
        let stdout_path = stem.with_extension("out");
        let stderr_path = stem.with_extension("err");
        let child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        LabProcess {
            pid: child.id(),
            tracked: Arc::new(Mutex::new(Tracked {
                child,
                status: None,
            })),
            description: render(argv).into(),
            stdout_path: stdout_path.into(),
            stderr_path: stderr_path.into(),
        }
    }

    #[test]
    fn output_and_status_are_captured() {
        let process = start_plain(&["sh", "-c", "echo out; echo err >&2; exit 4"], "capture");
        let output = process.wait_output(Duration::from_secs(5)).unwrap();
        assert_eq!(output.status.code(), Some(4));
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.stderr, "err\n");
        assert!(
            process
                .wait_success(Duration::from_secs(1))
                .unwrap_err()
                .to_string()
                .contains("err")
        );
    }

    #[test]
    fn kill_stops_and_reaps_a_running_process_and_wait_times_out_before() {
        let process = start_plain(&["sleep", "30"], "kill");
        assert!(process.is_running().unwrap());
        assert!(process.wait(Duration::from_millis(50)).is_err());
        let clone = process.clone();
        clone.kill().unwrap();
        assert!(!process.is_running().unwrap());
        assert!(
            !Path::new(&format!("/proc/{}", process.pid())).exists(),
            "child not reaped"
        );
        process.kill().unwrap();
    }
}
