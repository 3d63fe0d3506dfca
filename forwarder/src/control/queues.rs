//! How many workers run and which queues they serve.
//!
//! Invariant: worker `i` owns receive queue `i` of **every** interface flowpin attaches to (the LAN and
//! each uplink), through one AF_XDP socket per (interface, queue). The XDP program can only redirect a
//! frame to the socket bound to the queue it arrived on, so a queue without a worker would silently
//! drop everything RSS steers to it, and a worker without a queue cannot bind. Hence every attached
//! interface must have exactly as many receive queues as there are workers (and at least as many
//! transmit queues: the kernel refuses an AF_XDP bind to a queue id beyond either count). A mismatch
//! is an error that names the interface, its queue counts, the worker count and the fix.
//!
//! `workers = "auto"` takes the LAN's receive queue count and holds every uplink to it. The count is
//! fixed for the daemon's life: an uplink added by a reload must match it too.
//!
//! Queue counts are read from sysfs (`/sys/class/net/IF/queues/rx-*` and `tx-*`, one directory per
//! queue the kernel uses), which is what `ethtool -L` changes.

use std::fmt;
use std::path::Path;

use crate::config::Workers;

/// Where the kernel lists network interfaces.
pub const SYSFS_NET: &str = "/sys/class/net";

/// The queues the kernel uses on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Receive queues.
    pub rx: u32,
    /// Transmit queues.
    pub tx: u32,
}

impl QueueCounts {
    /// The counts of `interface` as `sysfs_net` (normally [`SYSFS_NET`]) lists them.
    pub fn read(sysfs_net: &Path, interface: &str) -> Result<Self, QueueError> {
        let dir = sysfs_net.join(interface).join("queues");
        let entries = std::fs::read_dir(&dir).map_err(|error| QueueError::Unreadable {
            interface: interface.to_owned(),
            path: dir.display().to_string(),
            error: error.to_string(),
        })?;
        let mut counts = QueueCounts { rx: 0, tx: 0 };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("rx-") {
                counts.rx += 1;
            } else if name.starts_with("tx-") {
                counts.tx += 1;
            }
        }
        Ok(counts)
    }
}

/// Why the workers cannot be matched to the interfaces' queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The interface's queue directory could not be read.
    Unreadable {
        /// The interface.
        interface: String,
        /// The directory.
        path: String,
        /// What the kernel said.
        error: String,
    },
    /// The interface does not have one receive queue per worker (or too few transmit queues).
    Mismatch {
        /// The interface.
        interface: String,
        /// Its queue counts.
        counts: QueueCounts,
        /// The number of workers.
        workers: u32,
        /// Whether the worker count was configured (`false`: `auto`, taken from the LAN).
        configured: bool,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Unreadable {
                interface,
                path,
                error,
            } => write!(
                f,
                "interface {interface}: cannot count its queues ({path}: {error})"
            ),
            QueueError::Mismatch {
                interface,
                counts,
                workers,
                configured,
            } => {
                let source = if *configured {
                    "[datapath] workers"
                } else {
                    "workers = \"auto\", from the LAN's receive queues"
                };
                write!(
                    f,
                    "interface {interface} has {} RX and {} TX queues but flowpin runs {workers} workers ({source}): \
                     each worker serves one receive queue of every interface, so every interface needs exactly \
                     {workers} RX queues (and at least {workers} TX queues). Fix: `ethtool -L {interface} combined {workers}`, \
                     or set [datapath] workers = {} and give every interface that many queues",
                    counts.rx,
                    counts.tx,
                    counts.rx.max(1),
                )
            }
        }
    }
}

impl std::error::Error for QueueError {}

/// The worker count for `workers` given each attached interface's queue counts (`interfaces[0]` is
/// the LAN): every interface must have exactly that many receive queues and at least that many
/// transmit queues. The first interface that does not is the error.
pub fn worker_count(
    workers: Workers,
    interfaces: &[(&str, QueueCounts)],
) -> Result<u32, QueueError> {
    let (count, configured) = match workers {
        Workers::Count(n) => (u32::from(n.get()), true),
        Workers::Auto => (interfaces.first().map_or(1, |(_, c)| c.rx.max(1)), false),
    };
    for &(interface, counts) in interfaces {
        check(interface, counts, count, configured)?;
    }
    Ok(count)
}

