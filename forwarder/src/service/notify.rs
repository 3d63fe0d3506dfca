//! The sd_notify protocol (sd_notify(3)): datagrams of `KEY=VALUE` lines to the socket systemd
//! names in `NOTIFY_SOCKET`, so a `Type=notify` unit knows when flowpin forwards, reloads and stops,
//! and its watchdog knows the control loop is alive.
//!
//! Invariants:
//! - `STATUS=` says which uplinks are up after every state change;
//! - `READY=1` is sent once, after the workers forward, XDP is attached and the control socket
//!   listens; a reload is framed by `RELOADING=1` (with `MONOTONIC_USEC`) and `READY=1`, whatever
//!   its outcome; `STOPPING=1` starts the shutdown;
//! - the watchdog is armed only when `WATCHDOG_USEC` is set (and `WATCHDOG_PID`, when set, is this
//!   process); keep-alives are due every half of it, from the control loop, so a control loop stuck
//!   on the daemon's lock stops them and systemd restarts flowpin;
//! - without `NOTIFY_SOCKET` every call is a no-op; a failed send is logged at debug and ignored,
//!   as libsystemd does: notifications never stop the daemon;
//! - `NOTIFY_SOCKET` may be a path or, starting with `@`, an abstract socket name.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends the service's state to systemd, when systemd asked for it.
#[derive(Debug)]
pub struct Notifier {
    /// The socket and systemd's address (`None`: not started by systemd with notify).
    target: Option<(UnixDatagram, SocketAddr)>,
    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`).
    keep_alive: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self {
            target: None,
            keep_alive: None,
        }
    }

    /// The notifier `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` describe.
    pub fn from_env() -> Self {
        let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self::disabled();
        };
        let keep_alive = keep_alive_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Self::to(address.as_encoded_bytes(), keep_alive) {
            Ok(notifier) => notifier,
            Err(error) => {
                tracing::warn!(%error, "NOTIFY_SOCKET is set but unusable: systemd is not told readiness");
                Self::disabled()
            }
        }
    }

    /// A notifier sending to `address` (a path, or `@name` for an abstract socket).
    pub fn to(address: &[u8], keep_alive: Option<Duration>) -> io::Result<Self> {
        let address = match address.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None if address.starts_with(b"/") => {
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(address))?
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an abstract name (@...)",
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Self {
            target: Some((socket, address)),
            keep_alive,
        })
    }

    /// Whether systemd listens (`NOTIFY_SOCKET` was usable).
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often the watchdog wants `WATCHDOG=1` (`None`: no watchdog).
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        self.target.as_ref().and(self.keep_alive)
    }

    /// Forwarding works: `READY=1` with a one-line status.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A new one-line status (`systemctl status` shows it), e.g. after an uplink changed state.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// A reload starts (it ends with [`Notifier::ready`]).
    pub fn reloading(&self) {
        let message = match monotonic_usec() {
            Some(usec) => format!("RELOADING=1\nMONOTONIC_USEC={usec}"),
            None => "RELOADING=1".to_owned(),
        };
        self.send(&message);
    }

    /// The shutdown starts.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// The watchdog's keep-alive.
    pub fn keep_alive(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        if let Err(error) = socket.send_to_addr(message.as_bytes(), address) {
            tracing::debug!(%error, "sd_notify");
        }
    }
}

/// Half of `WATCHDOG_USEC` when the watchdog is meant for process `own_pid`.
fn keep_alive_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// `CLOCK_MONOTONIC` in microseconds, what systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}

/// The text with line breaks replaced, so it stays one `STATUS=` value.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        assert_eq!(
            keep_alive_interval(Some("10000000"), None, 42),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            keep_alive_interval(Some("10000000"), Some("42"), 42),
            Some(Duration::from_secs(5))
        );
        assert_eq!(keep_alive_interval(Some("10000000"), Some("7"), 42), None);
        assert_eq!(keep_alive_interval(Some("0"), None, 42), None);
        assert_eq!(keep_alive_interval(Some("soon"), None, 42), None);
        assert_eq!(keep_alive_interval(None, Some("42"), 42), None);
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("flowpin-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        systemd
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::to(
            path.as_os_str().as_encoded_bytes(),
            Some(Duration::from_secs(3)),
        )
        .unwrap();
        assert!(notifier.enabled());
        assert_eq!(notifier.keep_alive_interval(), Some(Duration::from_secs(3)));
        notifier.ready("forwarding\non 2 uplinks");
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=forwarding on 2 uplinks");
        notifier.reloading();
        let reloading = receive(&systemd);
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect(&reloading)
            .parse()
            .unwrap();
        assert!(usec > 0);
        notifier.keep_alive();
        assert_eq!(receive(&systemd), "WATCHDOG=1");
        notifier.status("forwarding: isp1 down, isp2 up");
        assert_eq!(receive(&systemd), "STATUS=forwarding: isp1 down, isp2 up");
        notifier.stopping();
        assert_eq!(receive(&systemd), "STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("flowpin-notify-test-{}", std::process::id());
        let systemd =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        systemd
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::to(format!("@{name}").as_bytes(), None).unwrap();
        assert_eq!(notifier.keep_alive_interval(), None);
        notifier.ready("forwarding");
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=forwarding");
    }

    #[test]
    fn a_relative_address_is_refused_and_a_disabled_notifier_sends_nothing() {
        assert!(Notifier::to(b"notify.sock", None).is_err());
        let disabled = Notifier::disabled();
        assert!(!disabled.enabled());
        disabled.ready("forwarding");
    }
}
