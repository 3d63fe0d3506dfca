//! Finding the line and the field path (`uplink[1].weight`) of a byte offset in a TOML file.
//!
//! Values that reach validation carry their span ([`toml::Spanned`]), so validation knows both
//! the line and the field. Errors raised while deserialising (syntax, unknown key, wrong type)
//! carry only a span; [`Source::field_at`] recovers the field by scanning the TOML structure up to
//! that offset: table headers (counting `[[array]]` elements), keys (bare, quoted, dotted), inline
//! tables and arrays. The scan only needs to be right for files that parsed up to the offset,
//! and when in doubt it names the enclosing table rather than guessing a key.

use std::collections::HashMap;
use std::ops::Range;

use super::ConfigError;

/// A configuration file's name and text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Source<'a> {
    /// The file as the user named it.
    pub file: &'a str,
    /// Its contents.
    pub text: &'a str,
}

impl Source<'_> {
    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
            + 1
    }

    /// An error about `field`, located at the start of `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: Some(self.line_of(span.start)),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The dotted path of the field that byte `offset` belongs to (`""` at top level).
    pub fn field_at(&self, offset: usize) -> String {
        Scanner::new(self.text.as_bytes()).path_at(offset)
    }
}

/// Where the scanner is inside a value.
enum Level {
    /// The body of a `[table]` or an inline `{ table }`, with the key being read or last read.
    Table { key: Option<String> },
    /// Inside an array, at element `index`.
    Array { index: usize },
}