/// Checks that `interface` (with `counts`) can serve `workers` workers, one receive queue each.
pub fn check(
    interface: &str,
    counts: QueueCounts,
    workers: u32,
    configured: bool,
) -> Result<(), QueueError> {
    if counts.rx == workers && counts.tx >= workers {
        Ok(())
    } else {
        Err(QueueError::Mismatch {
            interface: interface.to_owned(),
            counts,
            workers,
            configured,
        })
    }
}

/// Reads the queue counts of `interfaces` (the LAN first) from sysfs and returns the queues the
/// workers serve, `0..workers` (worker `i` on queue `i` of each interface).
pub fn worker_queues(workers: Workers, interfaces: &[&str]) -> Result<Vec<u32>, QueueError> {
    let counts = interfaces
        .iter()
        .map(|&name| QueueCounts::read(Path::new(SYSFS_NET), name).map(|c| (name, c)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..worker_count(workers, &counts)?).collect())
}

/// Checks that `interface`, added to a running daemon with `workers` workers, can serve them (an
/// uplink added by a reload).
pub fn check_added(interface: &str, workers: u32) -> Result<(), QueueError> {
    let counts = QueueCounts::read(Path::new(SYSFS_NET), interface)?;
    // The running count was checked against the configuration at start; whether it came from
    // `auto` no longer matters to the fix, which is to give the new interface that many queues.
    check(interface, counts, workers, true)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;

    fn q(rx: u32, tx: u32) -> QueueCounts {
        QueueCounts { rx, tx }
    }

    fn count(n: u16) -> Workers {
        Workers::Count(NonZeroU16::new(n).unwrap())
    }

    #[test]
    fn auto_takes_the_lans_receive_queues_and_holds_every_uplink_to_them() {
        let equal = [("lan0", q(4, 4)), ("wan1", q(4, 4)), ("wan2", q(4, 8))];
        assert_eq!(worker_count(Workers::Auto, &equal), Ok(4));
        let uneven = [("lan0", q(4, 4)), ("wan1", q(4, 4)), ("wan2", q(2, 2))];
        let error = worker_count(Workers::Auto, &uneven).unwrap_err();
        assert_eq!(
            error,
            QueueError::Mismatch {
                interface: "wan2".into(),
                counts: q(2, 2),
                workers: 4,
                configured: false,
            }
        );
    }

    #[test]
    fn a_configured_count_must_equal_every_interfaces_receive_queues() {
        let two = [("lan0", q(2, 2)), ("wan1", q(2, 2))];
        assert_eq!(worker_count(count(2), &two), Ok(2));
        // Fewer workers than queues: a queue nobody serves would drop what RSS sends it.
        assert!(worker_count(count(1), &two).is_err());
        // More workers than queues: the extra workers cannot bind.
        assert!(worker_count(count(3), &two).is_err());
        // Too few transmit queues: the kernel refuses the bind.
        assert!(worker_count(count(2), &[("lan0", q(2, 1))]).is_err());
    }

    #[test]
    fn the_mismatch_message_names_the_interface_the_counts_the_workers_and_the_fix() {
        let error = worker_count(count(2), &[("lan0", q(2, 2)), ("wan1", q(1, 1))])
            .unwrap_err()
            .to_string();
        for needle in [
            "interface wan1 has 1 RX and 1 TX queues",
            "flowpin runs 2 workers ([datapath] workers)",
            "`ethtool -L wan1 combined 2`",
            "set [datapath] workers = 1",
        ] {
            assert!(error.contains(needle), "{needle:?} missing from: {error}");
        }
        let auto = worker_count(Workers::Auto, &[("lan0", q(4, 4)), ("wan1", q(1, 1))])
            .unwrap_err()
            .to_string();
        assert!(auto.contains("workers = \"auto\", from the LAN"), "{auto}");
    }

    #[test]
    fn counts_are_read_from_the_queue_directories() {
        let root = std::env::temp_dir().join(format!("flowpin-queues-{}", std::process::id()));
        let queues = root.join("eth9").join("queues");
        for name in ["rx-0", "rx-1", "tx-0", "tx-1", "tx-2"] {
            std::fs::create_dir_all(queues.join(name)).unwrap();
        }
        let read = QueueCounts::read(&root, "eth9");
        let missing = QueueCounts::read(&root, "eth8");
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(read, Ok(q(2, 3)));
        let missing = missing.unwrap_err().to_string();
        assert!(
            missing.starts_with("interface eth8: cannot count its queues"),
            "{missing}"
        );
    }
}
