//! The workers of one Envoy coordinate through shared data: one key fetch per provider at a
//! time, one unknown-`kid` refetch per interval for the whole Envoy, one STS call per key; a
//! worker waits for another's fetch instead of refusing.

use std::cell::RefCell;
use std::rc::Rc;

use jwt_simple::prelude::*;
use mcp_auth_core::testing::{jwks, rsa, rsa_jwk, rsa_other};

use crate::filter::host::fake::{FakeReply, FakeSharedData};
use crate::filter::tests::fixtures::*;
use crate::filter::worker::{Verdict, FAST_TICK, TICK};

fn two_workers(config: serde_json::Value) -> (Rig, Rig) {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    (
        Rig::on_shared(config.clone(), Rc::clone(&shared)),
        Rig::on_shared(config, shared),
    )
}

fn rotated_jwks() -> Vec<u8> {
    jwks(vec![
        rsa_jwk(rsa(), "rsa-1", None),
        rsa_jwk(rsa_other(), "rsa-2", None),
    ])
}

#[test]
fn one_first_fetch_for_two_workers_the_other_waits_and_adopts() {
    let (mut a, mut b) = two_workers(inbound_config());
    let (_, va) = a.request(Some(&token_for("alice")));
    let (bob, vb) = b.request(Some(&token_for("bob")));
    assert_eq!((va, vb), (Verdict::Parked, Verdict::Parked));
    assert_eq!(a.sent_to("idp").len(), 1);
    assert!(b.sent_to("idp").is_empty(), "B waits for A's fetch");
    assert_eq!(
        b.host.tick_period,
        Some(FAST_TICK),
        "B watches on the fast tick"
    );

    let fetch = a.sent_to("idp").remove(0);
    a.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    b.host.advance(50);
    let decided = b.tick();
    assert_eq!(
        header(forwarded(outcome_of(&decided, bob)), "x-user"),
        Some("bob")
    );
    assert!(b.sent_to("idp").is_empty());
    assert_eq!(b.host.tick_period, Some(TICK), "back to the slow tick");
}

#[test]
fn a_new_key_is_refetched_once_for_the_envoy_and_accepted_by_both_workers() {
    let (mut a, mut b) = two_workers(inbound_config());
    a.request(Some(&token_for("alice")));
    let fetch = a.sent_to("idp").remove(0);
    a.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    b.host.advance(10);
    b.tick(); // B adopts the keys.

    // Three seconds later the IdP signs with a new key (rsa-2). A sees it first.
    a.host.advance(3_000);
    b.host.advance(3_000);
    let rotated = rsa_other().sign(claims_now("carol")).unwrap();
    let (on_a, verdict) = a.request(Some(&rotated));
    assert_eq!(verdict, Verdict::Parked);
    assert_eq!(a.sent_to("idp").len(), 2, "one unknown-kid refetch");
    // B sees the same kid while A's refetch is under way: it waits instead of refusing.
    let (on_b, verdict) = b.request(Some(&rotated));
    assert_eq!(verdict, Verdict::Parked);
    assert!(
        b.sent_to("idp").is_empty(),
        "no second refetch in the Envoy"
    );

    let refetch = a.sent_to("idp").remove(1);
    let decided = a.deliver(&refetch, FakeReply::status(200, &rotated_jwks()));
    assert_eq!(
        header(forwarded(outcome_of(&decided, on_a)), "x-user"),
        Some("carol")
    );
    b.host.advance(50);
    let decided = b.tick();
    assert_eq!(
        header(forwarded(outcome_of(&decided, on_b)), "x-user"),
        Some("carol")
    );

    // A flood of unknown kids on B right after costs no fetch: the interval is the Envoy's.
    b.host.advance(5_000);
    for i in 0..20 {
        let junk = rsa_other()
            .clone()
            .with_key_id(format!("junk-{i}").as_str())
            .sign(claims_now("x"))
            .unwrap();
        let (_, verdict) = b.request(Some(&junk));
        assert_eq!(status(&done(verdict)), 401);
    }
    assert!(b.sent_to("idp").is_empty());
}

