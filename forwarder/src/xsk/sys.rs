//! The raw system calls of the AF_XDP layer that xdpilone does not wrap.
//!
//! Each function is one syscall on a descriptor the caller owns; none allocates except
//! [`interface_index`] (setup only).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// `SOL_XDP` socket option level.
const SOL_XDP: libc::c_int = 283;
/// `XDP_OPTIONS` (read): `struct xdp_options { __u32 flags; }`.
const XDP_OPTIONS: libc::c_int = 8;
/// `XDP_OPTIONS_ZEROCOPY` bit of `xdp_options.flags`.
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.16+): frames a copy-mode `sendto()` may transmit (default 32).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// The index of interface `name` in the calling thread's network namespace.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// The hardware type (`ARPHRD_*`, see [`crate::link_kind`]) of interface `name` in the calling
/// thread's network namespace (`SIOCGIFHWADDR`: the address family of the hardware address).
pub fn hardware_type(name: &str) -> io::Result<u16> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value (an empty name, NUL-terminated).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: `request` is a live, writable ifreq with a NUL-terminated name (checked above: the
    // name is shorter than IFNAMSIZ and the rest is zero); the kernel writes only inside it.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCGIFHWADDR,
            &raw mut request,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the `ifru_hwaddr` member.
    Ok(unsafe { request.ifr_ifru.ifru_hwaddr }.sa_family)
}

/// Raises the number of frames one copy-mode `sendto()` may transmit. The kernel requires
/// `32 <= budget <= tx ring size` and a configured TX ring.
pub fn set_tx_budget(fd: RawFd, budget: u32) -> io::Result<()> {
    // SAFETY: `budget` is a live u32 and the length passed is its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&raw const budget).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a bound socket runs in zero-copy mode.
pub fn is_zerocopy(fd: RawFd) -> io::Result<bool> {
    let mut flags: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `flags` and `len` are live, writable and sized as announced by `len`.
    let rc =
        unsafe { libc::getsockopt(fd, SOL_XDP, XDP_OPTIONS, (&raw mut flags).cast(), &mut len) };
    if rc == 0 {
        Ok(flags & XDP_OPTIONS_ZEROCOPY != 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to process the TX ring (copy mode transmits only inside this call).
/// `EAGAIN`, `EBUSY` and `ENOBUFS` mean "try again later" and are returned as `Ok(false)`.
pub fn kick_tx(fd: RawFd) -> io::Result<bool> {
    // SAFETY: a zero-length send with null buffers, as the AF_XDP wakeup protocol prescribes.
    let rc = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc >= 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => Ok(false),
        _ => Err(error),
    }
}

/// Wakes the kernel's RX processing of a socket whose fill ring flags `need_wakeup`.
pub fn wake_rx(fd: RawFd) {
    // SAFETY: a zero-length non-blocking receive with null buffers; errors carry no state.
    unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
}

/// A non-blocking, close-on-exec eventfd (counter 0): a worker polls it beside its sockets so the
/// control plane can wake it (see [`super::XskWaker`]).
pub fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter (makes it readable). Errors (counter overflow) are ignored: the
/// descriptor is readable then anyway.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of a live `u64`, as eventfd requires.
    unsafe {
        libc::write(fd, (&raw const one).cast(), size_of::<u64>());
    }
}

/// Resets an eventfd's counter to 0 (non-blocking read; nothing to read is fine).
pub fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live, writable `u64`.
    unsafe {
        libc::read(fd, (&raw mut value).cast(), size_of::<u64>());
    }
}

/// Waits up to `timeout_ms` for one of `fds` to become readable. Returns how many are.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a live, writable slice of `fds.len()` pollfd structures.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_nonsense_has_none() {
        assert!(interface_index("lo").expect("lo exists in every namespace") > 0);
        assert!(interface_index("no-such-if0").is_err());
        assert!(interface_index("nul\0inside").is_err());
    }
}
