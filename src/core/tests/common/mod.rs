//! Assertions shared by the hostile tests: a request decided as the proxy-wasm layer would end
//! it, and what every refusal must (not) say. Fixtures are in `mcp_auth_core::testing`.

// Each hostile_*.rs is its own test binary and uses only some of these.
#![allow(dead_code)]

use mcp_auth_core::authenticator::{Authenticator, Decision};
use mcp_auth_core::jwt::TokenError;
use mcp_auth_core::keyring::Keyring;
use mcp_auth_core::request::{Authorization, Request};
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::testing::{local_setup, NOW_MS};

/// `POST /mcp` with `authorization`, decided at `NOW_MS`. Keys that no one has (an unknown
/// `kid` with no refetch allowed, no keys at all) end the way the proxy-wasm layer ends them
/// when no other worker has newer keys: `Authenticator::refuse`.
pub fn decide(
    auth: &mut Authenticator,
    keyring: &Keyring,
    authorization: Authorization<'_>,
) -> Decision {
    let request = Request {
        method: "POST",
        path: "/mcp",
        authorization,
        is_cors_preflight: false,
    };
    match auth.decide(&request, keyring, NOW_MS) {
        Decision::NeedKeys(need) if !need.may_wait() => Decision::Deny(auth.refuse(&need)),
        decision => decision,
    }
}

/// `token` as a bearer token, decided by the standard configuration with every test key.
pub fn decide_token(token: &str) -> Decision {
    let (mut auth, keyring) = local_setup();
    let header = format!("Bearer {token}");
    decide(&mut auth, &keyring, Authorization::Present(&header))
}

pub fn reason(d: &Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny(denial) => Some(denial.reason),
        _ => None,
    }
}

#[track_caller]
pub fn assert_refused(token: &str, expected: TokenError) {
    let d = decide_token(token);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(expected)),
        "{:.120}: {d:?}",
        token
    );
    assert_no_echo(&d, token);
}

/// A denial's body and headers never carry any part of the token.
#[track_caller]
pub fn assert_no_echo(d: &Decision, token: &str) {
    let Decision::Deny(denial) = d else {
        return;
    };
    let body = String::from_utf8_lossy(&denial.response.body);
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!body.contains(part), "token part echoed in the body");
        for (name, value) in &denial.response.headers {
            assert!(!value.contains(part), "token part echoed in {name}");
        }
    }
}

#[track_caller]
pub fn assert_allowed(token: &str) {
    let d = decide_token(token);
    assert!(matches!(d, Decision::Allow(_)), "{d:?}");
}
