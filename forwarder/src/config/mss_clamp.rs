//! `[[uplink]] mss_clamp`: how far the MSS of TCP SYNs leaving and SYN-ACKs entering through an uplink
//! is lowered, so a path with a smaller MTU (PPPoE, a tunnel) carries full segments unfragmented.
//!
//! Invariants:
//! - the file says `"pmtu"`, `"off"` or a whole number in [`MssClamp::RANGE`]; anything else is an
//!   error naming the field;
//! - absent, an uplink clamps to its own MTU exactly when that MTU is below the LAN's (a host on the
//!   LAN announces what its own link takes, which the narrower uplink cannot carry);
//! - the limit follows the interfaces' MTUs at run time ([`MssClamp::limit`] is asked again whenever
//!   the control plane reads them).

use std::fmt;
use std::ops::RangeInclusive;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One uplink's MSS clamping as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssClamp {
    /// To the uplink's MTU less 40 (IPv4 and TCP headers).
    Pmtu,
    /// To this many bytes.
    Fixed(u16),
    /// Never clamp.
    Off,
}

impl MssClamp {
    /// The MSS values the file may give: RFC 9293's default MSS (536) up to what a 65,535-byte IPv4
    /// packet holds.
    pub const RANGE: RangeInclusive<u16> = 536..=65_495;

    /// The MSS limit for an uplink with interface MTU `uplink_mtu` behind a LAN of `lan_mtu`;
    /// `configured` is the uplink's `mss_clamp` (`None`: absent). `None` means no clamping.
    #[must_use]
    pub fn limit(configured: Option<Self>, uplink_mtu: u16, lan_mtu: u16) -> Option<u16> {
        match configured {
            Some(Self::Pmtu) => Some(flowpin_nat::mss_for_mtu(uplink_mtu)),
            Some(Self::Fixed(mss)) => Some(mss),
            Some(Self::Off) => None,
            None => (uplink_mtu < lan_mtu).then(|| flowpin_nat::mss_for_mtu(uplink_mtu)),
        }
    }
}

impl fmt::Display for MssClamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pmtu => f.write_str("pmtu"),
            Self::Fixed(mss) => write!(f, "{mss}"),
            Self::Off => f.write_str("off"),
        }
    }
}

impl Serialize for MssClamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Pmtu => serializer.serialize_str("pmtu"),
            Self::Fixed(mss) => serializer.serialize_u16(*mss),
            Self::Off => serializer.serialize_str("off"),
        }
    }
}

/// `mss_clamp` as written: a word or a number, checked by validation (which names the field).
#[derive(Debug)]
pub(super) enum RawMssClamp {
    /// A string value.
    Word(String),
    /// An integer value.
    Number(i64),
}

impl RawMssClamp {
    /// The validated value, or the message naming what is wrong with it.
    pub(super) fn validate(&self) -> Result<MssClamp, String> {
        let expected = format!(
            "`\"pmtu\"`, `\"off\"` or an MSS of {}-{}",
            MssClamp::RANGE.start(),
            MssClamp::RANGE.end()
        );
        match self {
            Self::Word(word) if word == "pmtu" => Ok(MssClamp::Pmtu),
            Self::Word(word) if word == "off" => Ok(MssClamp::Off),
            Self::Word(word) => Err(format!("`{word}`: expected {expected}")),
            Self::Number(n) => u16::try_from(*n)
                .ok()
                .filter(|mss| MssClamp::RANGE.contains(mss))
                .map(MssClamp::Fixed)
                .ok_or_else(|| format!("{n}: expected {expected}")),
        }
    }
}

impl<'de> Deserialize<'de> for RawMssClamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawMssClampVisitor)
    }
}

struct RawMssClampVisitor;

impl serde::de::Visitor<'_> for RawMssClampVisitor {
    type Value = RawMssClamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"pmtu\", \"off\" or an MSS in bytes")
    }

    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<RawMssClamp, E> {
        Ok(RawMssClamp::Word(word.to_owned()))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawMssClamp, E> {
        Ok(RawMssClamp::Number(n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawMssClamp, E> {
        Ok(RawMssClamp::Number(i64::try_from(n).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_clamps_only_an_uplink_narrower_than_the_lan() {
        assert_eq!(MssClamp::limit(None, 1492, 1500), Some(1452));
        assert_eq!(MssClamp::limit(None, 1500, 1500), None);
        assert_eq!(MssClamp::limit(None, 9000, 1500), None);
    }

    #[test]
    fn pmtu_fixed_and_off_do_what_they_say_whatever_the_mtus() {
        assert_eq!(
            MssClamp::limit(Some(MssClamp::Pmtu), 1500, 1500),
            Some(1460)
        );
        assert_eq!(
            MssClamp::limit(Some(MssClamp::Pmtu), 1420, 9000),
            Some(1380)
        );
        assert_eq!(
            MssClamp::limit(Some(MssClamp::Fixed(1200)), 1500, 1500),
            Some(1200)
        );
        assert_eq!(MssClamp::limit(Some(MssClamp::Off), 1280, 1500), None);
    }

    #[test]
    fn raw_values_validate_to_the_model_or_name_the_choices() {
        let word = |w: &str| RawMssClamp::Word(w.to_owned()).validate();
        assert_eq!(word("pmtu"), Ok(MssClamp::Pmtu));
        assert_eq!(word("off"), Ok(MssClamp::Off));
        assert!(word("auto").unwrap_err().contains("\"pmtu\""));
        assert_eq!(
            RawMssClamp::Number(1452).validate(),
            Ok(MssClamp::Fixed(1452))
        );
        for bad in [535, 65_496, -1, 0] {
            let message = RawMssClamp::Number(bad).validate().unwrap_err();
            assert!(message.contains("536-65495"), "{message}");
        }
    }
}
