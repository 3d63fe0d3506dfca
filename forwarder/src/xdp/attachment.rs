//! How the program's attachment to one interface is held: owned by the process, or pinned in bpffs
//! (see [`super::PinDir`]), and how a pinned link an earlier flowpin left is taken over.
//!
//! Invariant: a pinned attachment's link is the one at its pin path; taking one over replaces its
//! program in place (`bpf_link_update`), so the interface is never without a program.

use std::path::{Path, PathBuf};

use aya::programs::Xdp;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::{XdpLink, XdpLinkId};

use super::{AttachedMode, XdpError};

/// How an attachment is held.
#[derive(Debug)]
pub(super) enum Attachment {
    /// A link of the program's own, detached when the program is dropped or the process dies.
    Owned(XdpLinkId),
    /// A link pinned at `path`: it outlives the process; detaching removes the pin.
    Pinned { link: FdLink, path: PathBuf },
}

/// Puts this program into the link pinned at `pin`, if there is one that still works; a pin
/// that cannot be taken over (its interface is gone, it is not an XDP link) is removed.
pub(super) fn take_over(program: &mut Xdp, name: &str, pin: &Path) -> Option<XdpLinkId> {
    if !pin.exists() {
        return None;
    }
    let result = PinnedLink::from_pin(pin)
        .map_err(|error| error.to_string())
        .and_then(|pinned| {
            XdpLink::try_from(FdLink::from(pinned)).map_err(|error| error.to_string())
        })
        .and_then(|link| {
            program
                .attach_to_link(link)
                .map_err(|error| error.to_string())
        });
    match result {
        Ok(link) => {
            tracing::info!(interface = name, pin = %pin.display(), "took over the pinned XDP link: program replaced in place");
            Some(link)
        }
        Err(error) => {
            tracing::warn!(interface = name, pin = %pin.display(), %error, "stale pinned XDP link removed");
            let _ = std::fs::remove_file(pin);
            None
        }
    }
}

/// Takes `link` out of the program's own links and keeps it pinned at `path` (pinning it unless
/// it was taken over from there).
pub(super) fn keep_pinned(
    program: &mut Xdp,
    name: &str,
    link: XdpLinkId,
    path: PathBuf,
    attached: AttachedMode,
) -> Result<Attachment, XdpError> {
    let pin_error = |reason: String| XdpError::Pin {
        interface: name.to_owned(),
        path: path.clone(),
        reason,
    };
    let link = program
        .take_link(link)
        .map_err(|error| pin_error(error.to_string()))?;
    let link = FdLink::try_from(link).map_err(|error| {
        pin_error(format!(
            "{error} (pinning needs bpf_link XDP, Linux 5.9 or later)"
        ))
    })?;
    let link = if attached == AttachedMode::Inherited {
        link
    } else {
        FdLink::from(
            link.pin(&path)
                .map_err(|error| pin_error(error.to_string()))?,
        )
    };
    Ok(Attachment::Pinned { link, path })
}
