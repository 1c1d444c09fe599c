//! Hostile replies against remote keys (`JwksCache`): broken JWKS answers, `Cache-Control`
//! values, OpenID configurations, and a flood of tokens naming unknown kids.
//!
//! Crashes found by the `jwks_cache` fuzz target are added here with the crashing input.

use std::time::Duration;

use mcp_auth_core::authenticator::{Decision, KeyNeedKind};
use mcp_auth_core::config::ProviderId;
use mcp_auth_core::jwks::{JwksError, MAX_JWKS_BYTES};
use mcp_auth_core::jwks_cache::{
    max_age, Availability, DiscoveryError, FetchFailure, FetchOutcome, FetchStep, JwksCache,
    MIN_REFETCH_SPACING,
};
use mcp_auth_core::jwt::TokenError;
use mcp_auth_core::request::{Authorization, Request};
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::testing::{
    all_keys, config_doc, ec256_jwk, es256, jwks, oidc_discovery, remote_jwks, remote_keys, rsa,
    rsa_jwk, setup, standard_payload, unsigned_token, ISSUER, NOW_MS,
};
use mcp_auth_core::time::UnixMillis;
use serde_json::json;

const IDP: ProviderId = ProviderId(0);

/// Starts the scheduled fetch that is due at `now` (the first one, a retry or a refresh).
#[track_caller]
fn start_due_fetch(cache: &mut JwksCache, now: UnixMillis) -> FetchStep {
    let reason = cache.due_fetch(now).expect("a fetch is due");
    cache.start(now, reason).step
}

#[test]
fn a_malformed_jwks_answer_keeps_the_last_good_keys() {
    let doc = config_doc(remote_jwks(json!({"cache_duration": "2s"})));
    let mut cache = JwksCache::new(remote_keys(&doc));
    assert_eq!(start_due_fetch(&mut cache, NOW_MS), FetchStep::Jwks);
    assert_eq!(
        cache.on_response(NOW_MS, FetchStep::Jwks, Some(200), None, &all_keys()),
        FetchOutcome::KeysUpdated
    );
    let bad_keys = FetchFailure::Keys(JwksError::NoUsableKey);
    let bad_answers = vec![
        (Some(500), None, b"oops".to_vec(), FetchFailure::Status(500)),
        (Some(200), None, b"not json".to_vec(), bad_keys.clone()),
        (
            Some(200),
            None,
            br#"{"keys":[]}"#.to_vec(),
            bad_keys.clone(),
        ),
        (
            Some(200),
            None,
            jwks(vec![json!({"kty": "XYZ"})]),
            bad_keys.clone(),
        ),
        (
            Some(200),
            Some("max-age=-5"),
            vec![b'{'; MAX_JWKS_BYTES + 1],
            bad_keys.clone(),
        ),
        (Some(204), None, Vec::new(), FetchFailure::Status(204)),
        (Some(304), None, Vec::new(), FetchFailure::Status(304)),
        (None, None, Vec::new(), FetchFailure::NoResponse),
    ];
    let mut t = cache.refresh_at();
    for (status, cache_control, body, expected) in bad_answers {
        start_due_fetch(&mut cache, t);
        let outcome = cache.on_response(t, FetchStep::Jwks, status, cache_control, &body);
        let FetchOutcome::Failed(failure) = outcome else {
            panic!("{status:?}: {outcome:?}")
        };
        // Which key-set error it was is in its message; its kind is what matters here.
        let same = match (&failure, &expected) {
            (FetchFailure::Keys(_), FetchFailure::Keys(_)) => true,
            (failure, expected) => failure == expected,
        };
        assert!(same, "{status:?}: {failure:?}, not {expected:?}");
        assert_eq!(cache.availability(t), Availability::Ready);
        assert!(cache.keys().is_some_and(|k| k.contains_kid("rsa-1")));
        assert_eq!(
            cache.due_fetch(t.plus(Duration::from_millis(999))),
            None,
            "the backoff holds"
        );
        t = t.plus(Duration::from_secs(1));
    }
    // A good answer after all that is installed.
    start_due_fetch(&mut cache, t);
    let rotated = jwks(vec![ec256_jwk(es256(), "ec-2")]);
    assert_eq!(
        cache.on_response(t, FetchStep::Jwks, Some(200), None, &rotated),
        FetchOutcome::KeysUpdated
    );
    assert!(cache
        .keys()
        .is_some_and(|k| k.contains_kid("ec-2") && !k.contains_kid("rsa-1")));
}

