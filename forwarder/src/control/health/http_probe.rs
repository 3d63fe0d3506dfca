//! HTTP and HTTPS probes: one HTTP/1.1 `GET` over a TCP connection bound to the uplink (as the
//! TCP probe's), TLS by rustls for `https`, and the verdict on the answer.
//!
//! Invariants: at most [`RESPONSE_LIMIT`] bytes of a response are read (a server that streams
//! forever cannot hold memory); the request asks the server to close (`Connection: close`), and
//! reading stops as soon as the verdict is known (headers complete, and the expected text found
//! when one is set); the certificate is checked against the URL's host (SNI is that host; an IPv4
//! host is checked as an IP address SAN); trust roots are the system's (read once) plus the
//! target's `ca_file` (read again when its size or modification time changes), shared by every
//! probe ([`TlsClients`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::probe::{ProbeFailure, ProbeSource, connect_bound};
use crate::config::{HttpCheck, ProbeTarget};

/// The most of a response read: status line, headers and the start of the body.
pub const RESPONSE_LIMIT: usize = 64 * 1024;

/// A CA file's size and modification time: when either changes, it is read again.
type FileStamp = Option<(u64, std::time::SystemTime)>;

/// TLS client settings by CA file (`None`: the system's roots only), built on first use.
#[derive(Debug, Default)]
pub struct TlsClients {
    system: Option<Arc<Vec<CertificateDer<'static>>>>,
    configs: HashMap<Option<PathBuf>, (FileStamp, Arc<ClientConfig>)>,
}

impl TlsClients {
    /// Whether the system's CA store was read.
    pub fn has_system_roots(&self) -> bool {
        self.system.is_some()
    }

    /// Reads the system's CA store (blocking: call it off the runtime's thread).
    pub fn load_system_roots(&mut self) {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "reading the system's CA certificates");
        }
        self.system = Some(Arc::new(found.certs));
    }

    /// The client trusting the system's roots and those of `ca_file`.
    pub fn client(&mut self, ca_file: Option<&PathBuf>) -> Result<Arc<ClientConfig>, String> {
        let stamp = ca_file.and_then(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.len(), metadata.modified().ok()?))
        });
        if let Some((built_from, config)) = self.configs.get(&ca_file.cloned())
            && *built_from == stamp
        {
            return Ok(config.clone());
        }
        if self.system.is_none() {
            self.load_system_roots();
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(self.system.iter().flat_map(|s| s.iter().cloned()));
        if let Some(path) = ca_file {
            let pem = crate::config::http_probe::read_ca_file(path)
                .map_err(|error| format!("CA file {}: {error}", path.display()))?;
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate =
                    certificate.map_err(|error| format!("CA file {}: {error}", path.display()))?;
                roots
                    .add(certificate)
                    .map_err(|error| format!("CA file {}: {error}", path.display()))?;
            }
        }
        // ring, not aws-lc: no C toolchain beyond cc at build; a health probe's handshake needs no
        // post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let config = Arc::new(config);
        self.configs
            .insert(ca_file.cloned(), (stamp, config.clone()));
        Ok(config)
    }
}

/// Fetches `check`'s URL from `target`'s address through `source`; `tls` for HTTPS.
pub async fn http_get(
    target: &ProbeTarget,
    check: &HttpCheck,
    source: &ProbeSource,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(), ProbeFailure> {
    let stream = connect_bound(target.address, target.port, source).await?;
    let Some(config) = tls else {
        return exchange(stream, check).await;
    };
    let name = match check.host.parse::<std::net::Ipv4Addr>() {
        Ok(address) => ServerName::IpAddress(std::net::IpAddr::V4(address).into()),
        Err(_) => ServerName::try_from(check.host.clone())
            .map_err(|error| ProbeFailure::Tls(error.to_string()))?,
    };
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|error| ProbeFailure::Tls(error.to_string()))?;
    exchange(stream, check).await
}

/// The request: a `GET` of the path with the URL's host, asking the server to close.
pub fn request(check: &HttpCheck) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: flowpin-health\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        check.path, check.host
    )
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    check: &HttpCheck,
) -> Result<(), ProbeFailure> {
    stream.write_all(request(check).as_bytes()).await?;
    stream.flush().await?;
    let mut response = Vec::with_capacity(4096);
    let mut buffer = [0u8; 4096];
    while response.len() < RESPONSE_LIMIT && !decided(&response, check) {
        let read = match stream.read(&mut buffer).await {
            Ok(read) => read,
            // A TLS server that closes without close_notify: what arrived is the answer.
            Err(error)
                if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() =>
            {
                0
            }
            Err(error) => return Err(error.into()),
        };
        if read == 0 {
            break;
        }
        let room = RESPONSE_LIMIT - response.len();
        response.extend_from_slice(&buffer[..read.min(room)]);
    }
    judge(&response, check)
}

/// Whether `response` so far settles the verdict: its headers are complete and either no body
/// text is expected or the text is there.
fn decided(response: &[u8], check: &HttpCheck) -> bool {
    let Some(body) = body_start(response) else {
        return false;
    };
    match &check.expect_body {
        None => true,
        Some(text) => contains(&response[body..], text.as_bytes()),
    }
}

