//! Lab instance names: a unique prefix per lab, and the namespace name of every role.
//!
//! Invariants:
//! - a prefix is `[a-z][a-z0-9]{1,9}`, so `<prefix>-<role>` stays short and shell-safe;
//! - every namespace of a lab is named `<prefix>-<role>`, so a lab is found (and torn down) from its
//!   prefix alone: `fpab` never matches `fpabc-rtr` because the `-` is part of the match;
//! - interface names live inside namespaces, so they are fixed (`lan0`, `wan1`, `eth0`, ...) and two
//!   labs never clash in the root namespace.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

/// Prefix given to generated lab names ("flowpin").
pub const GENERATED_PREFIX_START: &str = "fp";
/// Longest allowed prefix, in characters.
pub const MAX_PREFIX_LEN: usize = 10;
/// Characters of the random token in a generated prefix.
const TOKEN_LEN: usize = 6;
const TOKEN_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Returns a fresh prefix `fp` + 6 random base-36 characters. Randomness comes from the standard
/// library's per-instance hash keys mixed with the pid, a process-wide counter and the clock, so
/// labs created by parallel tests and parallel processes differ.
pub fn generate_prefix() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    let mut bits = hasher.finish();
    let mut prefix = String::from(GENERATED_PREFIX_START);
    for _ in 0..TOKEN_LEN {
        let digit = usize::try_from(bits % 36).unwrap_or(0);
        prefix.push(char::from(TOKEN_ALPHABET[digit]));
        bits /= 36;
    }
    prefix
}

/// Checks that `prefix` can name a lab: `[a-z][a-z0-9]{1,9}`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let mut chars = prefix.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(2..=MAX_PREFIX_LEN).contains(&prefix.len()) || !starts_with_letter || !rest_ok {
        bail!(
            "invalid lab name {prefix:?}: expected a lowercase letter then 1..{} lowercase letters or digits",
            MAX_PREFIX_LEN - 1
        );
    }
    Ok(())
}

/// The role a namespace plays in a lab; its name is `<prefix>-<role>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// LAN host `n` (1-based).
    LanHost(usize),
    /// The bridge joining the LAN hosts and the router's `lan0`.
    Switch,
    /// The router (kernel reference router, or flowpin).
    Router,
    /// The ISP behind uplink `k` (1-based).
    Isp(usize),
    /// The internet, holding the servers.
    Inet,
    /// The bridge joining the router's one uplink interface to every ISP (labs whose uplinks share
    /// an interface, [`crate::spec::UplinkWiring`]).
    Segment,
}

impl Role {
    /// Suffix of this role's namespace name.
    pub fn suffix(self) -> String {
        match self {
            Role::LanHost(n) => format!("lan{n}"),
            Role::Switch => "sw".to_owned(),
            Role::Router => "rtr".to_owned(),
            Role::Isp(k) => format!("isp{k}"),
            Role::Inet => "inet".to_owned(),
            Role::Segment => "seg".to_owned(),
        }
    }

    /// Parses a suffix produced by [`Role::suffix`].
    pub fn from_suffix(suffix: &str) -> Option<Role> {
        let numbered = |rest: &str| rest.parse::<usize>().ok().filter(|n| *n >= 1);
        match suffix {
            "sw" => Some(Role::Switch),
            "rtr" => Some(Role::Router),
            "inet" => Some(Role::Inet),
            "seg" => Some(Role::Segment),
            _ => {
                if let Some(rest) = suffix.strip_prefix("lan") {
                    numbered(rest).map(Role::LanHost)
                } else {
                    suffix.strip_prefix("isp").and_then(numbered).map(Role::Isp)
                }
            }
        }
    }
}

/// The namespace name of `role` in the lab `prefix`.
pub fn namespace_name(prefix: &str, role: Role) -> String {
    format!("{prefix}-{}", role.suffix())
}

/// If `namespace` belongs to a lab, returns that lab's prefix.
pub fn lab_prefix_of(namespace: &str) -> Option<&str> {
    let (prefix, suffix) = namespace.rsplit_once('-')?;
    validate_prefix(prefix).ok()?;
    Role::from_suffix(suffix)?;
    Some(prefix)
}

/// Whether `namespace` belongs to the lab `prefix`.
pub fn belongs_to_lab(namespace: &str, prefix: &str) -> bool {
    lab_prefix_of(namespace) == Some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_prefixes_are_valid_and_distinct() {
        let prefixes: Vec<String> = (0..1000).map(|_| generate_prefix()).collect();
        for prefix in &prefixes {
            validate_prefix(prefix).unwrap();
            assert!(prefix.starts_with(GENERATED_PREFIX_START));
            assert_eq!(prefix.len(), GENERATED_PREFIX_START.len() + TOKEN_LEN);
        }
        let distinct: std::collections::HashSet<&String> = prefixes.iter().collect();
        assert_eq!(distinct.len(), prefixes.len());
    }

    #[test]
    fn prefix_validation_rejects_unsafe_names() {
        for bad in [
            "",
            "a",
            "9abc",
            "Fp1",
            "fp-1",
            "fp 1",
            "fp/x",
            "abcdefghijk",
            "fp_1",
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["fp", "fp1", "demo", "abcdefghij"] {
            validate_prefix(good).unwrap();
        }
    }

    #[test]
    fn namespace_names_round_trip_to_their_lab() {
        let roles = [
            Role::LanHost(1),
            Role::LanHost(12),
            Role::Switch,
            Role::Router,
            Role::Isp(3),
            Role::Inet,
            Role::Segment,
        ];
        for role in roles {
            let name = namespace_name("fpab12", role);
            assert_eq!(lab_prefix_of(&name), Some("fpab12"), "{name}");
            assert_eq!(Role::from_suffix(&role.suffix()), Some(role));
        }
        assert_eq!(namespace_name("fpab12", Role::Isp(2)), "fpab12-isp2");
    }

    #[test]
    fn foreign_namespaces_are_not_taken_for_lab_members() {
        assert!(!belongs_to_lab("fpabc-rtr", "fpab"));
        assert!(belongs_to_lab("fpab-rtr", "fpab"));
        for foreign in [
            "fpab-router",
            "fpab-isp0",
            "fpab-lan",
            "docker",
            "fpab-ispx",
            "x-rtr",
        ] {
            assert_eq!(lab_prefix_of(foreign), None, "{foreign}");
        }
    }
}