#[test]
fn hostile_cache_control_values_are_clamped() {
    let min = Duration::from_secs(30);
    let max = Duration::from_secs(24 * 3600);
    for (value, expected) in [
        ("max-age=0", Some(min)),
        ("max-age=18446744073709551615", Some(max)),
        ("max-age=18446744073709551616", None),
        ("max-age=-1", None),
        ("max-age=1e9", None),
        ("max-age=\"60\"", Some(Duration::from_secs(60))),
        ("MAX-AGE=60", Some(Duration::from_secs(60))),
        ("max-age=60, max-age=1", Some(min)),
        ("no-cache, max-age=600", Some(min)),
        ("max-age", None),
        ("", None),
        (",,,,", None),
        ("max-age=٣٠", None),
    ] {
        assert_eq!(max_age(Some(value)), expected, "{value}");
    }
}

/// The discovery fetch of `ISSUER`'s OpenID configuration (with `settings` added to
/// `oidc_discovery`), answered with `doc`.
fn discover(settings: serde_json::Value, doc: &[u8]) -> (JwksCache, FetchOutcome) {
    let mut cache = JwksCache::new(remote_keys(&config_doc(oidc_discovery(settings))));
    assert_eq!(start_due_fetch(&mut cache, NOW_MS), FetchStep::Discovery);
    let outcome = cache.on_response(NOW_MS, FetchStep::Discovery, Some(200), None, doc);
    (cache, outcome)
}

