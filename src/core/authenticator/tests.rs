//! The authenticator's decisions, end to end on real keys and tokens.
use super::*;
use crate::jwks_cache::{FetchReason, FetchStep};
use crate::testing::*;
use jwt_simple::prelude::*;
use serde_json::json;

const ISS: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const NOW_MS: UnixMillis = UnixMillis(NOW * 1000);
const P0: ProviderId = ProviderId(0);

/// `ms` milliseconds after NOW_MS.
fn at(ms: u64) -> UnixMillis {
    UnixMillis(NOW_MS.0 + ms)
}

fn config_json(keys: serde_json::Value) -> serde_json::Value {
    json!({
        "resource": RESOURCE,
        "required_scopes": ["mcp:tools:call"],
        "bypass_paths": [{"exact": "/healthz"}, {"prefix": "/public/"}],
        "providers": {"idp": {
            "issuer": ISS,
            "clock_skew_seconds": 60,
            "local_jwks": {"inline_string": String::from_utf8(keys_doc(keys)).unwrap()},
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
        }}
    })
}

fn keys_doc(keys: serde_json::Value) -> Vec<u8> {
    keys.to_string().into_bytes()
}

fn local_setup() -> (Authenticator, Keyring) {
    let doc = json!({"keys": [rsa_jwk(rsa(), "rsa-1", None)]});
    let config = Config::from_json(config_json(doc).to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

fn remote_setup(extra: serde_json::Value) -> (Authenticator, Keyring) {
    let mut remote = json!({"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}});
    if let (Some(r), Some(e)) = (remote.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    let v = json!({
        "resource": RESOURCE,
        "providers": {"idp": {"issuer": ISS, "remote_jwks": remote}}
    });
    let config = Config::from_json(v.to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

#[derive(Serialize, Deserialize)]
struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<Vec<String>>,
}

fn claims_at(now: u64) -> JWTClaims<Extra> {
    let mut c = jwt_simple::prelude::Claims::with_custom_claims(
        Extra {
            scp: Some(vec!["mcp:tools:call".into()]),
        },
        Duration::from_secs(300),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject("alice");
    c.issued_at = Some(UnixTimeStamp::from_secs(now));
    c.invalid_before = Some(UnixTimeStamp::from_secs(now));
    c.expires_at = Some(UnixTimeStamp::from_secs(now + 300));
    c
}

fn sign(claims: JWTClaims<Extra>) -> String {
    rsa().sign(claims).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn request<'a>(authorization: Authorization<'a>) -> Request<'a> {
    Request {
        method: "POST",
        path: "/mcp",
        authorization,
        is_cors_preflight: false,
    }
}

fn reason(d: &Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny(denial) => Some(denial.reason),
        // What the filter answers when the keys are not to be had.
        Decision::NeedKeys(KeyNeed {
            kind: KeyNeedKind::KeyNotFound,
            ..
        }) => Some(DenyReason::Token(TokenError::KeyNotFound)),
        Decision::NeedKeys(KeyNeed {
            kind: KeyNeedKind::KeysUnavailable,
            ..
        }) => Some(DenyReason::JwksUnavailable),
        _ => None,
    }
}

#[test]
fn valid_token_is_allowed_with_identity_headers_then_cached() {
    let (mut auth, keyring) = local_setup();
    let header = bearer(&sign(claims_at(NOW)));
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    let Decision::Allow(Authenticated {
        identity,
        cache_hit,
        token_hash,
        token,
    }) = d
    else {
        panic!("expected allow, got {d:?}")
    };
    assert!(!cache_hit);
    let raw = header.strip_prefix("Bearer ").unwrap();
    assert_eq!(token_hash, crate::token_cache::token_hash(raw));
    assert_eq!(token, raw, "the subject token for an exchange");
    assert_eq!(identity.subject.as_deref(), Some("alice"));
    assert_eq!(
        identity.headers,
        vec![("x-user".to_string(), "alice".to_string())]
    );
    let again = auth.decide(
        &request(Authorization::Present(&header)),
        &keyring,
        at(1000),
    );
    assert!(matches!(
        again,
        Decision::Allow(Authenticated {
            cache_hit: true,
            ..
        })
    ));
}

#[test]
fn cache_hit_still_rechecks_expiry() {
    let (mut auth, keyring) = local_setup();
    let header = bearer(&sign(claims_at(NOW)));
    assert!(matches!(
        auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS),
        Decision::Allow(_)
    ));
    let later = at((300 + 60) * 1000);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, later);
    assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::Expired)));
    // Within the skew it is still fine.
    let (mut auth, keyring) = local_setup();
    let d = auth.decide(
        &request(Authorization::Present(&header)),
        &keyring,
        later.minus(std::time::Duration::from_secs(1)),
    );
    assert!(matches!(d, Decision::Allow(_)));
}