fn body_start(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The verdict on a (possibly truncated) response: a status line `HTTP/1.x NNN`, the status within
/// `expect_status`, and the expected text within the body read.
pub fn judge(response: &[u8], check: &HttpCheck) -> Result<(), ProbeFailure> {
    let line_end = response
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(ProbeFailure::HttpMalformed)?;
    let line =
        std::str::from_utf8(&response[..line_end]).map_err(|_| ProbeFailure::HttpMalformed)?;
    let mut words = line.split(' ');
    let version = words.next().unwrap_or_default();
    let status: u16 = words
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or(ProbeFailure::HttpMalformed)?;
    let (low, high) = check.expect_status;
    if !(low..=high).contains(&status) {
        return Err(ProbeFailure::HttpStatus(status));
    }
    if let Some(text) = &check.expect_body {
        let body = body_start(response).map_or(&[][..], |at| &response[at..]);
        if !contains(body, text.as_bytes()) {
            return Err(ProbeFailure::HttpBody);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect_body: Option<&str>) -> HttpCheck {
        HttpCheck {
            url: "http://probe.test/health".into(),
            host: "probe.test".into(),
            path: "/health".into(),
            expect_status: (200, 399),
            expect_body: expect_body.map(str::to_owned),
            ca_file: None,
        }
    }

    #[test]
    fn the_request_gets_the_path_from_the_urls_host_and_asks_to_close() {
        let r = request(&check(None));
        assert!(
            r.starts_with("GET /health HTTP/1.1\r\nHost: probe.test\r\n"),
            "{r}"
        );
        assert!(r.contains("Connection: close\r\n") && r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_status_outside_the_range_a_missing_text_or_garbage_is_a_failure() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstatus ok";
        assert!(judge(ok, &check(None)).is_ok());
        assert!(judge(ok, &check(Some("ok"))).is_ok());
        assert!(matches!(
            judge(ok, &check(Some("healthy"))),
            Err(ProbeFailure::HttpBody)
        ));
        let unavailable = b"HTTP/1.0 503 Service Unavailable\r\n\r\nok";
        assert!(matches!(
            judge(unavailable, &check(None)),
            Err(ProbeFailure::HttpStatus(503))
        ));
        assert!(judge(b"HTTP/1.1 302 Found\r\n\r\n", &check(None)).is_ok());
        for garbage in [
            &b""[..],
            b"HTTP/1.1 200",
            b"SSH-2.0-x\r\n",
            b"HTTP/2 200\r\n",
        ] {
            assert!(
                matches!(
                    judge(garbage, &check(None)),
                    Err(ProbeFailure::HttpMalformed)
                ),
                "{garbage:?}"
            );
        }
    }

    /// A server on loopback that answers each connection with `answer`, written in `pieces`, then
    /// keeps the connection open (the probe must not wait for the close once it has the verdict).
    fn serve(answer: &'static [u8], pieces: usize) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                std::thread::spawn(move || {
                    let mut request = [0u8; 1024];
                    let _ = conn.read(&mut request);
                    for chunk in answer.chunks(answer.len().div_ceil(pieces)) {
                        let _ = conn.write_all(chunk);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    std::thread::sleep(std::time::Duration::from_secs(5));
                });
            }
        });
        address
    }

    async fn get(address: std::net::SocketAddr, expect_body: Option<&str>) -> Result<(), String> {
        let std::net::SocketAddr::V4(address) = address else {
            unreachable!("bound to 127.0.0.1")
        };
        let target = ProbeTarget {
            kind: crate::config::ProbeKind::Http,
            address: *address.ip(),
            port: address.port(),
            query: String::new(),
            http: Some(Box::new(check(expect_body))),
        };
        let source = ProbeSource {
            interface: "lo".into(),
            address: std::net::Ipv4Addr::LOCALHOST,
        };
        let exchange = http_get(&target, target.http.as_ref().unwrap(), &source, None);
        tokio::time::timeout(std::time::Duration::from_secs(2), exchange)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|failure| failure.to_string())
    }

    /// Over a real connection bound to `lo` (needs root, like every probe): answers in pieces are
    /// put together, the verdict comes without waiting for the server to close, and a body that
    /// never holds the text ends at the limit.
    #[tokio::test(flavor = "current_thread")]
    async fn a_real_exchange_is_judged_without_waiting_for_the_close() {
        let ok = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nflowpin probe ok",
            4,
        );
        assert_eq!(get(ok, None).await, Ok(()));
        assert_eq!(get(ok, Some("probe ok")).await, Ok(()));
        let unavailable = serve(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 2);
        assert_eq!(get(unavailable, None).await, Err("HTTP status 503".into()));
        static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            big.resize(RESPONSE_LIMIT + 10_000, b'x');
            big
        });
        let big = serve(&BIG, 8);
        assert_eq!(
            get(big, Some("never")).await,
            Err("HTTP body lacks the expected text".into())
        );
    }

    #[test]
    fn reading_stops_once_the_verdict_is_known() {
        assert!(!decided(b"HTTP/1.1 200 OK\r\nServer: x\r\n", &check(None)));
        assert!(decided(b"HTTP/1.1 200 OK\r\n\r\n", &check(None)));
        assert!(!decided(
            b"HTTP/1.1 200 OK\r\n\r\nhea",
            &check(Some("healthy"))
        ));
        assert!(decided(
            b"HTTP/1.1 200 OK\r\n\r\nhealthy",
            &check(Some("healthy"))
        ));
    }
}
