//! The Prometheus text format (0.0.4): a family's `# HELP` and `# TYPE` header, then its samples.
//!
//! Invariants: a sample is only written through the [`Family`] that announced it; label values are
//! escaped (backslash, double quote, newline).

use std::fmt::Write as _;

/// A family being written: its samples follow its HELP/TYPE header.
pub(super) struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// Writes one sample of the family with `labels`.
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Announces family `name` of `kind` (`gauge`, `counter`) on `out`; its samples follow.
pub(super) fn family<'a>(
    out: &'a mut String,
    name: &'static str,
    kind: &str,
    help: &str,
) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    Family { out, name }
}
