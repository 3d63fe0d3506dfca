//! Where flowpin pins its XDP links in bpffs, so the program stays attached when the process dies.
//!
//! One directory per flowpin instance, `/sys/fs/bpf/flowpin/<name>/`, one file per attached interface,
//! `link_<interface>`: a pinned bpf_link keeps the program (and with it every map it uses) attached
//! after the process exits, `kill -9` included. With no AF_XDP socket left in the XSKMAP, transit then
//! meets the redirect's miss action (`XDP_DROP`) while what the program passes (the router's own
//! traffic, ARP, DHCP) still reaches the kernel. Removing a file detaches its link once no process
//! holds it open.
//!
//! Invariants:
//! - the directory lives on a bpffs that outlives the process: the one mounted at `/sys/fs/bpf`; a
//!   process in a private mount namespace without it (`ip netns exec` remounts `/sys`) reaches the
//!   init namespace's through `/proc/1/root`; only when neither has bpffs does flowpin mount one;
//! - `<name>` is a single path component (validated with the configuration).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where bpffs is normally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The init mount namespace's view of [`BPFFS`], for a process in another mount namespace.
const INIT_BPFFS: &str = "/proc/1/root/sys/fs/bpf";

/// The per-instance pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    dir: PathBuf,
}

/// Why the pin directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PinDirError {
    /// bpffs could not be mounted.
    #[error("mounting bpffs on {BPFFS}: {0}")]
    Mount(String),
    /// The directory could not be created.
    #[error("creating the pin directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl PinDir {
    /// The directory of instance `name` under the bpffs root `root` (nothing is created).
    pub fn under(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join("flowpin").join(name),
        }
    }

    /// Finds (mounting it if absent) a bpffs that outlives this process and creates instance
    /// `name`'s directory on it.
    pub fn prepare(name: &str) -> Result<Self, PinDirError> {
        let root = persistent_bpffs()?;
        let pins = Self::under(&root, name);
        std::fs::create_dir_all(&pins.dir).map_err(|source| PinDirError::Create {
            path: pins.dir.clone(),
            source,
        })?;
        Ok(pins)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The pin file of `interface`'s link.
    pub fn link(&self, interface: &str) -> PathBuf {
        self.dir.join(format!("link_{interface}"))
    }

    /// Removes every pin of the instance and its directory (absent: nothing to do). A link no
    /// process holds open is detached at once.
    pub fn remove_all(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A bpffs root whose pins outlive this process (see the module documentation).
fn persistent_bpffs() -> Result<PathBuf, PinDirError> {
    let own = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if has_bpffs_at(&own, BPFFS) {
        return Ok(PathBuf::from(BPFFS));
    }
    if !in_init_mount_namespace() {
        let init = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
        if has_bpffs_at(&init, BPFFS) {
            return Ok(PathBuf::from(INIT_BPFFS));
        }
        tracing::warn!(
            "no bpffs in this mount namespace nor in init's: the one flowpin mounts ends with this \
             mount namespace, and the pinned XDP links with it"
        );
    }
    let out = Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .output()
        .map_err(|error| PinDirError::Mount(error.to_string()))?;
    if !out.status.success() {
        return Err(PinDirError::Mount(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    tracing::info!(path = BPFFS, "mounted bpffs");
    Ok(PathBuf::from(BPFFS))
}

/// Whether this process shares pid 1's mount namespace.
fn in_init_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(own), Ok(init)) => own == init,
        // pid 1's namespace unreadable: assume ours is the one that matters.
        _ => true,
    }
}

/// Whether a `/proc/<pid>/mountinfo` text has a bpffs mounted at `path`.
fn has_bpffs_at(mountinfo: &str, path: &str) -> bool {
    mountinfo.lines().any(|line| {
        let Some((mount, fs)) = line.split_once(" - ") else {
            return false;
        };
        mount.split(' ').nth(4) == Some(path) && fs.split(' ').next() == Some("bpf")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bpf_mount_at_the_path_is_found_and_other_mounts_are_not() {
        let info = "36 25 0:31 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:14 - bpf bpf rw,mode=700\n\
                    25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n";
        assert!(has_bpffs_at(info, "/sys/fs/bpf"));
        assert!(!has_bpffs_at(info, "/sys"));
        let sysfs_only = "25 30 0:23 / /sys rw - sysfs fctest1 rw\n";
        assert!(!has_bpffs_at(sysfs_only, "/sys/fs/bpf"));
    }

    #[test]
    fn each_instance_has_its_own_directory_and_one_pin_per_interface() {
        let a = PinDir::under(Path::new("/sys/fs/bpf"), "a");
        let b = PinDir::under(Path::new("/sys/fs/bpf"), "b");
        assert_eq!(a.path(), Path::new("/sys/fs/bpf/flowpin/a"));
        assert_ne!(a.link("wan1"), b.link("wan1"));
        assert_eq!(a.link("wan1"), Path::new("/sys/fs/bpf/flowpin/a/link_wan1"));
    }
}