struct Scanner<'t> {
    text: &'t [u8],
    at: usize,
    /// The current `[header]`, resolved (`uplink[1].health`).
    header: String,
    /// How many elements each `[[array]]` (by resolved path) has so far.
    array_lengths: HashMap<String, usize>,
    /// Nesting inside the current table (the first level is the table body).
    levels: Vec<Level>,
    /// Whether a value is due (after `=`, after `[` or `,` in an array).
    expect_value: bool,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t [u8]) -> Self {
        Scanner {
            text,
            at: 0,
            header: String::new(),
            array_lengths: HashMap::new(),
            levels: vec![Level::Table { key: None }],
            expect_value: false,
        }
    }

    fn path_at(mut self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        while self.at < offset {
            if let Some(header_path) = self.step(offset) {
                return header_path;
            }
        }
        if !self.expect_value && matches!(self.levels.last(), Some(Level::Table { .. })) {
            // The offset points at a key (an unknown field, say) or a header: name it.
            self.skip_blanks();
            if self.levels.len() == 1 && self.text.get(self.at) == Some(&b'[') {
                self.read_header();
                return self.header.clone();
            }
            if let Some(key) = self.read_key() {
                self.set_key(key);
            }
        }
        self.render()
    }

    /// Consumes one token; returns the header's path when `offset` lies inside a header.
    fn step(&mut self, offset: usize) -> Option<String> {
        let byte = self.text[self.at];
        match byte {
            b'#' => self.skip_comment(),
            b'\n' => {
                if self.levels.len() == 1 {
                    self.levels[0] = Level::Table { key: None };
                    self.expect_value = false;
                }
                self.at += 1;
            }
            b' ' | b'\t' | b'\r' => self.at += 1,
            b',' => {
                match self.levels.last_mut() {
                    Some(Level::Array { index }) => {
                        *index += 1;
                        self.expect_value = true;
                    }
                    Some(Level::Table { key }) => {
                        *key = None;
                        self.expect_value = false;
                    }
                    None => {}
                }
                self.at += 1;
            }
            b']' | b'}' => {
                if self.levels.len() > 1 {
                    self.levels.pop();
                }
                self.expect_value = false;
                self.at += 1;
            }
            b'[' if self.expect_value => {
                self.levels.push(Level::Array { index: 0 });
                self.at += 1;
            }
            b'{' if self.expect_value => {
                self.levels.push(Level::Table { key: None });
                self.expect_value = false;
                self.at += 1;
            }
            b'[' if self.levels.len() == 1 => {
                self.read_header();
                if offset < self.at {
                    return Some(self.header.clone());
                }
            }
            _ if self.expect_value => {
                self.skip_value();
                self.expect_value = false;
            }
            _ => match self.read_key() {
                Some(key) => {
                    self.set_key(key);
                    self.skip_blanks();
                    if self.text.get(self.at) == Some(&b'=') {
                        self.at += 1;
                        self.expect_value = true;
                    }
                }
                None => self.at += 1,
            },
        }
        None
    }

    fn set_key(&mut self, new_key: String) {
        if let Some(Level::Table { key }) = self.levels.last_mut() {
            *key = Some(new_key);
        }
    }

    fn render(&self) -> String {
        let mut path = self.header.clone();
        for level in &self.levels {
            match level {
                Level::Table { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Level::Table { key: None } => {}
                Level::Array { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    fn skip_blanks(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn skip_comment(&mut self) {
        while self.at < self.text.len() && self.text[self.at] != b'\n' {
            self.at += 1;
        }
    }

    /// Skips a string (basic, literal, or their multi-line forms) starting at its quote.
    fn skip_string(&mut self) {
        let quote = self.text[self.at];
        let triple = self.text[self.at..].starts_with(&[quote; 3]);
        self.at += if triple { 3 } else { 1 };
        while self.at < self.text.len() {
            let byte = self.text[self.at];
            if byte == b'\\' && quote == b'"' {
                self.at += 2;
            } else if triple && self.text[self.at..].starts_with(&[quote; 3]) {
                self.at += 3;
                return;
            } else if !triple && byte == quote {
                self.at += 1;
                return;
            } else if !triple && byte == b'\n' {
                return;
            } else {
                self.at += 1;
            }
        }
    }

    /// Skips a scalar value (string, number, boolean, date).
    fn skip_value(&mut self) {
        if matches!(self.text[self.at], b'"' | b'\'') {
            self.skip_string();
            return;
        }
        while self.at < self.text.len() && !b",]}\n#".contains(&self.text[self.at]) {
            self.at += 1;
        }
    }

    /// Reads a key (`name`, `"quoted"`, `a.b`), unquoted; `None` when no key starts here.
    fn read_key(&mut self) -> Option<String> {
        let mut key = String::new();
        loop {
            self.skip_blanks();
            let start = self.at;
            match self.text.get(self.at) {
                Some(b'"' | b'\'') => {
                    self.skip_string();
                    let inner = &self.text[start + 1..self.at.saturating_sub(1).max(start + 1)];
                    key.push_str(&String::from_utf8_lossy(inner));
                }
                Some(byte) if is_bare_key_byte(*byte) => {
                    while self
                        .text
                        .get(self.at)
                        .is_some_and(|byte| is_bare_key_byte(*byte))
                    {
                        self.at += 1;
                    }
                    key.push_str(&String::from_utf8_lossy(&self.text[start..self.at]));
                }
                _ => return (!key.is_empty()).then_some(key),
            }
            self.skip_blanks();
            if self.text.get(self.at) == Some(&b'.') {
                self.at += 1;
                key.push('.');
            } else {
                return Some(key);
            }
        }
    }

    /// Reads `[a.b]` or `[[a.b]]` and makes it the current table.
    fn read_header(&mut self) {
        let is_array = self.text[self.at..].starts_with(b"[[");
        self.at += if is_array { 2 } else { 1 };
        let mut parts = Vec::new();
        while let Some(part) = self.read_key() {
            parts.extend(part.split('.').map(str::to_owned));
            if self.text.get(self.at) != Some(&b'.') {
                break;
            }
        }
        self.skip_blanks();
        self.at += if is_array { 2 } else { 1 };
        self.at = self.at.min(self.text.len());

        let mut path = String::new();
        let count = parts.len();
        for (number, part) in parts.into_iter().enumerate() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&part);
            let length = if is_array && number + 1 == count {
                let length = self.array_lengths.entry(path.clone()).or_insert(0);
                *length += 1;
                Some(*length)
            } else {
                self.array_lengths.get(&path).copied()
            };
            if let Some(length) = length {
                path.push_str(&format!("[{}]", length - 1));
            }
        }
        self.header = path;
        self.levels = vec![Level::Table { key: None }];
        self.expect_value = false;
    }
}

fn is_bare_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# comment [not a header]
[lan]
interface = "lan0"
prefixes = [
  "10.0.0.0/8",   # first
  "192.168.0.0/16",
]

[[uplink]]
name = "isp1"

[[uplink]]
name = "isp2"
weight = 3

[[policy]]
name = "voip"
match = { src = ["10.1.0.0/16", "10.2.0.0/16"], proto = "udp" }
uplinks = ["isp1", { name = "isp2", weight = 2 }]

[policy.match]
"dscp" = 46
"#;

    fn field_of(needle: &str, nth: usize) -> String {
        let offset = FILE.match_indices(needle).nth(nth).unwrap().0;
        Source {
            file: "f",
            text: FILE,
        }
        .field_at(offset)
    }

    #[test]
    fn names_keys_values_and_array_elements() {
        assert_eq!(field_of("\"lan0\"", 0), "lan.interface");
        assert_eq!(field_of("interface", 0), "lan.interface");
        assert_eq!(field_of("\"192.168", 0), "lan.prefixes[1]");
        assert_eq!(field_of("\"isp2\"", 0), "uplink[1].name");
        assert_eq!(field_of("3", 0), "uplink[1].weight");
    }

    #[test]
    fn names_inline_tables_and_headers() {
        assert_eq!(field_of("\"10.2", 0), "policy[0].match.src[1]");
        assert_eq!(field_of("\"udp\"", 0), "policy[0].match.proto");
        assert_eq!(field_of("weight = 2", 0), "policy[0].uplinks[1].weight");
        assert_eq!(field_of("[[uplink]]", 1), "uplink[1]");
        assert_eq!(field_of("46", 0), "policy[0].match.dscp");
    }

    #[test]
    fn counts_lines_from_one() {
        let source = Source {
            file: "f",
            text: FILE,
        };
        assert_eq!(source.line_of(0), 1);
        assert_eq!(source.line_of(FILE.find("[lan]").unwrap()), 2);
        assert_eq!(source.line_of(FILE.find("weight = 3").unwrap()), 14);
    }
}
