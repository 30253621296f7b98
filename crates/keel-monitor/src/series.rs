//! The series store the rules read: metric name + labels → recent samples.
//!
//! Built for evaluation cost, not generality: strings are interned ([`Sym`]), every series has
//! a dense [`SeriesId`] and a precomputed fingerprint of its labels, and series are indexed by
//! metric name, so a selector resolves to a list of ids once and again only when a series of
//! its metric appears or goes (the metric's generation changes). Samples live in a short ring
//! per series (the longest window any rule reads, bounded), so `rate`/`increase` read a few
//! dozen numbers. Series not updated for `stale_after` are dropped.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::clock::Millis;

/// An interned string.
pub type Sym = u32;

/// Dense id of a series in the store.
pub type SeriesId = u32;

/// Interned label pairs of a series, sorted by label name.
pub type LabelSet = Arc<[(Sym, Sym)]>;

/// String interner.
#[derive(Debug, Default)]
pub struct Interner {
    map: HashMap<Arc<str>, Sym>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// The symbol of `s`, interning it.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.map.get(s) {
            return sym;
        }
        let sym = Sym::try_from(self.names.len()).unwrap_or(Sym::MAX);
        let a: Arc<str> = Arc::from(s);
        self.names.push(a.clone());
        self.map.insert(a, sym);
        sym
    }

    /// The symbol of `s` if interned.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.map.get(s).copied()
    }

    /// The text of `sym`.
    pub fn resolve(&self, sym: Sym) -> &str {
        self.names.get(sym as usize).map_or("", |s| s)
    }
}

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: Millis,
    /// Its value.
    pub value: f64,
}

/// One series.
#[derive(Debug)]
pub struct Series {
    /// Metric name.
    pub metric: Sym,
    /// Labels (without the name), sorted by name.
    pub labels: LabelSet,
    /// Fingerprint of the labels (not the name): what vector matching and alert instances key on.
    pub fingerprint: u64,
    samples: VecDeque<Sample>,
}

impl Series {
    /// The newest sample.
    pub fn last(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    /// Samples newer than `since` (inclusive), oldest first.
    pub fn since(&self, since: Millis) -> impl Iterator<Item = Sample> + '_ {
        let start = self.samples.partition_point(|s| s.at < since);
        self.samples.range(start..).copied()
    }

