//! What a lab occupies on the host, recorded while it is up so that, after teardown, anything left
//! behind can be named: a namespace, a process still inside one of its network namespaces (which
//! would keep that namespace — and its veths — alive after its name is gone), a process the lab
//! started, a veth with a lab MAC in the root namespace, or the lab's directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::Lab;
use crate::command::run;
use crate::plan::{MacAddr, Topology};

/// Where a namespace name is bound.
const NETNS_DIR: &str = "/run/netns";

/// The namespaces (by inode), processes and MACs of one lab.
#[derive(Debug, Clone)]
pub struct Footprint {
    prefix: String,
    namespace_inodes: Vec<(String, u64)>,
    pids: Vec<u32>,
    macs: Vec<MacAddr>,
}

fn macs_of(topology: &Topology) -> Vec<MacAddr> {
    let mut macs = vec![topology.router.lan_mac];
    macs.extend(topology.lan_hosts.iter().map(|host| host.mac));
    macs.extend(
        topology
            .uplinks
            .iter()
            .flat_map(|u| [u.router_mac, u.gateway_mac]),
    );
    macs
}

/// Inode of the network namespace a process lives in, from `/proc/<pid>/ns/net` (`net:[N]`).
fn process_netns_inode(pid_dir: &Path) -> Option<u64> {
    let link = std::fs::read_link(pid_dir.join("ns/net")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn is_live_process(pid: u32) -> bool {
    // A zombie has released its namespaces and is only waiting for its parent: not "left behind".
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Footprint {
    /// Records the footprint of `lab`, which must be up.
    pub fn of(lab: &Lab) -> Result<Footprint> {
        let namespace_inodes = lab
            .topology()
            .namespaces()
            .into_iter()
            .map(|ns| {
                let path = Path::new(NETNS_DIR).join(&ns);
                let inode = std::fs::metadata(&path)
                    .with_context(|| format!("stat {}", path.display()))?
                    .ino();
                Ok((ns, inode))
            })
            .collect::<Result<_>>()?;
        Ok(Footprint {
            prefix: lab.prefix().to_owned(),
            namespace_inodes,
            pids: lab.processes().iter().map(crate::LabProcess::pid).collect(),
            macs: macs_of(lab.topology()),
        })
    }

    /// Number of processes the lab had started when the footprint was taken.
    pub fn process_count(&self) -> usize {
        self.pids.len()
    }

    /// Everything of the lab still present on the host, one description each (empty = clean).
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for ns in crate::teardown::lab_namespaces(&self.prefix)? {
            left.push(format!("namespace {ns}"));
        }
        for entry in std::fs::read_dir("/proc").context("listing /proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(inode) = process_netns_inode(&entry.path())
                && let Some((ns, _)) = self.namespace_inodes.iter().find(|(_, i)| *i == inode)
                && is_live_process(pid)
            {
                left.push(format!(
                    "process {pid} in the network namespace once named {ns}"
                ));
            }
        }
        for pid in &self.pids {
            if is_live_process(*pid) {
                left.push(format!("process {pid} started by the lab"));
            }
        }
        let root_veths = run(&["ip", "-o", "link", "show", "type", "veth"])?;
        for mac in &self.macs {
            if root_veths.contains(&mac.to_string()) {
                left.push(format!("veth with lab MAC {mac} in the root namespace"));
            }
        }
        let dir = crate::state::lab_dir(&self.prefix);
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        Ok(left)
    }
}
