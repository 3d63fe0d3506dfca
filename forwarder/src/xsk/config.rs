//! Sizing and mode of a worker's AF_XDP I/O.

use std::str::FromStr;

/// Copy or zero-copy AF_XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XskMode {
    /// Let the kernel choose: zero-copy where the driver supports it, copy otherwise.
    #[default]
    Auto,
    /// Force copy mode (the kernel copies frames between skbs and the UMEM); works everywhere.
    Copy,
    /// Force zero-copy (the NIC DMAs into the UMEM); binding fails where unsupported (veth).
    ZeroCopy,
}

impl FromStr for XskMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "copy" => Ok(Self::Copy),
            "zerocopy" | "zero-copy" => Ok(Self::ZeroCopy),
            other => Err(format!(
                "unknown AF_XDP mode {other:?} (auto, copy, zerocopy)"
            )),
        }
    }
}

/// A worker's UMEM and ring sizes.
///
/// Constraints (checked by [`XskConfig::validate`]): `frame_size` is a power of two in
/// 2048..=4096 (aligned chunk mode); ring sizes are powers of two; `frame_count` covers the fill
/// rings' targets of every port plus [`XskConfig::alloc_reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Frames in the UMEM, shared by all the worker's ports.
    pub frame_count: u32,
    /// Bytes per frame (chunk).
    pub frame_size: u32,
    /// Entries of each port's RX ring, TX ring, fill ring and completion ring.
    pub ring_size: u32,
    /// Frames each port's fill ring is kept topped up to (0: `ring_size`, capped to an equal share
    /// of the frames outside the reserve).
    pub fill_target: u32,
    /// Frames the fill rings leave in the free pool for [`super::XskWorker::alloc_frame`].
    pub alloc_reserve: u32,
    /// Copy / zero-copy.
    pub mode: XskMode,
    /// Bind with `XDP_USE_NEED_WAKEUP`: the kernel says when it needs a syscall to progress.
    pub need_wakeup: bool,
    /// Frames one copy-mode `sendto()` may transmit (`XDP_MAX_TX_SKB_BUDGET`; the kernel default
    /// is 32). 0 raises it to `ring_size`. Kernels without the option keep 32.
    pub tx_budget: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_count: 8192,
            frame_size: 4096,
            ring_size: 2048,
            fill_target: 0,
            alloc_reserve: 256,
            mode: XskMode::Auto,
            need_wakeup: true,
            tx_budget: 0,
        }
    }
}

/// Why an [`XskConfig`] cannot serve a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XskConfigError {
    /// The frame size is neither 2048 nor 4096.
    #[error("frame_size {0} is not 2048 or 4096")]
    FrameSize(u32),
    /// The ring size is not a power of two.
    #[error("ring_size {0} is not a power of two")]
    RingSize(u32),
    /// No port, or more than a worker can index.
    #[error("{0} ports: need 1..=65535")]
    PortCount(usize),
    /// The frames cannot fill every port's fill ring and keep the reserve.
    #[error(
        "frame_count {frame_count} cannot fill {ports} fill rings of {fill_target} and keep {reserve} in reserve"
    )]
    TooFewFrames {
        /// Frames in the UMEM.
        frame_count: u32,
        /// Ports of the worker.
        ports: usize,
        /// Fill level kept per port.
        fill_target: u32,
        /// Frames kept in reserve.
        reserve: u32,
    },
}

/// The headroom the kernel keeps in front of every received packet in a UMEM frame
/// (`XDP_PACKET_HEADROOM`), on top of the UMEM's own headroom (0 here).
pub const KERNEL_RX_HEADROOM: u32 = 256;

/// An Ethernet header with one 802.1Q tag: what a frame holds beyond an MTU-sized IP packet.
pub const ETHERNET_WITH_VLAN: u32 = 18;

impl XskConfig {
    /// The largest interface MTU whose packets fit one UMEM frame: the kernel drops a received
    /// packet longer than the frame less its headroom (`xsk_pool_get_rx_frame_size`), and without
    /// multi-buffer AF_XDP a packet is never split over frames. 3822 for 4096-byte frames.
    pub const fn max_mtu(&self) -> u32 {
        self.frame_size
            .saturating_sub(KERNEL_RX_HEADROOM)
            .saturating_sub(ETHERNET_WITH_VLAN)
    }

    /// Why interface `name` with MTU `mtu` cannot be served with these frames, naming the fix;
    /// `None` when its packets fit.
    pub fn mtu_refusal(&self, name: &str, mtu: u32) -> Option<String> {
        let max = self.max_mtu();
        (mtu > max).then(|| {
            format!(
                "interface {name} has MTU {mtu}, but a {}-byte UMEM frame holds packets of at most \
                 MTU {max} (flowpin does not use multi-buffer AF_XDP); lower it with \
                 `ip link set dev {name} mtu {max}` (or less) and start flowpin again",
                self.frame_size
            )
        })
    }

