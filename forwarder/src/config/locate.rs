//! The line and the field path (`uplink[1].weight`) of a byte offset in a TOML file.
//!
//! Values that reach validation carry their span ([`toml::Spanned`]), so validation knows both
//! the line and the field. Errors raised while deserialising (unknown key, wrong type) carry
//! only a span; [`Source::field_at`] names its field from the spans `toml_edit` keeps for every
//! key, value and table header ([`ImDocument`]).
//!
//! Invariants: a deserialising error's file always parses, so its field is exact; a syntax
//! error's field is best effort (the key or header on the first line that does not parse,
//! under the table it would belong to) and empty when nothing can be named.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Key, TableLike, Value};

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
        match ImDocument::parse(self.text) {
            Ok(document) => path_in_table(document.as_table(), offset, "").unwrap_or_default(),
            Err(_) => self.field_near_syntax_error(offset),
        }
    }

    /// Names what the first line that does not parse (at or before `offset`'s) holds: a table
    /// header's key, or `key = ...` under the table it would belong to.
    fn field_near_syntax_error(&self, offset: usize) -> String {
        let mut start = line_start(self.text, offset.min(self.text.len()));
        let document = loop {
            if let Ok(document) = ImDocument::parse(&self.text[..start]) {
                break document;
            }
            if start == 0 {
                return String::new();
            }
            start = line_start(self.text, start - 1);
        };
        let line = self.text[start..].lines().next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[') {
            return dotted(header.trim_matches(|c| c == '[' || c == ']'));
        }
        let table = last_table_before(document.as_table(), start, "")
            .map_or_else(String::new, |(_, path)| path);
        let key = line
            .split_once('=')
            .map_or_else(String::new, |(key, _)| dotted(key));
        join(&table, &key)
    }
}

/// The byte offset where the line holding `offset` starts.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |newline| newline + 1)
}

/// `key` (`a."b".c`) as a dotted path, or `""` when it is not a key.
fn dotted(key: &str) -> String {
    Key::parse(key.trim()).map_or_else(
        |_| String::new(),
        |keys| keys.iter().map(Key::get).collect::<Vec<_>>().join("."),
    )
}

/// `parent.child`, or `child` at top level.
fn join(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => parent.to_owned(),
        (false, false) => format!("{parent}.{child}"),
    }
}

fn holds(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|span| span.contains(&offset))
}

/// Which of `table`'s keys, values or sub-tables (as `path.key...`) holds `offset`?
fn path_in_table(table: &dyn TableLike, offset: usize, path: &str) -> Option<String> {
    table.iter().find_map(|(name, _)| {
        let (key, item) = table.get_key_value(name)?;
        let child = join(path, key.get());
        path_in_item(item, offset, &child).or_else(|| holds(key.span(), offset).then_some(child))
    })
}

/// Which part of `item` (named `path`) holds `offset`, the item itself included?
fn path_in_item(item: &Item, offset: usize, path: &str) -> Option<String> {
    match item {
        Item::None => None,
        Item::Value(value) => path_in_value(value, offset, path),
        Item::Table(table) => path_in_table(table, offset, path)
            .or_else(|| holds(table.span(), offset).then(|| path.to_owned())),
        Item::ArrayOfTables(tables) => tables.iter().enumerate().find_map(|(index, table)| {
            let element = format!("{path}[{index}]");
            path_in_table(table, offset, &element)
                .or_else(|| holds(table.span(), offset).then_some(element))
        }),
    }
}

/// Which element of `value` (named `path`) holds `offset`, the value itself included?
fn path_in_value(value: &Value, offset: usize, path: &str) -> Option<String> {
    if !holds(value.span(), offset) {
        return None;
    }
    let inner = match value {
        Value::Array(array) => array.iter().enumerate().find_map(|(index, element)| {
            path_in_value(element, offset, &format!("{path}[{index}]"))
        }),
        Value::InlineTable(table) => path_in_table(table, offset, path),
        _ => None,
    };
    Some(inner.unwrap_or_else(|| path.to_owned()))
}

/// The table whose header is the last before `offset`: its header's offset and its path.
fn last_table_before(table: &dyn TableLike, offset: usize, path: &str) -> Option<(usize, String)> {
    let mut last: Option<(usize, String)> = None;
    let mut consider = |found: Option<(usize, String)>| {
        if let Some(found) = found
            && last.as_ref().is_none_or(|last| found.0 >= last.0)
        {
            last = Some(found);
        }
    };
    for (name, item) in table.iter() {
        let child = join(path, name);
        let tables: Vec<(String, &toml_edit::Table)> = match item {
            Item::Table(table) => vec![(child, table)],
            Item::ArrayOfTables(tables) => (tables.iter().enumerate())
                .map(|(index, table)| (format!("{child}[{index}]"), table))
                .collect(),
            _ => continue,
        };
        for (path, table) in tables {
            let header = table
                .span()
                .map(|span| span.start)
                .filter(|start| *start < offset);
            consider(header.map(|start| (start, path.clone())));
            consider(last_table_before(table, offset, &path));
        }
    }
    last
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

[[policy]]
name = "video"

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
        assert_eq!(field_of("46", 0), "policy[1].match.dscp");
        assert_eq!(field_of("[policy.match]", 0), "policy[1].match");
    }

    #[test]
    fn names_what_it_can_near_a_syntax_error() {
        let field = |text: &str, needle: &str| {
            Source { file: "f", text }.field_at(text.find(needle).unwrap())
        };
        let broken = "[lan]\ninterface = \"lan0\"\n\n[nat]\nport_range = \n";
        assert_eq!(field(broken, "\n\n[nat]"), "lan.interface");
        assert_eq!(field(broken, "= \n"), "nat.port_range");
        assert_eq!(field("[lan]\n[nat\nx = 1\n", "\nx"), "nat");
        assert_eq!(field("[nat]\nports = [1,\n", "[1"), "nat.ports");
        assert_eq!(field("= 1\n", "1"), "");
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
