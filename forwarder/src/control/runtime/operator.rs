//! The operator's uplink commands: `flowpin uplink drain|undrain|set-weight`.
//!
//! Invariants: a command names a live uplink (a retired slot is not found by its old name); a drained
//! uplink takes no new flows and keeps its existing ones; a weight override is kept across reloads
//! and never above [`config::MAX_WEIGHT`]; every accepted command is logged and published at once.

use super::Daemon;
use crate::config;
use crate::control::api::{UplinkAction, UplinkCommand};

/// Why an uplink command was refused (the text is what `flowpin uplink` prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkCommandError {
    /// No live uplink has that name.
    #[error("no uplink named `{0}`")]
    NoSuchUplink(String),
    /// The weight asked for is above the maximum.
    #[error("weight above the maximum of {}", config::MAX_WEIGHT)]
    WeightAboveMaximum,
}

impl Daemon {
    /// Carries out `command`; returns what was done.
    pub(super) fn uplink_command(
        &mut self,
        command: &UplinkCommand,
    ) -> Result<String, UplinkCommandError> {
        let Some(slot) = self
            .config
            .uplinks
            .iter()
            .enumerate()
            .position(|(slot, u)| u.name == command.name && !self.uplinks[slot].retired)
        else {
            return Err(UplinkCommandError::NoSuchUplink(command.name.clone()));
        };
        let u = &mut self.uplinks[slot];
        let message = match command.action {
            UplinkAction::Drain => {
                u.drained = true;
                format!(
                    "{} drained: no new flows, existing flows stay",
                    command.name
                )
            }
            UplinkAction::Undrain => {
                u.drained = false;
                format!("{} undrained", command.name)
            }
            UplinkAction::SetWeight { weight } => {
                if weight.is_some_and(|w| w > config::MAX_WEIGHT) {
                    return Err(UplinkCommandError::WeightAboveMaximum);
                }
                u.weight_override = weight;
                match weight {
                    Some(w) => format!("{} weight set to {w}", command.name),
                    None => format!("{} back to its configured weight", command.name),
                }
            }
        };
        tracing::info!(%message, "operator");
        self.publish();
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::UplinkCommandError;

    #[test]
    fn refusals_read_as_they_always_have() {
        assert_eq!(
            UplinkCommandError::NoSuchUplink("isp9".into()).to_string(),
            "no uplink named `isp9`"
        );
        assert_eq!(
            UplinkCommandError::WeightAboveMaximum.to_string(),
            format!("weight above the maximum of {}", crate::config::MAX_WEIGHT)
        );
    }
}
