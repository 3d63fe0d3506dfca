//! Inclusive port ranges: the NAT's external ports, a policy's destination ports, the router's
//! own ephemeral range.
//!
//! Invariant: a [`PortRange`] is never empty and never contains port 0 (`1 <= first <= last`).
//! The NAT range must not overlap the router's `net.ipv4.ip_local_port_range`, or the router's
//! own connections (health probes, DNS) could collide with translated flows on the uplink
//! address ([`PortRange::validate_against_local_range`]).
//!
//! Text form (`Display`, `FromStr`): `443` for one port, `8000-8999` for more. With the `serde`
//! feature a range also reads from an integer or a `{ first, last }` table, and is written in
//! its text form.

use std::fmt;
use std::str::FromStr;

/// An inclusive, non-empty range of ports (or ICMP ids) without 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why a port range is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    /// `first > last`.
    #[error("port range {first}-{last} is empty")]
    Empty {
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
    /// The range includes port 0.
    #[error("port range includes port 0")]
    IncludesZero,
    /// The NAT range overlaps the router's own ephemeral range.
    #[error(
        "NAT port range {}-{} overlaps the router's ip_local_port_range {}-{}; move one of them",
        .nat.first, .nat.last, .local.first, .local.last
    )]
    OverlapsLocalRange {
        /// The NAT range.
        nat: PortRange,
        /// The router's ephemeral range.
        local: PortRange,
    },
    /// The text is not two port numbers.
    #[error("cannot read a port range from {0:?} (expected two numbers, e.g. \"32768\\t60999\")")]
    Unreadable(&'static str),
    /// Part of a range's text form is not a port number.
    #[error("`{text}`: `{part}` is not a port number (1-65535)")]
    NotAPort {
        /// The whole text.
        text: String,
        /// The part that is not a port.
        part: String,
    },
    /// A range's text form starts at port 0.
    #[error("`{text}`: port 0 is not a usable port")]
    TextIncludesZero {
        /// The whole text.
        text: String,
    },
    /// A range's text form names its first port above its last.
    #[error("`{text}`: the range is empty (first port above last)")]
    TextEmpty {
        /// The whole text.
        text: String,
    },
}

impl PortRange {
    /// A range `first..=last`.
    ///
    /// # Errors
    /// [`PortRangeError::Empty`] or [`PortRangeError::IncludesZero`].
    pub const fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError::Empty { first, last });
        }
        if first == 0 {
            return Err(PortRangeError::IncludesZero);
        }
        Ok(Self { first, last })
    }

    /// First port.
    #[must_use]
    pub const fn first(self) -> u16 {
        self.first
    }

    /// Last port.
    #[must_use]
    pub const fn last(self) -> u16 {
        self.last
    }

    /// Number of ports.
    #[must_use]
    pub const fn len(self) -> usize {
        (self.last - self.first) as usize + 1
    }

    /// Never true (kept for API symmetry with `len`).
    #[must_use]
    pub const fn is_empty(self) -> bool {
        false
    }

    /// True when `port` is inside.
    #[inline]
    #[must_use]
    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// True when the two ranges share a port.
    #[must_use]
    pub const fn overlaps(self, other: Self) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The part of this range inside `first..=last`, if any.
    #[must_use]
    pub fn intersect(self, first: u16, last: u16) -> Option<Self> {
        Self::new(self.first.max(first), self.last.min(last)).ok()
    }

    /// Parses the text of `/proc/sys/net/ipv4/ip_local_port_range` (two numbers separated by
    /// whitespace). Pure: the caller reads the file.
    ///
    /// # Errors
    /// [`PortRangeError::Unreadable`], or the errors of [`PortRange::new`].
    pub fn parse_ip_local_port_range(text: &str) -> Result<Self, PortRangeError> {
        let mut numbers = text.split_whitespace().map(str::parse::<u16>);
        match (numbers.next(), numbers.next(), numbers.next()) {
            (Some(Ok(first)), Some(Ok(last)), None) => Self::new(first, last),
            _ => Err(PortRangeError::Unreadable("ip_local_port_range")),
        }
    }

    /// Checks that the NAT range `self` does not overlap the router's ephemeral range `local`.
    ///
    /// # Errors
    /// [`PortRangeError::OverlapsLocalRange`].
    pub const fn validate_against_local_range(self, local: Self) -> Result<(), PortRangeError> {
        if self.overlaps(local) {
            return Err(PortRangeError::OverlapsLocalRange { nat: self, local });
        }
        Ok(())
    }
}

/// `443` for a single port, `8000-8999` otherwise.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Reads `443` or `8000-8999` (white space around the numbers is ignored).
impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(text: &str) -> Result<Self, PortRangeError> {
        let port = |part: &str| {
            part.trim()
                .parse::<u16>()
                .map_err(|_| PortRangeError::NotAPort {
                    text: text.to_owned(),
                    part: part.trim().to_owned(),
                })
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => {
                let single = port(text)?;
                (single, single)
            }
        };
        Self::new(first, last).map_err(|_| {
            let text = text.to_owned();
            if first == 0 {
                PortRangeError::TextIncludesZero { text }
            } else {
                PortRangeError::TextEmpty { text }
            }
        })
    }
}

