//! A strict parser of the Prometheus text exposition format (0.0.4), for checking flowpin's metrics
//! endpoint from the outside.
//!
//! Accepted, line by line: empty lines; `# HELP name text`; `# TYPE name kind` (kind one of counter,
//! gauge, histogram, summary, untyped), at most once per name and before the name's first sample;
//! other `#` comments; samples `name{label="value",...} value [timestamp]` where names match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, label values are quoted with
//! `\\`, `\"` and `\n` as the only escapes, the value is a float (or `NaN`, `+Inf`, `-Inf`) and the
//! optional timestamp an integer. Stricter than the format: every sample's family must have been
//! announced by `# TYPE`, a counter's value must be finite and not negative, and no series (name and
//! label set) may appear twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metric kinds a `# TYPE` line may name.
const KINDS: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Family kinds from `# TYPE`.
    pub kinds: HashMap<String, String>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every pair of `labels`, if exactly one
    /// such sample exists.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels and the rest after `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("expected label=\"value\"")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// Parses `text` strictly (see the module documentation); the error names the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut helped = BTreeSet::new();
    let mut sampled = BTreeSet::new();
    let mut series = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, ..]
                    if !is_metric_name(name) || !helped.insert((*name).to_owned()) =>
                {
                    return Err(fail("bad or repeated HELP".into()));
                }
                ["TYPE", name, kind]
                    if !is_metric_name(name)
                        || !KINDS.contains(kind)
                        || sampled.contains(*name)
                        || exposition
                            .kinds
                            .insert((*name).to_owned(), (*kind).to_owned())
                            .is_some() =>
                {
                    return Err(fail("bad, late or repeated TYPE".into()));
                }
                ["HELP"] | ["TYPE"] | ["TYPE", _] => {
                    return Err(fail("malformed HELP/TYPE".into()));
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| fail("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(fail(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(fail)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| fail("expected one space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = fields
            .next()
            .and_then(parse_value)
            .ok_or_else(|| fail("bad value".into()))?;
        if let Some(timestamp) = fields.next()
            && timestamp.parse::<i64>().is_err()
        {
            return Err(fail("bad timestamp".into()));
        }
        if fields.next().is_some() {
            return Err(fail("trailing fields".into()));
        }
        let kind = exposition
            .kinds
            .get(name)
            .ok_or_else(|| fail(format!("{name} sampled without a TYPE")))?;
        if kind == "counter" && !(value.is_finite() && value >= 0.0) {
            return Err(fail("a counter must be finite and not negative".into()));
        }
        if !series.insert(format!("{name}{labels:?}")) {
            return Err(fail("series repeated".into()));
        }
        sampled.insert(name.to_owned());
        exposition.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(exposition)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP up_total Things.\n# TYPE up_total counter\nup_total{a=\"x\\\"y\",b=\"\\\\\"} 3\nup_total{a=\"z\"} 4 1700000000\n\n# TYPE g gauge\ng -1.5e3\ng{k=\"v\"} NaN\n";

    #[test]
    fn well_formed_text_parses_with_unescaped_labels() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.samples.len(), 4);
        assert_eq!(e.value("up_total", &[("a", "x\"y")]), Some(3.0));
        assert_eq!(e.samples[0].labels["b"], "\\");
        assert_eq!(e.value("g", &[]), None, "two g samples match no labels");
        assert_eq!(e.value("up_total", &[("a", "z")]), Some(4.0));
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "x 1\n",                                        // no TYPE
            "# TYPE x counter\nx -1\n",                     // negative counter
            "# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", // repeated series
            "# TYPE x gauge\nx{a=1} 1\n",                   // unquoted label
            "# TYPE x gauge\nx  1\n",                       // two spaces
            "# TYPE x gauge\nx 1 2 3\n",                    // trailing
            "# TYPE x gauge\nx one\n",                      // value
            "# TYPE x gauge\nx{a=\"\\t\"} 1\n",             // bad escape
            "# TYPE x foo\n",                               // kind
            "# TYPE x gauge\nx 1\n# TYPE x gauge\n",        // late TYPE
            "# TYPE 1x gauge\n",                            // name
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
