//! Running external tools (`ip`, `nft`, `ethtool`, ...) on the host or inside a lab namespace,
//! and checking the prerequisites before anything is created.
//!
//! Invariant: every failure names the command line, its exit status and its stderr, so a test that
//! fails on a missing prerequisite says which one.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// Tools the lab runs; [`check_prerequisites`] fails naming the first one missing.
pub const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ethtool", "ethtool"),
    ("sysctl", "procps"),
    ("ss", "iproute2"),
    ("kill", "procps"),
    ("socat", "socat"),
    ("iperf3", "iperf3"),
    ("python3", "python3"),
    ("curl", "curl"),
];

/// Where the `PATH` lookup finds `tool`, if anywhere.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs with effective uid 0, read from `/proc/self/status`.
pub fn running_as_root() -> Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    Ok(effective_uid == "0")
}

/// Fails naming the missing prerequisite: root, or one of [`REQUIRED_TOOLS`].
pub fn check_prerequisites() -> Result<()> {
    if !running_as_root()? {
        bail!("missing prerequisite: root (the lab creates network namespaces; run as root)");
    }
    for (tool, package) in REQUIRED_TOOLS {
        if find_tool(tool).is_none() {
            bail!("missing prerequisite: `{tool}` not found in PATH (Debian package {package})");
        }
    }
    Ok(())
}

/// Shell-like rendering of a command line for error messages.
pub fn render(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Builds a command that runs `argv` inside namespace `ns` (`ip netns exec ns argv...`).
pub fn in_namespace(ns: &str, argv: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).args(argv);
    command
}

/// Runs `argv` to completion on the host (root namespace) and returns its stdout; fails with the
/// command line, status and stderr when it exits non-zero.
pub fn run(argv: &[&str]) -> Result<String> {
    let (program, args) = argv.split_first().context("empty command line")?;
    let mut command = Command::new(program);
    command.args(args);
    checked(command.stdin(Stdio::null()), &render(argv))
}

/// Runs `argv` to completion inside namespace `ns` and returns its stdout (see [`run`]).
pub fn run_in(ns: &str, argv: &[&str]) -> Result<String> {
    let rendered = format!("ip netns exec {ns} {}", render(argv));
    checked(in_namespace(ns, argv).stdin(Stdio::null()), &rendered)
}

/// Runs `argv` to completion with `stdin` as its standard input.
pub fn run_with_input(argv: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write;
    let (program, args) = argv.split_first().context("empty command line")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", render(argv)))?;
    child
        .stdin
        .take()
        .context("stdin of a piped child")?
        .write_all(stdin.as_bytes())
        .with_context(|| format!("feeding `{}`", render(argv)))?;
    let output = child.wait_with_output()?;
    into_stdout(output, &render(argv))
}

/// Runs `command` to completion; returns stdout or an error naming `rendered`.
pub fn checked(command: &mut Command, rendered: &str) -> Result<String> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting `{rendered}`"))?;
    into_stdout(output, rendered)
}

fn into_stdout(output: Output, rendered: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "`{rendered}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_its_stderr() {
        let error = run(&["sh", "-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("sh -c"), "{error}");
        assert!(error.contains("oops"), "{error}");
        assert!(error.contains('3'), "{error}");
        assert_eq!(run(&["sh", "-c", "echo fine"]).unwrap(), "fine\n");
        assert_eq!(run_with_input(&["cat"], "piped").unwrap(), "piped");
    }

    #[test]
    fn tool_lookup_finds_sh_and_not_a_made_up_tool() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-flowpin").is_none());
    }
}
