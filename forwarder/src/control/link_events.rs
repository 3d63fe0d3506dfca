//! Kernel link, address and neighbour change events, from an rtnetlink multicast subscription.
//!
//! The control plane reads carriers, addresses and gateway MACs from the kernel's tables (see
//! [`super::netinfo`]). Polling alone would make a link-down, an address change or a gateway's new MAC
//! wait for the next poll; this watcher makes them act at once: a thread blocks on an
//! `AF_NETLINK`/`NETLINK_ROUTE` socket bound to the link, IPv4 address and neighbour groups, and on every
//! event worth it (see `neighbour_changes`) it wakes the control loop, which re-reads the tables. The
//! tables are the truth, the event only says "look now", so a lost or coalesced event can delay nothing
//! beyond the periodic re-read that stays as the safety net.
//!
//! Neighbour events come in storms (every LAN host's ARP entry ages through several states), so the
//! watcher lets through only those that change an IPv4 neighbour's usable MAC; link and address events
//! always wake.
//!
//! The lab test `tests/tests/link_events.rs` shows the effect: an uplink's carrier loss is acted on in
//! milliseconds, well before the periodic re-read; `tests/tests/netinfo_netlink.rs` shows a neighbour's
//! MAC change waking the watcher.
//!
//! Invariants: one [`tokio::sync::Notify`] permit coalesces any burst of events into one re-read; the
//! thread never touches the daemon's state, and it ends when its socket fails (logged once).

mod neighbour_changes;

use std::sync::Arc;

use anyhow::{Context, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::sync::Notify;

use neighbour_changes::NeighbourChanges;

/// rtnetlink multicast groups the watcher listens to (`RTMGRP_*` of `linux/rtnetlink.h`): links, IPv4
/// addresses and neighbours.
const GROUPS: u32 = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_NEIGH) as u32;

/// Subscribes to the current network namespace's link, IPv4 address and neighbour events and returns
/// the notifier a thread pokes on each of them worth a re-read.
pub fn watch() -> Result<Arc<Notify>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket
        .bind(&SocketAddr::new(0, GROUPS))
        .context("subscribing to rtnetlink link, address and neighbour events")?;
    let changed = Arc::new(Notify::new());
    let notify = Arc::clone(&changed);
    std::thread::Builder::new()
        .name("flowpin-netlink".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut neighbours = NeighbourChanges::default();
            loop {
                match socket.recv(&mut &mut buffer[..], 0) {
                    Ok(n) => {
                        if neighbours.worth_a_look(&buffer[..n.min(buffer.len())]) {
                            notify.notify_one();
                        }
                    }
                    // ENOBUFS: events were lost; the tables still say what is true now.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        neighbours.forget();
                        notify.notify_one();
                    }
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