#[test]
fn missing_and_malformed_credentials() {
    let (mut auth, keyring) = local_setup();
    let d = auth.decide(&request(Authorization::Absent), &keyring, NOW_MS);
    assert_eq!(reason(&d), Some(DenyReason::MissingToken));
    for bad in [
        "Basic abc",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a\"b",
        "bearer,x",
        "Token x",
    ] {
        let d = auth.decide(&request(Authorization::Present(bad)), &keyring, NOW_MS);
        assert_eq!(reason(&d), Some(DenyReason::InvalidRequest), "{bad}");
    }
    let d = auth.decide(&request(Authorization::Repeated), &keyring, NOW_MS);
    assert_eq!(reason(&d), Some(DenyReason::InvalidRequest));
}

#[test]
fn claim_failures_name_the_reason() {
    let (mut auth, keyring) = local_setup();
    let mut check = |claims: JWTClaims<Extra>, expected: TokenError| {
        let header = bearer(&sign(claims));
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(reason(&d), Some(DenyReason::Token(expected)));
    };
    check(claims_at(NOW - 1000), TokenError::Expired);
    check(claims_at(NOW + 1000), TokenError::NotYetValid);
    check(
        claims_at(NOW).with_issuer("https://evil.example.com"),
        TokenError::IssuerNotTrusted,
    );
    check(
        claims_at(NOW).with_issuer(format!("{ISS}/")),
        TokenError::IssuerNotTrusted,
    );
    check(
        claims_at(NOW).with_audience("https://other.example.com"),
        TokenError::AudienceNotAccepted,
    );
    let mut no_exp = claims_at(NOW);
    no_exp.expires_at = None;
    check(no_exp, TokenError::MissingExpiry);
    let mut future_iat = claims_at(NOW);
    future_iat.invalid_before = None;
    future_iat.issued_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    check(future_iat, TokenError::IssuedInFuture);
}

#[test]
fn audience_may_be_an_array() {
    let (mut auth, keyring) = local_setup();
    let mut audiences = std::collections::HashSet::new();
    audiences.insert("https://other".to_string());
    audiences.insert(RESOURCE.to_string());
    let header = bearer(&sign(claims_at(NOW).with_audiences(audiences)));
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert!(matches!(d, Decision::Allow(_)), "{d:?}");
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let (mut auth, keyring) = local_setup();
    // Signed by another key that claims our kid.
    let forged = rsa_other()
        .clone()
        .with_key_id("rsa-1")
        .sign(claims_at(NOW))
        .unwrap();
    let header = bearer(&forged);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::SignatureInvalid))
    );

    // HS256 with the RSA public key (PEM) as the HMAC secret.
    let pem = rsa().public_key().to_pem().unwrap();
    let hs = HS256Key::from_bytes(pem.as_bytes())
        .with_key_id("rsa-1")
        .authenticate(claims_at(NOW))
        .unwrap();
    let header = bearer(&hs);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::AlgorithmNotAllowed))
    );

    // alg: none, unsigned.
    let real = sign(claims_at(NOW));
    let payload = real.split('.').nth(1).unwrap();
    let none = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","kid":"rsa-1"}"#),
        payload
    );
    let header = bearer(&none);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::AlgorithmNotAllowed))
    );

    // RS256 signature relabelled as ES256 on an RSA key.
    let sig = real.split('.').nth(2).unwrap();
    let relabelled = format!(
        "{}.{}.{}",
        base64_url(r#"{"alg":"ES256","kid":"rsa-1"}"#),
        payload,
        sig
    );
    let header = bearer(&relabelled);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::AlgorithmMismatch))
    );

    // A tampered payload.
    let tampered_payload = base64_url(&format!(
        r#"{{"iss":"{ISS}","aud":"{RESOURCE}","sub":"mallory","exp":{},"scp":["mcp:tools:call"]}}"#,
        NOW + 100
    ));
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
    let header = bearer(&tampered);
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::SignatureInvalid))
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn missing_scope_is_insufficient_scope_with_identity() {
    let (mut auth, keyring) = local_setup();
    let mut claims = claims_at(NOW);
    claims.custom.scp = Some(vec!["other".into()]);
    let header = bearer(&sign(claims));
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    let Decision::Deny(Denial {
        reason,
        response,
        identity,
        ..
    }) = d
    else {
        panic!("expected deny")
    };
    assert_eq!(reason, DenyReason::InsufficientScope);
    assert_eq!(response.status, 403);
    assert_eq!(identity.unwrap().subject.as_deref(), Some("alice"));
}

