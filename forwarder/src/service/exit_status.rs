//! The process's exit codes, so a service manager can tell a configuration error (restarting cannot
//! help until the file is fixed) from a runtime failure (a restart may help).
//!
//! Invariants:
//! - [`CONFIG_INVALID`] is returned exactly when the error chain holds a [`ConfigRejected`]: the file
//!   could not be read or is invalid (`run` and `check` alike);
//! - every other failure is [`RUNTIME_FAILURE`]; command-line usage errors keep clap's own code 2;
//! - the unit's `RestartPreventExitStatus=` names [`CONFIG_INVALID`].

use std::process::ExitCode;

/// Exit code of a configuration that could not be read or is invalid: LSB's "program is not
/// configured" (6), which systemd also names `NOTCONFIGURED`.
pub const CONFIG_INVALID: u8 = 6;

/// Exit code of any other failure (the interfaces, the kernel, the control socket, the daemon).
pub const RUNTIME_FAILURE: u8 = 1;

/// The configuration file could not be read or is invalid; the text names file, line and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigRejected(pub String);

/// The exit code for an error returned by the command line.
pub fn for_error(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(code(error))
}

/// The exit code's number for an error returned by the command line.
pub fn code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<ConfigRejected>()) {
        CONFIG_INVALID
    } else {
        RUNTIME_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_rejected_configuration_is_told_apart_even_under_context() {
        let error = Err::<(), _>(ConfigRejected(
            "flowpin.toml:3: lan.interface: missing".into(),
        ))
        .context("starting")
        .unwrap_err();
        assert_eq!(code(&error), CONFIG_INVALID);
        assert_eq!(
            code(&anyhow::anyhow!("interface wan1 not found")),
            RUNTIME_FAILURE
        );
    }
}
