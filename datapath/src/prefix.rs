//! IPv4 prefixes (`10.0.0.0/8`, or a bare address meaning `/32`).
//!
//! Invariant: a [`Ipv4Prefix`] never has host bits set — `10.0.1.5/24` is rejected with a hint
//! naming the network (`10.0.1.0/24`), because such a typo usually means a different intent.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network prefix: network address and prefix length (0..=32), host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    network: u32,
    len: u8,
}

impl Ipv4Prefix {
    /// The prefix `network/len`; `None` when `len > 32` or host bits are set.
    pub fn new(network: Ipv4Addr, len: u8) -> Option<Self> {
        let network = u32::from(network);
        (len <= 32 && network & !mask(len) == 0).then_some(Self { network, len })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The highest address of the prefix (its broadcast address when it has one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.len))
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `address` lies inside this prefix.
    #[inline]
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.len) == self.network
    }

    /// Whether every address of `other` lies inside this prefix.
    pub fn covers(&self, other: &Ipv4Prefix) -> bool {
        other.len >= self.len && self.contains(other.network())
    }
}

/// The netmask of a prefix length (`len <= 32`).
fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

/// Why text is not an [`Ipv4Prefix`]; each message quotes the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The length after `/` is not a number in 0..=32.
    #[error("`{text}`: prefix length must be 0..=32")]
    Length {
        /// The text as given.
        text: String,
    },
    /// The part before `/` is not a dotted IPv4 address.
    #[error("`{text}`: not an IPv4 address or prefix (a.b.c.d or a.b.c.d/len)")]
    Address {
        /// The text as given.
        text: String,
    },
    /// The address has bits set beyond the prefix length.
    #[error("`{text}`: host bits are set; did you mean {network}?")]
    HostBits {
        /// The text as given.
        text: String,
        /// The prefix with the host bits cleared.
        network: Ipv4Prefix,
    },
}

impl From<PrefixError> for String {
    fn from(error: PrefixError) -> Self {
        error.to_string()
    }
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, PrefixError> {
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => {
                let len: u8 = len.parse().ok().filter(|len| *len <= 32).ok_or_else(|| {
                    PrefixError::Length {
                        text: text.to_owned(),
                    }
                })?;
                (address, len)
            }
            None => (text, 32),
        };
        let address: Ipv4Addr = address.parse().map_err(|_| PrefixError::Address {
            text: text.to_owned(),
        })?;
        Self::new(address, len).ok_or_else(|| PrefixError::HostBits {
            text: text.to_owned(),
            network: Self {
                network: u32::from(address) & mask(len),
                len,
            },
        })
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Ipv4Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        let prefix: Ipv4Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(prefix.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(prefix.prefix_len(), 16);
        let host: Ipv4Prefix = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(255, 1, 2, 3)));
    }

    #[test]
    fn rejects_host_bits_and_garbage() {
        let error = "10.0.1.5/24".parse::<Ipv4Prefix>().unwrap_err().to_string();
        assert!(error.contains("did you mean 10.0.1.0/24"), "{error}");
        assert!("10.0.0.0/33".parse::<Ipv4Prefix>().is_err());
        assert!("10.0.0/8".parse::<Ipv4Prefix>().is_err());
        assert!("lan".parse::<Ipv4Prefix>().is_err());
    }

    #[test]
    fn contains_and_covers_respect_the_boundary() {
        let prefix: Ipv4Prefix = "10.0.4.0/22".parse().unwrap();
        assert!(prefix.contains(Ipv4Addr::new(10, 0, 4, 0)));
        assert!(prefix.contains(Ipv4Addr::new(10, 0, 7, 255)));
        assert!(!prefix.contains(Ipv4Addr::new(10, 0, 8, 0)));
        assert!(!prefix.contains(Ipv4Addr::new(10, 0, 3, 255)));
        assert!(prefix.covers(&"10.0.5.0/24".parse().unwrap()));
        assert!(!prefix.covers(&"10.0.0.0/16".parse().unwrap()));
    }
}
