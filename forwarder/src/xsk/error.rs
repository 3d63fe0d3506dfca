//! Errors of AF_XDP setup (the datapath calls themselves do not fail).

use std::io;

/// What went wrong building a worker's AF_XDP I/O.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// An invalid [`super::XskConfig`] for the port count.
    #[error("AF_XDP configuration: {0}")]
    Config(#[from] super::XskConfigError),
    /// A system call failed; `what` says which step.
    #[error("AF_XDP {what} ({interface} queue {queue}): {source}")]
    Os {
        /// The setup step.
        what: &'static str,
        /// Interface name ("-" for the UMEM).
        interface: String,
        /// Queue.
        queue: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl XskError {
    /// Whether the (interface, queue) is still held by a socket being released: the kernel frees a
    /// closed socket's buffer pool from deferred work, so a new bind right after a close may see
    /// `EBUSY` for a few milliseconds. Retrying shortly is the cure.
    pub fn is_queue_busy(&self) -> bool {
        matches!(self, Self::Os { what: "bind", source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }

    pub(super) fn os(what: &'static str, interface: &str, queue: u32, source: io::Error) -> Self {
        Self::Os {
            what,
            interface: interface.to_owned(),
            queue,
            source,
        }
    }

    pub(super) fn errno(
        what: &'static str,
        interface: &str,
        queue: u32,
        errno: xdpilone::Errno,
    ) -> Self {
        Self::os(
            what,
            interface,
            queue,
            io::Error::from_raw_os_error(errno.get_raw().abs()),
        )
    }
}
