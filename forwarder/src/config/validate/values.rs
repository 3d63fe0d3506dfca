//! Checks of single values that several sections share: names, interface names, unicast
//! addresses, weights, prefix lists, token buckets.
//!
//! Invariant: each check only reports; the caller keeps the value (so later checks still see it).

use std::net::Ipv4Addr;

use super::super::Ipv4Prefix;
use super::super::model::Lan;
use super::super::raw::S;
use super::{Checker, MAX_WEIGHT};

impl Checker<'_> {
    /// Parses a list of prefixes, naming each bad element by its index; keeps the good ones.
    pub(super) fn prefixes(&mut self, list: S<Vec<S<String>>>, field: &str) -> Vec<S<Ipv4Prefix>> {
        let mut prefixes = Vec::with_capacity(list.get_ref().len());
        for (index, text) in list.into_inner().into_iter().enumerate() {
            match text.get_ref().parse::<Ipv4Prefix>() {
                Ok(prefix) => prefixes.push(S::new(text.span(), prefix)),
                Err(message) => self.fail(text.span(), &format!("{field}[{index}]"), message),
            }
        }
        prefixes
    }

    /// Uplink and policy names: shown in the CLI and metrics labels, so kept plain.
    pub(super) fn check_name(&mut self, name: &S<String>, field: &str) {
        let text = name.get_ref();
        let plain = text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte));
        if text.is_empty() || text.len() > 32 || !plain {
            let message =
                format!("`{text}`: a name is 1-32 characters of letters, digits, `_`, `-`, `.`");
            self.fail(name.span(), field, message);
        }
    }

    /// Linux interface names: 1-15 bytes, no `/`, `:` or white space.
    pub(super) fn check_interface_name(&mut self, name: &S<String>, field: &str) {
        let text = name.get_ref();
        let valid = !text.is_empty()
            && text.len() <= 15
            && text != "."
            && text != ".."
            && !text
                .bytes()
                .any(|byte| byte == b'/' || byte == b':' || byte.is_ascii_whitespace());
        if !valid {
            let message = format!(
                "`{text}` is not a Linux interface name (1-15 characters, no `/`, `:`, spaces)"
            );
            self.fail(name.span(), field, message);
        }
    }

    /// Is `address` a unicast host address outside the LAN?
    pub(super) fn check_unicast(&mut self, address: &S<Ipv4Addr>, field: &str, lan: &Lan) {
        let value = *address.get_ref();
        let problem = if value.is_unspecified() || value.is_broadcast() {
            Some("is not a host address")
        } else if value.is_multicast() {
            Some("is a multicast address")
        } else if value.is_loopback() {
            Some("is a loopback address")
        } else if lan.contains(value) {
            Some("lies inside a [lan] prefix")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.fail(address.span(), field, format!("{value} {problem}"));
        }
    }

    /// Is `weight` at most [`MAX_WEIGHT`]?
    pub(super) fn check_weight(&mut self, weight: &S<u32>, field: &str) {
        if *weight.get_ref() > MAX_WEIGHT {
            let message = format!("{} is above the maximum of {MAX_WEIGHT}", weight.get_ref());
            self.fail(weight.span(), field, message);
        }
    }

    /// A token bucket's two keys `{prefix}_per_s` and `{prefix}_burst` (`prefix` is the field path
    /// without the suffix): each 0-1000000, and a burst of at least 1 when the rate is not 0 (a rate
    /// of 0 switches the packets off).
    pub(super) fn rate_limit(
        &mut self,
        prefix: &str,
        (raw_per_s, per_s): (Option<S<u32>>, &mut u32),
        (raw_burst, burst): (Option<S<u32>>, &mut u32),
    ) {
        let mut burst_span = None;
        for (value, slot, suffix) in [
            (raw_per_s, &mut *per_s, "per_s"),
            (raw_burst, &mut *burst, "burst"),
        ] {
            let Some(value) = value else { continue };
            if *value.get_ref() > 1_000_000 {
                let message = format!("{}: must be 0-1000000", value.get_ref());
                self.fail(value.span(), &format!("{prefix}_{suffix}"), message);
            }
            if suffix == "burst" {
                burst_span = Some(value.span());
            }
            *slot = value.into_inner();
        }
        if *per_s > 0 && *burst == 0 {
            let key = prefix.rsplit('.').next().unwrap_or(prefix);
            let message = format!("0 would never send one; set {key}_per_s = 0 to switch them off");
            self.fail(
                burst_span.unwrap_or(0..0),
                &format!("{prefix}_burst"),
                message,
            );
        }
    }
}
