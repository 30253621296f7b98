//! The alert book: alerts made from rule transitions, silences, maintenance windows,
//! inhibition, acknowledgements, and the notification plan (routing, grouping, repeats and
//! escalation).
//!
//! Notification rules, per route and group (alerts of a route with equal `group_by` labels):
//! - a group is notified `group_wait` after it first has something to say, and again whenever
//!   what it says changes (an alert fires or resolves), at most once per `group_wait`;
//! - while it holds a firing alert nobody acknowledged, it is re-notified every
//!   `repeat_interval`;
//! - when an alert has fired unacknowledged for `escalate_after`, the group is notified to
//!   `escalate_to` as well, at once and on every later notification until acknowledged;
//! - a silenced, inhibited or in-maintenance alert notifies nobody; if it had been notified as
//!   firing, its resolution still is (so receivers can close what they opened).

use std::collections::{BTreeMap, HashMap, HashSet};

use keel_config::monitor::{InhibitConfig, MaintenanceConfig, RouteConfig, Severity};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::clock::{Millis, ms, parse_rfc3339};
use crate::expr::{MatchOp, Matcher};
use crate::rules::{Change, Rule, Transition};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds; not yet for long enough.
    Pending,
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub by: String,
    /// When.
    pub at: Millis,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: a hash of the rule name and the instance labels.
    pub id: String,
    /// Rule name.
    pub rule: String,
    /// All labels: `alertname`, `severity`, the rule's labels and the instance's.
    pub labels: BTreeMap<String, String>,
    /// The instance's labels (from the series).
    pub instance: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`.
    pub annotations: BTreeMap<String, String>,
    /// Severity.
    pub severity: Severity,
    /// State.
    pub state: AlertState,
    /// Last value of the condition.
    pub value: f64,
    /// When the condition started holding.
    pub since: Millis,
    /// When it fired.
    pub fired_at: Option<Millis>,
    /// When it resolved.
    pub resolved_at: Option<Millis>,
    /// Acknowledgement.
    pub ack: Option<Ack>,
    /// When it was escalated.
    pub escalated_at: Option<Millis>,
    /// Why it notifies nobody now (`silence <id>`, `maintenance <name>`, `inhibited`).
    #[serde(default)]
    pub muted: Option<String>,
}

/// Stable id of an alert.
pub fn alert_id(rule: &str, instance: &BTreeMap<String, String>) -> String {
    let mut h = Keccak256::new();
    h.update(rule.as_bytes());
    for (k, v) in instance {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Parses `name=value`, `name!=value`, `name=~a|b`, `name!~a|b`.
pub fn parse_matcher(text: &str) -> Option<Matcher> {
    for (sep, op) in [
        ("=~", MatchOp::In),
        ("!~", MatchOp::NotIn),
        ("!=", MatchOp::Ne),
        ("=", MatchOp::Eq),
    ] {
        if let Some((name, value)) = text.split_once(sep) {
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            return Some(Matcher {
                name: name.to_owned(),
                op,
                value: value.trim().trim_matches('"').to_owned(),
            });
        }
    }
    None
}

/// Matchers from a config table: a value may start with `=~`, `!=` or `!~`.
pub fn matchers_from_map(map: &BTreeMap<String, String>) -> Vec<Matcher> {
    map.iter()
        .map(|(k, v)| {
            let (op, value) = if let Some(r) = v.strip_prefix("=~") {
                (MatchOp::In, r)
            } else if let Some(r) = v.strip_prefix("!~") {
                (MatchOp::NotIn, r)
            } else if let Some(r) = v.strip_prefix("!=") {
                (MatchOp::Ne, r)
            } else {
                (MatchOp::Eq, v.as_str())
            };
            Matcher {
                name: k.clone(),
                op,
                value: value.to_owned(),
            }
        })
        .collect()
}

/// Whether every matcher holds for `labels` (a missing label is "").
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| {
        let v = labels.get(&m.name).map_or("", String::as_str);
        match m.op {
            MatchOp::Eq => v == m.value,
            MatchOp::Ne => v != m.value,
            MatchOp::In => m.value.split('|').any(|a| a == v),
            MatchOp::NotIn => !m.value.split('|').any(|a| a == v),
        }
    })
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id.
    pub id: String,
    /// Matchers (`name=value`, `name=~a|b`, ...).
    pub matchers: Vec<String>,
    /// Start.
    pub starts_at: Millis,
    /// End.
    pub ends_at: Millis,
    /// Who.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    fn compiled(&self) -> Vec<Matcher> {
        self.matchers
            .iter()
            .filter_map(|m| parse_matcher(m))
            .collect()
    }

    /// Whether it is in force at `now`.
    pub fn active(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// Something worth keeping in the alert history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Alert id.
    pub alert: String,
    /// Rule.
    pub rule: String,
    /// When.
    pub at: Millis,
    /// `firing`, `resolved`, `acked`, `escalated`, `notified`.
    pub kind: String,
    /// Details (labels, receiver, who acked).
    pub detail: String,
}

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Receiver name.
    pub receiver: String,
    /// Group key (route index and group label values); deliveries of the same group supersede
    /// each other in a receiver's queue.
    pub group_key: String,
    /// Group labels.
    pub group_labels: BTreeMap<String, String>,
    /// The group's alerts: firing ones and those resolved since the last notification.
    pub alerts: Vec<Alert>,
    /// Whether this is an escalation.
    pub escalation: bool,
    /// When it was planned.
    pub at: Millis,
}

#[derive(Debug, Default)]
struct Group {
    first_seen: Millis,
    last_sent: Option<Millis>,
    digest: Vec<(String, bool)>,
    notified: HashSet<String>,
    escalated: bool,
}

/// Route index, group labels and alert ids of one group.
type GroupMembers = (usize, BTreeMap<String, String>, Vec<String>);

struct Route {
    matchers: Vec<Matcher>,
    config: RouteConfig,
}

struct Inhibit {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

struct Maintenance {
    name: String,
    start: Millis,
    end: Millis,
    matchers: Vec<Matcher>,
}

/// The alert book.
pub struct AlertBook {
    alerts: BTreeMap<String, Alert>,
    silences: Vec<Silence>,
    routes: Vec<Route>,
    inhibit: Vec<Inhibit>,
    maintenance: Vec<Maintenance>,
    groups: HashMap<String, Group>,
}

impl std::fmt::Debug for AlertBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertBook")
            .field("alerts", &self.alerts.len())
            .field("silences", &self.silences.len())
            .finish_non_exhaustive()
    }
}

fn render(template: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut out = template.replace("{{ $value }}", &format_value(value));
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    out
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// Errors of the book's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookError {
    /// No such alert.
    NoAlert(String),
    /// A matcher that does not parse.
    BadMatcher(String),
    /// A silence ending before it starts.
    BadWindow,
    /// No such silence.
    NoSilence(String),
}

impl AlertBook {
    /// A book with `routes`, `inhibit` rules and maintenance windows (bad times are refused by
    /// config validation; a window that does not parse here is ignored).
    pub fn new(
        routes: &[RouteConfig],
        inhibit: &[InhibitConfig],
        maintenance: &[MaintenanceConfig],
    ) -> Self {
        Self {
            alerts: BTreeMap::new(),
            silences: Vec::new(),
            routes: routes
                .iter()
                .map(|r| Route {
                    matchers: matchers_from_map(&r.matchers),
                    config: r.clone(),
                })
                .collect(),
            inhibit: inhibit
                .iter()
                .map(|i| Inhibit {
                    source: matchers_from_map(&i.source_match),
                    target: matchers_from_map(&i.target_match),
                    equal: i.equal.clone(),
                })
                .collect(),
            maintenance: maintenance
                .iter()
                .filter_map(|m| {
                    Some(Maintenance {
                        name: m.name.clone(),
                        start: parse_rfc3339(&m.start)?,
                        end: parse_rfc3339(&m.end)?,
                        matchers: matchers_from_map(&m.matchers),
                    })
                })
                .collect(),
            groups: HashMap::new(),
        }
    }

    /// Every alert (pending, firing, and resolved ones still to be notified).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// The alert `id`.
    pub fn get(&self, id: &str) -> Option<&Alert> {
        self.alerts.get(id)
    }

    /// Silences (active and future).
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// Maintenance windows in force at `now`, by name.
    pub fn maintenance_now(&self, now: Millis) -> Vec<String> {
        self.maintenance
            .iter()
            .filter(|m| m.start <= now && now < m.end)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Restores a firing alert and a silence list (after a restart).
    pub fn restore(&mut self, alerts: Vec<Alert>, silences: Vec<Silence>) {
        for a in alerts {
            self.alerts.insert(a.id.clone(), a);
        }
        self.silences = silences;
    }

    /// Applies rule transitions; returns the history worth keeping and the alerts changed
    /// (to persist).
    pub fn apply(
        &mut self,
        rules: &[Rule],
        transitions: &[Transition],
        now: Millis,
    ) -> (Vec<HistoryEvent>, Vec<Alert>) {
        let mut history = Vec::new();
        let mut changed = Vec::new();
        for t in transitions {
            let Some(rule) = rules.get(t.rule) else {
                continue;
            };
            let cfg = &rule.config;
            let instance: BTreeMap<String, String> = t.instance.iter().cloned().collect();
            let id = alert_id(&cfg.name, &instance);
            match t.change {
                Change::Pending => {
                    let mut labels = instance.clone();
                    labels.extend(cfg.labels.clone());
                    labels.insert("alertname".into(), cfg.name.clone());
                    labels.insert("severity".into(), cfg.severity.as_str().into());
                    let mut annotations = BTreeMap::new();
                    annotations.insert("summary".into(), render(&cfg.summary, &labels, t.value));
                    annotations.insert(
                        "description".into(),
                        render(&cfg.description, &labels, t.value),
                    );
                    if let Some(r) = &cfg.runbook {
                        annotations.insert("runbook_url".into(), r.clone());
                    }
                    self.alerts.insert(
                        id.clone(),
                        Alert {
                            id,
                            rule: cfg.name.clone(),
                            labels,
                            instance,
                            annotations,
                            severity: cfg.severity,
                            state: AlertState::Pending,
                            value: t.value,
                            since: t.since,
                            fired_at: None,
                            resolved_at: None,
                            ack: None,
                            escalated_at: None,
                            muted: None,
                        },
                    );
                }
                Change::Firing | Change::Still => {
                    let Some(a) = self.alerts.get_mut(&id) else {
                        continue;
                    };
                    a.value = t.value;
                    a.annotations
                        .insert("summary".into(), render(&cfg.summary, &a.labels, t.value));
                    a.annotations.insert(
                        "description".into(),
                        render(&cfg.description, &a.labels, t.value),
                    );
                    if t.change == Change::Firing || a.state != AlertState::Firing {
                        a.state = AlertState::Firing;
                        a.fired_at = Some(now);
                        history.push(HistoryEvent {
                            alert: a.id.clone(),
                            rule: a.rule.clone(),
                            at: now,
                            kind: "firing".into(),
                            detail: label_text(&a.labels),
                        });
                        changed.push(a.clone());
                    }
                }
                Change::Cleared => {
                    self.alerts.remove(&id);
                }
                Change::Resolved => {
                    let Some(a) = self.alerts.get_mut(&id) else {
                        continue;
                    };
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    history.push(HistoryEvent {
                        alert: a.id.clone(),
                        rule: a.rule.clone(),
                        at: now,
                        kind: "resolved".into(),
                        detail: label_text(&a.labels),
                    });
                    changed.push(a.clone());
                }
            }
        }
        (history, changed)
    }

    /// Acknowledges the alert `id` (or every firing alert matching `id` as a matcher list
    /// separated by `,`). Returns the alerts acknowledged.
    pub fn ack(
        &mut self,
        target: &str,
        by: &str,
        comment: &str,
        now: Millis,
    ) -> Result<Vec<Alert>, BookError> {
        let ids: Vec<String> = if self.alerts.contains_key(target) {
            vec![target.to_owned()]
        } else if target.contains('=') {
            let ms: Vec<Matcher> = target
                .split(',')
                .map(|m| parse_matcher(m).ok_or_else(|| BookError::BadMatcher(m.to_owned())))
                .collect::<Result<_, _>>()?;
            self.alerts
                .values()
                .filter(|a| a.state == AlertState::Firing && matches_all(&ms, &a.labels))
                .map(|a| a.id.clone())
                .collect()
        } else {
            return Err(BookError::NoAlert(target.to_owned()));
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(a) = self.alerts.get_mut(&id) {
                a.ack = Some(Ack {
                    by: by.to_owned(),
                    at: now,
                    comment: comment.to_owned(),
                });
                out.push(a.clone());
            }
        }
        if out.is_empty() {
            return Err(BookError::NoAlert(target.to_owned()));
        }
        Ok(out)
    }

    /// Adds a silence.
    pub fn add_silence(&mut self, s: Silence) -> Result<(), BookError> {
        if s.ends_at <= s.starts_at {
            return Err(BookError::BadWindow);
        }
        for m in &s.matchers {
            if parse_matcher(m).is_none() {
                return Err(BookError::BadMatcher(m.clone()));
            }
        }
        if s.matchers.is_empty() {
            return Err(BookError::BadMatcher("(none)".into()));
        }
        self.silences.push(s);
        Ok(())
    }

    /// Ends a silence now.
    pub fn expire_silence(&mut self, id: &str, now: Millis) -> Result<Silence, BookError> {
        let s = self
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| BookError::NoSilence(id.to_owned()))?;
        s.ends_at = s.ends_at.min(now);
        Ok(s.clone())
    }

    fn mute_reason(&self, a: &Alert, now: Millis) -> Option<String> {
        if let Some(s) = self
            .silences
            .iter()
            .find(|s| s.active(now) && matches_all(&s.compiled(), &a.labels))
        {
            return Some(format!("silence {}", s.id));
        }
        if let Some(m) = self
            .maintenance
            .iter()
            .find(|m| m.start <= now && now < m.end && matches_all(&m.matchers, &a.labels))
        {
            return Some(format!("maintenance {}", m.name));
        }
        let inhibited = self.inhibit.iter().any(|rule| {
            matches_all(&rule.target, &a.labels)
                && self.alerts.values().any(|src| {
                    src.id != a.id
                        && src.state == AlertState::Firing
                        && matches_all(&rule.source, &src.labels)
                        && rule
                            .equal
                            .iter()
                            .all(|l| src.labels.get(l) == a.labels.get(l))
                })
        });
        inhibited.then(|| "inhibited".to_owned())
    }

    /// Plans the notifications due at `now`; also drops expired silences and resolved alerts
    /// nobody needs to hear about any more. Returns notifications and history events.
    pub fn plan(&mut self, now: Millis) -> (Vec<Notification>, Vec<HistoryEvent>) {
        self.silences.retain(|s| s.ends_at > now - 86_400_000);
        let muted: Vec<(String, Option<String>)> = self
            .alerts
            .values()
            .map(|a| (a.id.clone(), self.mute_reason(a, now)))
            .collect();
        for (id, why) in muted {
            if let Some(a) = self.alerts.get_mut(&id) {
                a.muted = why;
            }
        }
        // Group alerts per route.
        let mut grouped: BTreeMap<String, GroupMembers> = BTreeMap::new();
        for a in self.alerts.values() {
            if a.state == AlertState::Pending {
                continue;
            }
            for (ri, r) in self.routes.iter().enumerate() {
                if !matches_all(&r.matchers, &a.labels) {
                    continue;
                }
                let gl: BTreeMap<String, String> = r
                    .config
                    .group_by
                    .iter()
                    .filter_map(|l| a.labels.get(l).map(|v| (l.clone(), v.clone())))
                    .collect();
                let key = format!("{ri}:{}", label_text(&gl));
                grouped
                    .entry(key)
                    .or_insert_with(|| (ri, gl, Vec::new()))
                    .2
                    .push(a.id.clone());
                if !r.config.continue_ {
                    break;
                }
            }
        }
        let mut out = Vec::new();
        let mut history = Vec::new();
        for (key, (ri, gl, ids)) in &grouped {
            let route = &self.routes[*ri].config;
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                first_seen: now,
                ..Group::default()
            });
            let mut alerts: Vec<&Alert> = Vec::new();
            let mut digest = Vec::new();
            for id in ids {
                let Some(a) = self.alerts.get(id) else {
                    continue;
                };
                let visible = match a.state {
                    AlertState::Firing => a.muted.is_none(),
                    AlertState::Resolved => group.notified.contains(id),
                    AlertState::Pending => false,
                };
                if visible {
                    digest.push((id.clone(), a.state == AlertState::Firing));
                    alerts.push(a);
                }
            }
            if digest.is_empty() {
                if group.notified.is_empty() {
                    group.first_seen = now;
                }
                continue;
            }
            let changed = digest != group.digest;
            let wait = ms(route.group_wait);
            let change_due = changed
                && match group.last_sent {
                    None => now - group.first_seen >= wait,
                    Some(t) => now - t >= wait,
                };
            let unacked: Vec<&&Alert> = alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing && a.ack.is_none())
                .collect();
            let repeat_due = !unacked.is_empty()
                && group
                    .last_sent
                    .is_some_and(|t| now - t >= ms(route.repeat_interval));
            let escalate = route.escalate_after.is_some_and(|d| {
                unacked
                    .iter()
                    .any(|a| a.fired_at.is_some_and(|f| now - f >= ms(d)))
            }) && !route.escalate_to.is_empty();
            let newly_escalated = escalate && !group.escalated;
            if !(change_due || repeat_due || newly_escalated) {
                continue;
            }
            let snapshot: Vec<Alert> = alerts.iter().map(|a| (*a).clone()).collect();
            let mut receivers: Vec<(&String, bool)> =
                route.receivers.iter().map(|r| (r, false)).collect();
            if escalate {
                receivers.extend(route.escalate_to.iter().map(|r| (r, true)));
            }
            for (r, esc) in receivers {
                out.push(Notification {
                    receiver: r.clone(),
                    group_key: key.clone(),
                    group_labels: gl.clone(),
                    alerts: snapshot.clone(),
                    escalation: esc,
                    at: now,
                });
                history.push(HistoryEvent {
                    alert: String::new(),
                    rule: String::new(),
                    at: now,
                    kind: if esc { "escalated" } else { "notified" }.into(),
                    detail: format!(
                        "{r}: {} alert(s) of group {}",
                        snapshot.len(),
                        label_text(gl)
                    ),
                });
            }
            group.last_sent = Some(now);
            group.digest = digest;
            group.escalated = escalate;
            for a in &snapshot {
                if a.state == AlertState::Firing {
                    group.notified.insert(a.id.clone());
                } else {
                    group.notified.remove(&a.id);
                }
            }
            if newly_escalated {
                for a in &snapshot {
                    if let Some(x) = self.alerts.get_mut(&a.id)
                        && x.state == AlertState::Firing
                        && x.ack.is_none()
                        && x.escalated_at.is_none()
                    {
                        x.escalated_at = Some(now);
                    }
                }
            }
        }
        // Groups that no longer exist, and resolved alerts no group still has to announce.
        self.groups
            .retain(|k, g| grouped.contains_key(k) || !g.notified.is_empty());
        let pending_resolves: HashSet<&String> = self
            .groups
            .values()
            .flat_map(|g| g.notified.iter())
            .collect();
        let drop: Vec<String> = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved && !pending_resolves.contains(&a.id))
            .map(|a| a.id.clone())
            .collect();
        for id in drop {
            self.alerts.remove(&id);
        }
        (out, history)
    }
}

/// `a="b", c="d"`.
pub fn label_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keel_config::monitor::RuleConfig;

    use super::*;
    use crate::clock::Clock as _;
    use crate::clock::ManualClock;
    use crate::expr::EvalCtx;
    use crate::rules::Engine;
    use crate::series::SeriesStore;

    fn rule(name: &str, expr: &str, severity: Severity) -> Rule {
        Rule::new(RuleConfig {
            name: name.into(),
            expr: expr.into(),
            for_: Duration::ZERO,
            fire_after: 1,
            resolve_after: 1,
            severity,
            labels: BTreeMap::new(),
            summary: "{{ $labels.upstream }} is {{ $value }} behind".into(),
            description: String::new(),
            runbook: Some("https://runbooks.example/lag".into()),
        })
        .expect("rule")
    }

    fn route(receivers: &[&str]) -> RouteConfig {
        RouteConfig {
            matchers: BTreeMap::new(),
            receivers: receivers.iter().map(|s| (*s).to_owned()).collect(),
            group_by: vec!["alertname".into(), "chain".into()],
            group_wait: Duration::from_secs(10),
            repeat_interval: Duration::from_secs(3600),
            escalate_after: Some(Duration::from_secs(900)),
            escalate_to: vec!["second".into()],
            continue_: false,
        }
    }

    struct World {
        clock: ManualClock,
        store: SeriesStore,
        engine: Engine,
        book: AlertBook,
    }

    impl World {
        fn new(routes: Vec<RouteConfig>) -> Self {
            Self {
                clock: ManualClock::new(1_000_000),
                store: SeriesStore::new(3_600_000, 1000),
                engine: Engine::new(vec![
                    rule("Lag", "lag > 5", Severity::Warning),
                    rule("Down", "down == 1", Severity::Critical),
                ]),
                book: AlertBook::new(&routes, &[InhibitConfig::default()], &[]),
            }
        }

        fn set(&mut self, metric: &str, upstream: &str, v: f64) {
            let now = self.clock.now_ms();
            self.store
                .record(metric, &[("chain", "dev"), ("upstream", upstream)], now, v);
        }

        /// Advances by `secs`, evaluates, plans; returns (receiver, escalation, firing ids, resolved ids).
        fn tick(&mut self, secs: u64) -> Vec<(String, bool, usize, usize)> {
            self.clock.advance(Duration::from_secs(secs));
            let now = self.clock.now_ms();
            // Re-sample every series at `now` (as the monitor does every evaluation).
            for (m, u) in [("lag", "a"), ("lag", "b"), ("down", "a")] {
                let metric = self.store.interner.get(m);
                let last = metric.and_then(|m| {
                    let (ids, _) = self.store.of_metric(m);
                    let u_sym = self.store.interner.get("upstream")?;
                    let val = self.store.interner.get(u)?;
                    ids.iter()
                        .filter_map(|id| self.store.get(*id))
                        .find(|s| s.label(u_sym) == Some(val))
                        .and_then(crate::series::Series::last)
                });
                if let Some(l) = last {
                    self.set(m, u, l.value);
                }
            }
            let mut tr = Vec::new();
            self.engine.evaluate(
                &mut self.store,
                EvalCtx {
                    now,
                    lookback: 60_000,
                },
                &mut tr,
            );
            self.book.apply(self.engine.rules(), &tr, now);
            let (n, _) = self.book.plan(now);
            n.into_iter()
                .map(|n| {
                    let firing = n
                        .alerts
                        .iter()
                        .filter(|a| a.state == AlertState::Firing)
                        .count();
                    (n.receiver, n.escalation, firing, n.alerts.len() - firing)
                })
                .collect()
        }
    }

    #[test]
    fn group_wait_batches_then_changes_notify_and_resolves_follow() {
        let mut w = World::new(vec![route(&["team"])]);
        w.set("lag", "a", 9.0);
        assert!(w.tick(0).is_empty(), "group_wait not over");
        w.set("lag", "b", 9.0);
        assert!(w.tick(5).is_empty());
        assert_eq!(
            w.tick(5),
            [("team".into(), false, 2, 0)],
            "both in one notification"
        );
        assert!(w.tick(10).is_empty(), "nothing changed");
        let a = w
            .book
            .alerts()
            .find(|a| a.instance.get("upstream").map(String::as_str) == Some("a"))
            .expect("a");
        assert_eq!(a.annotations["summary"], "a is 9 behind");
        assert_eq!(a.annotations["runbook_url"], "https://runbooks.example/lag");
        w.set("lag", "a", 1.0);
        assert_eq!(
            w.tick(10),
            [("team".into(), false, 1, 1)],
            "the resolve is announced"
        );
        w.set("lag", "b", 1.0);
        assert_eq!(w.tick(10), [("team".into(), false, 0, 1)]);
        assert_eq!(w.book.alerts().count(), 0, "resolved and announced: gone");
    }

    #[test]
    fn repeats_until_acknowledged_and_escalates_when_not() {
        let mut w = World::new(vec![route(&["team"])]);
        w.set("lag", "a", 9.0);
        w.tick(0);
        assert_eq!(w.tick(10).len(), 1);
        // 15 minutes unacknowledged: escalation to the second route, and the team again.
        let n = w.tick(900);
        assert_eq!(
            n,
            [("team".into(), false, 1, 0), ("second".into(), true, 1, 0)]
        );
        assert!(
            w.book
                .alerts()
                .next()
                .expect("alert")
                .escalated_at
                .is_some()
        );
        // An hour after the last notification: repeated to both (still unacknowledged).
        assert!(w.tick(1800).is_empty());
        assert_eq!(w.tick(1800).len(), 2);
        // Acknowledged: no more repeats.
        let id = w.book.alerts().next().expect("alert").id.clone();
        w.book
            .ack(&id, "alice", "on it", w.clock.now_ms())
            .expect("ack");
        assert!(w.tick(3600).is_empty());
        assert!(w.tick(3600).is_empty());
        // Its resolution is still announced.
        w.set("lag", "a", 0.0);
        assert_eq!(w.tick(10).len(), 1);
    }

    #[test]
    fn acknowledged_in_time_means_no_escalation() {
        let mut w = World::new(vec![route(&["team"])]);
        w.set("lag", "a", 9.0);
        w.tick(0);
        w.tick(10);
        w.book
            .ack("alertname=Lag,chain=dev", "bob", "", w.clock.now_ms())
            .expect("ack by matcher");
        assert!(w.tick(900).is_empty());
        assert!(w.tick(3600).is_empty());
    }

    #[test]
    fn critical_inhibits_warning_of_the_same_target() {
        let mut w = World::new(vec![route(&["team"])]);
        w.set("lag", "a", 9.0);
        w.set("lag", "b", 9.0);
        w.set("down", "a", 1.0);
        w.tick(0);
        let n = w.tick(10);
        // Down{a} and Lag{b} notify; Lag{a} is inhibited by Down{a}.
        assert_eq!(n.len(), 2, "{n:?}");
        let lag_a = w
            .book
            .alerts()
            .find(|a| a.rule == "Lag" && a.instance["upstream"] == "a")
            .expect("lag a");
        assert_eq!(lag_a.muted.as_deref(), Some("inhibited"));
        let lag_b = w
            .book
            .alerts()
            .find(|a| a.rule == "Lag" && a.instance["upstream"] == "b")
            .expect("b");
        assert_eq!(lag_b.muted, None);
        // Down resolves: the inhibition ends and Lag{a} is notified.
        w.set("down", "a", 0.0);
        let n = w.tick(10);
        assert!(n.contains(&("team".into(), false, 2, 0)), "{n:?}");
    }

    #[test]
    fn silences_and_maintenance_mute_until_they_end() {
        let mut w = World::new(vec![route(&["team"])]);
        let now = w.clock.now_ms();
        w.book
            .add_silence(Silence {
                id: "s1".into(),
                matchers: vec!["alertname=Lag".into(), "upstream=~a|c".into()],
                starts_at: now,
                ends_at: now + 60_000,
                created_by: "ops".into(),
                comment: "upgrade".into(),
            })
            .expect("silence");
        w.set("lag", "a", 9.0);
        w.tick(0);
        assert!(w.tick(10).is_empty());
        assert_eq!(
            w.book.alerts().next().expect("a").muted.as_deref(),
            Some("silence s1")
        );
        assert!(w.tick(30).is_empty());
        assert_eq!(w.tick(30).len(), 1, "silence over");
        assert!(
            w.book
                .add_silence(Silence {
                    id: "bad".into(),
                    matchers: vec!["=x".into()],
                    starts_at: 0,
                    ends_at: 1,
                    created_by: String::new(),
                    comment: String::new()
                })
                .is_err()
        );

        let start = crate::clock::rfc3339(w.clock.now_ms());
        let end = crate::clock::rfc3339(w.clock.now_ms() + 120_000);
        let mut w2 = World::new(vec![route(&["team"])]);
        w2.clock.set(w.clock.now_ms());
        w2.book = AlertBook::new(
            &[route(&["team"])],
            &[],
            &[MaintenanceConfig {
                name: "upgrade".into(),
                start,
                end,
                matchers: BTreeMap::new(),
            }],
        );
        w2.set("lag", "a", 9.0);
        w2.tick(0);
        assert!(w2.tick(10).is_empty());
        assert_eq!(w2.book.maintenance_now(w2.clock.now_ms()), ["upgrade"]);
        assert!(w2.tick(100).is_empty());
        assert_eq!(w2.tick(20).len(), 1, "maintenance over");
    }

    #[test]
    fn routes_match_labels_and_continue() {
        let mut critical = route(&["pager"]);
        critical.matchers = BTreeMap::from([("severity".into(), "critical".into())]);
        critical.continue_ = true;
        let mut w = World::new(vec![critical, route(&["team"])]);
        w.set("down", "a", 1.0);
        w.set("lag", "b", 9.0);
        w.tick(0);
        let mut n = w.tick(10);
        n.sort();
        assert_eq!(
            n,
            [
                ("pager".into(), false, 1, 0),
                ("team".into(), false, 1, 0),
                ("team".into(), false, 1, 0)
            ]
        );
    }

    #[test]
    fn matchers_parse() {
        assert_eq!(parse_matcher("a=~x|y").map(|m| m.op), Some(MatchOp::In));
        assert_eq!(parse_matcher("a!=x").map(|m| m.op), Some(MatchOp::Ne));
        assert!(parse_matcher("noop").is_none());
        assert!(parse_matcher("a b=c").is_none());
    }
}
