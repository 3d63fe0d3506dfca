//! The on-disk state of a lab: `/run/flowpin-lab/<prefix>/` holds `lab.json` (the spec, from
//! which [`crate::plan::Topology::plan`] rebuilds every name and address), the HTTP server's
//! document root and the output of every process the lab started.
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

/// Prefixes of the labs that have a state directory.
pub fn list_lab_dirs() -> Vec<String> {
    std::fs::read_dir(STATE_ROOT)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| crate::name::validate_prefix(name).is_ok())
                .collect()
        })
        .unwrap_or_default()
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
