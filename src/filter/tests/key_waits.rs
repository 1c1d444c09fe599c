//! Requests that need keys: parked while one fetch (per worker) is in flight, decided when it
//! answers, answered 503 when it fails or never answers, and background refreshes.

use crate::filter::host::fake::FakeReply;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::Verdict;

#[test]
fn requests_wait_for_one_fetch_and_are_decided_by_its_reply() {
    let mut rig = Rig::new(inbound_config());
    let (first, v1) = rig.request(Some(&token_for("alice")));
    let (second, v2) = rig.request(Some(&token_for("bob")));
    assert_eq!((v1, v2), (Verdict::Parked, Verdict::Parked));
    let fetches = rig.sent_to("idp");
    assert_eq!(
        fetches.len(),
        1,
        "single flight: one fetch for both requests"
    );
    assert_eq!(fetches[0].header(":path"), Some("/jwks"));
    assert_eq!(fetches[0].timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        fetches[0].owner,
        Some(first),
        "sent from the first request's context"
    );

    let decided = rig.deliver(&fetches[0], FakeReply::status(200, &good_jwks()));
    assert_eq!(decided.len(), 2);
    let alice = forwarded(outcome_of(&decided, first));
    assert_eq!(header(alice, "x-user"), Some("alice"));
    assert!(alice.remove.contains(&"authorization".to_string()));
    let bob = forwarded(outcome_of(&decided, second));
    assert_eq!(header(bob, "x-user"), Some("bob"));
    assert_eq!(rig.host.counter("mcp_auth.jwks_fetch.ok"), 1);
    assert_eq!(rig.host.counter("mcp_auth.allowed"), 2);

    // Keys in hand: the next request is decided at once, from the verified-token cache.
    let (_, again) = rig.request(Some(&token_for("alice")));
    assert_eq!(header(forwarded(&done(again)), "x-user"), Some("alice"));
    assert_eq!(rig.host.counter("mcp_auth.jwt_cache.hit"), 1);
}

#[test]
fn a_failed_fetch_answers_503_then_backs_off_then_retries() {
    let mut rig = Rig::new(inbound_config());
    let (waiting, _) = rig.request(Some(&token_for("alice")));
    let fetch = rig.sent_to("idp").remove(0);
    let decided = rig.deliver(&fetch, FakeReply::status(500, b"down"));
    assert_eq!(status(outcome_of(&decided, waiting)), 503);
    assert_eq!(rig.host.counter("mcp_auth.jwks_fetch.failed"), 1);
    assert_eq!(rig.host.counter("mcp_auth.denied.jwks_unavailable"), 1);

    // Within failed_refetch_duration (1 s): refused at once, no new fetch.
    rig.host.advance(500);
    let (_, quick) = rig.request(Some(&token_for("alice")));
    assert_eq!(status(&done(quick)), 503);
    assert_eq!(rig.sent_to("idp").len(), 1);

    // After it, the next request waits for a new fetch, which succeeds.
    rig.host.advance(600);
    let (later, verdict) = rig.request(Some(&token_for("alice")));
    assert_eq!(verdict, Verdict::Parked);
    let retry = rig.sent_to("idp").remove(1);
    let decided = rig.deliver(&retry, FakeReply::status(200, &good_jwks()));
    forwarded(outcome_of(&decided, later));
}

#[test]
fn a_fetch_that_never_answers_is_given_up_at_its_deadline() {
    let mut rig = Rig::new(inbound_config());
    let (waiting, _) = rig.request(Some(&token_for("alice")));
    let fetch = rig.sent_to("idp").remove(0);
    // Timeout 2 s + 1 s grace for the fetch; the request waits up to 2 × 2 s + 1 s.
    rig.host.advance(3_001);
    // The overdue fetch counts as failed and wakes the waiter, which may not fetch again.
    let decided = rig.tick();
    assert_eq!(status(outcome_of(&decided, waiting)), 503);
    assert_eq!(rig.host.counter("mcp_auth.jwks_fetch.failed"), 1);
    // A reply arriving after the deadline is ignored.
    assert!(rig
        .deliver(&fetch, FakeReply::status(200, &good_jwks()))
        .is_empty());
}

#[test]
fn a_parked_request_is_answered_when_its_own_deadline_passes() {
    let mut rig = Rig::new(inbound_config());
    let (waiting, _) = rig.request(Some(&token_for("alice")));
    // The fetch's deadline has not passed yet, but a tick at the request's deadline answers it.
    rig.host.advance(5_000);
    let decided = rig.tick();
    assert_eq!(status(outcome_of(&decided, waiting)), 503);
}

#[test]
fn keys_are_refreshed_in_the_background_from_the_root() {
    let mut rig = Rig::new(inbound_config());
    let (_, _) = rig.request(Some(&token_for("alice")));
    let fetch = rig.sent_to("idp").remove(0);
    rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    // cache_duration 600 s: refreshed at 90 %, i.e. after 540 s.
    rig.host.advance(539_000);
    rig.tick();
    assert_eq!(rig.sent_to("idp").len(), 1);
    rig.host.advance(1_000);
    rig.tick();
    let refresh = rig.sent_to("idp");
    assert_eq!(refresh.len(), 2);
    assert_eq!(refresh[1].owner, Some(ROOT));
}

#[test]
fn a_refused_callout_answers_503_at_once() {
    let mut rig = Rig::new(inbound_config());
    rig.host.refuse_dispatch = true;
    let (_, verdict) = rig.request(Some(&token_for("alice")));
    assert_eq!(status(&done(verdict)), 503);
    assert_eq!(rig.host.counter("mcp_auth.jwks_fetch.failed"), 1);
}

#[test]
fn requests_without_a_token_need_no_keys() {
    let mut rig = Rig::new(inbound_config());
    let (_, verdict) = rig.request(None);
    assert_eq!(status(&done(verdict)), 401);
    assert!(rig.host.sent.is_empty());
}
