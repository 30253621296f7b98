//! The rule state machine: one compiled condition per rule, one instance per series (or
//! group) it holds for, and the transitions `for` and hysteresis allow.
//!
//! An instance is **pending** from the first evaluation its condition holds; it **fires** once
//! the condition has held for `fire_after` consecutive evaluations *and* for at least `for`;
//! a single evaluation where it does not hold ends a pending instance. A firing instance
//! **resolves** after `resolve_after` consecutive evaluations where it does not hold (an
//! instance whose series went away counts as not holding). Every transition is reported as a
//! [`Transition`]; the alert book turns them into alerts, history and notifications.

use std::collections::{BTreeMap, HashMap};

use keel_config::monitor::{RuleConfig, Severity};

use crate::clock::Millis;
use crate::expr::{self, Compiled, EvalCtx};
use crate::series::{LabelSet, SeriesStore, fingerprint};

/// What happened to an instance in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The condition started holding.
    Pending,
    /// The alert fires.
    Firing,
    /// A firing alert's value changed (still firing).
    Still,
    /// A pending instance stopped holding before firing.
    Cleared,
    /// A firing alert resolved.
    Resolved,
}

/// A state change of one rule instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Index of the rule.
    pub rule: usize,
    /// The instance's labels (from the series), as text.
    pub instance: Vec<(String, String)>,
    /// The value the condition compared.
    pub value: f64,
    /// What happened.
    pub change: Change,
    /// When the condition started holding.
    pub since: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Firing,
}

#[derive(Debug)]
struct Instance {
    labels: LabelSet,
    state: State,
    holds: u32,
    clear: u32,
    since: Millis,
    value: f64,
    round: u64,
}

/// One rule, compiled.
#[derive(Debug)]
pub struct Rule {
    /// Its configuration.
    pub config: RuleConfig,
    cond: Compiled,
    instances: HashMap<u64, Instance>,
}

/// A rule that does not compile.
#[derive(Debug, Clone)]
pub struct RuleError {
    /// Rule name.
    pub rule: String,
    /// Why.
    pub error: expr::ParseError,
}

impl Rule {
    /// Compiles `config`.
    pub fn new(config: RuleConfig) -> Result<Self, RuleError> {
        let cond = expr::parse(&config.expr).map_err(|error| RuleError {
            rule: config.name.clone(),
            error,
        })?;
        Ok(Self {
            config,
            cond: Compiled::new(cond),
            instances: HashMap::new(),
        })
    }

    /// Its severity.
    pub fn severity(&self) -> Severity {
        self.config.severity
    }

    /// The parsed condition.
    pub fn condition(&self) -> &expr::Condition {
        self.cond.source()
    }
}

/// Every rule and its instances.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Vec<Rule>,
    round: u64,
    scratch: Vec<(u64, LabelSet, f64)>,
}

fn text_labels(store: &SeriesStore, labels: &LabelSet) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| {
            (
                store.interner.resolve(*k).to_owned(),
                store.interner.resolve(*v).to_owned(),
            )
        })
        .collect()
}

