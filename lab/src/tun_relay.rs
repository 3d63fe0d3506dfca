//! The modem of a tun uplink: a relay process that carries bare IP packets between the router's
//! tun device (`wanK`, an uplink without a link layer, as `ppp0`, `wg0` or `wwan0` are) and the
//! ISP's tun device (`to-rtr`).
//!
//! Invariants:
//! - both devices are persistent tuns created by [`crate::wiring`]; the relay only attaches to them
//!   (`TUNSETIFF`, `IFF_TUN | IFF_NO_PI`), so its exit leaves the devices in place with their
//!   addresses and routes, carrier off: stopping the relay is the lab's "modem lost the line", and
//!   [`Lab::start_tun_relay`] brings the line back;
//! - it opens the ISP's device first, then enters the router's namespace (`setns` on
//!   `/run/netns/<name>`) and opens the router's, so it runs in the router's namespace afterwards;
//! - one thread per direction, a blocking `read` and one `write` per packet; a write the other side
//!   refuses loses that packet, as a line would. Python is fast enough for the lab's iperf3 runs
//!   (figures in `docs/benchmarks.md`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{Lab, LabProcess};

/// The relay, written into the lab's directory and run with `python3`.
pub const RELAY_SCRIPT: &str = r#"#!/usr/bin/env python3
"""flowpin lab: carries IP packets between the router's tun and the ISP's tun (the modem)."""
import ctypes, fcntl, os, struct, sys, threading

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI, CLONE_NEWNET = 0x0001, 0x1000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def enter(namespace):
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns into {namespace}")
    os.close(fd)


def attach(device):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def pump(source, sink):
    while True:
        packet = os.read(source, 65536)
        try:
            os.write(sink, packet)
        except OSError:
            pass  # the other side refused it: one packet lost, as on a line


def main():
    router_ns, router_tun, isp_ns, isp_tun = sys.argv[1:5]
    enter(isp_ns)
    isp = attach(isp_tun)
    enter(router_ns)
    router = attach(router_tun)
    print("relaying", flush=True)
    threading.Thread(target=pump, args=(isp, router), daemon=True).start()
    pump(router, isp)


main()
"#;

/// How long the relay may take to attach both devices.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

impl Lab {
    /// Starts the relay of tun uplink `index` (0-based) and waits until the router's device has its
    /// carrier. Errors if that uplink is not a tun uplink.
    pub fn start_tun_relay(&self, index: usize) -> Result<LabProcess> {
        let Some(uplink) = self.topology().uplinks.get(index) else {
            bail!("the lab has no uplink {}", index + 1);
        };
        if !uplink.tun {
            bail!("uplink {} is not a tun uplink", uplink.number);
        }
        let script = self.dir().join("tun-relay.py");
        if !script.exists() {
            std::fs::write(&script, RELAY_SCRIPT)?;
        }
        let script = script.to_string_lossy();
        let router_ns = &self.router().ns;
        let process = self.spawn(
            &uplink.isp_ns,
            &[
                "python3",
                &script,
                router_ns,
                &uplink.router_iface,
                &uplink.isp_ns,
                &uplink.isp_router_iface,
            ],
        )?;
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            let link = self.exec_ok(router_ns, &["ip", "link", "show", &uplink.router_iface])?;
            if link.contains("LOWER_UP") {
                return Ok(process);
            }
            if !process.is_running()? || Instant::now() >= deadline {
                bail!(
                    "the tun relay of uplink {} did not attach: {}",
                    uplink.number,
                    process.stderr().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
