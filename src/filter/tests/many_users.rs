//! A cold burst of many distinct users over two workers of one Envoy: every user costs one STS
//! call (one introspection) for the whole Envoy, whichever worker sees it first and however
//! their keys fall among the bounded shared-data slots.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::Config;
use mcp_auth_core::token_cache::token_hash;
use mcp_auth_core::token_exchange::TokenExchanger;
use serde_json::Value;

use crate::filter::host::fake::{FakeReply, FakeSharedData, SentCall};
use crate::filter::host::ContextId;
use crate::filter::shared::Slots;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::{Outcome, Verdict};

const USERS: usize = 1_000;
/// Users whose first requests are under way at once (wrk's 32 connections).
const WAVE: usize = 32;

/// Two workers of one Envoy, and the replies each has delivered so far.
struct Envoy {
    workers: [Rig; 2],
    delivered: [usize; 2],
    /// Decisions for parked requests, by worker and context.
    decided: HashMap<(usize, ContextId), Outcome>,
    /// Outcomes of the warm pass, by user.
    served: Vec<(usize, Outcome)>,
    cluster: &'static str,
}

impl Envoy {
    fn new(config: Value, cluster: &'static str) -> Envoy {
        let shared = Rc::new(RefCell::new(FakeSharedData::default()));
        Envoy {
            workers: [
                Rig::on_shared(config.clone(), Rc::clone(&shared)),
                Rig::on_shared(config, shared),
            ],
            delivered: [0, 0],
            decided: HashMap::new(),
            served: Vec::new(),
            cluster,
        }
    }

    /// Worker `w` receives a request with `token`: parked requests are remembered by context.
    fn request(&mut self, w: usize, token: &str) -> (ContextId, Verdict) {
        self.workers[w].request(Some(token))
    }

    /// Every callout sent and not yet answered gets its answer, read off its body.
    fn answer_all(&mut self, answer: impl Fn(&SentCall) -> FakeReply) {
        for w in 0..2 {
            let sent = self.workers[w].sent_to(self.cluster);
            for call in &sent[self.delivered[w]..] {
                let decided = self.workers[w].deliver(call, answer(call));
                self.record(w, decided);
            }
            self.delivered[w] = sent.len();
        }
    }

    /// Time passes and both workers tick (watchers find the other worker's results).
    fn tick(&mut self, ms: u64) {
        for w in 0..2 {
            self.workers[w].host.advance(ms);
            let decided = self.workers[w].tick();
            self.record(w, decided);
        }
    }

    fn record(&mut self, w: usize, decided: Vec<(ContextId, Outcome)>) {
        for (context, outcome) in decided {
            self.decided.insert((w, context), outcome);
        }
    }

    fn calls(&self) -> usize {
        self.workers
            .iter()
            .map(|r| r.sent_to(self.cluster).len())
            .sum()
    }

    /// A cold pass in waves: each user's first request goes to one worker (alternately), and
    /// every third user is asked of the other worker too while the first's callout is under
    /// way. Returns the parked requests: worker, context, user.
    fn cold_pass(
        &mut self,
        tokens: &[String],
        answer: impl Fn(&SentCall) -> FakeReply,
    ) -> Vec<(usize, ContextId, usize)> {
        let mut parked = Vec::new();
        for (wave_no, wave) in tokens.chunks(WAVE).enumerate() {
            for (i, token) in wave.iter().enumerate() {
                let user = wave_no * WAVE + i;
                let first = user % 2;
                let mut asked = vec![first];
                if user.is_multiple_of(3) {
                    asked.push(1 - first);
                }
                for w in asked {
                    let (context, verdict) = self.request(w, token);
                    assert_eq!(verdict, Verdict::Parked, "user {user} on worker {w}");
                    parked.push((w, context, user));
                }
            }
            self.answer_all(&answer);
            self.tick(50);
        }
        parked
    }

    /// Every user again on both workers; returns how many requests had to wait (a second
    /// callout for a user); the others' outcomes are kept for `each_forwarded`.
    fn warm_pass(&mut self, tokens: &[String]) -> usize {
        let mut waited = 0;
        for (user, token) in tokens.iter().enumerate() {
            for w in 0..2 {
                match self.request(w, token) {
                    (_, Verdict::Done(outcome)) => self.served.push((user, outcome)),
                    _ => waited += 1,
                }
            }
        }
        waited
    }

