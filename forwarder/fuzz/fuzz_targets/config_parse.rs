//! Fuzzes the configuration loader's entry (`config::parse_on`) with hostile TOML.
//!
//! Input: one byte choosing which machine facts are checked (the router's local port range, the
//! online CPUs), then the file's text.
//! Properties: nothing panics; an accepted configuration explains itself and validates again from
//! the same text; a refusal renders every error.
#![no_main]

use flowpin::config::{self, Host, PortRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&facts, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let host = Host {
        local_port_range: (facts & 1 != 0).then(|| PortRange::new(32768, 60999).unwrap()),
        online_cpus: (facts & 2 != 0).then(|| vec![0, 1]),
    };
    match config::parse_on(text, "fuzz.toml", &host) {
        Ok(parsed) => {
            let _ = config::explain(&parsed);
            let again = config::parse_on(text, "fuzz.toml", &host).expect("valid twice");
            assert_eq!(again, parsed, "parsing is deterministic");
        }
        Err(errors) => {
            assert!(!errors.to_string().is_empty(), "a refusal says why");
        }
    }
});
