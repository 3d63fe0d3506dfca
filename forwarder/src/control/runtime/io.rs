//! The workers' I/O: which queues they serve, which cores they run on, and their AF_XDP sockets.
//!
//! Invariants: worker `i` serves receive queue `i` of the LAN and of every live uplink's interface
//! (see [`crate::control::queues`]); a worker has one socket per interface however many uplinks
//! share it, ordered LAN first, then the interfaces of the live slots in order of their first slot;
//! its port map names them `PortId(0)` and the `PortId(1 + slot)` of every uplink on the interface.

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
    let mut interfaces: Vec<&str> = std::iter::once(config.lan.interface.as_str())
        .chain(config.uplinks.iter().map(|u| u.interface.as_str()))
        .collect();
    dedup_in_order(&mut interfaces);
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
    let mut interfaces: Vec<&str> = vec![config.lan.interface.as_str()];
    let mut served: Vec<Vec<PortId>> = vec![vec![PortId(0)]];
    for (slot, uplink) in &live {
        let port = PortId(1 + *slot as u8);
        match interfaces.iter().position(|name| *name == uplink.interface) {
            Some(index) => served[index].push(port),
            None => {
                interfaces.push(&uplink.interface);
                served.push(vec![port]);
            }
        }
    }
    let mut workers = Vec::with_capacity(queues.len());
    for queue in queues {
        let ports: Vec<(&str, u32)> = interfaces.iter().map(|name| (*name, *queue)).collect();
        let worker = open_worker(xsk_config, &ports)
            .with_context(|| format!("opening AF_XDP sockets for queue {queue}"))?;
        xdp.register_worker(&worker)?;
        workers.push((worker, PortMap::new(&served)));
    }
    Ok(workers)
}

/// Removes later repetitions, keeping the first of each.
fn dedup_in_order(names: &mut Vec<&str>) {
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(*name));
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