#[test]
fn a_broader_scope_satisfies_the_top_level_required_scopes_through_scope_implies() {
    let doc = json!({"keys": [rsa_jwk(rsa(), "rsa-1", None)]});
    let mut v = config_json(doc);
    v["mcp"] = json!({"scope_implies": {"mcp:admin": ["mcp:tools:call"]}});
    let config = Config::from_json(v.to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    let with_scope = |scope: &str| {
        let mut claims = claims_at(NOW);
        claims.custom.scp = Some(vec![scope.into()]);
        bearer(&sign(claims))
    };
    // mcp:admin implies the required mcp:tools:call; the identity carries both.
    let admin = with_scope("mcp:admin");
    let d = auth.decide(&request(Authorization::Present(&admin)), &keyring, NOW_MS);
    let Decision::Allow(Authenticated { identity, .. }) = d else {
        panic!("a broader scope is refused: {d:?}")
    };
    assert!(identity.scopes.iter().any(|s| s == "mcp:tools:call"));
    assert!(identity.scopes.iter().any(|s| s == "mcp:admin"));
    // Nothing implies it from an unrelated scope: still a step-up.
    let other = with_scope("mcp:read");
    let d = auth.decide(&request(Authorization::Present(&other)), &keyring, NOW_MS);
    assert_eq!(reason(&d), Some(DenyReason::InsufficientScope));
}

#[test]
fn metadata_bypass_and_preflight() {
    let (mut auth, keyring) = local_setup();
    let mut r = request(Authorization::Absent);
    r.method = "GET";
    r.path = "/.well-known/oauth-protected-resource/mcp";
    assert!(matches!(
        auth.decide(&r, &keyring, NOW_MS),
        Decision::Respond(_)
    ));
    for (path, bypass) in [
        ("/healthz", true),
        ("/healthz?x=1", true),
        ("/public/a", true),
        ("/healthz/", false),
        ("/public/../mcp", false),
        ("/public/%2e%2e/mcp", false),
        ("/public/caf\u{e9}", false),
        ("/public//mcp", false),
        ("/mcp", false),
    ] {
        r.path = path;
        let d = auth.decide(&r, &keyring, NOW_MS);
        assert_eq!(matches!(d, Decision::Bypass), bypass, "{path}: {d:?}");
    }
    let mut preflight = request(Authorization::Absent);
    preflight.method = "OPTIONS";
    preflight.is_cors_preflight = true;
    assert!(matches!(
        auth.decide(&preflight, &keyring, NOW_MS),
        Decision::Bypass
    ));
}

fn need(d: &Decision) -> Option<KeyNeedKind> {
    match d {
        Decision::NeedKeys(need) => Some(need.kind),
        _ => None,
    }
}

/// Starts a fetch of provider 0's keys and answers it with `keys`.
fn fetch_and_answer(keyring: &mut Keyring, reason: FetchReason, now: UnixMillis, keys: &[u8]) {
    let cache = keyring.remote_mut(P0).unwrap();
    cache.start(now, reason);
    cache.on_response(now, FetchStep::Jwks, Some(200), None, keys);
}

#[test]
fn remote_keys_make_requests_wait_then_decide() {
    let (mut auth, mut keyring) = remote_setup(json!({}));
    let header = bearer(&sign(claims_at(NOW)));
    let req = request(Authorization::Present(&header));
    let d = auth.decide(&req, &keyring, NOW_MS);
    assert_eq!(need(&d), Some(KeyNeedKind::FirstKeys));
    let Decision::NeedKeys(first) = d else {
        unreachable!()
    };
    assert_eq!(first.provider, P0);
    // Cheap checks happen before waiting: an expired token is refused at once.
    let expired = bearer(&sign(claims_at(NOW - 1000)));
    let d = auth.decide(&request(Authorization::Present(&expired)), &keyring, NOW_MS);
    assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::Expired)));

    let cache = keyring.remote_mut(P0).unwrap();
    assert_eq!(cache.due_fetch(NOW_MS), Some(FetchReason::Scheduled));
    let fetch = cache.start(NOW_MS, FetchReason::Scheduled);
    assert_eq!(fetch.cluster, "idp");
    assert_eq!(cache.due_fetch(NOW_MS), None, "already in flight");
    cache.on_response(
        NOW_MS,
        FetchStep::Jwks,
        Some(200),
        None,
        &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
    );
    assert!(matches!(
        auth.decide(&req, &keyring, NOW_MS),
        Decision::Allow(_)
    ));
}

