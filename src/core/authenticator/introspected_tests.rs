//! Introspected tokens: what the IdP's answer makes of a token, and for how long.
use super::*;
use crate::introspection::read_answer;
use crate::time::UnixSeconds;
use serde_json::json;

const ISS: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const NOW_MS: UnixMillis = UnixMillis(NOW * 1000);

fn setup(extra: serde_json::Value) -> (Authenticator, Keyring) {
    let mut provider = json!({
        "issuer": ISS,
        "clock_skew_seconds": 30,
        "introspection": {
            "endpoint": {"uri": "https://idp.example.com/introspect", "cluster": "idp"},
            "client_auth": {"client_id": "filter", "client_secret_env": "SECRET"},
            "cache_duration": "60s",
            "negative_cache_duration": "0s"
        }
    });
    if let (Some(p), Some(e)) = (provider.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let doc = json!({"resource": RESOURCE, "required_scopes": ["mcp:tools:call"],
                     "providers": {"kc": provider}});
    let env = |k: &str| (k == "SECRET").then(|| "pw".to_string());
    let config = Config::from_json_with_env(doc.to_string().as_bytes(), &env).unwrap();
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

fn ask(auth: &mut Authenticator, keyring: &Keyring, token: &str, now: UnixMillis) -> Decision {
    let authorization = format!("Bearer {token}");
    let request = Request {
        method: "POST",
        path: "/mcp",
        authorization: Authorization::Present(&authorization),
        is_cors_preflight: false,
    };
    auth.decide(&request, keyring, now)
}

fn answer(auth: &mut Authenticator, need: &IntrospectionNeed, body: serde_json::Value) -> Vouched {
    let parsed = read_answer(Some(200), body.to_string().as_bytes()).unwrap();
    auth.accept_introspection(need, parsed, NOW_MS)
}

fn need_of(decision: Decision) -> IntrospectionNeed {
    match decision {
        Decision::NeedIntrospection(need) => need,
        other => panic!("expected an introspection, got {other:?}"),
    }
}

#[test]
fn an_answer_without_exp_is_good_for_cache_duration() {
    let (mut auth, keyring) = setup(json!({}));
    let need = need_of(ask(&mut auth, &keyring, "opaque", NOW_MS));
    let body = json!({"active": true, "sub": "alice", "aud": RESOURCE, "scope": "mcp:tools:call"});
    let until = NOW_MS.plus(std::time::Duration::from_secs(60));
    assert_eq!(answer(&mut auth, &need, body), Vouched::Active { until });
    let Decision::Allow(a) = ask(&mut auth, &keyring, "opaque", UnixMillis(NOW_MS.0 + 59_000))
    else {
        panic!("cached")
    };
    assert!(a.cache_hit);
    assert_eq!(
        a.identity.expires_at,
        UnixSeconds(NOW + 60),
        "the exchange's subject end"
    );
    let later = ask(&mut auth, &keyring, "opaque", UnixMillis(NOW_MS.0 + 60_001));
    assert!(matches!(later, Decision::NeedIntrospection(_)));
}

#[test]
fn the_cache_ends_at_exp_with_the_providers_skew() {
    let (mut auth, keyring) = setup(json!({}));
    let need = need_of(ask(&mut auth, &keyring, "opaque", NOW_MS));
    // Expired 10 s ago, inside the 30 s skew: accepted until exp + skew.
    let body = json!({"active": true, "sub": "alice", "aud": [RESOURCE],
                      "scope": "mcp:tools:call", "exp": NOW - 10});
    let until = UnixSeconds(NOW + 20).millis();
    assert_eq!(answer(&mut auth, &need, body), Vouched::Active { until });
    assert!(matches!(
        ask(&mut auth, &keyring, "opaque", NOW_MS),
        Decision::Allow(_)
    ));
}

#[test]
fn refusals_name_the_reason_and_zero_negative_cache_remembers_nothing() {
    let (mut auth, keyring) = setup(json!({}));
    for (body, reason) in [
        (json!({"active": false}), TokenError::Inactive),
        (
            json!({"active": true, "sub": "m", "aud": "https://other"}),
            TokenError::AudienceNotAccepted,
        ),
        (
            json!({"active": true, "sub": "m", "aud": RESOURCE, "iss": "https://evil"}),
            TokenError::IssuerNotTrusted,
        ),
        (
            json!({"active": true, "sub": "m", "aud": RESOURCE, "exp": NOW - 31}),
            TokenError::Expired,
        ),
    ] {
        let need = need_of(ask(&mut auth, &keyring, "opaque", NOW_MS));
        assert_eq!(answer(&mut auth, &need, body), Vouched::Refused { reason });
        // `negative_cache_duration: 0s`: the next request asks again.
        assert!(matches!(
            ask(&mut auth, &keyring, "opaque", NOW_MS),
            Decision::NeedIntrospection(_)
        ));
    }
}

#[test]
fn scopes_come_from_the_claims_the_provider_names() {
    let (mut auth, keyring) = setup(json!({"scope_claims": ["roles"]}));
    let need = need_of(ask(&mut auth, &keyring, "opaque", NOW_MS));
    let body = json!({"active": true, "sub": "alice", "aud": RESOURCE,
                      "scope": "mcp:tools:call", "roles": ["reader"]});
    answer(&mut auth, &need, body);
    let decision = ask(&mut auth, &keyring, "opaque", NOW_MS);
    assert!(
        matches!(&decision, Decision::Deny(d) if d.reason == DenyReason::InsufficientScope),
        "`scope` is not read when scope_claims names `roles`: {decision:?}"
    );
}

#[test]
fn opaque_tokens_without_an_introspecting_provider_are_malformed() {
    let keys = json!({"keys": [crate::testing::rsa_jwk(crate::testing::rsa(), "k", None)]});
    let doc = json!({"resource": RESOURCE, "providers": {"idp": {"issuer": ISS,
        "local_jwks": {"inline_string": keys.to_string()}}}});
    let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    let decision = ask(&mut auth, &keyring, "2YotnFZFEjr1zCsicMWpAA", NOW_MS);
    assert!(
        matches!(&decision, Decision::Deny(d) if d.reason == DenyReason::Token(TokenError::Malformed)),
        "{decision:?}"
    );
}
