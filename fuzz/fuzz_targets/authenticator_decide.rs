//! `Authenticator::decide` end to end with a local key set. Input: a JWKS document, a NUL byte,
//! then the `Authorization` header value (seeds carry real keys and tokens signed with them).
//! Checked: no panic, a denial never echoes the credential, and an allowed token is remembered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::authenticator::{Authenticated, Authenticator, Decision, Denial};
use mcp_auth_core::config::Config;
use mcp_auth_core::keyring::Keyring;
use mcp_auth_core::request::{Authorization, Request};
use mcp_auth_core::time::UnixMillis;
use serde_json::json;

// Seeds are made with this issuer, audience and time (scripts/fuzz_seeds.py).
const ISSUER: &str = "https://idp.fuzz.example";
const RESOURCE: &str = "https://mcp.fuzz.example/mcp";
const NOW_MS: UnixMillis = UnixMillis(1_800_000_000_000);

fn config(jwks: &str) -> Option<Config> {
    let doc = json!({
        "resource": RESOURCE,
        "required_scopes": ["mcp:tools:call"],
        "bypass_paths": [{"exact": "/healthz"}],
        "providers": {"fuzz": {
            "issuer": ISSUER,
            "local_jwks": {"inline_string": jwks},
            "claim_to_headers": [
                {"header_name": "x-sub", "claim_name": "sub"},
                {"header_name": "x-org", "claim_name": "org.id"}
            ]
        }}
    });
    Config::from_json(doc.to_string().as_bytes()).ok()
}

/// Descriptions never echo any part of the credential.
fn assert_no_echo(denial: &Denial, header: &str) {
    let token = header.trim();
    if token.len() >= 12 {
        let body = String::from_utf8_lossy(&denial.response.body);
        assert!(!body.contains(token), "credential echoed in a body");
        for (_, value) in &denial.response.headers {
            assert!(!value.contains(token), "credential echoed in a header");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (jwks, rest) = data.split_at(split);
    let header = String::from_utf8_lossy(rest.get(1..).unwrap_or_default());
    let Some(config) = config(&String::from_utf8_lossy(jwks)) else {
        return;
    };
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    let request = Request {
        method: "POST",
        path: "/mcp",
        authorization: Authorization::Present(&header),
        is_cors_preflight: false,
    };
    let first = auth.decide(&request, &keyring, NOW_MS);
    match &first {
        Decision::Deny(denial) => assert_no_echo(denial, &header),
        Decision::Allow(Authenticated { identity, .. }) => {
            assert_eq!(identity.issuer, ISSUER);
            for (_, value) in &identity.headers {
                assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
            }
            // The second sight is a cache hit with the same outcome.
            let again = auth.decide(
                &request,
                &keyring,
                NOW_MS.plus(std::time::Duration::from_secs(1)),
            );
            assert!(
                matches!(
                    again,
                    Decision::Allow(Authenticated {
                        cache_hit: true,
                        ..
                    })
                ),
                "{again:?}"
            );
        }
        Decision::NeedKeys(need) => {
            // Local keys are all there is: an unknown kid is refused, never waited for.
            assert!(
                !need.may_wait(),
                "a local key set never makes a request wait"
            );
            assert_no_echo(&auth.refuse(need), &header);
        }
        Decision::Respond(_) | Decision::Bypass => panic!("not a metadata or bypass path"),
        Decision::NeedIntrospection(_) => panic!("no provider here introspects"),
    }
    // Much later, the same token is never allowed, from the cache or otherwise: no NumericDate
    // reaches this far (they end in year 9999).
    let later = auth.decide(&request, &keyring, UnixMillis(u64::MAX / 2));
    assert!(
        !matches!(later, Decision::Allow(_)),
        "expired token allowed"
    );
});
