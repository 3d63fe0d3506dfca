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
//!   one of the nearest ancestor in another mount namespace through `/proc/<pid>/root`, and keeps
//!   the directory open so that path is needed only once; only when none has bpffs does flowpin
//!   mount one;
//! - `<name>` is a single path component (validated with the configuration).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Where bpffs is normally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The per-instance pin directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    /// The directory as found.
    dir: PathBuf,
    /// The directory held open (after [`PinDir::prepare`]): pins are reached through
    /// `/proc/self/fd/<fd>`, whatever happens to the path it was found by.
    open: Option<Arc<File>>,
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
            open: None,
        }
    }

    /// Finds (mounting it if absent) a bpffs that outlives this process and creates instance
    /// `name`'s directory on it.
    pub fn prepare(name: &str) -> Result<Self, PinDirError> {
        let root = persistent_bpffs()?;
        let mut pins = Self::under(&root, name);
        let create_error = |source| PinDirError::Create {
            path: pins.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&pins.dir).map_err(create_error)?;
        let open = File::open(&pins.dir).map_err(create_error)?;
        pins.open = Some(Arc::new(open));
        Ok(pins)
    }

    /// The directory, as found.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The pin file of `interface`'s link.
    pub fn link(&self, interface: &str) -> PathBuf {
        self.reach().join(format!("link_{interface}"))
    }

    /// The path this process reaches the directory by: through its open descriptor once prepared.
    fn reach(&self) -> PathBuf {
        match &self.open {
            Some(open) => PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd())),
            None => self.dir.clone(),
        }
    }

    /// The interfaces that have a pinned link in the directory, with its pin file.
    pub fn pinned(&self) -> Vec<(String, PathBuf)> {
        std::fs::read_dir(self.reach())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let name = entry.file_name().into_string().ok()?;
                        let interface = name.strip_prefix("link_")?.to_owned();
                        Some((interface, entry.path()))
                    })
                    .collect()
            })
            .unwrap_or_default()
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
    if let Some(ancestor) = ancestor_in_another_mount_namespace() {
        let theirs =
            std::fs::read_to_string(format!("/proc/{ancestor}/mountinfo")).unwrap_or_default();
        if has_bpffs_at(&theirs, BPFFS) {
            return Ok(PathBuf::from(format!("/proc/{ancestor}/root{BPFFS}")));
        }
        tracing::warn!(
            ancestor,
            "no bpffs in this mount namespace nor in the parent's: the one flowpin mounts ends \
             with this mount namespace, and the pinned XDP links with it"
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

/// The nearest ancestor process whose mount namespace is readable and not ours (`None`: every
/// readable ancestor shares ours).
fn ancestor_in_another_mount_namespace() -> Option<u32> {
    let own = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let mut pid = parent_of("self")?;
    while pid > 0 {
        if let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            && theirs != own
        {
            return Some(pid);
        }
        pid = parent_of(&pid.to_string())?;
    }
    None
}

/// The parent pid of `pid` (`self` or a number), from `/proc/<pid>/stat`.
fn parent_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
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
