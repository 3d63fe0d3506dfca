//! What a lab occupies on the host, recorded while it is up so that, after teardown, anything left
//! behind can be named: a namespace, a process still inside one of its network namespaces (which
//! would keep that namespace — and its veths — alive after its name is gone), a process the lab
//! started, a veth with a lab MAC in the root namespace, the lab's flowpin pins in bpffs, or the lab's
//! directory.

use anyhow::Result;

use crate::Lab;
use crate::command::run;
use crate::plan::{MacAddr, Topology};
use crate::teardown::{is_live_process, processes_in_namespaces};

/// The namespaces (by inode), processes and MACs of one lab.
///
/// It holds the lab's namespaces open: a namespace's inode number passes to a new namespace (another
/// lab's, coming up in parallel) as soon as it is gone, and [`Footprint::leftovers`] must never take that
/// one's processes for this lab's.
#[derive(Debug, Clone)]
pub struct Footprint {
    prefix: String,
    namespace_inodes: Vec<(String, u64)>,
    _held: std::sync::Arc<Vec<std::fs::File>>,
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

impl Footprint {
    /// Records the footprint of `lab`, which must be up.
    pub fn of(lab: &Lab) -> Result<Footprint> {
        let mut namespace_inodes = Vec::new();
        let mut held = Vec::new();
        for ns in lab.topology().namespaces() {
            let (inode, handle) = crate::teardown::open_namespace(&ns)?;
            namespace_inodes.push((ns, inode));
            held.push(handle);
        }
        Ok(Footprint {
            prefix: lab.prefix().to_owned(),
            namespace_inodes,
            _held: std::sync::Arc::new(held),
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
        let inodes: Vec<u64> = self
            .namespace_inodes
            .iter()
            .map(|(_, inode)| *inode)
            .collect();
        for (pid, inode) in processes_in_namespaces(&inodes)? {
            let ns = self
                .namespace_inodes
                .iter()
                .find(|(_, i)| *i == inode)
                .map_or("?", |(ns, _)| ns);
            left.push(format!(
                "process {pid} in the network namespace once named {ns}"
            ));
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
        let pins = crate::state::pin_dir(&self.prefix);
        if pins.exists() {
            left.push(format!("pinned XDP links in {}", pins.display()));
        }
        for file in crate::state::flowpin_state_files(&self.prefix) {
            if file.exists() {
                left.push(format!("flowpin state file {}", file.display()));
            }
        }
        let dir = crate::state::lab_dir(&self.prefix);
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        Ok(left)
    }
}
