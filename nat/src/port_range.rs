//! The NAT's external port range and its validation against the router's own ephemeral range.
//!
//! Invariant: a [`PortRange`] is never empty and never contains port 0. The NAT range must not overlap
//! the router's `net.ipv4.ip_local_port_range`, or the router's own connections (health probes, DNS)
//! could collide with translated flows on the uplink address (design §3).

use std::fmt;

/// An inclusive, non-empty range of ports (or ICMP ids) without 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why a port range is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
        "NAT port range {nat} overlaps the router's ip_local_port_range {local}; move one of them"
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

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
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
    }
}
