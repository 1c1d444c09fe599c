//! Two filter instances in one Envoy (same `vm_id`, same provider name, different IdPs and
//! STSs) share one shared-data space: neither may read the other's keys or tokens.

use std::cell::RefCell;
use std::rc::Rc;

use jwt_simple::prelude::*;
use mcp_auth_core::testing::{jwks, rsa, rsa_jwk, rsa_other};
use serde_json::json;

use crate::filter::host::fake::{FakeReply, FakeSharedData};
use crate::filter::tests::fixtures::*;

const OTHER_ISS: &str = "https://other-idp.example.com";

/// Instance B: a provider also named `idp`, for another issuer, with keys at another URL.
fn instance_b() -> serde_json::Value {
    let mut config = exchange_config();
    config["providers"]["idp"]["issuer"] = OTHER_ISS.into();
    config["providers"]["idp"]["remote_jwks"]["http_uri"]["uri"] =
        "https://other-idp.example.com/jwks".into();
    config["token_exchange"]["token_endpoint"]["uri"] =
        "https://other-sts.example.com/token".into();
    config
}

/// A token for instance B's issuer, signed with `key`.
fn b_token(key: &RS256KeyPair, sub: &str) -> String {
    let mut claims =
        Claims::with_custom_claims(json!({"scp": ["mcp:tools:call"]}), Duration::from_secs(300))
            .with_issuer(OTHER_ISS)
            .with_audience(RESOURCE)
            .with_subject(sub);
    pin_to_now(&mut claims);
    key.sign(claims).unwrap()
}

#[test]
fn keys_published_by_one_instance_are_never_adopted_by_another() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut a = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    let mut b = Rig::on_shared(instance_b(), Rc::clone(&shared));
    // A loads its IdP's key (rsa-1) and publishes it.
    a.request(Some(&token_for("alice")));
    let fetch = a.sent_to("idp").remove(0);
    a.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    assert!(!shared.borrow().keys().is_empty());

    // B gets a token claiming B's issuer but signed with A's key: B must not adopt A's keys;
    // it fetches its own (rsa-2, under kid rsa-1 to make the confusion complete).
    let forged = b_token(rsa(), "mallory");
    let (forged_ctx, verdict) = b.request(Some(&forged));
    assert_eq!(verdict, crate::filter::worker::Verdict::Parked);
    let b_fetch = b.sent_to("idp").remove(0);
    assert_eq!(b_fetch.header(":authority"), Some("other-idp.example.com"));
    let b_keys = jwks(vec![rsa_jwk(rsa_other(), "rsa-1", None)]);
    let decided = b.deliver(&b_fetch, FakeReply::status(200, &b_keys));
    assert_eq!(status(outcome_of(&decided, forged_ctx)), 401);

    // B's genuine tokens pass, and A still refuses them.
    let b_key = rsa_other().clone().with_key_id("rsa-1");
    let genuine = b_token(&b_key, "bob");
    let (_, verdict) = b.request(Some(&genuine));
    let forward = forwarded_after_exchange(&mut b, verdict);
    assert_eq!(header(&forward, "x-user"), Some("bob"));
    let (_, verdict) = a.request(Some(&genuine));
    assert_eq!(status(&done(verdict)), 401, "A never adopted B's keys");
}

/// Answers the exchange a request waits for and returns its forwarding.
fn forwarded_after_exchange(
    rig: &mut Rig,
    verdict: crate::filter::worker::Verdict,
) -> crate::filter::worker::Forwarding {
    match verdict {
        crate::filter::worker::Verdict::Done(outcome) => forwarded(&outcome).clone(),
        crate::filter::worker::Verdict::Parked | crate::filter::worker::Verdict::AwaitBody => {
            let call = rig.sent_to("sts").pop().unwrap();
            let decided = rig.deliver(&call, FakeReply::status(200, &sts_answer("backend-b")));
            forwarded(&decided[0].1).clone()
        }
    }
}

#[test]
fn a_backend_token_never_crosses_to_an_instance_with_another_sts() {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let mut one = Rig::on_shared(exchange_config(), Rc::clone(&shared));
    // Instance 2: same IdP, but another STS (endpoint) — its exchanges are its own.
    let mut config = exchange_config();
    config["token_exchange"]["token_endpoint"]["uri"] = "https://sts-2.example.com/token".into();
    let mut two = Rig::on_shared(config, Rc::clone(&shared));
    let alice = token_for("alice");

    one.request(Some(&alice));
    let fetch = one.sent_to("idp").remove(0);
    one.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let sts = one.sent_to("sts").remove(0);
    one.deliver(
        &sts,
        FakeReply::status(200, &sts_answer("backend-from-sts-1")),
    );

    // Instance 2 shares the keys (identical provider definition) but must ask its own STS.
    let (waiting, verdict) = two.request(Some(&alice));
    assert_eq!(verdict, crate::filter::worker::Verdict::Parked);
    assert!(
        two.sent_to("idp").is_empty(),
        "identical providers share keys"
    );
    let own = two.sent_to("sts");
    assert_eq!(own.len(), 1, "instance 2 asked its own STS");
    assert_eq!(own[0].header(":authority"), Some("sts-2.example.com"));
    let decided = two.deliver(
        &own[0],
        FakeReply::status(403, br#"{"error":"access_denied"}"#),
    );
    assert_eq!(status(outcome_of(&decided, waiting)), 403);
}
