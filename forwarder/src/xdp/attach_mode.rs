//! How the XDP program is attached to an interface.

use std::fmt;
use std::str::FromStr;

/// The requested attach mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only: works on every interface, slower, and AF_XDP is copy mode.
    Generic,
}

/// The mode an attachment actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachedMode {
    /// Run by the driver before any skb exists.
    Native,
    /// Run by the kernel's generic hook on an skb.
    Generic,
    /// A pinned link left by an earlier flowpin, whose program was replaced in place: it keeps the
    /// mode it was attached in (`ip link` shows `xdp` or `xdpgeneric`).
    Inherited,
}

impl FromStr for AttachMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "native" | "driver" => Ok(Self::Native),
            "generic" | "skb" => Ok(Self::Generic),
            other => Err(format!(
                "unknown XDP attach mode {other:?} (auto, native, generic)"
            )),
        }
    }
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Inherited => "inherited",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_their_config_names() {
        assert_eq!("auto".parse(), Ok(AttachMode::Auto));
        assert_eq!("native".parse(), Ok(AttachMode::Native));
        assert_eq!("skb".parse(), Ok(AttachMode::Generic));
        assert!("zerocopy".parse::<AttachMode>().is_err());
    }
}
