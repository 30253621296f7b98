//! Quorum mode: one block-pinned question to several upstreams, answered once N agree.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use keel_chain::{CallError, Chain, Need, Upstream};
use keel_config::{Fallback, LateAnswers};
use keel_verify::{
    evidence::{EvidenceRecord, Mode, UpstreamAnswer},
    pin::Pin,
};
use serde_json::value::RawValue;

use super::{
    Check, NoAnswer, Verifier, body_for, canonical_answer, failed, malformed, pin, pins,
    unverifiable,
};
use crate::{
    Ctx,
    forward::{self, Outcome, Served},
    jsonrpc::{Reply, Request, code},
    metrics::GatewayMetrics,
    policy::{self, Route},
};

/// One question to fan out.
pub(super) struct Question<'a> {
    pub(super) method: &'a str,
    pub(super) params: &'a RawValue,
    /// Compare only this field of object results (`stateRoot` for headers).
    pub(super) field: Option<&'static str>,
    /// The block the question is pinned to, for evidence.
    pub(super) block: Option<u64>,
    pub(super) need: Need,
    /// Whether the chain's `fallback` may answer without agreement (never for state roots,
    /// whose splits are not recorded either).
    pub(super) may_fall_back: bool,
    /// On whose behalf: a client's check penalises and records nobody.
    pub(super) check: Check,
}

/// One upstream's answer.
pub(super) struct Answer {
    pub(super) upstream: Arc<Upstream>,
    pub(super) body: Bytes,
}