/// The serde forms of a [`PortRange`]: an integer (`443`), a string (`"8000-8999"`, see
/// [`FromStr`]) or a table `{ first = 8000, last = 8999 }`; written as the string form.
#[cfg(feature = "serde")]
mod serde_forms {
    use std::fmt;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::PortRange;

    impl<'de> Deserialize<'de> for PortRange {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(PortRangeVisitor)
        }
    }

    impl Serialize for PortRange {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    /// Accepts an integer, a string, or a `{ first, last }` table.
    struct PortRangeVisitor;

    impl<'de> Visitor<'de> for PortRangeVisitor {
        type Value = PortRange;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port (443), a range string (\"8000-8999\") or a table { first, last }")
        }

        fn visit_i64<E: de::Error>(self, port: i64) -> Result<PortRange, E> {
            u16::try_from(port)
                .ok()
                .and_then(|port| PortRange::new(port, port).ok())
                .ok_or_else(|| E::custom(format!("{port} is not a port number (1-65535)")))
        }

        fn visit_u64<E: de::Error>(self, port: u64) -> Result<PortRange, E> {
            self.visit_i64(i64::try_from(port).unwrap_or(i64::MAX))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<PortRange, E> {
            text.parse().map_err(E::custom)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PortRange, A::Error> {
            let (mut first, mut last) = (None, None);
            while let Some(key) = map.next_key::<String>()? {
                let slot = match key.as_str() {
                    "first" => &mut first,
                    "last" => &mut last,
                    other => return Err(de::Error::unknown_field(other, &["first", "last"])),
                };
                *slot = Some(map.next_value::<u16>()?);
            }
            let first = first.ok_or_else(|| de::Error::missing_field("first"))?;
            let last = last.ok_or_else(|| de::Error::missing_field("last"))?;
            PortRange::new(first, last).map_err(|_| {
                de::Error::custom(format!(
                    "{first}-{last}: the range is empty or starts at port 0"
                ))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_rules() {
        assert_eq!(
            PortRange::new(10, 9),
            Err(PortRangeError::Empty { first: 10, last: 9 })
        );
        assert_eq!(PortRange::new(0, 9), Err(PortRangeError::IncludesZero));
        let r = PortRange::new(1024, 32767).unwrap();
        assert_eq!(r.len(), 31744);
        assert!(r.contains(1024) && r.contains(32767) && !r.contains(32768));
        assert_eq!(r.to_string(), "1024-32767");
        assert_eq!(r.intersect(1, 1023), None);
        assert_eq!(
            r.intersect(2000, 70_00),
            Some(PortRange::new(2000, 7000).unwrap())
        );
    }

    #[test]
    fn local_range_text_is_parsed() {
        assert_eq!(
            PortRange::parse_ip_local_port_range("32768\t60999\n"),
            PortRange::new(32768, 60999)
        );
        assert!(PortRange::parse_ip_local_port_range("32768").is_err());
        assert!(PortRange::parse_ip_local_port_range("a b").is_err());
        assert!(PortRange::parse_ip_local_port_range("1 2 3").is_err());
        assert!(PortRange::parse_ip_local_port_range("60999 32768").is_err());
    }

    #[test]
    fn overlap_is_refused_with_both_ranges_named() {
        let local = PortRange::new(32768, 60999).unwrap();
        assert!(
            PortRange::new(1024, 32767)
                .unwrap()
                .validate_against_local_range(local)
                .is_ok()
        );
        assert!(
            PortRange::new(61000, 65535)
                .unwrap()
                .validate_against_local_range(local)
                .is_ok()
        );
        let bad = PortRange::new(1024, 32768).unwrap();
        let err = bad.validate_against_local_range(local).unwrap_err();
        assert_eq!(err, PortRangeError::OverlapsLocalRange { nat: bad, local });
        assert!(err.to_string().contains("1024-32768") && err.to_string().contains("32768-60999"));
        let single = PortRange::new(40000, 40000).unwrap();
        let err = single.validate_against_local_range(local).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("NAT port range 40000-40000 overlaps")
        );
    }

    #[test]
    fn overlap_contains_and_count() {
        let nat = PortRange::new(20000, 32767).unwrap();
        assert!(nat.overlaps(PortRange::new(32767, 60999).unwrap()));
        assert!(!nat.overlaps(PortRange::new(32768, 60999).unwrap()));
        assert!(nat.contains(20000) && nat.contains(32767) && !nat.contains(19999));
        assert_eq!(nat.len(), 12768);
        assert_eq!(nat.to_string().parse::<PortRange>().unwrap(), nat);
    }

    #[test]
    fn text_form_reads_one_port_or_a_range() {
        assert_eq!("443".parse(), PortRange::new(443, 443));
        assert_eq!(PortRange::new(443, 443).unwrap().to_string(), "443");
        assert_eq!(" 8000 - 8999".parse(), PortRange::new(8000, 8999));
        assert_eq!(
            "9000-8000".parse::<PortRange>().unwrap_err().to_string(),
            "`9000-8000`: the range is empty (first port above last)"
        );
        assert_eq!(
            "0-5".parse::<PortRange>().unwrap_err().to_string(),
            "`0-5`: port 0 is not a usable port"
        );
        assert_eq!(
            "a-b".parse::<PortRange>().unwrap_err().to_string(),
            "`a-b`: `a` is not a port number (1-65535)"
        );
    }
}
