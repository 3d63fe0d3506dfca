//! The little HTTP the metrics endpoint speaks, sans I/O: when a request head is complete, where it
//! goes, and the bytes of each answer.
//!
//! Invariants: only `GET` or `HEAD` of `/metrics` (a query string ignored) is answered with the
//! metrics, of `/` with the read-only status page (every byte of it served from here: no external
//! asset) and of `/status.json` with what the page shows; another path is `404`, another method `405` (with `Allow`), bytes that are not an HTTP
//! request line, or a head over [`MAX_HEAD`] bytes, `400`; every answer closes the connection.
//! Parsing never panics.

/// The longest request head read, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The metrics; with `head_only`, the head without the body.
    Metrics {
        /// A `HEAD` request.
        head_only: bool,
    },
    /// The status page.
    Page {
        /// A `HEAD` request.
        head_only: bool,
    },
    /// The status page's data: the status report and the top flows per uplink, as JSON.
    StatusJson {
        /// A `HEAD` request.
        head_only: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request, or a head too long.
    BadRequest,
}

/// Whether `received` holds a whole request head (up to its blank line).
pub fn head_complete(received: &[u8]) -> bool {
    received.windows(4).any(|w| w == b"\r\n\r\n") || received.windows(2).any(|w| w == b"\n\n")
}

/// The route of a request whose head starts `head`.
pub fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Route::Metrics {
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", "/") => Route::Page {
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", "/status.json") => Route::StatusJson {
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

/// The status page (served at `/`).
pub const STATUS_PAGE: &str = include_str!("status_page.html");

/// The whole answer to `route`; `body` is the metrics text or the status JSON (used for
/// [`Route::Metrics`] and [`Route::StatusJson`] only).
pub fn answer(route: Route, body: &str) -> Vec<u8> {
    let (status, extra, content_type, body, head_only) = match route {
        Route::Page { head_only } => (
            "200 OK",
            "Cache-Control: no-store\r\n",
            "text/html; charset=utf-8",
            STATUS_PAGE,
            head_only,
        ),
        Route::StatusJson { head_only } => (
            "200 OK",
            "Cache-Control: no-store\r\n",
            "application/json",
            body,
            head_only,
        ),
        Route::Metrics { head_only } => (
            "200 OK",
            "",
            "text/plain; version=0.0.4; charset=utf-8",
            body,
            head_only,
        ),
        Route::NotFound => (
            "404 Not Found",
            "",
            "text/plain",
            "not found: the metrics are at /metrics, the status page at /\n",
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "text/plain",
            "method not allowed: GET or HEAD /metrics\n",
            false,
        ),
        Route::BadRequest => ("400 Bad Request", "", "text/plain", "bad request\n", false),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The answer when every client slot is taken.
pub fn busy() -> &'static [u8] {
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many metrics clients; retry\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_or_head_of_metrics_gets_the_metrics() {
        let route_of = |text: &str| route(text.as_bytes());
        assert_eq!(
            route_of("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route_of("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(
            route_of("GET / HTTP/1.1\r\n\r\n"),
            Route::Page { head_only: false }
        );
        assert_eq!(
            route_of("HEAD /status.json?t=1 HTTP/1.1\r\n\r\n"),
            Route::StatusJson { head_only: true }
        );
        assert_eq!(
            route_of("GET /index.html HTTP/1.1\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(route_of("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route_of("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for junk in [
            "",
            "\u{0}\u{1}",
            "GET /metrics",
            "GET metrics HTTP/1.1",
            "GET /metrics SPDY/3 x",
        ] {
            assert_eq!(route_of(junk), Route::BadRequest, "{junk:?}");
        }
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn answers_carry_their_status_length_and_body() {
        let ok = String::from_utf8(answer(Route::Metrics { head_only: false }, "a 1\n")).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4") && ok.contains("Content-Length: 4\r\n"));
        assert!(ok.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(answer(Route::Metrics { head_only: true }, "a 1\n")).unwrap();
        assert!(head.contains("Content-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
        let not_allowed = String::from_utf8(answer(Route::MethodNotAllowed, "")).unwrap();
        assert!(
            not_allowed.starts_with("HTTP/1.1 405 ") && not_allowed.contains("Allow: GET, HEAD")
        );
        let busy = std::str::from_utf8(busy()).unwrap();
        let (head, body) = busy.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{busy}"
        );
    }

    #[test]
    fn a_head_is_complete_at_its_blank_line() {
        assert!(!head_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.0\n\n"));
    }
}
