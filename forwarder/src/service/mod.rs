//! What makes `flowpin run` a service systemd and journald understand, apart from the daemon itself.
//!
//! | room | owns |
//! |---|---|
//! | `logging` | the log format: priority-prefixed plain lines for journald, colour only on a terminal |
//! | `notify` | the sd_notify protocol: readiness, reloading, stopping, watchdog keep-alives |
//! | `exit_status` | the process's exit codes: a configuration error is not a runtime failure |
//!
//! Invariants:
//! - nothing here runs per packet: logging and notifications are control-plane events;
//! - without systemd (no `NOTIFY_SOCKET`, no `JOURNAL_STREAM`) flowpin behaves as a plain foreground
//!   program: every notification is a no-op and logs are coloured only on a terminal.

pub mod exit_status;
pub mod logging;
pub mod notify;
