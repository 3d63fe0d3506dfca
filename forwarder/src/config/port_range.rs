//! Inclusive port ranges: `443`, `"443"`, `"8000-8999"` or `{ first = 8000, last = 8999 }`.
//!
//! Invariant: `1 <= first <= last <= 65535` — a [`PortRange`] is never empty and never holds
//! port 0 (which is not a port a flow can use).

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-empty inclusive range of TCP/UDP ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; `None` when empty or when it starts at port 0.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first >= 1 && first <= last).then_some(Self { first, last })
    }

    /// The lowest port of the range.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The highest port of the range.
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports the range holds (at least 1).
    pub fn count(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Whether `port` lies in the range.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Whether the two ranges share at least one port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The range as a standard inclusive range.
    pub fn as_range(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// Parses the contents of `/proc/sys/net/ipv4/ip_local_port_range` (two numbers separated
    /// by white space, e.g. `"32768\t60999\n"`), with the NAT core's reader.
    pub fn from_proc_local_port_range(text: &str) -> Result<Self, String> {
        flowpin_nat::PortRange::parse_ip_local_port_range(text)
            .map(Self::from)
            .map_err(|error| format!("ip_local_port_range `{}`: {error}", text.trim()))
    }
}

/// The NAT core's range type has the same invariant (`1 <= first <= last`); the configuration keeps
/// its own type for its TOML forms and serde, and converts at the boundary.
impl From<flowpin_nat::PortRange> for PortRange {
    fn from(range: flowpin_nat::PortRange) -> Self {
        Self {
            first: range.first(),
            last: range.last(),
        }
    }
}

impl From<PortRange> for flowpin_nat::PortRange {
    fn from(range: PortRange) -> Self {
        flowpin_nat::PortRange::new(range.first, range.last)
            .expect("both types uphold 1 <= first <= last")
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |part: &str| {
            part.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{text}`: `{}` is not a port number (1-65535)", part.trim()))
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => {
                let single = port(text)?;
                (single, single)
            }
        };
        Self::new(first, last).ok_or_else(|| {
            if first == 0 {
                format!("`{text}`: port 0 is not a usable port")
            } else {
                format!("`{text}`: the range is empty (first port above last)")
            }
        })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortRangeVisitor)
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
            .and_then(|port| PortRange::new(port, port))
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
        PortRange::new(first, last).ok_or_else(|| {
            de::Error::custom(format!(
                "{first}-{last}: the range is empty or starts at port 0"
            ))
        })
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        range: PortRange,
    }

    fn from_toml(value: &str) -> Result<PortRange, String> {
        toml::from_str::<Holder>(&format!("range = {value}"))
            .map(|holder| holder.range)
            .map_err(|error| error.message().to_owned())
    }

    #[test]
    fn accepts_every_spelling() {
        assert_eq!(from_toml("443").unwrap(), PortRange::new(443, 443).unwrap());
        assert_eq!(
            from_toml("\"443\"").unwrap(),
            PortRange::new(443, 443).unwrap()
        );
        assert_eq!(
            from_toml("\"8000-8999\"").unwrap(),
            PortRange::new(8000, 8999).unwrap()
        );
        assert_eq!(
            from_toml("{ first = 20000, last = 59999 }").unwrap(),
            PortRange::new(20000, 59999).unwrap()
        );
    }

    #[test]
    fn rejects_empty_zero_and_out_of_range() {
        assert!(from_toml("\"9000-8000\"").unwrap_err().contains("empty"));
        assert!(from_toml("0").is_err());
        assert!(from_toml("70000").unwrap_err().contains("not a port"));
        assert!(from_toml("\"http\"").is_err());
        assert!(from_toml("{ first = 1 }").unwrap_err().contains("last"));
        assert!(
            from_toml("{ first = 1, last = 2, step = 1 }")
                .unwrap_err()
                .contains("step")
        );
    }

    #[test]
    fn overlap_contains_and_count() {
        let nat = PortRange::new(20000, 32767).unwrap();
        assert!(nat.overlaps(&PortRange::new(32767, 60999).unwrap()));
        assert!(!nat.overlaps(&PortRange::new(32768, 60999).unwrap()));
        assert!(nat.contains(20000) && nat.contains(32767) && !nat.contains(19999));
        assert_eq!(nat.count(), 12768);
        assert_eq!(nat.to_string().parse::<PortRange>().unwrap(), nat);
    }

    #[test]
    fn reads_the_proc_format() {
        let range = PortRange::from_proc_local_port_range("32768\t60999\n").unwrap();
        assert_eq!((range.first(), range.last()), (32768, 60999));
        assert!(PortRange::from_proc_local_port_range("32768").is_err());
        assert!(PortRange::from_proc_local_port_range("60999 32768").is_err());
    }
}
