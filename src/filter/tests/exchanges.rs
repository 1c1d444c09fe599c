//! Token exchange: one STS call per cache key (single flight), the cache, deadlines, and a
//! dispatch the host refuses.

use crate::filter::host::fake::FakeReply;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::{BodyVerdict, Verdict};

/// A rig whose keys are loaded.
fn ready_rig() -> Rig {
    let mut rig = Rig::new(exchange_config());
    let (_, _) = rig.request(None);
    rig.host.effective = Some(ROOT);
    let (first, _) = rig.request(Some(&token_for("warmup")));
    let fetch = rig.sent_to("idp").remove(0);
    let decided = rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    // The warm-up request now waits for its own exchange; answer it.
    assert!(decided.is_empty());
    let sts = rig.sent_to("sts").remove(0);
    let decided = rig.deliver(&sts, FakeReply::status(200, &sts_answer("backend-warmup")));
    forwarded(outcome_of(&decided, first));
    rig
}

#[test]
fn one_sts_call_per_user_then_the_cache() {
    let mut rig = ready_rig();
    let alice = token_for("alice");
    let (a1, v1) = rig.request(Some(&alice));
    let (a2, v2) = rig.request(Some(&alice));
    assert_eq!((v1, v2), (Verdict::Parked, Verdict::Parked));
    let calls = rig.sent_to("sts");
    assert_eq!(calls.len(), 2, "warm-up + one for alice's two requests");
    let body = String::from_utf8(calls[1].body.clone().unwrap()).unwrap();
    assert!(body.contains("subject_token="), "{body}");
    assert!(body.contains("audience=backend"), "{body}");

    let decided = rig.deliver(
        &calls[1],
        FakeReply::status(200, &sts_answer("backend-alice")),
    );
    for context in [a1, a2] {
        let forward = forwarded(outcome_of(&decided, context));
        assert_eq!(
            header(forward, "authorization"),
            Some("Bearer backend-alice")
        );
        assert_eq!(header(forward, "x-user"), Some("alice"));
    }
    let (_, cached) = rig.request(Some(&alice));
    let forward = done(cached);
    assert_eq!(
        header(forwarded(&forward), "authorization"),
        Some("Bearer backend-alice")
    );
    assert_eq!(rig.sent_to("sts").len(), 2, "served from the cache");
    assert_eq!(rig.host.counter("mcp_auth.exchange.cache_hit"), 1);
}

#[test]
fn sts_refusals_and_failures_reach_every_waiter() {
    let mut rig = ready_rig();
    let (waiting, _) = rig.request(Some(&token_for("alice")));
    let call = rig.sent_to("sts").remove(1);
    let decided = rig.deliver(
        &call,
        FakeReply::status(400, br#"{"error":"invalid_grant"}"#),
    );
    assert_eq!(status(outcome_of(&decided, waiting)), 401);
    assert_eq!(rig.host.counter("mcp_auth.denied.exchange_rejected"), 1);
    assert_eq!(rig.host.counter("mcp_auth.exchange.failed"), 1);
}

#[test]
fn an_sts_that_never_answers_times_out() {
    let mut rig = ready_rig();
    let (waiting, _) = rig.request(Some(&token_for("alice")));
    // Timeout 2 s + 1 s grace.
    rig.host.advance(3_001);
    let decided = rig.tick();
    assert_eq!(status(outcome_of(&decided, waiting)), 504);
    assert_eq!(rig.host.counter("mcp_auth.denied.exchange_timeout"), 1);
}

#[test]
fn a_refused_sts_callout_answers_503() {
    let mut rig = ready_rig();
    rig.host.refuse_dispatch = true;
    let (_, verdict) = rig.request(Some(&token_for("alice")));
    assert_eq!(status(&done(verdict)), 503);
    assert_eq!(rig.host.counter("mcp_auth.denied.exchange_unavailable"), 1);
}

#[test]
fn a_request_waiting_for_its_exchange_keeps_its_body() {
    // Letting a body chunk through would resume the request upstream with the client's own
    // token still in its headers.
    let mut rig = ready_rig();
    let (waiting, verdict) = rig.request_head_only(&token_for("alice"));
    assert_eq!(verdict, Verdict::Parked);
    rig.host.effective = Some(waiting);
    for end_of_stream in [false, true] {
        let body = rig
            .worker
            .on_request_body(&mut rig.host, waiting, 10, end_of_stream);
        assert_eq!(body, BodyVerdict::Decided(Verdict::Parked));
    }
    let call = rig.sent_to("sts").remove(1);
    let decided = rig.deliver(&call, FakeReply::status(200, &sts_answer("backend-alice")));
    let forward = forwarded(outcome_of(&decided, waiting));
    assert_eq!(
        header(forward, "authorization"),
        Some("Bearer backend-alice")
    );
    rig.host.effective = Some(waiting);
    let after = rig.worker.on_request_body(&mut rig.host, waiting, 10, true);
    assert_eq!(after, BodyVerdict::Continue, "decided: the body flows");
}
