//! Rule expressions: a small subset of PromQL, so that the built-in rules and the shipped
//! Prometheus rules are the same text.
//!
//! ```text
//! condition := value cmp number | "absent(" selector ")"
//! value     := term (("+" | "-") term)*
//! term      := factor (("*" | "/") factor)*
//! factor    := number | selector | func "(" selector "[" duration "]" ")"
//!            | agg [("by" | "without") "(" label, ... ")"] "(" value ")" | "(" value ")"
//! func      := rate | increase | delta | changes | avg_over_time | min_over_time | max_over_time
//! agg       := sum | avg | min | max | count
//! selector  := metric ["{" label op "string" , ... "}"]      op: = != =~ !~
//! cmp       := > >= < <= == !=
//! ```
//!
//! `=~`/`!~` take literal alternatives (`"failed|deadline"`, whole value), not general regular
//! expressions. Binary operators between two vectors match series with identical labels.
//! `increase` is the observed increase between the first and last sample in the window
//! (counter resets handled), without Prometheus's extrapolation to the window's edges; `rate`
//! is that increase per second between those samples.
//!
//! Evaluation is built to be cheap when nothing is wrong: selectors are resolved to series ids
//! once and again only when their metric's series change, every node keeps its scratch
//! vectors between evaluations, and aggregation groups are kept between evaluations.

use std::collections::HashMap;
use std::fmt;

use crate::clock::Millis;
use crate::series::{LabelSet, SeriesId, SeriesStore, Sym, fingerprint};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }
}

/// A label matcher operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (literal alternatives)
    In,
    /// `!~`
    NotIn,
}

/// One label matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value (for `=~`/`!~`: alternatives separated by `|`).
    pub value: String,
}

impl Matcher {
    fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::In => self.value.split('|').any(|a| a == v),
            MatchOp::NotIn => !self.value.split('|').any(|a| a == v),
        }
    }
}

/// A series selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// Metric name.
    pub metric: String,
    /// Label matchers.
    pub matchers: Vec<Matcher>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if !self.matchers.is_empty() {
            f.write_str("{")?;
            for (i, m) in self.matchers.iter().enumerate() {
                let op = match m.op {
                    MatchOp::Eq => "=",
                    MatchOp::Ne => "!=",
                    MatchOp::In => "=~",
                    MatchOp::NotIn => "!~",
                };
                let sep = if i == 0 { "" } else { "," };
                write!(f, "{sep}{}{op}{:?}", m.name, m.value)?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// A range function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Per-second increase.
    Rate,
    /// Increase (counter resets handled).
    Increase,
    /// Last minus first.
    Delta,
    /// Number of value changes.
    Changes,
    /// Mean of the samples.
    AvgOverTime,
    /// Smallest sample.
    MinOverTime,
    /// Largest sample.
    MaxOverTime,
}

impl Func {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "rate" => Self::Rate,
            "increase" => Self::Increase,
            "delta" => Self::Delta,
            "changes" => Self::Changes,
            "avg_over_time" => Self::AvgOverTime,
            "min_over_time" => Self::MinOverTime,
            "max_over_time" => Self::MaxOverTime,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Increase => "increase",
            Self::Delta => "delta",
            Self::Changes => "changes",
            Self::AvgOverTime => "avg_over_time",
            Self::MinOverTime => "min_over_time",
            Self::MaxOverTime => "max_over_time",
        }
    }
}

/// An aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Number of series.
    Count,
}

impl Agg {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count" => Self::Count,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Count => "count",
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// A value expression (parsed).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A constant.
    Number(f64),
    /// The newest sample of each selected series.
    Instant(Selector),
    /// A range function over a window (ms).
    Range(Func, Selector, Millis),
    /// An aggregation, grouping by (or without) labels.
    Aggregate {
        /// Which.
        agg: Agg,
        /// Group labels.
        by: Vec<String>,
        /// Whether `by` lists the labels to drop instead.
        without: bool,
        /// Aggregated expression.
        inner: Box<Value>,
    },
    /// Arithmetic.
    Binary(Box<Value>, Arith, Box<Value>),
}

