//! The on-disk state of a lab: `/run/flowpin-lab/<prefix>/` holds `lab.json` (the spec, from
//! which [`crate::plan::Topology::plan`] rebuilds every name and address), the HTTP server's
//! document root and the output of every process the lab started.
//!
//! A lab's flowpin pins its XDP links in `/sys/fs/bpf/flowpin/lab-<prefix>/` ([`pin_dir`]): bpffs
//! is the host's, so the pins outlive the namespaces and teardown removes them; so does its state
//! file, `/run/flowpin/lab-<prefix>.state` ([`flowpin_state_files`]).
//!
//! Invariant: the directory exists exactly while the lab's namespaces may exist; teardown removes
//! it last.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::spec::LabSpec;

/// Directory holding every lab's state.
pub const STATE_ROOT: &str = "/run/flowpin-lab";
/// Name of the spec file inside a lab's directory.
const SPEC_FILE: &str = "lab.json";

/// The directory of lab `prefix`.
pub fn lab_dir(prefix: &str) -> PathBuf {
    PathBuf::from(STATE_ROOT).join(prefix)
}

/// Where flowpin instances pin their XDP links (one directory each).
pub const PIN_ROOT: &str = "/sys/fs/bpf/flowpin";
/// What a lab's pin directory name starts with, before the prefix.
const PIN_NAME_START: &str = "lab-";

/// The name of lab `prefix`'s flowpin instance (`[datapath] pin_name`).
pub fn pin_name(prefix: &str) -> String {
    format!("{PIN_NAME_START}{prefix}")
}

/// The directory where lab `prefix`'s flowpin pins its XDP links.
pub fn pin_dir(prefix: &str) -> PathBuf {
    PathBuf::from(PIN_ROOT).join(pin_name(prefix))
}

/// Where flowpin keeps its state files (`/run/flowpin/<pin name>.state`).
pub const FLOWPIN_STATE_ROOT: &str = "/run/flowpin";

/// Lab `prefix`'s flowpin state files: the state, the one a `--fresh` or a refused load set aside,
/// and a save's partial file.
pub fn flowpin_state_files(prefix: &str) -> [PathBuf; 3] {
    let name = pin_name(prefix);
    ["state", "state.discarded", "state.new"]
        .map(|extension| PathBuf::from(FLOWPIN_STATE_ROOT).join(format!("{name}.{extension}")))
}

/// Prefixes of the labs that have a state directory or a pin directory.
pub fn list_lab_dirs() -> Vec<String> {
    let named = |root: &str, strip: fn(&str) -> Option<&str>| -> Vec<String> {
        std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .filter_map(|name| strip(&name).map(str::to_owned))
                    .filter(|prefix| crate::name::validate_prefix(prefix).is_ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut prefixes = named(STATE_ROOT, |name| Some(name));
    prefixes.extend(named(PIN_ROOT, |name| name.strip_prefix(PIN_NAME_START)));
    prefixes
}

/// Writes the spec of lab `prefix` (whose `name` is the prefix).
pub fn save_spec(prefix: &str, spec: &LabSpec) -> Result<()> {
    let path = lab_dir(prefix).join(SPEC_FILE);
    let json = serde_json::to_string_pretty(spec)?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
}

/// Reads the spec of lab `prefix`.
pub fn load_spec(prefix: &str) -> Result<LabSpec> {
    let path = lab_dir(prefix).join(SPEC_FILE);
    let json = std::fs::read_to_string(&path)
        .with_context(|| format!("no lab named {prefix} ({} unreadable)", path.display()))?;
    serde_json::from_str(&json).with_context(|| format!("parsing {}", path.display()))
}