/// What a fan-out produced.
pub(super) enum FanOut {
    /// N agreed: the index of the answer to serve, in `answers`.
    Agreed {
        index: usize,
        agreeing: usize,
        asked: usize,
        answers: Vec<Answer>,
    },
    /// No agreement.
    Failed {
        code: i64,
        /// For the client.
        message: String,
        asked: usize,
        /// The upstreams answered in time and disagreed (no quorum formed), as opposed to too
        /// few upstreams, failed calls or the deadline.
        split: bool,
        /// The answer the chain's `fallback` picks, and the fallback's name.
        fallback: Option<(Answer, &'static str)>,
    },
}

/// What woke the fan-out loop.
enum Event {
    Answer(Option<(Arc<Upstream>, Result<Bytes, CallError>)>),
    Hedge,
    Deadline,
}

type Call = std::pin::Pin<
    Box<dyn Future<Output = (Arc<Upstream>, Result<Bytes, CallError>)> + Send + 'static>,
>;

/// Sends `q` to up to `fanout` distinct upstreams serving `q.need`, fastest first, and returns
/// as soon as `quorum` agree.
///
/// All `fanout` are asked at once, or with `hedge_after` the `quorum` fastest first and one more
/// each time that long passes. Whenever nothing is in flight without agreement (answers
/// disagree), the next upstream is asked; a failed call is replaced by another upstream while
/// one remains. Once N agree, upstreams not yet asked never are, and calls still in flight are
/// read in the background (bounded by [`super::MAX_LATE_CALLS`]) so their connections go back
/// to the pool: thrown away, or with `late_answers = "check"` compared so that a slow liar is
/// caught too; with `late_answers = "cancel"` they are dropped. Minority upstreams get evidence
/// and a penalty.
pub(super) async fn fan_out(ctx: &Ctx<'_>, q: &Question<'_>) -> FanOut {
    let cfg = &ctx.chain.config().verify;
    let n = cfg.quorum.max(1);
    let m = cfg.fanout.max(n);
    let mut spare: VecDeque<Arc<Upstream>> = ctx.chain.fastest(q.need, &[], m).into();
    if spare.len() < n {
        return FanOut::Failed {
            code: code::NO_HEALTHY_UPSTREAM,
            message: format!(
                "verification needs {n} upstreams of chain {} but only {} can serve this request",
                ctx.chain.name(),
                spare.len()
            ),
            asked: 0,
            split: false,
            fallback: None,
        };
    }
    let body = body_for(q.method, q.params);
    let mut tried: Vec<usize> = Vec::new();
    let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
    let launch = |up: Arc<Upstream>, tried: &mut Vec<usize>, calls: &mut FuturesUnordered<Call>| {
        tried.push(up.index());
        let (body, deadline) = (body.clone(), ctx.deadline);
        calls.push(Box::pin(async move {
            let r = up.call(body, deadline).await;
            (up, r)
        }));
    };
    let first = if cfg.hedge_after.is_some() { n } else { m };
    for _ in 0..first {
        if let Some(up) = spare.pop_front() {
            launch(up, &mut tried, &mut calls);
        }
    }
    let mut hedge_at = cfg.hedge_after.map(|d| Instant::now() + d);
    // Built only when there is something to report or check.
    let reporter = || Reporter {
        chain: Arc::clone(ctx.chain),
        verifier: Arc::clone(ctx.verifier),
        metrics: ctx.metrics.clone(),
        method: q.method.to_owned(),
        params: q.params.to_owned(),
        field: q.field,
        block: q.block,
        check: q.check,
    };
    let mut answers: Vec<Answer> = Vec::new();
    let mut canon: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut disagreement: Option<(String, Vec<Vec<String>>)> = None;
    loop {
        if calls.is_empty() {
            // Nothing in flight and no quorum: ask the next upstream, if there is one.
            match spare.pop_front() {
                Some(up) => launch(up, &mut tried, &mut calls),
                None => break,
            }
        }
        let hedge_due = hedge_at.filter(|_| !spare.is_empty());
        let hedge = async move {
            match hedge_due {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            next = calls.next() => Event::Answer(next),
            () = hedge => Event::Hedge,
            () = tokio::time::sleep_until(ctx.deadline.into()) => Event::Deadline,
        };
        let next = match event {
            Event::Answer(next) => next,
            Event::Hedge => {
                if let Some(up) = spare.pop_front() {
                    launch(up, &mut tried, &mut calls);
                }
                hedge_at = cfg.hedge_after.map(|d| Instant::now() + d);
                continue;
            }
            Event::Deadline => break,
        };
        let Some((up, result)) = next else {
            continue;
        };
        // The canonical answer, or why there is none (naming the upstream).
        let canonical = match &result {
            Ok(b) => match canonical_answer(q.method, q.field, b) {
                Ok(c) => {
                    if let Need::Block(n) = q.need {
                        up.note_kept_history(n);
                    }
                    Ok(c)
                }
                Err(NoAnswer::Malformed(e)) => {
                    malformed(&up, q.check, &e);
                    Err(format!("{}: {e}", up.name()))
                }
                Err(NoAnswer::Lacking | NoAnswer::Empty) => {
                    Err(match forward::note_if_lacking(ctx.chain, &up, q.need, b) {
                        Some(m) => format!("{}: \"{m}\"", up.name()),
                        None => format!("{}: no result", up.name()),
                    })
                }
            },
            Err(e) => Err(e.to_string()),
        };
        let (b, c) = match (result, canonical) {
            (Ok(b), Ok(c)) => (b, c),
            (_, why) => {
                failures.push(why.err().unwrap_or_default());
                let replacement = spare
                    .pop_front()
                    .or_else(|| ctx.chain.fastest(q.need, &tried, 1).pop());
                if let Some(next) = replacement {
                    launch(next, &mut tried, &mut calls);
                }
                continue;
            }
        };
        canon.push((up.name().to_owned(), c));
        answers.push(Answer {
            upstream: up,
            body: b,
        });
        match keel_verify::quorum(&canon, n) {
            keel_verify::Outcome::Agreed {
                index,
                agreeing,
                minority,
            } => {
                if !minority.is_empty() {
                    reporter().report(&answers, &agreeing, &minority).await;
                }
                for a in &answers {
                    if agreeing.iter().any(|n| n == a.upstream.name()) {
                        ctx.verifier.clear(ctx.chain, &a.upstream, q.check);
                    }
                }
                if !calls.is_empty() && cfg.late_answers != LateAnswers::Cancel {
                    let check = (cfg.late_answers == LateAnswers::Check)
                        .then(|| (reporter(), &answers[index], &*canon[index].1));
                    finish_late(ctx, q.need, check, calls);
                }
                return FanOut::Agreed {
                    index,
                    agreeing: agreeing.len(),
                    asked: tried.len(),
                    answers,
                };
            }
            keel_verify::Outcome::NoAgreement {
                description,
                groups,
            } => disagreement = Some((description, groups)),
        }
    }
    let asked = tried.len();
    let timed_out = Instant::now() >= ctx.deadline;
    let message = match (&disagreement, timed_out) {
        (_, true) => format!(
            "verification of {} did not complete before the request deadline ({} of {asked} upstreams answered)",
            q.method,
            answers.len()
        ),
        (Some((d, _)), false) if failures.is_empty() => format!("verification failed: {d}"),
        (Some((d, _)), false) => format!(
            "verification failed: {d}; no answer from {}",
            failures.join("; ")
        ),
        (None, false) => format!(
            "verification failed: every upstream asked failed ({})",
            failures.join("; ")
        ),
    };
    let groups = disagreement.map(|(_, g)| g).unwrap_or_default();
    // The strictly largest group, if there is one.
    let largest = match groups.as_slice() {
        [only] => Some(only),
        [a, b, ..] if a.len() > b.len() => Some(a),
        _ => None,
    };
    // A split of the header question of proof mode is not recorded: nobody is blamed for it
    // and the value is then checked by quorum (whose own split, if any, is recorded).
    if groups.len() > 1 && q.may_fall_back {
        reporter().report_split(&answers, largest, &message).await;
    }
    let pick = |name: &str| answers.iter().position(|a| a.upstream.name() == name);
    let fallback = match (q.may_fall_back, cfg.fallback) {
        (false, _) | (true, Fallback::Error) => None,
        (true, Fallback::Largest) => largest
            .and_then(|g| g.first())
            .and_then(|n| pick(n))
            .map(|i| (i, "largest")),
        (true, Fallback::First) => (!answers.is_empty()).then_some((0, "first")),
    };
    FanOut::Failed {
        code: code::VERIFICATION_FAILED,
        message,
        asked,
        split: groups.len() > 1 && !timed_out,
        fallback: fallback.map(|(i, name)| (answers.swap_remove(i), name)),
    }
}

/// Reads the answers of `calls` in the background (an upstream saying it lacks the `need`ed
/// block is marked so, as in the fan-out itself), and with `check` (reporter, agreed answer,
/// its canonical form) compares them with the agreed one. Past [`super::MAX_LATE_CALLS`] such
/// tasks, the calls are dropped instead.
fn finish_late(
    ctx: &Ctx<'_>,
    need: Need,
    check: Option<(Reporter, &Answer, &[u8])>,
    mut calls: FuturesUnordered<Call>,
) {
    let Ok(permit) = Arc::clone(&ctx.verifier.late_calls).try_acquire_owned() else {
        return;
    };
    let check = check.map(|(reporter, agreed, canon)| {
        let agreed = Answer {
            upstream: Arc::clone(&agreed.upstream),
            body: agreed.body.clone(),
        };
        (reporter, agreed, canon.to_vec())
    });
    let deadline = ctx.deadline;
    let chain = Arc::clone(ctx.chain);
    tokio::spawn(async move {
        let _permit = permit;
        while let Ok(Some((up, result))) =
            tokio::time::timeout_at(deadline.into(), calls.next()).await
        {
            if let (Need::Block(_), Ok(b)) = (need, &result) {
                forward::note_if_lacking(&chain, &up, need, b);
            }
            let Some((reporter, agreed, agreed_canon)) = &check else {
                continue;
            };
            let Some((b, c)) = result.ok().and_then(|b| {
                canonical_answer(&reporter.method, reporter.field, &b)
                    .ok()
                    .map(|c| (b, c))
            }) else {
                continue;
            };
            if c == *agreed_canon {
                reporter
                    .verifier
                    .clear(&reporter.chain, &up, reporter.check);
                continue;
            }
            let names = vec![agreed.upstream.name().to_owned()];
            let minority = vec![up.name().to_owned()];
            let pair = [
                Answer {
                    upstream: Arc::clone(&agreed.upstream),
                    body: agreed.body.clone(),
                },
                Answer {
                    upstream: up,
                    body: b,
                },
            ];
            reporter.report(&pair, &names, &minority).await;
        }
    });
}

/// Who to report a wrong answer to, owned so that a background check can use it.
struct Reporter {
    chain: Arc<Chain>,
    verifier: Arc<Verifier>,
    metrics: GatewayMetrics,
    method: String,
    params: Box<RawValue>,
    field: Option<&'static str>,
    block: Option<u64>,
    check: Check,
}

impl Reporter {
    fn record(&self, answers: &[Answer], reason: String) -> EvidenceRecord {
        let mut rec = EvidenceRecord::new(
            self.chain.name(),
            self.method.clone(),
            self.params.clone(),
            Mode::Quorum,
            reason,
        );
        rec.chain_id = Some(self.chain.chain_id());
        rec.block = self.block;
        rec.field = self.field.map(str::to_owned);
        rec.answers = answers.iter().map(upstream_answer).collect();
        rec
    }

    /// Evidence and penalties for upstreams that disagreed with a quorum (for a client's check,
    /// a count only).
    async fn report(&self, answers: &[Answer], agreeing: &[String], minority: &[String]) {
        let reason = format!(
            "[{}] disagreed with the quorum [{}]",
            minority.join(", "),
            agreeing.join(", ")
        );
        let mut rec = self.record(answers, reason);
        rec.majority = agreeing.to_vec();
        rec.minority = minority.to_vec();
        for a in answers {
            if minority.iter().any(|n| n == a.upstream.name()) {
                self.verifier
                    .penalise(&self.chain, &a.upstream, &self.metrics, self.check);
            }
        }
        if self.check.accountable() {
            self.verifier.record(rec).await;
        }
    }

    /// Evidence of answers that disagreed without a quorum. Nobody is penalised: without a
    /// quorum there is no telling who is wrong. The strictly largest group, if any, is recorded
    /// as the majority.
    async fn report_split(&self, answers: &[Answer], largest: Option<&Vec<String>>, reason: &str) {
        if !self.check.accountable() {
            return;
        }
        let mut rec = self.record(answers, reason.to_owned());
        if let Some(group) = largest {
            rec.majority.clone_from(group);
            rec.minority = answers
                .iter()
                .map(|a| a.upstream.name().to_owned())
                .filter(|n| !group.contains(n))
                .collect();
        }
        self.verifier.record(rec).await;
    }
}

fn upstream_answer(a: &Answer) -> UpstreamAnswer {
    let (result, error) = match serde_json::from_slice::<Reply<'_>>(&a.body) {
        Ok(r) => (
            r.result.map(RawValue::to_owned),
            r.error.map(RawValue::to_owned),
        ),
        Err(_) => (None, None),
    };
    UpstreamAnswer {
        upstream: a.upstream.name().to_owned(),
        result,
        error,
        digest: None,
    }
}

/// Writes `answer` as the reply to `req`.
fn serve_answer(req: &Request<'_>, answer: &Answer, out: &mut Vec<u8>) -> Outcome {
    match serde_json::from_slice::<Reply<'_>>(&answer.body) {
        Ok(reply) => crate::forward::write_reply(req, &reply, out),
        Err(_) => Outcome::Failed,
    }
}

