//! Kernel link and address change events, from an rtnetlink multicast subscription.
//!
//! The control plane reads carriers, addresses and gateway MACs from the kernel's tables (see
//! [`super::netinfo`]). Polling alone would make a link-down or an address change wait for the next
//! poll; this watcher makes them act at once: a thread blocks on an `AF_NETLINK`/`NETLINK_ROUTE` socket
//! bound to the link and IPv4 address groups, and on every message it wakes the control loop,
//! which re-reads the tables. Messages are not parsed: the tables are the truth, the event only says
//! "look now", so a lost or coalesced event can delay nothing beyond the periodic re-read that stays as
//! the safety net.
//!
//! The lab test `tests/tests/link_events.rs` shows the effect: an uplink's carrier loss is acted on in
//! milliseconds, well before the periodic re-read.
//!
//! Invariants: one [`tokio::sync::Notify`] permit coalesces any burst of events into one re-read; the
//! thread never touches the daemon's state, and it ends when its socket fails (logged once).
#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::{Context, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::sync::Notify;

/// rtnetlink multicast groups the watcher listens to (`RTMGRP_*` of `linux/rtnetlink.h`): links and IPv4
/// addresses. Neighbour events are left out on purpose: every LAN host's ARP entry ages through them, and
/// a gateway MAC change is picked up by the periodic re-read.
const GROUPS: u32 = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR) as u32;

/// Subscribes to the current network namespace's link and IPv4 address events and returns
/// the notifier a thread pokes on each of them.
pub fn watch() -> Result<Arc<Notify>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket
        .bind(&SocketAddr::new(0, GROUPS))
        .context("subscribing to rtnetlink link and address events")?;
    let changed = Arc::new(Notify::new());
    let notify = Arc::clone(&changed);
    std::thread::Builder::new()
        .name("flowpin-netlink".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match socket.recv(&mut &mut buffer[..], 0) {
                    Ok(_) => notify.notify_one(),
                    // ENOBUFS: events were lost; the tables still say what is true now.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => notify.notify_one(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        tracing::error!(%error, "rtnetlink watcher stopped; falling back to polling");
                        return;
                    }
                }
            }
        })
        .context("starting the rtnetlink watcher thread")?;
    Ok(changed)
}