    /// Checks the constraints for a worker with `ports` ports.
    pub fn validate(&self, ports: usize) -> Result<(), XskConfigError> {
        if !(self.frame_size.is_power_of_two() && (2048..=4096).contains(&self.frame_size)) {
            return Err(XskConfigError::FrameSize(self.frame_size));
        }
        if !self.ring_size.is_power_of_two() {
            return Err(XskConfigError::RingSize(self.ring_size));
        }
        if ports == 0 || ports > usize::from(u16::MAX) {
            return Err(XskConfigError::PortCount(ports));
        }
        let needed = u64::from(self.effective_fill_target(ports)) * ports as u64
            + u64::from(self.alloc_reserve);
        if u64::from(self.frame_count) < needed.max(1) {
            return Err(XskConfigError::TooFewFrames {
                frame_count: self.frame_count,
                ports,
                fill_target: self.effective_fill_target(ports),
                reserve: self.alloc_reserve,
            });
        }
        Ok(())
    }

    /// The fill level kept per port: `fill_target`, or by default the ring size capped to an
    /// equal share of the frames outside the reserve.
    ///
    /// The fill ring is a port's only reception buffer: when the worker is off its CPU for longer
    /// than the fill ring lasts at the arrival rate, the kernel drops what arrives
    /// (`rx_fill_ring_empty_descs`). Frames received, in flight, in TX and in completion rings all
    /// left a fill ring first and return to the pool on their own, so nothing else needs free
    /// frames kept back (originated packets have `alloc_reserve`): the whole share goes to the
    /// fill ring. (A share of half the frames lost 10–24 % at 100 kpps of new flows on a loaded
    /// 2-core lab; see docs/operations.md.)
    pub fn effective_fill_target(&self, ports: usize) -> u32 {
        if self.fill_target != 0 {
            return self.fill_target.min(self.ring_size);
        }
        let share = self.frame_count.saturating_sub(self.alloc_reserve) / ports.max(1) as u32;
        self.ring_size.min(share).max(1)
    }

    /// The TX budget actually requested.
    pub fn effective_tx_budget(&self) -> u32 {
        if self.tx_budget == 0 {
            self.ring_size
        } else {
            self.tx_budget.min(self.ring_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mtu_a_frame_cannot_hold_is_refused_naming_the_fix() {
        let config = XskConfig::default();
        assert_eq!(config.max_mtu(), 3822);
        assert_eq!(config.mtu_refusal("wan1", 1500), None);
        assert_eq!(config.mtu_refusal("wan1", 3822), None);
        let message = config.mtu_refusal("wan1", 9000).expect("refused");
        assert!(message.contains("wan1 has MTU 9000"), "{message}");
        assert!(
            message.contains("ip link set dev wan1 mtu 3822"),
            "{message}"
        );
    }

    #[test]
    fn default_config_is_valid_for_a_lan_and_two_uplinks() {
        let config = XskConfig::default();
        assert_eq!(config.validate(3), Ok(()));
        let target = config.effective_fill_target(3);
        assert!(target * 3 + config.alloc_reserve <= config.frame_count);
        assert!(target > 0 && target <= config.ring_size);
    }

    #[test]
    fn the_default_fill_target_gives_each_port_its_whole_share_up_to_the_ring() {
        let config = XskConfig {
            frame_count: 4096,
            alloc_reserve: 256,
            ring_size: 2048,
            ..XskConfig::default()
        };
        assert_eq!(config.effective_fill_target(3), 1280, "(4096 - 256) / 3");
        assert_eq!(config.validate(3), Ok(()));
        assert_eq!(config.effective_fill_target(1), 2048, "capped to the ring");
        let large = XskConfig {
            frame_count: 16384,
            ..config
        };
        assert_eq!(large.effective_fill_target(3), 2048);
    }

    #[test]
    fn invalid_sizes_are_rejected() {
        let odd_frame = XskConfig {
            frame_size: 3000,
            ..XskConfig::default()
        };
        assert!(odd_frame.validate(1).is_err());
        let odd_ring = XskConfig {
            ring_size: 1000,
            ..XskConfig::default()
        };
        assert!(odd_ring.validate(1).is_err());
        let starved = XskConfig {
            frame_count: 64,
            fill_target: 64,
            alloc_reserve: 8,
            ..XskConfig::default()
        };
        assert!(starved.validate(2).is_err());
        assert!(XskConfig::default().validate(0).is_err());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("copy".parse(), Ok(XskMode::Copy));
        assert_eq!("zerocopy".parse(), Ok(XskMode::ZeroCopy));
        assert_eq!("auto".parse(), Ok(XskMode::Auto));
        assert!("native".parse::<XskMode>().is_err());
    }
}