    /// `check` on the forwarding of every request of both passes, with its user.
    fn each_forwarded(
        &self,
        parked: &[(usize, ContextId, usize)],
        tokens: &[String],
        check: impl Fn(&crate::filter::worker::Forwarding, usize),
    ) {
        assert_eq!(self.served.len(), 2 * tokens.len());
        for (w, context, user) in parked {
            let outcome = self
                .decided
                .get(&(*w, *context))
                .unwrap_or_else(|| panic!("user {user} on worker {w} still waits"));
            check(forwarded(outcome), *user);
        }
        for (user, outcome) in &self.served {
            check(forwarded(outcome), *user);
        }
    }
}

/// How many of `keys` share their first candidate result slot with another of them (they
/// must find another candidate).
fn first_slot_collisions(keys: &[Digest]) -> usize {
    let slots = Slots::results("any", &[0; 32]);
    let mut firsts: HashMap<u16, usize> = HashMap::new();
    for key in keys {
        *firsts.entry(slots.indexes(key)[0]).or_default() += 1;
    }
    firsts.values().filter(|n| **n > 1).sum()
}

/// The `user-N` subject in a callout's form body (`field=...user-N...&...`).
fn user_in(call: &SentCall, field: &str) -> usize {
    let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
    let value = body
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{field}=")))
        .unwrap();
    let tail = value.rsplit("user-").next().unwrap();
    tail.parse().unwrap()
}

#[test]
fn a_thousand_users_over_two_workers_cost_one_exchange_each() {
    let mut envoy = Envoy::new(exchange_config(), "sts");
    envoy.workers[0].request(Some(&token_for("warmup")));
    let fetch = envoy.workers[0].sent_to("idp").remove(0);
    envoy.workers[0].deliver(&fetch, FakeReply::status(200, &good_jwks()));
    envoy.answer_all(|_| FakeReply::status(200, &sts_answer("backend-warmup")));
    // Worker 1 adopts the keys, and worker 0's exchange for the warm-up user.
    let (_, adopted) = envoy.workers[1].request(Some(&token_for("warmup")));
    assert!(matches!(adopted, Verdict::Done(_)));
    assert_eq!(envoy.calls(), 1);

    let tokens: Vec<String> = (0..USERS)
        .map(|i| token_for(&format!("user-{i}")))
        .collect();
    let config = Config::from_json(exchange_config().to_string().as_bytes()).unwrap();
    let exchanger = TokenExchanger::new(config.token_exchange.unwrap());
    let keys: Vec<Digest> = tokens
        .iter()
        .map(|t| exchanger.key(&token_hash(t), None))
        .collect();
    assert!(
        first_slot_collisions(&keys) > 20,
        "some keys' first slots collide"
    );
    let subjects: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let answer = |call: &SentCall| {
        let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
        let subject = body
            .split('&')
            .find_map(|p| p.strip_prefix("subject_token="))
            .unwrap();
        let user = subjects[subject];
        FakeReply::status(200, &sts_answer(&format!("backend-user-{user}")))
    };
    let parked = envoy.cold_pass(&tokens, answer);
    let after_cold_pass = envoy.calls();
    // Then every user on both workers: served from the worker's cache or the other's result.
    let waited = envoy.warm_pass(&tokens);
    assert_eq!(
        (envoy.calls(), waited),
        (1 + USERS, 0),
        "one STS call per user ({} after the cold pass)",
        after_cold_pass
    );
    envoy.each_forwarded(&parked, &tokens, |outcome, user| {
        let expected = format!("Bearer backend-user-{user}");
        assert_eq!(header(outcome, "authorization"), Some(expected.as_str()));
    });
}

#[test]
fn a_thousand_opaque_tokens_over_two_workers_cost_one_introspection_each() {
    let mut envoy = Envoy::new(introspection_config(), "idp");
    let tokens: Vec<String> = (0..USERS).map(|i| format!("opaque-user-{i}")).collect();
    let keys: Vec<Digest> = tokens.iter().map(|t| token_hash(t)).collect();
    assert!(
        first_slot_collisions(&keys) > 20,
        "some keys' first slots collide"
    );
    let answer = |call: &SentCall| {
        let user = user_in(call, "token");
        FakeReply::status(200, &active_answer(&format!("user-{user}")))
    };
    let parked = envoy.cold_pass(&tokens, answer);
    let after_cold_pass = envoy.calls();
    let waited = envoy.warm_pass(&tokens);
    assert_eq!(
        (envoy.calls(), waited),
        (USERS, 0),
        "one introspection per token ({} after the cold pass)",
        after_cold_pass
    );
    envoy.each_forwarded(&parked, &tokens, |outcome, user| {
        let expected = format!("user-{user}");
        assert_eq!(header(outcome, "x-user"), Some(expected.as_str()));
    });
}
