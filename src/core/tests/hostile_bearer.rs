//! Hostile `Authorization` headers against the bearer reader (`request::bearer_token`) and the
//! authenticator: scheme spellings, spacing, quoting, other schemes and repeated headers.
//!
//! Crashes found by the `jwt_parse` fuzz target (which also reads bearer headers) are added
//! here with the crashing input.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{assert_no_echo, decide, reason};
use jwt_simple::prelude::RSAKeyPairLike;
use mcp_auth_core::authenticator::Decision;
use mcp_auth_core::request::{bearer_token, Authorization};
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::testing::{local_setup, rsa, standard_claims};

#[test]
fn bearer_scheme_spacing_and_case() {
    let token = rsa().sign(standard_claims()).expect("token");
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("BeArEr {token}"),
        format!("Bearer   {token}"),
        format!("Bearer\t{token}"),
        format!("  Bearer {token}  "),
        format!("Bearer {token}\t"),
    ] {
        assert_eq!(bearer_token(&header), Some(token.as_str()), "{header:.20}");
        let (mut auth, keyring) = local_setup();
        let d = decide(&mut auth, &keyring, Authorization::Present(&header));
        assert!(matches!(d, Decision::Allow(_)), "{header:.20}: {d:?}");
    }
    for header in [
        format!("Bearer{token}"),
        format!("Bearer,{token}"),
        format!("Bearer: {token}"),
        format!("Bearer {token} {token}"),
        format!("Bearer \"{token}\""),
        format!("Bearer {token}\r\n"),
        format!("Bearer\u{00a0}{token}"),
        format!("Bearer\u{3000}{token}"),
        format!("Bearer\n{token}"),
        format!("Basic {token}"),
        format!("DPoP {token}"),
        format!("Bearer {token}é"),
        format!("Bearer {}", STANDARD.encode("user:password")).replace('=', "=x"),
        token.clone(),
        String::new(),
        "Bearer".into(),
        "Bearer \t ".into(),
    ] {
        let (mut auth, keyring) = local_setup();
        let d = decide(&mut auth, &keyring, Authorization::Present(&header));
        assert_eq!(
            reason(&d),
            Some(DenyReason::InvalidRequest),
            "{header:.30}: {d:?}"
        );
        assert_no_echo(&d, &token);
    }
    let (mut auth, keyring) = local_setup();
    let d = decide(&mut auth, &keyring, Authorization::Repeated);
    assert_eq!(reason(&d), Some(DenyReason::InvalidRequest));
}