/// A rule's condition (parsed).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// True for each point of `value` for which the comparison holds.
    Compare(Value, Cmp, f64),
    /// True when no series matches the selector.
    Absent(Selector),
}

impl Condition {
    /// The longest window any range function of the condition reads.
    pub fn max_window(&self) -> Millis {
        fn walk(v: &Value) -> Millis {
            match v {
                Value::Range(_, _, w) => *w,
                Value::Aggregate { inner, .. } => walk(inner),
                Value::Binary(a, _, b) => walk(a).max(walk(b)),
                _ => 0,
            }
        }
        match self {
            Self::Compare(v, _, _) => walk(v),
            Self::Absent(_) => 0,
        }
    }
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset.
    pub at: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

type PResult<T> = Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            at: self.pos,
            message: message.into(),
        })
    }

    fn ws(&mut self) {
        while self.src[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.src[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        self.ws();
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> PResult<()> {
        if self.eat(s) {
            Ok(())
        } else {
            self.err(format!("expected `{s}`"))
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.ws();
        let rest = &self.src[self.pos..];
        let len = rest
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    || (*i == 0 && c.is_ascii_digit())
            })
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    fn number(&mut self) -> Option<f64> {
        self.ws();
        let rest = &self.src[self.pos..];
        let len = rest
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_digit()
                    || *c == '.'
                    || *c == 'e'
                    || *c == 'E'
                    || ((*c == '-' || *c == '+')
                        && *i > 0
                        && matches!(rest.as_bytes()[i - 1], b'e' | b'E')))
            })
            .map_or(rest.len(), |(i, _)| i);
        let v = rest[..len].parse().ok()?;
        self.pos += len;
        Some(v)
    }

    fn string(&mut self) -> PResult<String> {
        self.ws();
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return self.err("expected a quoted string"),
        };
        self.pos += 1;
        let mut out = String::new();
        let mut escaped = false;
        for (i, c) in self.src[self.pos..].char_indices() {
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                self.pos += i + 1;
                return Ok(out);
            } else {
                out.push(c);
            }
        }
        self.err("unterminated string")
    }

    fn duration(&mut self) -> PResult<Millis> {
        self.ws();
        let rest = &self.src[self.pos..];
        let len = rest.find(']').unwrap_or(rest.len());
        match humantime::parse_duration(rest[..len].trim()) {
            Ok(d) if !d.is_zero() => {
                self.pos += len;
                Ok(crate::clock::ms(d))
            }
            _ => self.err(format!(
                "`{}` is not a duration such as 5m",
                rest[..len].trim()
            )),
        }
    }

    fn selector_after(&mut self, metric: &str) -> PResult<Selector> {
        let mut matchers = Vec::new();
        if self.eat("{") {
            loop {
                if self.eat("}") {
                    break;
                }
                let Some(name) = self.ident() else {
                    return self.err("expected a label name");
                };
                let op = if self.eat("=~") {
                    MatchOp::In
                } else if self.eat("!~") {
                    MatchOp::NotIn
                } else if self.eat("!=") {
                    MatchOp::Ne
                } else if self.eat("=") {
                    MatchOp::Eq
                } else {
                    return self.err("expected =, !=, =~ or !~");
                };
                let value = self.string()?;
                matchers.push(Matcher {
                    name: name.to_owned(),
                    op,
                    value,
                });
                if !self.eat(",") {
                    self.expect("}")?;
                    break;
                }
            }
        }
        Ok(Selector {
            metric: metric.to_owned(),
            matchers,
        })
    }

    fn condition(&mut self) -> PResult<Condition> {
        let save = self.pos;
        if self.ident() == Some("absent") && self.eat("(") {
            let Some(m) = self.ident() else {
                return self.err("expected a metric name");
            };
            let sel = self.selector_after(m)?;
            self.expect(")")?;
            return Ok(Condition::Absent(sel));
        }
        self.pos = save;
        let v = self.value()?;
        let cmp = if self.eat(">=") {
            Cmp::Ge
        } else if self.eat("<=") {
            Cmp::Le
        } else if self.eat("==") {
            Cmp::Eq
        } else if self.eat("!=") {
            Cmp::Ne
        } else if self.eat(">") {
            Cmp::Gt
        } else if self.eat("<") {
            Cmp::Lt
        } else {
            return self.err("expected a comparison (>, >=, <, <=, ==, !=) with a number");
        };
        let Some(n) = self.number() else {
            return self.err("expected a number after the comparison");
        };
        Ok(Condition::Compare(v, cmp, n))
    }

    fn value(&mut self) -> PResult<Value> {
        let mut lhs = self.term()?;
        loop {
            let op = if self.eat("+") {
                Arith::Add
            } else if self.peek() == Some('-') {
                self.pos += 1;
                Arith::Sub
            } else {
                return Ok(lhs);
            };
            let rhs = self.term()?;
            lhs = Value::Binary(Box::new(lhs), op, Box::new(rhs));
        }
    }

    fn term(&mut self) -> PResult<Value> {
        let mut lhs = self.factor()?;
        loop {
            let op = if self.eat("*") {
                Arith::Mul
            } else if self.eat("/") {
                Arith::Div
            } else {
                return Ok(lhs);
            };
            let rhs = self.factor()?;
            lhs = Value::Binary(Box::new(lhs), op, Box::new(rhs));
        }
    }

    fn factor(&mut self) -> PResult<Value> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let v = self.value()?;
                self.expect(")")?;
                return Ok(v);
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                return match self.number() {
                    Some(n) => Ok(Value::Number(n)),
                    None => self.err("bad number"),
                };
            }
            _ => {}
        }
        let Some(name) = self.ident() else {
            return self.err("expected a metric, function, aggregation or number");
        };
        if let Some(f) = Func::from_name(name)
            && self.eat("(")
        {
            let Some(m) = self.ident() else {
                return self.err("expected a metric name");
            };
            let sel = self.selector_after(m)?;
            self.expect("[")?;
            let w = self.duration()?;
            self.expect("]")?;
            self.expect(")")?;
            return Ok(Value::Range(f, sel, w));
        }
        if let Some(agg) = Agg::from_name(name) {
            let save = self.pos;
            let mut by = Vec::new();
            let mut without = false;
            let kw = self.ident();
            if matches!(kw, Some("by" | "without")) {
                without = kw == Some("without");
                self.expect("(")?;
                loop {
                    if self.eat(")") {
                        break;
                    }
                    let Some(l) = self.ident() else {
                        return self.err("expected a label name");
                    };
                    by.push(l.to_owned());
                    if !self.eat(",") {
                        self.expect(")")?;
                        break;
                    }
                }
            } else {
                self.pos = save;
            }
            if self.eat("(") {
                let inner = self.value()?;
                self.expect(")")?;
                return Ok(Value::Aggregate {
                    agg,
                    by,
                    without,
                    inner: Box::new(inner),
                });
            }
            self.pos = save;
        }
        Ok(Value::Instant(self.selector_after(name)?))
    }
}

