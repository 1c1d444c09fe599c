//! Two workers of one Envoy: keys and exchanged tokens one fetched are adopted by the other,
//! and a worker that claimed a flight and went silent holds nobody up.

use std::cell::RefCell;
use std::rc::Rc;

use crate::filter::host::fake::{FakeReply, FakeSharedData};
use crate::filter::tests::fixtures::*;
use crate::filter::worker::Verdict;

#[test]
fn keys_fetched_by_one_worker_are_adopted_by_the_other() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut first = Rig::on_shared(inbound_config(), Rc::clone(&shared));
    let mut second = Rig::on_shared(inbound_config(), Rc::clone(&shared));
    let (_, _) = first.request(Some(&token_for("alice")));
    let fetch = first.sent_to("idp").remove(0);
    first.deliver(&fetch, FakeReply::status(200, &good_jwks()));

    let (_, verdict) = second.request(Some(&token_for("bob")));
    assert_eq!(header(forwarded(&done(verdict)), "x-user"), Some("bob"));
    assert!(second.host.sent.is_empty(), "no fetch of its own");
}

#[test]
fn an_exchanged_token_is_served_to_the_other_worker() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut first = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    let mut second = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    let alice = token_for("alice");
    let (_, _) = first.request(Some(&alice));
    let fetch = first.sent_to("idp").remove(0);
    first.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let sts = first.sent_to("sts").remove(0);
    first.deliver(&sts, FakeReply::status(200, &sts_answer("backend-alice")));

    let (_, verdict) = second.request(Some(&alice));
    let outcome = done(verdict);
    assert_eq!(
        header(forwarded(&outcome), "authorization"),
        Some("Bearer backend-alice")
    );
    assert!(
        second.sent_to("sts").is_empty(),
        "the other worker asked no STS"
    );
}

#[test]
fn a_worker_that_claimed_an_exchange_and_went_silent_blocks_nobody() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut first = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    let mut second = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    let alice = token_for("alice");
    let (_, _) = first.request(Some(&alice));
    let fetch = first.sent_to("idp").remove(0);
    first.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    assert_eq!(
        first.sent_to("sts").len(),
        1,
        "the first worker claimed and called out"
    );

    // The first worker never hears back (its VM died, its reply was lost).
    let (waiting, verdict) = second.request(Some(&alice));
    assert_eq!(verdict, Verdict::Parked);
    assert!(
        second.sent_to("sts").is_empty(),
        "it waits for the claim's owner"
    );
    second.host.advance(2_000);
    assert!(second.tick().is_empty());
    assert!(second.sent_to("sts").is_empty(), "the claim still holds");

    // The claim ends (the STS timeout, 2 s, plus 1 s of grace) with no result: the waiter asks
    // the STS itself and is served by that answer.
    second.host.advance(1_001);
    assert!(second.tick().is_empty(), "taken over, not refused");
    let sts = second.sent_to("sts");
    assert_eq!(sts.len(), 1, "the waiting worker called out itself");
    let decided = second.deliver(
        &sts[0],
        FakeReply::status(200, &sts_answer("backend-alice")),
    );
    assert_eq!(
        header(forwarded(outcome_of(&decided, waiting)), "authorization"),
        Some("Bearer backend-alice")
    );
}