#[test]
fn a_client_that_goes_away_cannot_cancel_a_refetch_or_spend_its_rate_limit() {
    let mut rig = Rig::new(inbound_config());
    rig.request(Some(&token_for("alice")));
    let fetch = rig.sent_to("idp").remove(0);
    rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    rig.host.advance(3_000);

    // An unauthenticated client sends a token with an unknown kid and disconnects at once.
    let junk = rsa_other()
        .clone()
        .with_key_id("junk")
        .sign(claims_now("x"))
        .unwrap();
    let (leaver, _) = rig.request(Some(&junk));
    rig.gone(leaver);
    // The IdP publishes rsa-2; a real client's token with it waits for the refetch, which the
    // root sends again on the next tick.
    let rotated = rsa_other().sign(claims_now("dave")).unwrap();
    let (real, verdict) = rig.request(Some(&rotated));
    assert_eq!(verdict, Verdict::Parked);
    rig.tick();
    let fetches = rig.sent_to("idp");
    assert_eq!(fetches.len(), 3, "first load, the lost refetch, its resend");
    assert_eq!(fetches[2].owner, Some(ROOT));
    let decided = rig.deliver(&fetches[2], FakeReply::status(200, &rotated_jwks()));
    assert_eq!(
        header(forwarded(outcome_of(&decided, real)), "x-user"),
        Some("dave")
    );
}

#[test]
fn one_sts_call_per_user_across_workers() {
    let (mut a, mut b) = two_workers(exchange_config());
    // Both workers load keys (A fetches, B adopts).
    a.request(None);
    let (warm, _) = a.request(Some(&token_for("warmup")));
    let fetch = a.sent_to("idp").remove(0);
    a.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let sts = a.sent_to("sts").remove(0);
    let decided = a.deliver(&sts, FakeReply::status(200, &sts_answer("backend-warmup")));
    forwarded(outcome_of(&decided, warm));

    let alice = token_for("alice");
    let (on_a, va) = a.request(Some(&alice));
    let (on_b, vb) = b.request(Some(&alice));
    assert_eq!((va, vb), (Verdict::Parked, Verdict::Parked));
    assert_eq!(a.sent_to("sts").len(), 2, "A exchanges alice's token");
    assert!(b.sent_to("sts").is_empty(), "B waits for A's exchange");

    let call = a.sent_to("sts").remove(1);
    let decided = a.deliver(&call, FakeReply::status(200, &sts_answer("backend-alice")));
    assert_eq!(
        header(forwarded(outcome_of(&decided, on_a)), "authorization"),
        Some("Bearer backend-alice")
    );
    b.host.advance(50);
    let decided = b.tick();
    assert_eq!(
        header(forwarded(outcome_of(&decided, on_b)), "authorization"),
        Some("Bearer backend-alice")
    );
    assert!(b.sent_to("sts").is_empty());
}

#[test]
fn an_sts_refusal_reaches_the_waiters_of_the_other_worker() {
    let (mut a, mut b) = two_workers(exchange_config());
    a.request(Some(&token_for("warmup")));
    let fetch = a.sent_to("idp").remove(0);
    a.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let alice = token_for("alice");
    let (_, _) = b.request(Some(&alice)); // B adopts keys, then waits for... nobody yet:
                                          // B was first for alice: it claimed and called the STS itself.
    assert_eq!(b.sent_to("sts").len(), 1);
    let (on_a, verdict) = a.request(Some(&alice));
    assert_eq!(verdict, Verdict::Parked);
    let call = b.sent_to("sts").remove(0);
    b.deliver(
        &call,
        FakeReply::status(400, br#"{"error":"invalid_grant"}"#),
    );
    a.host.advance(50);
    let decided = a.tick();
    assert_eq!(status(outcome_of(&decided, on_a)), 401);
    assert_eq!(
        a.sent_to("sts").len(),
        1,
        "only the warm-up: alice's was B's"
    );
}
