//! The daemon's state across restarts: flows, port mappings and quarantines, hash secrets.
//!
//! Where: `/run/flowpin/<pin name>.state` (tmpfs: it survives the process, never a reboot; a file
//! from another boot is refused by its boot id all the same). What: a checkpoint written by the
//! control plane once a second and at shutdown (after the workers stopped), as a new file renamed
//! over the old one, so a reader sees one whole checkpoint or the previous one. Nothing runs per
//! packet: the workers' path is the same with or without it.
//!
//! - `model`: the saved values; `layout`: bytes, versions, per-record checksums; `collect`: taking
//!   the copy; `restore`: checking and putting it back.
//! - Loss bound: a `kill -9` loses what changed since the last checkpoint (≤ 1 s: flows opened in
//!   that second, the last second of UDP refresh stamps); a stop loses nothing.
//! - A refused file (not a state file, incompatible layout, damaged meta record, another boot) is
//!   reported in one log line and renamed `<file>.discarded`; damaged records are dropped one by
//!   one and counted.

pub mod collect;
pub mod layout;
pub mod model;
pub mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use layout::Decoded;
use model::SavedState;

/// The directory of the state files.
pub const STATE_DIR: &str = "/run/flowpin";

/// Test hook: the layout version this build writes (`1` writes the previous layout, for the
/// upgrade test). Unset or anything else: [`layout::VERSION`].
pub const WRITE_VERSION_ENV: &str = "FLOWPIN_STATE_WRITE_VERSION";

/// One daemon's state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    write_version: u32,
    boot_id: [u8; 16],
    saving: AtomicBool,
    failing: AtomicBool,
}

impl StateFile {
    /// The state file of the daemon whose XDP links are pinned under `pin_name`.
    pub fn for_pin_name(pin_name: &str) -> Arc<Self> {
        let write_version = match std::env::var(WRITE_VERSION_ENV).as_deref() {
            Ok("1") => layout::VERSION_V1,
            _ => layout::VERSION,
        };
        Arc::new(Self {
            path: Path::new(STATE_DIR).join(format!("{pin_name}.state")),
            write_version,
            boot_id: boot_id(),
            saving: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    }

    /// This boot's id (saved in the file).
    pub fn boot_id(&self) -> [u8; 16] {
        self.boot_id
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, when there is a usable one; every outcome is logged once.
    pub fn load(&self) -> Option<Decoded> {
        let path = self.path.display();
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(file = %path, "no saved state: starting with an empty flow table");
                return None;
            }
            Err(error) => {
                tracing::warn!(file = %path, %error, "saved state unreadable: starting with an empty flow table");
                return None;
            }
        };
        let decoded = match layout::decode(&bytes) {
            Ok(decoded) => decoded,
            Err(refusal) => {
                self.discard(&refusal.to_string());
                return None;
            }
        };
        if decoded.state.boot_id != self.boot_id {
            self.discard("saved during another boot");
            return None;
        }
        if decoded.damaged + decoded.missing > 0 {
            tracing::warn!(
                file = %path,
                damaged = decoded.damaged,
                missing = decoded.missing,
                "saved state damaged: the damaged or missing records are dropped, the rest restored"
            );
        }
        if decoded.version != layout::VERSION {
            tracing::info!(file = %path, from = decoded.version, to = layout::VERSION, "saved state converted from an older layout");
        }
        Some(decoded)
    }

    /// Sets the file aside as `<file>.discarded` (when there is one), saying why in one line.
    pub fn discard(&self, why: &str) {
        let aside = self.path.with_extension("state.discarded");
        if std::fs::rename(&self.path, &aside).is_ok() {
            tracing::warn!(file = %self.path.display(), moved_to = %aside.display(), reason = why, "saved state discarded: starting with an empty flow table");
        }
    }

    /// Writes `state` as a new file renamed over the old one.
    ///
    /// # Errors
    /// The I/O error; the previous file is then left as it was.
    pub fn save(&self, state: &SavedState) -> std::io::Result<()> {
        std::fs::create_dir_all(STATE_DIR)?;
        let bytes = layout::encode(state, self.write_version);
        let partial = self.path.with_extension("state.new");
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, &self.path)
    }

    /// Waits (up to `limit`) for a running save to finish; returns whether none runs now.
    pub fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.saving.load(Ordering::Acquire) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    /// Saves the state `take` returns unless a save is already running (a slow disk skips a
    /// checkpoint rather than queueing them); a failure is logged when it starts and when it ends,
    /// not every second. Returns whether it saved.
    pub fn checkpoint(&self, take: impl FnOnce() -> SavedState) -> bool {
        if self.saving.swap(true, Ordering::AcqRel) {
            return false;
        }
        let result = self.save(&take());
        self.saving.store(false, Ordering::Release);
        let was_failing = self.failing.swap(result.is_err(), Ordering::AcqRel);
        match &result {
            Err(error) if !was_failing => {
                tracing::warn!(file = %self.path.display(), %error, "cannot save the state: a restart would start empty");
            }
            Ok(()) if was_failing => {
                tracing::info!(file = %self.path.display(), "state saved again");
            }
            _ => {}
        }
        result.is_ok()
    }
}

/// The kernel's boot id (16 bytes of `/proc/sys/kernel/random/boot_id`; zero when unreadable).
pub fn boot_id() -> [u8; 16] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| (b as char).to_digit(16).unwrap_or(0) as u8)
        .collect();
    let mut id = [0; 16];
    for (byte, pair) in id.iter_mut().zip(hex.chunks(2)) {
        *byte = pair.iter().fold(0, |acc, nibble| acc << 4 | nibble);
    }
    id
}

#[cfg(test)]
mod tests;
