//! Fuzzes the control socket's request framing and parsing (`control_socket::request_lines`) with
//! hostile bytes arriving in arbitrary chunks.
//!
//! Input: one byte setting the line limit (1-256 bytes, so the limit is hit often), then chunks, each
//! a length byte followed by that many bytes.
//! Properties: nothing panics; every line handed out is within the limit; once a line is refused as
//! too long nothing more is read (the server closes); a parsed request serializes back to JSON that
//! parses to the same request.
#![no_main]

use flowpin::control::control_socket::request_lines::{RequestLines, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit) + 1;
    let mut lines = RequestLines::new(max);
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        lines.push(chunk);
        loop {
            match lines.next_line() {
                Ok(Some(line)) => {
                    assert!(line.len() <= max, "a line over the limit");
                    if let Ok(Some(request)) = parse_request(&line) {
                        let text = serde_json::to_string(&request).expect("encodes");
                        let again = parse_request(text.as_bytes()).expect("re-parses");
                        assert_eq!(again, Some(request), "round trip");
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