#[test]
fn hostile_discovery_documents_fail_the_fetch() {
    // Each document names the configured issuer, so that what fails is its `jwks_uri`: since the
    // security review, a document without the issuer fails for that alone (as `{}` does now).
    let named = |jwks_uri: serde_json::Value| {
        json!({"issuer": ISSUER, "jwks_uri": jwks_uri})
            .to_string()
            .into_bytes()
    };
    let too_big = json!({"issuer": ISSUER, "jwks_uri": "https://idp.example.com/keys",
                         "pad": "x".repeat(70_000)});
    let cases: Vec<(Vec<u8>, DiscoveryError)> = vec![
        (b"{}".to_vec(), DiscoveryError::IssuerMismatch),
        (
            json!({ "issuer": ISSUER }).to_string().into_bytes(),
            DiscoveryError::NoJwksUri,
        ),
        (named(json!(7)), DiscoveryError::NoJwksUri),
        (named(json!("/relative/keys")), DiscoveryError::BadJwksUri),
        (
            named(json!("ftp://idp.example.com/keys")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://user:pw@idp.example.com/keys")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://idp.example.com/keys#frag")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://idp.example.com:99999/keys")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://[zz]/keys")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://idp.example.com/k\u{00e9}ys")),
            DiscoveryError::BadJwksUri,
        ),
        (
            named(json!("https://idp.example.com/keys\r\nx: y")),
            DiscoveryError::BadJwksUri,
        ),
        (b"not json".to_vec(), DiscoveryError::NotJson),
        (too_big.to_string().into_bytes(), DiscoveryError::TooLarge),
    ];
    for (doc, expected) in cases {
        let (cache, outcome) = discover(json!({}), &doc);
        assert_eq!(
            outcome,
            FetchOutcome::Failed(FetchFailure::Discovery(expected)),
            "{:.60}",
            String::from_utf8_lossy(&doc)
        );
        assert_eq!(
            cache.availability(NOW_MS.plus(Duration::from_millis(10))),
            Availability::Unavailable
        );
    }
}

/// Security review: a discovery document used to be trusted for any `issuer` and any
/// `jwks_uri`, so whoever could answer for the configuration URL chose the signing keys. Now
/// its `issuer` must be the configured one and its `jwks_uri` on the issuer's origin or one of
/// `allowed_jwks_origins`.
#[test]
fn discovery_documents_for_another_issuer_or_key_origin_fail_the_fetch() {
    let doc = |issuer: serde_json::Value, jwks_uri: &str| {
        json!({"issuer": issuer, "jwks_uri": jwks_uri})
            .to_string()
            .into_bytes()
    };
    let ours = "https://idp.example.com/keys";
    for (doc, expected) in [
        (
            doc(json!("https://evil.example.com"), ours),
            DiscoveryError::IssuerMismatch,
        ),
        (
            doc(json!(format!("{ISSUER}/")), ours),
            DiscoveryError::IssuerMismatch,
        ),
        (
            doc(json!(ISSUER.to_uppercase()), ours),
            DiscoveryError::IssuerMismatch,
        ),
        (doc(json!([ISSUER]), ours), DiscoveryError::IssuerMismatch),
        (doc(json!(null), ours), DiscoveryError::IssuerMismatch),
        (
            doc(json!(ISSUER), "https://attacker.example/keys"),
            DiscoveryError::JwksOriginNotAllowed,
        ),
        (
            doc(json!(ISSUER), "http://idp.example.com/keys"),
            DiscoveryError::JwksOriginNotAllowed,
        ),
        (
            doc(json!(ISSUER), "https://idp.example.com:8443/keys"),
            DiscoveryError::JwksOriginNotAllowed,
        ),
        (
            doc(json!(ISSUER), "https://idp.example.com.evil.com/keys"),
            DiscoveryError::JwksOriginNotAllowed,
        ),
    ] {
        let (_, outcome) = discover(json!({}), &doc);
        assert_eq!(
            outcome,
            FetchOutcome::Failed(FetchFailure::Discovery(expected)),
            "{}",
            String::from_utf8_lossy(&doc)
        );
    }
    // An origin the configuration allows is followed.
    let allowed = json!({"allowed_jwks_origins": ["https://keys.example.com"]});
    let (_, outcome) = discover(allowed, &doc(json!(ISSUER), "https://keys.example.com/k"));
    let FetchOutcome::FetchNext(next) = outcome else {
        panic!("the JWKS fetch next: {outcome:?}")
    };
    assert_eq!(next.step, FetchStep::Jwks);
    assert_eq!(next.target.origin, "https://keys.example.com");
}

#[test]
fn a_flood_of_distinct_unknown_kids_refetches_at_most_once_per_interval() {
    let (mut auth, mut keyring) = setup(&config_doc(remote_jwks(
        json!({"unknown_kid_refetch_interval": "30s"}),
    )));
    let published = jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]);
    let cache = keyring.remote_mut(IDP).expect("remote");
    assert_eq!(start_due_fetch(cache, NOW_MS), FetchStep::Jwks);
    cache.on_response(NOW_MS, FetchStep::Jwks, Some(200), None, &published);
    let payload = standard_payload().to_string();
    let mut refetches: Vec<UnixMillis> = Vec::new();
    let mut refused = 0;
    // 10,000 tokens with distinct unknown kids over 95 simulated seconds.
    for i in 0..10_000u64 {
        let now = UnixMillis(NOW_MS.0 + i * 9_500 / 1_000);
        // No signature is checked for a kid nobody published: a hand-made token is enough.
        let header_json = json!({"alg": "RS256", "kid": format!("unknown-{i}")}).to_string();
        let header = format!("Bearer {}", unsigned_token(&header_json, &payload));
        let request = Request {
            method: "POST",
            path: "/mcp",
            authorization: Authorization::Present(&header),
            is_cors_preflight: false,
        };
        let d = auth.decide(&request, &keyring, now);
        let Decision::NeedKeys(need) = d else {
            panic!("an unknown kid needs keys: {d:?}")
        };
        if need.kind == KeyNeedKind::UnknownKid {
            let cache = keyring.remote_mut(IDP).expect("remote");
            if let Some(reason) = cache.unknown_kid_refetch_due(now) {
                cache.start(now, reason);
                refetches.push(now);
                // The IdP answers at once with the same keys: the kid stays unknown.
                cache.on_response(now, FetchStep::Jwks, Some(200), None, &published);
            }
        } else {
            // What the proxy-wasm layer answers when no other worker has newer keys.
            assert_eq!(
                auth.refuse(&need).reason,
                DenyReason::Token(TokenError::KeyNotFound)
            );
            refused += 1;
        }
    }
    // Security review: only unknown-kid refetches count against the interval, so the scheduled
    // first fetch no longer delays the first refetch by 30 s, only by MIN_REFETCH_SPACING:
    // 95 s with a 30 s interval allow refetches at about 2, 32, 62 and 92 s, no more.
    assert!(refetches.len() <= 4, "{} refetches", refetches.len());
    assert!(refetches
        .first()
        .is_some_and(|first| *first >= NOW_MS.plus(MIN_REFETCH_SPACING)));
    for pair in refetches.windows(2) {
        assert!(
            pair[1].since(pair[0]) >= Duration::from_secs(30),
            "{refetches:?}"
        );
    }
    assert!(refused >= 9_990);
}