#[test]
fn failed_first_fetch_gives_503_then_recovers() {
    let (mut auth, mut keyring) = remote_setup(json!({}));
    let header = bearer(&sign(claims_at(NOW)));
    let req = request(Authorization::Present(&header));
    let cache = keyring.remote_mut(P0).unwrap();
    cache.start(NOW_MS, FetchReason::Scheduled);
    cache.on_failure(NOW_MS, crate::jwks_cache::FetchFailure::NoResponse);
    let d = auth.decide(&req, &keyring, at(10));
    assert_eq!(reason(&d), Some(DenyReason::JwksUnavailable));
    let Decision::NeedKeys(unavailable) = d else {
        unreachable!()
    };
    assert_eq!(auth.refuse(&unavailable).response.status, 503);
    // After the backoff the request waits for a new fetch, which succeeds.
    let later = at(1_000);
    assert_eq!(
        need(&auth.decide(&req, &keyring, later)),
        Some(KeyNeedKind::FirstKeys)
    );
    fetch_and_answer(
        &mut keyring,
        FetchReason::Scheduled,
        later,
        &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
    );
    assert!(matches!(
        auth.decide(&req, &keyring, later),
        Decision::Allow(_)
    ));
}

#[test]
fn unknown_kid_waits_for_one_rate_limited_refetch() {
    let (mut auth, mut keyring) = remote_setup(json!({"unknown_kid_refetch_interval": "30s"}));
    let one_key = jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]);
    fetch_and_answer(&mut keyring, FetchReason::Scheduled, NOW_MS, &one_key);

    // Rotated key: its kid is not known yet. Right after a fetch no refetch may start...
    let rotated = rsa_other().sign(claims_at(NOW)).unwrap();
    let header = bearer(&rotated);
    let req = request(Authorization::Present(&header));
    let d = auth.decide(&req, &keyring, at(1_000));
    assert_eq!(need(&d), Some(KeyNeedKind::KeyNotFound));
    assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::KeyNotFound)));

    // ...but a scheduled fetch does not start the 30 s clock: two seconds later one may.
    let t = at(2_000);
    assert_eq!(
        need(&auth.decide(&req, &keyring, t)),
        Some(KeyNeedKind::UnknownKid)
    );
    let cache = keyring.remote_mut(P0).unwrap();
    assert_eq!(
        cache.unknown_kid_refetch_due(t),
        Some(FetchReason::UnknownKid)
    );
    cache.start(t, FetchReason::UnknownKid);
    assert_eq!(cache.unknown_kid_refetch_due(t), None, "one refetch");
    cache.on_response(
        t,
        FetchStep::Jwks,
        Some(200),
        None,
        &jwks(vec![
            rsa_jwk(rsa(), "rsa-1", None),
            rsa_jwk(rsa_other(), "rsa-2", None),
        ]),
    );
    assert!(matches!(auth.decide(&req, &keyring, t), Decision::Allow(_)));

    // A kid still unknown after the refetch is refused, without another fetch, for 30 s.
    let token = rsa_other()
        .clone()
        .with_key_id("rsa-3")
        .sign(claims_at(NOW))
        .unwrap();
    let header = bearer(&token);
    let unknown = request(Authorization::Present(&header));
    let d = auth.decide(&unknown, &keyring, at(31_999));
    assert_eq!(need(&d), Some(KeyNeedKind::KeyNotFound));
    let d = auth.decide(&unknown, &keyring, at(32_000));
    assert_eq!(need(&d), Some(KeyNeedKind::UnknownKid));
}

