//! The validated HTTP(S) check of a `[[health.target]]` of kind `http` or `https`: what is
//! fetched (`url`), from where (`address`, or the URL's host when it is an address), and what
//! answer counts (`expect_status`, `expect_body`), with `ca_file` adding trusted roots for HTTPS.
//!
//! Invariants (established by validation): `scheme` matches the target's kind; `host` is not
//! empty; `path` starts with `/`; `expect_status` is a range within 100-599 with `low <= high`;
//! `ca_file`, when set, is a readable PEM file holding at least one certificate.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

/// The statuses an HTTP probe accepts when `expect_status` is not written: success and redirects.
pub const DEFAULT_EXPECT_STATUS: (u16, u16) = (200, 399);

/// What an HTTP or HTTPS probe fetches and which answer counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    /// The URL as written.
    pub url: String,
    /// The URL's host: the `Host` header and, for HTTPS, the SNI name the certificate is checked
    /// against.
    #[serde(skip)]
    pub host: String,
    /// The URL's path and query (`/` when the URL has none).
    #[serde(skip)]
    pub path: String,
    /// Lowest and highest status that count as answered (inclusive).
    #[serde(serialize_with = "serialize_status")]
    pub expect_status: (u16, u16),
    /// When set, the body (its first 64 KiB) must contain this text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// HTTPS: a PEM file of CA certificates trusted besides the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// An `http://` or `https://` URL split into what a probe needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUrl {
    /// `true` for `https`.
    pub tls: bool,
    /// The host as written (a name or an IPv4 address).
    pub host: String,
    /// The port written, or the scheme's (80, 443).
    pub port: u16,
    /// Path and query, `/` when absent.
    pub path: String,
}

impl ProbeUrl {
    /// Splits `url`; `Err` says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`{port}` is not a port (1-65535)"))?;
                (host, port)
            }
            None => (authority, if tls { 443 } else { 80 }),
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid_host {
            return Err(format!("`{host}` is not a host name or IPv4 address"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("the path has spaces or control characters".into());
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The host as an address, when it is one.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.host.parse().ok()
    }
}

/// The largest CA file read (a bundle of a few hundred certificates is well below).
pub const CA_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// Reads the PEM file `path`: a regular file (never a device or a FIFO that would not end) of at
/// most [`CA_FILE_LIMIT`] bytes.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot read: {error}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > CA_FILE_LIMIT {
        return Err(format!("larger than {CA_FILE_LIMIT} bytes"));
    }
    let mut pem = Vec::new();
    file.take(CA_FILE_LIMIT)
        .read_to_end(&mut pem)
        .map_err(|error| format!("cannot read: {error}"))?;
    Ok(pem)
}

/// Parses `expect_status`: `"200"` or `"200-399"`, within 100-599.
pub fn parse_status_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
    };
    match (parse(low), parse(high)) {
        (Some(low), Some(high)) if low <= high => Ok((low, high)),
        _ => Err(format!(
            "`{text}` is not a status or range of statuses within 100-599 (\"200\", \"200-399\")"
        )),
    }
}

fn serialize_status<S: serde::Serializer>(
    status: &(u16, u16),
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if status.0 == status.1 {
        serializer.collect_str(&status.0)
    } else {
        serializer.collect_str(&format_args!("{}-{}", status.0, status.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let u = ProbeUrl::parse("https://probe.example:8443/health?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "probe.example", 8443, "/health?x=1")
        );
        let u = ProbeUrl::parse("http://203.0.113.10").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 80, "/"));
        assert_eq!(u.address(), Some(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(ProbeUrl::parse("https://a.test?q").unwrap().path, "/?q");
        for bad in [
            "ftp://a.test/",
            "http://",
            "http://a.test:0/",
            "http://a.test:99999/",
            "http://user@a.test/",
            "http://a b/",
            "http://a.test/x y",
            "http://[::1]/",
        ] {
            assert!(ProbeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_ranges_are_one_status_or_an_ordered_pair_within_100_599() {
        assert_eq!(parse_status_range("204"), Ok((204, 204)));
        assert_eq!(parse_status_range("200-399"), Ok((200, 399)));
        for bad in ["", "99", "600", "399-200", "2xx", "200-"] {
            assert!(parse_status_range(bad).is_err(), "{bad}");
        }
    }
}
