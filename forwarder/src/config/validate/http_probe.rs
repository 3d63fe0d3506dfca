//! A `[[health.target]]` or `[[uplink.health.target]]` of kind `http` or `https`: a URL of the
//! kind's scheme, the address to connect to (written, or the URL's host when it is an address),
//! the expected status range and body, and a CA file that holds certificates. The HTTP keys are
//! refused on other kinds.

use std::ops::Range;
use std::path::Path;

use super::super::http_probe::{DEFAULT_EXPECT_STATUS, HttpCheck, ProbeUrl, parse_status_range};
use super::super::raw::{RawProbeTarget, S};
use super::super::resilience::ProbeKind;
use super::Checker;

/// What an HTTP target resolved to: the check, the port and the address from its URL.
pub(super) struct HttpTarget {
    pub check: HttpCheck,
    pub port: u16,
    pub url_address: Option<std::net::Ipv4Addr>,
}

impl Checker<'_> {
    /// What does an `http`/`https` target fetch and expect? For other kinds, are the HTTP keys
    /// absent? `prefix` is the target's name in errors, `{table}.target[i]`.
    pub(super) fn http_target(
        &mut self,
        kind: ProbeKind,
        raw: &mut RawProbeTarget,
        span: &Range<usize>,
        prefix: &str,
    ) -> Option<HttpTarget> {
        let field = |key: &str| format!("{prefix}.{key}");
        if !matches!(kind, ProbeKind::Http | ProbeKind::Https) {
            let keys = [
                ("url", raw.url.as_ref().map(S::span)),
                ("expect_status", raw.expect_status.as_ref().map(S::span)),
                ("expect_body", raw.expect_body.as_ref().map(S::span)),
                ("ca_file", raw.ca_file.as_ref().map(S::span)),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.fail(span, &field(key), "only http and https targets have it");
                }
            }
            return None;
        }
        let url = self.required(raw.url.take(), span, &field("url"))?;
        let parsed = match ProbeUrl::parse(url.get_ref()) {
            Ok(parsed) if parsed.tls == (kind == ProbeKind::Https) => parsed,
            Ok(_) => {
                let message = format!("the scheme does not match kind = \"{kind}\"");
                self.fail(url.span(), &field("url"), message);
                return None;
            }
            Err(message) => {
                self.fail(url.span(), &field("url"), message);
                return None;
            }
        };
        if let Some(port) = &raw.port
            && *port.get_ref() != parsed.port
        {
            let message = format!(
                "{} differs from the url's port {}",
                port.get_ref(),
                parsed.port
            );
            self.fail(port.span(), &field("port"), message);
        }
        let expect_status = match raw.expect_status.take() {
            Some(text) => parse_status_range(text.get_ref()).unwrap_or_else(|message| {
                self.fail(text.span(), &field("expect_status"), message);
                DEFAULT_EXPECT_STATUS
            }),
            None => DEFAULT_EXPECT_STATUS,
        };
        let ca_file = raw.ca_file.take().map(|ca| {
            if kind != ProbeKind::Https {
                self.fail(
                    ca.span(),
                    &field("ca_file"),
                    "only https targets have a CA file",
                );
            } else if let Err(message) = check_ca_file(ca.get_ref()) {
                self.fail(ca.span(), &field("ca_file"), message);
            }
            ca.into_inner()
        });
        Some(HttpTarget {
            port: parsed.port,
            url_address: parsed.address(),
            check: HttpCheck {
                url: url.into_inner(),
                host: parsed.host,
                path: parsed.path,
                expect_status,
                expect_body: raw.expect_body.take().map(S::into_inner),
                ca_file,
            },
        })
    }
}

/// Whether `path` is a readable PEM file with at least one certificate.
fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = super::super::http_probe::read_ca_file(path)?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|error| format!("not a PEM certificate file: {error}"))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(())
}
