//! The log format: what a line looks like on a terminal, in a pipe and in the journal.
//!
//! Invariants:
//! - under systemd with stderr connected to the journal (`JOURNAL_STREAM` names stderr's device and
//!   inode, as systemd.exec(5) says to check), every line starts with its syslog priority as `<N>`
//!   (sd-daemon(3)), which journald strips and stores as the entry's priority: ERROR → 3 (err),
//!   WARN → 4 (warning), INFO → 6 (info), DEBUG and TRACE → 7 (debug); no timestamp (the journal
//!   has its own) and no colour;
//! - elsewhere lines carry a timestamp and the level, with ANSI colour only when stderr is a terminal;
//! - the level filter is `RUST_LOG` when set and valid, else `info`.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Where stderr goes, which decides the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The journal (stderr is the stream `JOURNAL_STREAM` names).
    Journal,
    /// A terminal: coloured.
    Terminal,
    /// A file or a pipe: plain.
    Plain,
}

impl LogTarget {
    /// Where this process's stderr goes.
    pub fn of_stderr() -> Self {
        let stderr = std::io::stderr();
        let journal = std::env::var("JOURNAL_STREAM")
            .ok()
            .and_then(|value| parse_journal_stream(&value))
            .is_some_and(|(dev, ino)| {
                stderr
                    .as_fd()
                    .try_clone_to_owned()
                    .map(std::fs::File::from)
                    .and_then(|file| file.metadata())
                    .is_ok_and(|meta| meta.dev() == dev && meta.ino() == ino)
            });
        if journal {
            Self::Journal
        } else if stderr.is_terminal() {
            Self::Terminal
        } else {
            Self::Plain
        }
    }
}

/// Parses `JOURNAL_STREAM`, `DEVICE:INODE` in decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority journald stores for a tracing level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Installs the global subscriber writing to stderr in the format `target` needs.
pub fn init(target: LogTarget) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match target {
        LogTarget::Journal => builder
            .event_format(JournalFormat(
                Format::default()
                    .without_time()
                    .with_level(false)
                    .with_ansi(false),
            ))
            .init(),
        LogTarget::Terminal => builder.with_ansi(true).init(),
        LogTarget::Plain => builder.with_ansi(false).init(),
    }
}

/// The default format without time, level and colour, behind the `<N>` priority prefix.
#[derive(Debug)]
pub struct JournalFormat(pub Format<Full, ()>);

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_and_neither_time_nor_colour() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JournalFormat(
                Format::default()
                    .without_time()
                    .with_level(false)
                    .with_ansi(false),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(table = "flowpin_guard", "forward guard re-installed");
            tracing::warn!(uplink = "isp1", state = "down", "uplink health changed");
            tracing::info!("forwarding");
            tracing::debug!("not shown: the default filter of `fmt()` is info");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("<3>"), "{text}");
        assert!(
            lines[0].contains("forward guard re-installed table=\"flowpin_guard\""),
            "{text}"
        );
        assert!(lines[1].starts_with("<4>"), "{text}");
        assert!(lines[2].starts_with("<6>"), "{text}");
        assert!(!text.contains('\u{1b}'), "no ANSI escapes: {text:?}");
        assert!(!text.contains("INFO") && !text.contains("WARN"), "{text}");
        // No timestamp: after the prefix comes the target.
        assert!(
            lines[2].starts_with("<6>flowpin::service::logging::tests:"),
            "{text}"
        );
    }
}