impl Engine {
    /// An engine over `rules`.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            rules,
            round: 0,
            scratch: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The index of the rule called `name`.
    pub fn rule_index(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.config.name == name)
    }

    /// The longest window any rule reads.
    pub fn max_window(&self) -> Millis {
        self.rules
            .iter()
            .map(|r| r.cond.source().max_window())
            .max()
            .unwrap_or(0)
    }

    /// Marks an instance as firing (restored from the store after a restart), so that it
    /// neither waits `for` again nor fires twice.
    pub fn restore_firing(
        &mut self,
        store: &mut SeriesStore,
        rule: usize,
        instance: &BTreeMap<String, String>,
        since: Millis,
    ) {
        let Some(r) = self.rules.get_mut(rule) else {
            return;
        };
        let mut pairs: Vec<(u32, u32)> = instance
            .iter()
            .map(|(k, v)| (store.interner.intern(k), store.interner.intern(v)))
            .collect();
        pairs.sort_unstable();
        let fp = fingerprint(&pairs);
        r.instances.insert(
            fp,
            Instance {
                labels: pairs.into(),
                state: State::Firing,
                holds: r.config.fire_after,
                clear: 0,
                since,
                value: f64::NAN,
                round: 0,
            },
        );
    }

    /// Evaluates every rule at `ctx.now` and appends the transitions to `out`.
    pub fn evaluate(&mut self, store: &mut SeriesStore, ctx: EvalCtx, out: &mut Vec<Transition>) {
        self.round += 1;
        let round = self.round;
        for (ri, rule) in self.rules.iter_mut().enumerate() {
            self.scratch.clear();
            let scratch = &mut self.scratch;
            rule.cond.eval(store, ctx, |o| {
                if o.holds {
                    scratch.push((o.fp, o.labels, o.value));
                }
            });
            let cfg = &rule.config;
            let for_ms = crate::clock::ms(cfg.for_);
            for (fp, labels, value) in scratch.drain(..) {
                let inst = rule.instances.entry(fp).or_insert_with(|| {
                    out.push(Transition {
                        rule: ri,
                        instance: text_labels(store, &labels),
                        value,
                        change: Change::Pending,
                        since: ctx.now,
                    });
                    Instance {
                        labels,
                        state: State::Pending,
                        holds: 0,
                        clear: 0,
                        since: ctx.now,
                        value,
                        round,
                    }
                });
                inst.round = round;
                inst.holds = inst.holds.saturating_add(1);
                inst.clear = 0;
                let changed = inst.value.to_bits() != value.to_bits();
                inst.value = value;
                match inst.state {
                    State::Pending => {
                        if inst.holds >= cfg.fire_after.max(1) && ctx.now - inst.since >= for_ms {
                            inst.state = State::Firing;
                            out.push(Transition {
                                rule: ri,
                                instance: text_labels(store, &inst.labels),
                                value,
                                change: Change::Firing,
                                since: inst.since,
                            });
                        }
                    }
                    State::Firing if changed => out.push(Transition {
                        rule: ri,
                        instance: text_labels(store, &inst.labels),
                        value,
                        change: Change::Still,
                        since: inst.since,
                    }),
                    State::Firing => {}
                }
            }
            if rule.instances.is_empty() {
                continue;
            }
            rule.instances.retain(|_, inst| {
                if inst.round == round {
                    return true;
                }
                inst.holds = 0;
                inst.clear = inst.clear.saturating_add(1);
                let change = match inst.state {
                    State::Pending => Change::Cleared,
                    State::Firing if inst.clear >= cfg.resolve_after.max(1) => Change::Resolved,
                    State::Firing => return true,
                };
                out.push(Transition {
                    rule: ri,
                    instance: text_labels(store, &inst.labels),
                    value: inst.value,
                    change,
                    since: inst.since,
                });
                false
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule(expr: &str, for_: u64, fire_after: u32, resolve_after: u32) -> Rule {
        Rule::new(RuleConfig {
            name: "T".into(),
            expr: expr.into(),
            for_: Duration::from_secs(for_),
            fire_after,
            resolve_after,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            summary: String::new(),
            description: String::new(),
            runbook: None,
        })
        .expect("rule")
    }

    /// Runs one evaluation at `t` seconds with `x{u="a"}` set to `v` (None: absent).
    fn step(e: &mut Engine, s: &mut SeriesStore, t: i64, v: Option<f64>) -> Vec<Change> {
        if let Some(v) = v {
            s.record("x", &[("u", "a")], t * 1000, v);
        }
        let mut out = Vec::new();
        e.evaluate(
            s,
            EvalCtx {
                now: t * 1000,
                lookback: 15_000,
            },
            &mut out,
        );
        out.into_iter().map(|t| t.change).collect()
    }

    #[test]
    fn for_duration_must_elapse_and_one_miss_clears_pending() {
        let mut e = Engine::new(vec![rule("x > 5", 30, 1, 1)]);
        let mut s = SeriesStore::new(600_000, 100);
        assert_eq!(step(&mut e, &mut s, 0, Some(9.0)), [Change::Pending]);
        assert!(step(&mut e, &mut s, 10, Some(9.0)).is_empty());
        assert_eq!(step(&mut e, &mut s, 20, Some(1.0)), [Change::Cleared]);
        assert_eq!(step(&mut e, &mut s, 30, Some(9.0)), [Change::Pending]);
        assert!(step(&mut e, &mut s, 50, Some(9.0)).is_empty());
        assert_eq!(step(&mut e, &mut s, 60, Some(9.0)), [Change::Firing]);
        assert_eq!(step(&mut e, &mut s, 70, Some(10.0)), [Change::Still]);
        assert_eq!(step(&mut e, &mut s, 80, Some(1.0)), [Change::Resolved]);
    }

    #[test]
    fn hysteresis_fires_after_k_and_resolves_after_j() {
        let mut e = Engine::new(vec![rule("x > 5", 0, 3, 2)]);
        let mut s = SeriesStore::new(600_000, 100);
        assert_eq!(step(&mut e, &mut s, 0, Some(9.0)), [Change::Pending]);
        assert!(step(&mut e, &mut s, 10, Some(9.0)).is_empty());
        assert_eq!(step(&mut e, &mut s, 20, Some(9.0)), [Change::Firing]);
        // One success is not enough to resolve; a failure in between starts over.
        assert!(step(&mut e, &mut s, 30, Some(1.0)).is_empty());
        assert!(step(&mut e, &mut s, 40, Some(9.0)).is_empty());
        assert!(step(&mut e, &mut s, 50, Some(1.0)).is_empty());
        assert_eq!(step(&mut e, &mut s, 60, Some(1.0)), [Change::Resolved]);
    }

    #[test]
    fn a_series_that_goes_away_resolves_its_alert() {
        let mut e = Engine::new(vec![rule("x > 5", 0, 1, 1)]);
        let mut s = SeriesStore::new(600_000, 100);
        assert_eq!(
            step(&mut e, &mut s, 0, Some(9.0)),
            [Change::Pending, Change::Firing]
        );
        // No new sample: stale after the 15 s lookback.
        assert!(step(&mut e, &mut s, 10, None).is_empty());
        assert_eq!(step(&mut e, &mut s, 20, None), [Change::Resolved]);
    }

    #[test]
    fn a_restored_firing_instance_does_not_fire_again() {
        let mut e = Engine::new(vec![rule("x > 5", 60, 1, 1)]);
        let mut s = SeriesStore::new(600_000, 100);
        e.restore_firing(
            &mut s,
            0,
            &BTreeMap::from([("u".to_owned(), "a".to_owned())]),
            0,
        );
        assert_eq!(step(&mut e, &mut s, 100, Some(9.0)), [Change::Still]);
        assert_eq!(step(&mut e, &mut s, 110, Some(1.0)), [Change::Resolved]);
    }
}
