//! The control socket's request framing and parsing, sans I/O: bytes in, bounded request lines out,
//! each parsed as one JSON [`Request`].
//!
//! Invariants:
//! - a line (without its `\n`) is at most `max` bytes; a longer one is refused as soon as more than
//!   `max` bytes have arrived without a newline, so the buffer never holds more than `max` plus one
//!   read's worth;
//! - parsing never panics: bytes that are not one JSON request become a [`RequestError`];
//! - blank lines are skipped, as the protocol always did.

use crate::control::api::Request;

/// The longest request line the daemon reads (requests are a few hundred bytes).
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// Why bytes on the control socket are not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// More than the limit arrived without a newline; the connection is closed.
    #[error("request line longer than {max} bytes; refused and the connection closed")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// The line is not one JSON request.
    #[error("bad request: {0}")]
    Malformed(String),
}

/// Bytes received and not yet taken as lines.
#[derive(Debug)]
pub struct RequestLines {
    buffer: Vec<u8>,
    max: usize,
}

impl RequestLines {
    /// An empty framer whose lines are at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max,
        }
    }

    /// Appends bytes as they were received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether part of a line is waiting for its end.
    pub fn has_partial_line(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The next complete line (without `\n` and a trailing `\r`), `None` while none is complete, or
    /// [`RequestError::LineTooLong`] once the line under way exceeds the limit.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, RequestError> {
        let too_long = RequestError::LineTooLong { max: self.max };
        let Some(end) = self.buffer.iter().position(|&b| b == b'\n') else {
            return if self.buffer.len() > self.max {
                Err(too_long)
            } else {
                Ok(None)
            };
        };
        if end > self.max {
            return Err(too_long);
        }
        let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

/// Parses one request line: `Ok(None)` for a blank line.
pub fn parse_request(line: &[u8]) -> Result<Option<Request>, RequestError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| RequestError::Malformed(format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| RequestError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole_whatever_the_chunks() {
        let mut lines = RequestLines::new(64);
        lines.push(b"{\"cmd\":\"sta");
        assert_eq!(lines.next_line(), Ok(None));
        assert!(lines.has_partial_line());
        lines.push(b"tus\"}\r\n\n{\"cmd\":\"reload\"}\n");
        let first = lines.next_line().unwrap().unwrap();
        assert_eq!(parse_request(&first), Ok(Some(Request::Status)));
        let blank = lines.next_line().unwrap().unwrap();
        assert_eq!(parse_request(&blank), Ok(None));
        let third = lines.next_line().unwrap().unwrap();
        assert_eq!(parse_request(&third), Ok(Some(Request::Reload)));
        assert_eq!(lines.next_line(), Ok(None));
        assert!(!lines.has_partial_line());
    }

    #[test]
    fn a_line_over_the_limit_is_refused_before_its_end_arrives() {
        let mut lines = RequestLines::new(8);
        lines.push(b"12345678");
        assert_eq!(lines.next_line(), Ok(None), "exactly the limit is a line");
        lines.push(b"9");
        assert_eq!(lines.next_line(), Err(RequestError::LineTooLong { max: 8 }));
        let mut lines = RequestLines::new(8);
        lines.push(b"123456789\n");
        assert_eq!(lines.next_line(), Err(RequestError::LineTooLong { max: 8 }));
        let mut lines = RequestLines::new(8);
        lines.push(b"12345678\n");
        assert_eq!(lines.next_line().unwrap().unwrap(), b"12345678");
    }

    #[test]
    fn junk_is_a_bad_request_not_a_panic() {
        for junk in [
            &b"\xff\xfe"[..],
            b"{",
            b"{\"cmd\":\"nope\"}",
            b"[1,2]",
            b"{\"cmd\":\"flows\",\"limit\":-1}",
        ] {
            let error = parse_request(junk).unwrap_err();
            assert!(matches!(error, RequestError::Malformed(_)), "{error:?}");
            assert!(error.to_string().starts_with("bad request: "), "{error}");
        }
    }
}
