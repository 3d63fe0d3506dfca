//! The `flowpin` binary: parses the command line and runs it; logs go to stderr, in the journal's
//! format under systemd (see [`flowpin::service::logging`]); the exit code tells a configuration
//! error from a runtime failure (see [`flowpin::service::exit_status`]).
#![deny(unsafe_code)]

use clap::Parser;
use flowpin::service::{exit_status, logging};

fn main() -> std::process::ExitCode {
    let target = logging::LogTarget::of_stderr();
    logging::init(target);
    match flowpin::cli::main(flowpin::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The journal stores this line as an error (priority 3), like an ERROR event.
            let prefix = if target == logging::LogTarget::Journal {
                "<3>"
            } else {
                ""
            };
            eprintln!("{prefix}flowpin: {e:#}");
            exit_status::for_error(&e)
        }
    }
}