#[test]
fn cached_token_is_refused_once_its_key_is_withdrawn() {
    let (mut auth, mut keyring) = remote_setup(json!({"cache_duration": "60s"}));
    fetch_and_answer(
        &mut keyring,
        FetchReason::Scheduled,
        NOW_MS,
        &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
    );
    let header = bearer(&sign(claims_at(NOW)));
    let req = request(Authorization::Present(&header));
    assert!(matches!(
        auth.decide(&req, &keyring, NOW_MS),
        Decision::Allow(Authenticated {
            cache_hit: false,
            ..
        })
    ));
    assert!(matches!(
        auth.decide(&req, &keyring, NOW_MS),
        Decision::Allow(Authenticated {
            cache_hit: true,
            ..
        })
    ));
    // The IdP withdraws rsa-1.
    let t = keyring.remote(P0).unwrap().refresh_at();
    fetch_and_answer(
        &mut keyring,
        FetchReason::Scheduled,
        t,
        &jwks(vec![rsa_jwk(rsa_other(), "rsa-2", None)]),
    );
    let d = auth.decide(&req, &keyring, t);
    assert_eq!(need(&d), Some(KeyNeedKind::KeyNotFound));
}

#[test]
fn a_cache_hit_without_kid_requires_the_very_key_that_verified_it() {
    let (mut auth, mut keyring) = remote_setup(json!({"cache_duration": "60s"}));
    // A key set whose keys carry no kid; the token names none either.
    let mut no_kid = rsa_jwk(rsa(), "x", None);
    no_kid.as_object_mut().unwrap().remove("kid");
    fetch_and_answer(
        &mut keyring,
        FetchReason::Scheduled,
        NOW_MS,
        &jwks(vec![no_kid]),
    );
    let key = RS256KeyPair::from_der(&rsa().to_der().unwrap()).unwrap();
    let header = bearer(&key.sign(claims_at(NOW)).unwrap());
    let req = request(Authorization::Present(&header));
    assert!(matches!(
        auth.decide(&req, &keyring, NOW_MS),
        Decision::Allow(_)
    ));
    // The IdP replaces the key by another one, also without kid: the cached token, signed
    // by the withdrawn key, must not pass on a cache hit.
    let mut other = rsa_jwk(rsa_other(), "x", None);
    other.as_object_mut().unwrap().remove("kid");
    let t = keyring.remote(P0).unwrap().refresh_at();
    fetch_and_answer(&mut keyring, FetchReason::Scheduled, t, &jwks(vec![other]));
    let d = auth.decide(&req, &keyring, t);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::SignatureInvalid))
    );
}

#[test]
fn max_lifetime_is_enforced() {
    let doc = json!({"keys": [rsa_jwk(rsa(), "rsa-1", None)]});
    let mut v = config_json(doc);
    v["providers"]["idp"]["max_lifetime"] = json!("60s");
    let config = Config::from_json(v.to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    // claims_at issues tokens valid for 300 s.
    let header = bearer(&sign(claims_at(NOW)));
    let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::LifetimeTooLong))
    );
}

#[test]
fn a_scope_prefix_names_scopes_as_clients_request_them() {
    // Entra ID v2: clients request api://<app>/mcp.access, the token says "mcp.access User.Read".
    let doc = json!({"keys": [rsa_jwk(rsa(), "rsa-1", None)]});
    let mut v = config_json(doc);
    v["required_scopes"] = json!(["api://app-1/mcp.access"]);
    v["providers"]["idp"]["scope_prefix"] = json!("api://app-1/");
    let config = Config::from_json(v.to_string().as_bytes()).unwrap();
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
        json!({"scp": "mcp.access User.Read"}),
        Duration::from_secs(300),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject("alice");
    claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    claims.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
    claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    let token = rsa().sign(claims).unwrap();
    let authorization = bearer(&token);
    let decision = auth.decide(
        &request(Authorization::Present(&authorization)),
        &keyring,
        NOW_MS,
    );
    let Decision::Allow(a) = decision else {
        panic!("expected allow, got {decision:?}")
    };
    assert_eq!(
        a.identity.scopes,
        vec!["api://app-1/mcp.access", "api://app-1/User.Read"]
    );
}