    /// The value of label `name`, if set.
    pub fn label(&self, name: Sym) -> Option<Sym> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

#[derive(Debug, Default)]
struct MetricIndex {
    ids: Vec<SeriesId>,
    generation: u64,
}

/// The store.
#[derive(Debug)]
pub struct SeriesStore {
    /// Interned strings.
    pub interner: Interner,
    series: Vec<Option<Series>>,
    free: Vec<SeriesId>,
    by_key: HashMap<(Sym, LabelSet), SeriesId>,
    by_metric: HashMap<Sym, MetricIndex>,
    /// How far back samples are kept.
    retention: Millis,
    /// Most samples kept per series.
    max_samples: usize,
    generation: u64,
}

/// Fingerprint of label pairs.
pub fn fingerprint(labels: &[(Sym, Sym)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

impl SeriesStore {
    /// A store keeping samples for `retention` (at most `max_samples` per series).
    pub fn new(retention: Millis, max_samples: usize) -> Self {
        Self {
            interner: Interner::default(),
            series: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            by_metric: HashMap::new(),
            retention,
            max_samples: max_samples.max(2),
            generation: 0,
        }
    }

    /// Keeps samples for at least `window` (the longest window a rule reads).
    pub fn retain_at_least(&mut self, window: Millis) {
        self.retention = self.retention.max(window);
    }

    /// The id of the series `metric{labels}`, creating it.
    pub fn series_id(&mut self, metric: &str, labels: &[(&str, &str)]) -> SeriesId {
        let m = self.interner.intern(metric);
        let mut pairs: Vec<(Sym, Sym)> = labels
            .iter()
            .map(|(k, v)| (self.interner.intern(k), self.interner.intern(v)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup_by_key(|p| p.0);
        self.id_of(m, pairs)
    }

    fn id_of(&mut self, metric: Sym, pairs: Vec<(Sym, Sym)>) -> SeriesId {
        let labels: LabelSet = pairs.into();
        if let Some(&id) = self.by_key.get(&(metric, labels.clone())) {
            return id;
        }
        let series = Series {
            metric,
            fingerprint: fingerprint(&labels),
            labels: labels.clone(),
            samples: VecDeque::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.series[id as usize] = Some(series);
                id
            }
            None => {
                self.series.push(Some(series));
                SeriesId::try_from(self.series.len() - 1).unwrap_or(SeriesId::MAX)
            }
        };
        self.by_key.insert((metric, labels), id);
        self.generation += 1;
        let idx = self.by_metric.entry(metric).or_default();
        idx.ids.push(id);
        idx.generation = self.generation;
        id
    }

    /// Appends a sample to series `id`; samples older than the retention are dropped.
    pub fn push(&mut self, id: SeriesId, at: Millis, value: f64) {
        let (retention, max) = (self.retention, self.max_samples);
        if let Some(Some(s)) = self.series.get_mut(id as usize) {
            if s.samples.back().is_some_and(|l| l.at > at) {
                return;
            }
            if s.samples.back().is_some_and(|l| l.at == at) {
                s.samples.pop_back();
            }
            s.samples.push_back(Sample { at, value });
            while s.samples.len() > max || s.samples.front().is_some_and(|f| f.at < at - retention)
            {
                s.samples.pop_front();
            }
        }
    }

    /// `series_id` then `push`.
    pub fn record(&mut self, metric: &str, labels: &[(&str, &str)], at: Millis, value: f64) {
        let id = self.series_id(metric, labels);
        self.push(id, at, value);
    }

    /// The series `id`.
    pub fn get(&self, id: SeriesId) -> Option<&Series> {
        self.series.get(id as usize).and_then(Option::as_ref)
    }

    /// Ids of every series of `metric` and the metric's generation (changes when one of its
    /// series appears or goes).
    pub fn of_metric(&self, metric: Sym) -> (&[SeriesId], u64) {
        self.by_metric
            .get(&metric)
            .map_or((&[][..], 0), |m| (&m.ids[..], m.generation))
    }

    /// Drops series whose newest sample is older than `now - stale_after`.
    pub fn drop_stale(&mut self, now: Millis, stale_after: Millis) {
        let mut dropped = Vec::new();
        for (i, slot) in self.series.iter_mut().enumerate() {
            if let Some(s) = slot
                && s.last().is_none_or(|l| l.at < now - stale_after)
            {
                dropped.push((
                    SeriesId::try_from(i).unwrap_or(0),
                    s.metric,
                    s.labels.clone(),
                ));
                *slot = None;
            }
        }
        if dropped.is_empty() {
            return;
        }
        self.generation += 1;
        for (id, metric, labels) in dropped {
            self.by_key.remove(&(metric, labels));
            self.free.push(id);
            if let Some(idx) = self.by_metric.get_mut(&metric) {
                idx.ids.retain(|x| *x != id);
                idx.generation = self.generation;
            }
        }
    }

    /// Number of live series.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the store holds no series.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Parses Prometheus/OpenMetrics text exposition and records every sample at `at`.
    /// Comment lines and malformed lines are skipped; returns the samples recorded.
    pub fn ingest_text(&mut self, text: &str, at: Millis) -> usize {
        let mut n = 0;
        let mut labels: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            labels.clear();
            let Some((name, value)) = parse_sample_line(line, &mut labels) else {
                continue;
            };
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.record(name, &pairs, at, value);
            n += 1;
        }
        n
    }
}

/// Parses `name{a="b",c="d"} value [timestamp]`.
fn parse_sample_line<'a>(
    line: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Option<(&'a str, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            // label name
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    value.push(match c {
                        'n' => '\n',
                        other => other,
                    });
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                } else {
                    value.push(c);
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        rest = &body[end? + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().ok()?,
    };
    Some((name, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_text_with_escapes_and_infinities() {
        let mut s = SeriesStore::new(60_000, 10);
        let text = "# HELP x y\nkeel_a_total{chain=\"dev\",msg=\"a \\\"b\\\"\"} 3\nkeel_b 1.5\nkeel_c{le=\"+Inf\"} +Inf\nbroken{\n";
        assert_eq!(s.ingest_text(text, 1000), 3);
        let m = s.interner.get("keel_a_total").expect("metric");
        let (ids, _) = s.of_metric(m);
        let series = s.get(ids[0]).expect("series");
        let msg = s.interner.get("msg").expect("label");
        assert_eq!(s.interner.resolve(series.label(msg).expect("v")), "a \"b\"");
        assert_eq!(series.last().map(|x| x.value), Some(3.0));
        let c = s.interner.get("keel_c").expect("c");
        let id = s.of_metric(c).0[0];
        assert_eq!(
            s.get(id).and_then(Series::last).map(|x| x.value),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn retention_bounds_samples_and_stale_series_go() {
        let mut s = SeriesStore::new(30_000, 100);
        let id = s.series_id("m", &[("a", "1")]);
        for t in 0..10 {
            s.push(id, t * 10_000, t as f64);
        }
        let got: Vec<f64> = s.get(id).expect("s").since(0).map(|x| x.value).collect();
        assert_eq!(got, vec![6.0, 7.0, 8.0, 9.0]);
        let m = s.interner.get("m").expect("m");
        let g0 = s.of_metric(m).1;
        s.drop_stale(200_000, 60_000);
        assert!(s.is_empty());
        assert!(s.of_metric(m).0.is_empty());
        assert_ne!(
            s.of_metric(m).1,
            g0,
            "generation changes when a series goes"
        );
        // The freed id is reused for a new series.
        assert_eq!(s.series_id("m", &[("a", "2")]), id);
    }
}
