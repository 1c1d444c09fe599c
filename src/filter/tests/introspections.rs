//! Opaque tokens introspected at the IdP (RFC 7662): one call per token for the whole Envoy,
//! answers remembered and shared, refusals remembered briefly, failures closed.

use std::cell::RefCell;
use std::rc::Rc;

use crate::filter::host::fake::{FakeReply, FakeSharedData};
use crate::filter::introspection::MAX_IN_FLIGHT;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::Verdict;
use jwt_simple::prelude::RSAKeyPairLike;

#[test]
fn one_call_per_token_then_the_cache() {
    let mut rig = Rig::new(introspection_config());
    let (first, v1) = rig.request(Some("opaque-alice"));
    let (second, v2) = rig.request(Some("opaque-alice"));
    assert_eq!((v1, v2), (Verdict::Parked, Verdict::Parked));
    let calls = rig.sent_to("idp");
    assert_eq!(calls.len(), 1, "one introspection for both requests");
    let body = String::from_utf8(calls[0].body.clone().unwrap()).unwrap();
    assert_eq!(body, "token=opaque-alice&token_type_hint=access_token");
    assert!(calls[0]
        .headers
        .iter()
        .any(|(n, v)| n == "authorization" && v.starts_with("Basic ")));

    let decided = rig.deliver(&calls[0], FakeReply::status(200, &active_answer("alice")));
    for context in [first, second] {
        let forward = forwarded(outcome_of(&decided, context));
        assert_eq!(header(forward, "x-user"), Some("alice"));
        assert!(
            header(forward, "authorization").is_none(),
            "the client's token is removed"
        );
    }
    let (_, again) = rig.request(Some("opaque-alice"));
    assert_eq!(header(forwarded(&done(again)), "x-user"), Some("alice"));
    assert_eq!(rig.sent_to("idp").len(), 1, "served from the cache");
    assert_eq!(rig.host.counter("mcp_auth.introspection.active"), 1);

    // The answer is trusted for `cache_duration` (60 s), then asked again.
    rig.host.advance(60_001);
    let (_, later) = rig.request(Some("opaque-alice"));
    assert_eq!(later, Verdict::Parked);
    assert_eq!(rig.sent_to("idp").len(), 2);
}

