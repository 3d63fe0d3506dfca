//! `[health]` and `[[health.target]]` (and each `[uplink.health]`, written over `[health]`): every
//! count and duration within its bounds, up thresholds no looser than down ones, a probe that ends
//! before the next round, targets that can be probed, and the rules that tie the thresholds to the
//! targets (see [`Health`]'s invariants).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::super::raw::{RawHealth, RawProbeTarget, S};
use super::super::resilience::{Health, ProbeKind, ProbeTarget};
use super::Checker;

/// Where each `[health]` key written in the file is, by key.
type Spans = HashMap<&'static str, Range<usize>>;

impl Checker<'_> {
    /// How is an uplink found dead or alive?
    pub(super) fn health(&mut self, raw: Option<RawHealth>) -> Health {
        let Some(mut raw) = raw else {
            return Health::DEFAULT;
        };
        let mut base = Health::DEFAULT;
        self.health_hooks(&mut raw, &mut base);
        self.health_table(raw, &base, "health")
    }

    /// The table `raw` (named `table` in errors) written over `base`; its targets, when it has
    /// any, replace `base`'s. The global-only hook keys are taken out of `raw` before (see
    /// [`Checker::health_hooks`]).
    pub(super) fn health_table(&mut self, raw: RawHealth, base: &Health, table: &str) -> Health {
        let mut health = base.clone();
        let mut spans = Spans::new();
        self.health_counts(&raw, &mut health, &mut spans, table);
        self.health_percentages(&raw, &mut health, &mut spans, table);
        if let Some(probe_gateway) = raw.probe_gateway {
            health.probe_gateway = probe_gateway.into_inner();
        }
        self.check_health_thresholds(&health, &spans, table);
        if let Some(first) = raw.target.first() {
            spans.insert("target", first.span());
            health.targets.clear();
        }
        for (index, target) in raw.target.into_iter().enumerate() {
            let target = self.probe_target(index, target, table);
            health.targets.push(target);
        }
        self.check_health_targets(&health, &spans, table);
        health
    }

    /// Which counts and durations does the table set, each within its bounds?
    fn health_counts(
        &mut self,
        raw: &RawHealth,
        health: &mut Health,
        spans: &mut Spans,
        table: &str,
    ) {
        let counts = [
            (
                &raw.interval_ms,
                &mut health.interval_ms,
                10,
                3_600_000,
                "interval_ms",
            ),
            (
                &raw.timeout_ms,
                &mut health.timeout_ms,
                1,
                3_600_000,
                "timeout_ms",
            ),
            (
                &raw.down_after,
                &mut health.down_after,
                1,
                1000,
                "down_after",
            ),
            (&raw.up_after, &mut health.up_after, 1, 1000, "up_after"),
            (&raw.window, &mut health.window, 1, 1000, "window"),
            (
                &raw.down_rtt_ms,
                &mut health.down_rtt_ms,
                1,
                3_600_000,
                "down_rtt_ms",
            ),
            (
                &raw.up_rtt_ms,
                &mut health.up_rtt_ms,
                1,
                3_600_000,
                "up_rtt_ms",
            ),
            (
                &raw.min_answers,
                &mut health.min_answers,
                1,
                64,
                "min_answers",
            ),
            (
                &raw.passive_down_after_unanswered,
                &mut health.passive_down_after_unanswered,
                0,
                1_000_000,
                "passive_down_after_unanswered",
            ),
            (
                &raw.passive_answer_window_ms,
                &mut health.passive_answer_window_ms,
                100,
                600_000,
                "passive_answer_window_ms",
            ),
        ];
        for (value, slot, low, high, key) in counts {
            let Some(value) = value else { continue };
            if !(low..=high).contains(value.get_ref()) {
                let message = format!("{}: must be {low}-{high}", value.get_ref());
                self.fail(value.span(), &format!("{table}.{key}"), message);
            }
            spans.insert(key, value.span());
            *slot = *value.get_ref();
        }
    }

    /// Which loss thresholds does the table set, each a percentage?
    fn health_percentages(
        &mut self,
        raw: &RawHealth,
        health: &mut Health,
        spans: &mut Spans,
        table: &str,
    ) {
        let percentages = [
            (
                &raw.down_loss_percent,
                &mut health.down_loss_percent,
                "down_loss_percent",
            ),
            (
                &raw.up_loss_percent,
                &mut health.up_loss_percent,
                "up_loss_percent",
            ),
        ];
        for (value, slot, key) in percentages {
            let Some(value) = value else { continue };
            if *value.get_ref() > 100 {
                let message = format!("{} %: must be 0-100", value.get_ref());
                self.fail(value.span(), &format!("{table}.{key}"), message);
            }
            spans.insert(key, value.span());
            *slot = *value.get_ref();
        }
    }

    /// Does a probe end before the next round, and is each up threshold no looser than its down one?
    fn check_health_thresholds(&mut self, health: &Health, spans: &Spans, table: &str) {
        // A key the table inherits is blamed at the table's first written key.
        let first = spans.values().min_by_key(|span| span.start).cloned();
        let span_of = |key: &str| spans.get(key).cloned().or(first.clone()).unwrap_or(0..0);
        if health.timeout_ms >= health.interval_ms {
            let message = format!(
                "{} ms is not below interval_ms ({} ms): a probe must end before the next round",
                health.timeout_ms, health.interval_ms
            );
            self.fail(
                span_of("timeout_ms"),
                &format!("{table}.timeout_ms"),
                message,
            );
        }
        if health.up_loss_percent > health.down_loss_percent {
            let message = format!(
                "{} % is above down_loss_percent ({} %): the up threshold must not be looser",
                health.up_loss_percent, health.down_loss_percent
            );
            let field = format!("{table}.up_loss_percent");
            self.fail(span_of("up_loss_percent"), &field, message);
        }
        if health.up_rtt_ms > health.down_rtt_ms {
            let message = format!(
                "{} ms is above down_rtt_ms ({} ms): the up threshold must not be looser",
                health.up_rtt_ms, health.down_rtt_ms
            );
            self.fail(span_of("up_rtt_ms"), &format!("{table}.up_rtt_ms"), message);
        }
    }

    /// What is `<table>.target[index]`: its kind, a unicast address, and the port or query its
    /// kind takes?
    fn probe_target(&mut self, index: usize, raw: S<RawProbeTarget>, table: &str) -> ProbeTarget {
        let span = raw.span();
        let mut raw = raw.into_inner();
        let field = |key: &str| format!("{table}.target[{index}].{key}");
        let kind = self
            .required(raw.kind.take(), &span, &field("kind"))
            .map_or(ProbeKind::Icmp, S::into_inner);
        let http = self.http_target(kind, &mut raw, &span, &format!("{table}.target[{index}]"));
        let http_failed = matches!(kind, ProbeKind::Http | ProbeKind::Https) && http.is_none();
        let address = match http.as_ref().and_then(|h| h.url_address) {
            // The URL's host is an address: `address` may be left out.
            Some(url_address) if raw.address.is_none() => Some(S::new(span.clone(), url_address)),
            _ => raw.address,
        };
        // A target whose URL is wrong has that one error, not a second for its address.
        let address = if http_failed && address.is_none() {
            None
        } else {
            self.required(address, &span, &field("address"))
        };
        let address = match address {
            Some(address) => {
                let value = *address.get_ref();
                if value.is_unspecified() || value.is_broadcast() || value.is_multicast() {
                    let message = format!("{value} is not a unicast host address");
                    self.fail(address.span(), &field("address"), message);
                }
                value
            }
            None => Ipv4Addr::UNSPECIFIED,
        };
        let port = match &http {
            Some(http) => http.port,
            None => self.probe_port(kind, raw.port, &field("port")),
        };
        let query = self.probe_query(kind, raw.query, span, &field("query"));
        ProbeTarget {
            kind,
            address,
            port,
            query,
            http: http.map(|h| Box::new(h.check)),
        }
    }

    /// Which port does a probe of `kind` use: the one written (never for ICMP, never 0) or the
    /// kind's default?
    fn probe_port(&mut self, kind: ProbeKind, port: Option<S<u16>>, field: &str) -> u16 {
        match port {
            Some(port) if kind == ProbeKind::Icmp => {
                self.fail(port.span(), field, "ICMP probes have no port");
                0
            }
            Some(port) if *port.get_ref() == 0 => {
                self.fail(port.span(), field, "port 0 cannot be probed");
                0
            }
            Some(port) => port.into_inner(),
            None => kind.default_port(),
        }
    }

    /// Which name does a DNS probe ask for (required for DNS, refused for the other kinds)?
    fn probe_query(
        &mut self,
        kind: ProbeKind,
        query: Option<S<String>>,
        target: Range<usize>,
        field: &str,
    ) -> String {
        match (kind, query) {
            (ProbeKind::Dns, Some(query)) => {
                let text = query.get_ref();
                if !is_domain_name(text) {
                    let message = format!("`{text}` is not a domain name");
                    self.fail(query.span(), field, message);
                }
                query.into_inner()
            }
            (ProbeKind::Dns, None) => {
                self.fail(target, field, "missing (required for dns targets)");
                String::new()
            }
            (_, Some(query)) => {
                self.fail(query.span(), field, "only dns targets have a query");
                String::new()
            }
            (_, None) => String::new(),
        }
    }

    /// Can `min_answers` targets answer, and is there something to probe (targets or the gateway)
    /// to bring back an uplink the passive signal took down?
    fn check_health_targets(&mut self, health: &Health, spans: &Spans, table: &str) {
        let written = spans.get("min_answers").or(spans.get("target"));
        if let Some(span) = written
            && !health.targets.is_empty()
            && health.min_answers as usize > health.targets.len()
        {
            let message = format!(
                "{} answers can never come from {} target(s)",
                health.min_answers,
                health.targets.len()
            );
            self.fail(span.clone(), &format!("{table}.min_answers"), message);
        }
        let passive = spans
            .get("passive_down_after_unanswered")
            .or(spans.get("probe_gateway"));
        if let Some(span) = passive
            && health.passive_trigger_enabled()
            && !health.probes()
        {
            let message = "needs targets or probe_gateway = true: only probes bring back an \
                           uplink the passive signal took down";
            let field = format!("{table}.passive_down_after_unanswered");
            self.fail(span.clone(), &field, message);
        }
    }
}

/// Whether `text` is a domain name a DNS query can carry: at most 253 characters, ASCII labels of
/// 1-63 characters, an optional final dot.
fn is_domain_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .trim_end_matches('.')
            .split('.')
            .all(|label| (1..=63).contains(&label.len()) && label.is_ascii())
}