/// Parses a rule condition.
pub fn parse(src: &str) -> Result<Condition, ParseError> {
    let mut p = Parser { src, pos: 0 };
    let c = p.condition()?;
    p.ws();
    if p.pos < src.len() {
        return p.err("unexpected text after the condition");
    }
    Ok(c)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Instant(s) => write!(f, "{s}"),
            Self::Range(func, s, w) => write!(f, "{}({s}[{}])", func.name(), prom_duration(*w)),
            Self::Aggregate {
                agg,
                by,
                without,
                inner,
            } => {
                f.write_str(agg.name())?;
                if !by.is_empty() || *without {
                    write!(
                        f,
                        " {} ({})",
                        if *without { "without" } else { "by" },
                        by.join(", ")
                    )?;
                }
                write!(f, " ({inner})")
            }
            Self::Binary(a, op, b) => {
                let op = match op {
                    Arith::Add => "+",
                    Arith::Sub => "-",
                    Arith::Mul => "*",
                    Arith::Div => "/",
                };
                write!(f, "({a} {op} {b})")
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compare(v, c, n) => write!(f, "{v} {} {n}", c.text()),
            Self::Absent(s) => write!(f, "absent({s})"),
        }
    }
}

/// A duration in Prometheus's notation (`5m`, `1h`, `90s`).
pub fn prom_duration(ms: Millis) -> String {
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= len && ms % len == 0 {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// One point of an evaluated vector.
#[derive(Debug, Clone)]
pub struct Point {
    /// Fingerprint of `labels`.
    pub fp: u64,
    /// Labels (interned).
    pub labels: LabelSet,
    /// Value.
    pub value: f64,
}

/// Evaluation context.
#[derive(Debug, Clone, Copy)]
pub struct EvalCtx {
    /// Now.
    pub now: Millis,
    /// A series whose newest sample is older than this is not part of an instant vector.
    pub lookback: Millis,
}

#[derive(Debug, Default)]
struct Resolved {
    metric: Option<Sym>,
    generation: u64,
    ids: Vec<SeriesId>,
}

#[derive(Debug)]
struct CSelector {
    sel: Selector,
    resolved: Resolved,
}

impl CSelector {
    fn new(sel: Selector) -> Self {
        Self {
            sel,
            resolved: Resolved::default(),
        }
    }

    /// The ids of the selected series, re-resolved when the metric's series changed.
    fn ids(&mut self, store: &SeriesStore) -> &[SeriesId] {
        let metric = match self.resolved.metric {
            Some(m) => m,
            None => match store.interner.get(&self.sel.metric) {
                Some(m) => {
                    self.resolved.metric = Some(m);
                    m
                }
                None => return &[],
            },
        };
        let (all, generation) = store.of_metric(metric);
        if generation != self.resolved.generation {
            self.resolved.generation = generation;
            self.resolved.ids.clear();
            for &id in all {
                let Some(s) = store.get(id) else { continue };
                let ok = self.sel.matchers.iter().all(|m| {
                    let v = store
                        .interner
                        .get(&m.name)
                        .and_then(|n| s.label(n))
                        .map_or("", |v| store.interner.resolve(v));
                    m.matches(v)
                });
                if ok {
                    self.resolved.ids.push(id);
                }
            }
        }
        &self.resolved.ids
    }
}

#[derive(Debug)]
struct Group {
    labels: LabelSet,
    acc: f64,
    count: u32,
    round: u64,
}

#[derive(Debug)]
enum Node {
    Number(f64),
    Instant(CSelector),
    Range(Func, CSelector, Millis),
    Aggregate {
        agg: Agg,
        by: Vec<String>,
        by_syms: Option<Vec<Sym>>,
        without: bool,
        inner: Box<CNode>,
        groups: HashMap<u64, Group>,
        round: u64,
        pairs: Vec<(Sym, Sym)>,
    },
    Binary(Box<CNode>, Arith, Box<CNode>),
}

#[derive(Debug)]
struct CNode {
    node: Node,
    out: Vec<Point>,
    /// Scalar result (a number, or arithmetic of numbers).
    scalar: Option<f64>,
}

fn compile(v: Value) -> CNode {
    let node = match v {
        Value::Number(n) => Node::Number(n),
        Value::Instant(s) => Node::Instant(CSelector::new(s)),
        Value::Range(f, s, w) => Node::Range(f, CSelector::new(s), w),
        Value::Aggregate {
            agg,
            by,
            without,
            inner,
        } => Node::Aggregate {
            agg,
            by,
            by_syms: None,
            without,
            inner: Box::new(compile(*inner)),
            groups: HashMap::new(),
            round: 0,
            pairs: Vec::new(),
        },
        Value::Binary(a, op, b) => Node::Binary(Box::new(compile(*a)), op, Box::new(compile(*b))),
    };
    CNode {
        node,
        out: Vec::new(),
        scalar: None,
    }
}

fn range_value(f: Func, samples: impl Iterator<Item = crate::series::Sample>) -> Option<f64> {
    let mut first: Option<crate::series::Sample> = None;
    let mut prev: Option<f64> = None;
    let (mut inc, mut changes, mut sum, mut n) = (0.0, 0.0, 0.0, 0u32);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut last = None;
    for s in samples {
        if first.is_none() {
            first = Some(s);
        }
        if let Some(p) = prev {
            inc += if s.value < p { s.value } else { s.value - p };
            if s.value != p {
                changes += 1.0;
            }
        }
        prev = Some(s.value);
        sum += s.value;
        n += 1;
        min = min.min(s.value);
        max = max.max(s.value);
        last = Some(s);
    }
    let (first, last) = (first?, last?);
    match f {
        Func::Rate => {
            let secs = (last.at - first.at) as f64 / 1000.0;
            (n >= 2 && secs > 0.0).then(|| inc / secs)
        }
        Func::Increase => (n >= 2).then_some(inc),
        Func::Delta => (n >= 2).then_some(last.value - first.value),
        Func::Changes => Some(changes),
        Func::AvgOverTime => Some(sum / f64::from(n)),
        Func::MinOverTime => Some(min),
        Func::MaxOverTime => Some(max),
    }
}

fn arith(a: f64, op: Arith, b: f64) -> f64 {
    match op {
        Arith::Add => a + b,
        Arith::Sub => a - b,
        Arith::Mul => a * b,
        Arith::Div => a / b,
    }
}

impl CNode {
    fn eval(&mut self, store: &SeriesStore, ctx: EvalCtx) {
        self.out.clear();
        self.scalar = None;
        match &mut self.node {
            Node::Number(n) => self.scalar = Some(*n),
            Node::Instant(sel) => {
                for &id in sel.ids(store) {
                    let Some(s) = store.get(id) else { continue };
                    if let Some(last) = s.last()
                        && last.at >= ctx.now - ctx.lookback
                    {
                        self.out.push(Point {
                            fp: s.fingerprint,
                            labels: s.labels.clone(),
                            value: last.value,
                        });
                    }
                }
            }
            Node::Range(f, sel, w) => {
                for &id in sel.ids(store) {
                    let Some(s) = store.get(id) else { continue };
                    if let Some(v) = range_value(*f, s.since(ctx.now - *w)) {
                        self.out.push(Point {
                            fp: s.fingerprint,
                            labels: s.labels.clone(),
                            value: v,
                        });
                    }
                }
            }
            Node::Aggregate {
                agg,
                by,
                by_syms,
                without,
                inner,
                groups,
                round,
                pairs,
            } => {
                inner.eval(store, ctx);
                if by_syms.is_none() || by_syms.as_ref().is_some_and(|b| b.len() != by.len()) {
                    let syms: Vec<Sym> = by.iter().filter_map(|l| store.interner.get(l)).collect();
                    // Cache only once every label is interned (it may not be yet).
                    if syms.len() == by.len() {
                        *by_syms = Some(syms);
                    }
                }
                let syms: &[Sym] = by_syms.as_deref().unwrap_or(&[]);
                *round += 1;
                for p in &inner.out {
                    pairs.clear();
                    pairs.extend(
                        p.labels
                            .iter()
                            .filter(|(k, _)| syms.contains(k) != *without)
                            .copied(),
                    );
                    // Labels listed in `by` but not interned yet match nothing: drop them.
                    let fp = fingerprint(pairs);
                    let g = groups.entry(fp).or_insert_with(|| Group {
                        labels: pairs.clone().into(),
                        acc: 0.0,
                        count: 0,
                        round: 0,
                    });
                    if g.round != *round {
                        g.round = *round;
                        g.count = 0;
                        g.acc = match agg {
                            Agg::Min => f64::INFINITY,
                            Agg::Max => f64::NEG_INFINITY,
                            _ => 0.0,
                        };
                    }
                    g.count += 1;
                    match agg {
                        Agg::Sum | Agg::Avg => g.acc += p.value,
                        Agg::Min => g.acc = g.acc.min(p.value),
                        Agg::Max => g.acc = g.acc.max(p.value),
                        Agg::Count => g.acc += 1.0,
                    }
                }
                let r = *round;
                groups.retain(|_, g| g.round + 64 > r);
                for (fp, g) in groups.iter() {
                    if g.round == r {
                        let value = if *agg == Agg::Avg {
                            g.acc / f64::from(g.count)
                        } else {
                            g.acc
                        };
                        self.out.push(Point {
                            fp: *fp,
                            labels: g.labels.clone(),
                            value,
                        });
                    }
                }
            }
            Node::Binary(a, op, b) => {
                a.eval(store, ctx);
                b.eval(store, ctx);
                match (a.scalar, b.scalar) {
                    (Some(x), Some(y)) => self.scalar = Some(arith(x, *op, y)),
                    (None, Some(y)) => {
                        for p in &a.out {
                            self.out.push(Point {
                                value: arith(p.value, *op, y),
                                ..p.clone()
                            });
                        }
                    }
                    (Some(x), None) => {
                        for p in &b.out {
                            self.out.push(Point {
                                value: arith(x, *op, p.value),
                                ..p.clone()
                            });
                        }
                    }
                    (None, None) => {
                        // One-to-one matching on identical labels. Vectors are small after
                        // aggregation; sort the right side once for lookups.
                        b.out.sort_unstable_by_key(|p| p.fp);
                        for p in &a.out {
                            if let Ok(i) = b.out.binary_search_by_key(&p.fp, |q| q.fp) {
                                self.out.push(Point {
                                    value: arith(p.value, *op, b.out[i].value),
                                    ..p.clone()
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A condition compiled for repeated evaluation against one store.
#[derive(Debug)]
pub struct Compiled {
    kind: CKind,
    source: Condition,
}

#[derive(Debug)]
enum CKind {
    Compare(CNode, Cmp, f64),
    Absent(CSelector, LabelSet, u64, Vec<(String, String)>),
}

/// One result of a condition: an instance and whether the condition holds for it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Instance fingerprint (its labels).
    pub fp: u64,
    /// Instance labels.
    pub labels: LabelSet,
    /// The value compared (1 for `absent`).
    pub value: f64,
    /// Whether the condition holds.
    pub holds: bool,
}

impl Compiled {
    /// Compiles `cond`.
    pub fn new(cond: Condition) -> Self {
        let kind = match cond.clone() {
            Condition::Compare(v, c, n) => CKind::Compare(compile(v), c, n),
            Condition::Absent(s) => {
                let eq: Vec<(String, String)> = s
                    .matchers
                    .iter()
                    .filter(|m| m.op == MatchOp::Eq)
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect();
                CKind::Absent(CSelector::new(s), LabelSet::from(Vec::new()), 0, eq)
            }
        };
        Self { kind, source: cond }
    }

    /// The parsed condition.
    pub fn source(&self) -> &Condition {
        &self.source
    }

    /// Evaluates against `store`, calling `out` for every instance: only instances where the
    /// condition holds are reported for comparisons (absent instances are known not to hold),
    /// so callers treat an instance they track but do not see as not holding.
    pub fn eval(&mut self, store: &mut SeriesStore, ctx: EvalCtx, mut out: impl FnMut(Outcome)) {
        match &mut self.kind {
            CKind::Compare(node, cmp, n) => {
                node.eval(store, ctx);
                if let Some(v) = node.scalar {
                    if cmp.holds(v, *n) {
                        out(Outcome {
                            fp: fingerprint(&[]),
                            labels: LabelSet::from(Vec::new()),
                            value: v,
                            holds: true,
                        });
                    }
                    return;
                }
                for p in &node.out {
                    if cmp.holds(p.value, *n) {
                        out(Outcome {
                            fp: p.fp,
                            labels: p.labels.clone(),
                            value: p.value,
                            holds: true,
                        });
                    }
                }
            }
            CKind::Absent(sel, labels, fp, eq) => {
                if labels.is_empty() && !eq.is_empty() {
                    let mut pairs: Vec<(Sym, Sym)> = eq
                        .iter()
                        .map(|(k, v)| (store.interner.intern(k), store.interner.intern(v)))
                        .collect();
                    pairs.sort_unstable();
                    *fp = fingerprint(&pairs);
                    *labels = pairs.into();
                } else if labels.is_empty() {
                    *fp = fingerprint(&[]);
                }
                let present = sel.ids(store).iter().any(|&id| {
                    store
                        .get(id)
                        .and_then(crate::series::Series::last)
                        .is_some_and(|l| l.at >= ctx.now - ctx.lookback)
                });
                if !present {
                    out(Outcome {
                        fp: *fp,
                        labels: labels.clone(),
                        value: 1.0,
                        holds: true,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(src: &str, store: &mut SeriesStore, now: Millis) -> Vec<(Vec<(String, String)>, f64)> {
        let mut c = Compiled::new(parse(src).expect("parse"));
        let mut got = Vec::new();
        let mut raw = Vec::new();
        c.eval(
            store,
            EvalCtx {
                now,
                lookback: 60_000,
            },
            |o| raw.push(o),
        );
        for o in raw {
            let labels: Vec<(String, String)> = o
                .labels
                .iter()
                .map(|(k, v)| {
                    (
                        store.interner.resolve(*k).to_owned(),
                        store.interner.resolve(*v).to_owned(),
                    )
                })
                .collect();
            got.push((labels, o.value));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    }

    #[test]
    fn parses_and_prints_back() {
        for src in [
            "keel_upstream_lag_blocks{chain=\"dev\"} > 5",
            "sum by (chain) (rate(keel_rpc_requests_total{outcome=~\"failed|deadline\"}[5m])) / sum by (chain) (rate(keel_rpc_requests_total[5m])) > 0.05",
            "absent(keel_chain_head{chain=\"dev\"})",
            "changes(keel_upstream_head[2m]) == 0",
            "max without (upstream) (keel_upstream_lag_blocks) >= 1e3",
        ] {
            let c = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let again = parse(&c.to_string()).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(c, again, "{src}");
        }
        for bad in [
            "keel_x >",
            "rate(x) > 1",
            "x{a=b} > 1",
            "x > 1 garbage",
            "rate(x[zz]) > 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("keel_x{a=\"b\"} ~ 3").expect_err("bad op");
        assert!(e.to_string().contains("comparison"), "{e}");
    }

    #[test]
    fn instant_selectors_match_labels_and_skip_stale_series() {
        let mut s = SeriesStore::new(600_000, 100);
        s.record("lag", &[("chain", "dev"), ("upstream", "a")], 100_000, 7.0);
        s.record("lag", &[("chain", "dev"), ("upstream", "b")], 100_000, 1.0);
        s.record(
            "lag",
            &[("chain", "other"), ("upstream", "c")],
            100_000,
            9.0,
        );
        s.record(
            "lag",
            &[("chain", "dev"), ("upstream", "old")],
            10_000,
            99.0,
        );
        let got = named("lag{chain=\"dev\"} > 5", &mut s, 100_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0[1], ("upstream".to_owned(), "a".to_owned()));
        assert_eq!(named("lag{chain!=\"dev\"} > 5", &mut s, 100_000).len(), 1);
        assert_eq!(
            named("lag{upstream=~\"a|c\"} > 0", &mut s, 100_000).len(),
            2
        );
        assert_eq!(
            named("lag{upstream!~\"a|c\"} > 0", &mut s, 100_000).len(),
            1
        );
        // A label the series lack compares as "".
        assert_eq!(named("lag{zone=\"\"} > 5", &mut s, 100_000).len(), 2);
        // New series of the metric are picked up by an already compiled selector.
        let mut c = Compiled::new(parse("lag > 50").expect("p"));
        let count = |c: &mut Compiled, s: &mut SeriesStore| {
            let mut n = 0;
            c.eval(
                s,
                EvalCtx {
                    now: 100_000,
                    lookback: 60_000,
                },
                |_| n += 1,
            );
            n
        };
        assert_eq!(count(&mut c, &mut s), 0);
        s.record(
            "lag",
            &[("chain", "dev"), ("upstream", "new")],
            100_000,
            60.0,
        );
        assert_eq!(count(&mut c, &mut s), 1);
    }

    #[test]
    fn rate_increase_and_counter_resets() {
        let mut s = SeriesStore::new(600_000, 1000);
        let id = s.series_id("req_total", &[("chain", "dev")]);
        // 10/s for 60 s, a reset at 70 s (to 5), then +10/s.
        for (t, v) in [(0, 0.0), (30, 300.0), (60, 600.0), (70, 5.0), (80, 105.0)] {
            s.push(id, t * 1000, v);
        }
        let inc = named("increase(req_total[2m]) > 0", &mut s, 80_000);
        assert_eq!(inc[0].1, 600.0 + 5.0 + 100.0);
        let rate = named("rate(req_total[2m]) > 0", &mut s, 80_000);
        assert!((rate[0].1 - 705.0 / 80.0).abs() < 1e-9);
        // Only samples inside the window count.
        let inc = named("increase(req_total[15s]) > 0", &mut s, 80_000);
        assert_eq!(inc[0].1, 100.0);
        assert_eq!(
            named("changes(req_total[1h]) == 4", &mut s, 80_000).len(),
            1
        );
        assert_eq!(
            named("max_over_time(req_total[1h]) == 600", &mut s, 80_000).len(),
            1
        );
    }

    #[test]
    fn aggregation_and_vector_division() {
        let mut s = SeriesStore::new(600_000, 1000);
        for (outcome, per_s) in [("ok", 90.0), ("failed", 6.0), ("deadline", 4.0)] {
            for (chain, k) in [("a", 1.0), ("b", 0.0)] {
                let id = s.series_id("req_total", &[("chain", chain), ("outcome", outcome)]);
                s.push(id, 0, 0.0);
                // Chain b has no failures.
                let v = if outcome == "ok" || k > 0.0 {
                    per_s * 60.0
                } else {
                    0.0
                };
                s.push(id, 60_000, v);
            }
        }
        let q = "sum by (chain) (rate(req_total{outcome=~\"failed|deadline\"}[5m])) / sum by (chain) (rate(req_total[5m])) > 0.05";
        let got = named(q, &mut s, 60_000);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, vec![("chain".to_owned(), "a".to_owned())]);
        assert!((got[0].1 - 0.1).abs() < 1e-9);
        assert_eq!(named("count(req_total) == 6", &mut s, 60_000).len(), 1);
        assert_eq!(
            named("avg without (outcome) (req_total) > 0", &mut s, 60_000).len(),
            2
        );
        assert_eq!(
            named("(sum(req_total) - 100) / 2 > 0", &mut s, 60_000).len(),
            1
        );
    }

    #[test]
    fn absent_holds_only_without_fresh_series() {
        let mut s = SeriesStore::new(600_000, 100);
        let got = named("absent(up{job=\"keel\"})", &mut s, 100_000);
        assert_eq!(
            got,
            vec![(vec![("job".to_owned(), "keel".to_owned())], 1.0)]
        );
        s.record("up", &[("job", "keel")], 100_000, 1.0);
        assert!(named("absent(up{job=\"keel\"})", &mut s, 100_000).is_empty());
        // Stale again.
        assert_eq!(named("absent(up{job=\"keel\"})", &mut s, 200_000).len(), 1);
    }
}