#[test]
fn inactive_tokens_are_refused_and_remembered_briefly() {
    let mut rig = Rig::new(introspection_config());
    let (waiting, _) = rig.request(Some("revoked"));
    let call = rig.sent_to("idp").remove(0);
    let decided = rig.deliver(&call, FakeReply::status(200, br#"{"active":false}"#));
    let refused = outcome_of(&decided, waiting);
    assert_eq!(status(refused), 401);
    let (_, again) = rig.request(Some("revoked"));
    assert_eq!(status(&done(again)), 401, "remembered: no second call");
    assert_eq!(rig.sent_to("idp").len(), 1);
    assert_eq!(rig.host.counter("mcp_auth.denied.token_inactive"), 2);
    // After `negative_cache_duration` (10 s) the IdP is asked again.
    rig.host.advance(10_001);
    let (_, later) = rig.request(Some("revoked"));
    assert_eq!(later, Verdict::Parked);
}

#[test]
fn answers_that_fail_our_checks_are_refused() {
    let other_audience = serde_json::json!({"active": true, "sub": "mallory", "iss": ISS,
        "aud": "https://other.example.com", "exp": NOW_MS / 1000 + 300});
    let other_issuer = serde_json::json!({"active": true, "sub": "mallory",
        "iss": "https://evil.example.com", "aud": RESOURCE, "exp": NOW_MS / 1000 + 300});
    let expired = serde_json::json!({"active": true, "sub": "mallory", "iss": ISS,
        "aud": RESOURCE, "exp": NOW_MS / 1000 - 60});
    for answer in [other_audience, other_issuer, expired] {
        let mut rig = Rig::new(introspection_config());
        let (waiting, _) = rig.request(Some("opaque"));
        let call = rig.sent_to("idp").remove(0);
        let reply = FakeReply::status(200, answer.to_string().as_bytes());
        let decided = rig.deliver(&call, reply);
        assert_eq!(status(outcome_of(&decided, waiting)), 401, "{answer}");
        assert_eq!(rig.host.counter("mcp_auth.introspection.refused"), 1);
    }
}

#[test]
fn an_idp_that_fails_or_never_answers_is_closed() {
    for (reply, expected) in [
        (FakeReply::status(503, b""), 503),
        (
            FakeReply::status(401, br#"{"error":"invalid_client"}"#),
            503,
        ),
        (FakeReply::status(200, br#"{"active":"yes"}"#), 503),
        (
            FakeReply::status(200, br#"{"active":true,"active":false}"#),
            503,
        ),
    ] {
        let mut rig = Rig::new(introspection_config());
        let (waiting, _) = rig.request(Some("opaque"));
        let call = rig.sent_to("idp").remove(0);
        let decided = rig.deliver(&call, reply);
        assert_eq!(status(outcome_of(&decided, waiting)), expected);
        assert_eq!(rig.host.counter("mcp_auth.introspection.failed"), 1);
        // A failure is not remembered: the next request asks again.
        let (_, next) = rig.request(Some("opaque"));
        assert_eq!(next, Verdict::Parked);
    }
    let mut rig = Rig::new(introspection_config());
    let (waiting, _) = rig.request(Some("opaque"));
    rig.host.advance(3_001);
    let decided = rig.tick();
    assert_eq!(status(outcome_of(&decided, waiting)), 504);
    assert_eq!(rig.host.counter("mcp_auth.denied.introspection_timeout"), 1);
}

#[test]
fn a_flood_of_distinct_tokens_is_bounded() {
    let mut rig = Rig::new(introspection_config());
    for n in 0..MAX_IN_FLIGHT {
        let (_, verdict) = rig.request(Some(&format!("random-{n}")));
        assert_eq!(verdict, Verdict::Parked);
    }
    let (_, over) = rig.request(Some("one-too-many"));
    assert_eq!(status(&done(over)), 503);
    assert_eq!(rig.sent_to("idp").len(), MAX_IN_FLIGHT);
    // A request for a token already being introspected still joins it.
    let (_, joined) = rig.request(Some("random-0"));
    assert_eq!(joined, Verdict::Parked);
}

#[test]
fn another_worker_uses_the_answer_after_checking_it() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut first = Rig::on_shared(introspection_config(), Rc::clone(&shared));
    let mut second = Rig::on_shared(introspection_config(), Rc::clone(&shared));
    let (_, _) = first.request(Some("opaque-alice"));
    // The second worker's request joins the flight of the first.
    let (waiting, verdict) = second.request(Some("opaque-alice"));
    assert_eq!(verdict, Verdict::Parked);
    assert!(
        second.sent_to("idp").is_empty(),
        "it waits for the first worker"
    );
    let call = first.sent_to("idp").remove(0);
    first.deliver(&call, FakeReply::status(200, &active_answer("alice")));
    second.host.advance(50);
    let decided = second.tick();
    assert_eq!(
        header(forwarded(outcome_of(&decided, waiting)), "x-user"),
        Some("alice")
    );
    let (_, next) = second.request(Some("opaque-alice"));
    assert_eq!(header(forwarded(&done(next)), "x-user"), Some("alice"));
    assert!(
        second.sent_to("idp").is_empty(),
        "no introspection of its own"
    );
}

#[test]
fn another_instance_never_sees_the_answers() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut first = Rig::on_shared(introspection_config(), Rc::clone(&shared));
    let mut other = introspection_config();
    other["providers"]["idp"]["introspection"]["client_auth"]["client_id"] =
        "another-client".into();
    let mut second = Rig::on_shared(other, Rc::clone(&shared));
    let (_, _) = first.request(Some("opaque-alice"));
    let call = first.sent_to("idp").remove(0);
    first.deliver(&call, FakeReply::status(200, &active_answer("alice")));
    let (_, verdict) = second.request(Some("opaque-alice"));
    assert_eq!(verdict, Verdict::Parked, "asks its own IdP client");
    assert_eq!(second.sent_to("idp").len(), 1);
}

#[test]
fn jwts_go_to_their_own_provider() {
    let mut config = introspection_config();
    config["providers"]["jwt"] = inbound_config()["providers"]["idp"].clone();
    config["providers"]["jwt"]["issuer"] = "https://jwt.example.com".into();
    config["providers"]["jwt"]["remote_jwks"]["http_uri"]["cluster"] = "jwks".into();
    let mut rig = Rig::new(config);

    // A JWT of the introspecting issuer is vouched for by its IdP, not by a signature.
    let (_, verdict) = rig.request(Some(&token_for("alice")));
    assert_eq!(verdict, Verdict::Parked);
    let asked = rig.sent_to("idp");
    assert_eq!(asked.len(), 1);
    let body = String::from_utf8(asked[0].body.clone().unwrap()).unwrap();
    assert!(body.starts_with("token=ey"), "{body}");

    // A JWT of the other issuer is verified with that issuer's keys; never introspected.
    let mut claims = claims_now("bob");
    claims.issuer = Some("https://jwt.example.com".into());
    let signed = mcp_auth_core::testing::rsa().sign(claims).unwrap();
    let (_, verdict) = rig.request(Some(&signed));
    assert_eq!(verdict, Verdict::Parked, "waits for the keys");
    assert_eq!(rig.sent_to("jwks").len(), 1);
    assert_eq!(
        rig.sent_to("idp").len(),
        1,
        "the IdP was not asked about it"
    );
}