/// Quorum mode; returns what was served and the upstream calls beyond the first.
pub(super) async fn read(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    check: Check,
    out: &mut Vec<u8>,
) -> (Served, u64) {
    let pinned = match pin(req, &pins(ctx.chain)) {
        Ok(p) => p,
        Err(e) => return (failed(req, code::INVALID_PARAMS, &e, out), 0),
    };
    let empty;
    let original = match req.params {
        Some(p) => p,
        None => match RawValue::from_string("[]".to_owned()) {
            Ok(e) => {
                empty = e;
                &*empty
            }
            Err(_) => return (failed(req, code::INTERNAL, "internal error", out), 0),
        },
    };
    let (params, block, need) = match &pinned {
        Pin::Moving { block } => return unverifiable(ctx, req, check, block, out).await,
        Pin::Pinned(p) => (&*p.params, Some(p.block), Need::Block(p.block)),
        Pin::Fixed { block: Some(n) } => (original, Some(*n), Need::Block(*n)),
        // Not re-pinned: a known block hash needs upstreams that have that block, as for an
        // unverified read; anything else, upstreams near the head (a far-behind node would
        // answer "not found" and look like a liar).
        Pin::Fixed { block: None } | Pin::NoBlock => {
            let need = match policy::route(ctx.chain, &req.method, req.params) {
                Route::Read {
                    need: Need::Block(n),
                    ..
                } => Need::Block(n),
                _ => Need::Head,
            };
            (original, None, need)
        }
    };
    // A tag where keel does not know a block param to be (a method an operator allowed):
    // upstreams would read it at their own heads.
    if let Some(tag) = keel_verify::pin::moving_tag(params) {
        return unverifiable(ctx, req, check, &format!("{tag:?}"), out).await;
    }
    let question = Question {
        method: &req.method,
        params,
        field: None,
        block,
        need,
        may_fall_back: true,
        check,
    };
    match fan_out(ctx, &question).await {
        FanOut::Agreed {
            index,
            agreeing,
            asked,
            answers,
        } => {
            let a = &answers[index];
            (
                Served {
                    outcome: serve_answer(req, a, out),
                    upstream: Some(Arc::clone(&a.upstream)),
                    retries: 0,
                    verified: Some(format!("quorum:{agreeing}/{asked}")),
                    fallback: None,
                },
                asked.saturating_sub(1) as u64,
            )
        }
        FanOut::Failed {
            asked,
            fallback: Some((a, name)),
            ..
        } => (
            Served {
                outcome: serve_answer(req, &a, out),
                upstream: Some(a.upstream),
                retries: 0,
                verified: None,
                fallback: Some(name),
            },
            asked.saturating_sub(1) as u64,
        ),
        FanOut::Failed {
            code,
            message,
            asked,
            fallback: None,
            ..
        } => (
            failed(req, code, &message, out),
            asked.saturating_sub(1) as u64,
        ),
    }
}
