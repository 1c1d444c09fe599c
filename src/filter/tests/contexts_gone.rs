//! Clients that go away: while parked, or while their context owns the callout others wait on.

use crate::filter::host::fake::FakeReply;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::Verdict;

#[test]
fn a_request_gone_while_parked_is_forgotten_and_the_others_still_answered() {
    let mut rig = Rig::new(inbound_config());
    let (owner, _) = rig.request(Some(&token_for("alice")));
    let (other, _) = rig.request(Some(&token_for("bob")));
    let (leaver, _) = rig.request(Some(&token_for("carol")));
    rig.gone(leaver);
    let fetch = rig.sent_to("idp").remove(0);
    let decided = rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let contexts: Vec<_> = decided.iter().map(|(c, _)| *c).collect();
    assert_eq!(contexts, vec![owner, other]);
}

#[test]
fn a_fetch_whose_owner_went_away_is_sent_again_from_the_root() {
    let mut rig = Rig::new(inbound_config());
    let (owner, _) = rig.request(Some(&token_for("alice")));
    let (waiter, _) = rig.request(Some(&token_for("bob")));
    let lost = rig.sent_to("idp").remove(0);
    rig.gone(owner);
    // The next tick starts the fetch again, from the root this time.
    let decided = rig.tick();
    assert!(decided.is_empty());
    let fetches = rig.sent_to("idp");
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[1].owner, Some(ROOT));
    // A reply for the lost callout would be delivered nowhere; if it came, it is ignored.
    assert!(rig
        .deliver(&lost, FakeReply::status(200, &good_jwks()))
        .is_empty());
    let decided = rig.deliver(&fetches[1], FakeReply::status(200, &good_jwks()));
    forwarded(outcome_of(&decided, waiter));
}

#[test]
fn an_exchange_whose_owner_went_away_is_resent_and_serves_the_rest() {
    let mut rig = Rig::new(exchange_config());
    let alice = token_for("alice");
    let (owner, _) = rig.request(Some(&alice));
    let fetch = rig.sent_to("idp").remove(0);
    rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let (waiter, verdict) = rig.request(Some(&alice));
    assert_eq!(verdict, Verdict::Parked);
    assert_eq!(rig.sent_to("sts").len(), 1);
    rig.gone(owner);
    rig.tick();
    let calls = rig.sent_to("sts");
    assert_eq!(calls.len(), 2, "resent");
    assert_eq!(calls[1].owner, Some(ROOT));
    let decided = rig.deliver(
        &calls[1],
        FakeReply::status(200, &sts_answer("backend-alice")),
    );
    assert_eq!(
        header(forwarded(outcome_of(&decided, waiter)), "authorization"),
        Some("Bearer backend-alice")
    );
}
