//! A `flowpin-bench sink`/`redirect`/`legit`/`reflect` child process in a lab namespace, read line by line.
//!
//! Invariant: the child is killed and reaped when the [`Service`] drops, so its XDP program detaches.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use anyhow::{Context, Result, bail};

/// A running service.
#[derive(Debug)]
pub struct Service {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl Service {
    /// Starts `flowpin-bench <args>` in namespace `ns` and waits for its `ready` line.
    pub fn start(ns: &str, args: &[String]) -> Result<Self> {
        let exe = std::env::current_exe().context("own executable")?;
        let what = format!("flowpin-bench {} in {ns}", args.join(" "));
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "{what} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            what,
        })
    }

    /// The service's current counters (one JSON line per request line).
    pub fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        writeln!(self.stdin)?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("reading {}: {line:?}", self.what))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
