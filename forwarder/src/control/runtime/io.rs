//! The workers' I/O: which queues they serve, which cores they run on, and their AF_XDP sockets.
//!
//! Invariants: worker `i` serves receive queue `i` of the LAN and of every live uplink (see
//! [`crate::control::queues`]); a worker's sockets are ordered LAN first, then the live slots in slot
//! order, and its port map names them `PortId(0)` and `PortId(1 + slot)`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::{self, Config, XdpMode};
use crate::control::queues;
use crate::datapath::PortId;
use crate::worker::PortMap;
use crate::xdp::XdpProgram;
use crate::xsk::{XskConfig, XskMode, XskWorker};

/// How long opening the sockets waits for the kernel to release the closed sockets' queues.
const QUEUE_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The receive queues to serve, one worker each: see [`crate::control::queues`] for the rule every
/// attached interface must meet.
pub(super) fn worker_queues(config: &Config) -> Result<Vec<u32>> {
    let interfaces: Vec<&str> = std::iter::once(config.lan.interface.as_str())
        .chain(config.uplinks.iter().map(|u| u.interface.as_str()))
        .collect();
    Ok(queues::worker_queues(config.datapath.workers, &interfaces)?)
}

/// The CPUs workers are pinned to, round robin: `[datapath] cpus`, or every CPU the daemon may run on.
pub(super) fn worker_cores(config: &Config) -> Vec<core_affinity::CoreId> {
    if config.datapath.cpus.is_empty() {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        config
            .datapath
            .cpus
            .iter()
            .map(|&id| core_affinity::CoreId { id: id as usize })
            .collect()
    }
}

/// Refuses to start when the LAN's or an uplink's MTU is larger than a UMEM frame holds (the kernel
/// would drop every packet that long, silently to the hosts).
pub(super) fn check_mtus(
    config: &Config,
    lan: &crate::control::netinfo::InterfaceInfo,
    facts: &[Option<crate::control::snapshot::UplinkFacts>],
    xsk_config: &XskConfig,
) -> Result<()> {
    let uplinks = config
        .uplinks
        .iter()
        .zip(facts)
        .filter_map(|(u, f)| f.as_ref().map(|f| (u.interface.as_str(), u32::from(f.mtu))));
    for (name, mtu) in std::iter::once((config.lan.interface.as_str(), lan.mtu)).chain(uplinks) {
        if let Some(refusal) = xsk_config.mtu_refusal(name, mtu) {
            anyhow::bail!(refusal);
        }
    }
    Ok(())
}

/// The AF_XDP settings every worker is opened with.
pub(super) fn xsk_config(config: &Config) -> XskConfig {
    XskConfig {
        frame_count: config.datapath.frames_per_worker,
        mode: match config.datapath.mode {
            XdpMode::Auto => XskMode::Auto,
            XdpMode::Copy => XskMode::Copy,
            XdpMode::Zerocopy => XskMode::ZeroCopy,
        },
        ..XskConfig::default()
    }
}

/// Opens every worker's AF_XDP sockets for the LAN and every live uplink slot (`retired[slot]` false)
/// and registers them in the program's XSKMAP. Port order: the LAN, then the live slots in slot order.
pub(super) fn open_io(
    config: &Config,
    retired: &[bool],
    xdp: &mut XdpProgram,
    queues: &[u32],
    xsk_config: &XskConfig,
) -> Result<Vec<(XskWorker, PortMap)>> {
    let live: Vec<(usize, &config::Uplink)> = config
        .uplinks
        .iter()
        .enumerate()
        .filter(|(slot, _)| !retired.get(*slot).copied().unwrap_or(false))
        .collect();
    let datapath_ports: Vec<PortId> = std::iter::once(PortId(0))
        .chain(live.iter().map(|(slot, _)| PortId(1 + *slot as u8)))
        .collect();
    let mut workers = Vec::with_capacity(queues.len());
    for queue in queues {
        let ports: Vec<(&str, u32)> = std::iter::once(config.lan.interface.as_str())
            .chain(live.iter().map(|(_, u)| u.interface.as_str()))
            .map(|name| (name, *queue))
            .collect();
        let worker = open_worker(xsk_config, &ports)
            .with_context(|| format!("opening AF_XDP sockets for queue {queue}"))?;
        xdp.register_worker(&worker)?;
        workers.push((worker, PortMap::new(&datapath_ports)));
    }
    Ok(workers)
}

/// One worker's sockets on `ports`, retrying a busy bind for a while: right after the previous
/// sockets closed (an I/O rebuild) the kernel may still be releasing their queues.
fn open_worker(
    xsk_config: &XskConfig,
    ports: &[(&str, u32)],
) -> Result<XskWorker, crate::xsk::XskError> {
    let deadline = Instant::now() + QUEUE_RELEASE_WAIT;
    loop {
        match XskWorker::new(xsk_config, ports) {
            Err(e) if e.is_queue_busy() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            result => return result,
        }
    }
}
