//! `TokenExchanger::accept` on arbitrary STS answers. Input: one status byte, eight bytes of
//! the subject token's `exp`, then the body. Checked: an accepted token can go into a header
//! as it is, and is never cached past the subject token's expiry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::config::Config;
use mcp_auth_core::time::{UnixMillis, UnixSeconds};
use mcp_auth_core::token_exchange::TokenExchanger;
use serde_json::json;

const NOW_MS: UnixMillis = UnixMillis(1_800_000_000_000);

fn exchanger() -> TokenExchanger {
    let doc = json!({
        "resource": "https://mcp.fuzz.example/mcp",
        "providers": {"p": {"issuer": "https://idp.fuzz.example",
            "remote_jwks": {"http_uri": {"uri": "https://idp.fuzz.example/jwks", "cluster": "idp"}}}},
        "token_exchange": {
            "token_endpoint": {"uri": "https://sts.fuzz.example/token", "cluster": "sts"},
            "audience": "backend",
            "scopes": ["backend-api:read"],
            "client_auth": {"client_id": "c", "client_secret_env": "SECRET"},
            "accepted_token_types": ["Bearer", "N_A"]
        }
    });
    let env = |_: &str| Some("fuzz-secret".to_string());
    let config = Config::from_json_with_env(doc.to_string().as_bytes(), &env)
        .ok()
        .and_then(|c| c.token_exchange);
    match config {
        Some(c) => TokenExchanger::new(c),
        None => panic!("the fuzz configuration is valid"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let status = match status {
        0 => None,
        1..=100 => Some(200),
        s => Some(u16::from(s) * 3),
    };
    let Some((exp, body)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let subject_exp = UnixSeconds(match u64::from_be_bytes(*exp) {
        e if e % 2 == 0 => NOW_MS.seconds().0 + e % 100_000,
        e => e,
    });
    let mut x = exchanger();
    let key = x.key(&mcp_auth_core::token_cache::token_hash("subject"), None);
    if let Ok(got) = x.accept(key, status, body, NOW_MS, subject_exp) {
        assert!(!got.token.is_empty());
        assert!(got.token.bytes().all(|b| (0x21..0x7f).contains(&b)));
        if let Some(until) = got.cached_until {
            assert!(until > NOW_MS);
            assert!(
                until <= subject_exp.millis(),
                "cached past the subject's exp"
            );
            assert_eq!(x.cached(&key, NOW_MS), Some(got.token.as_str()));
            assert_eq!(x.cached(&key, until), None);
        } else {
            assert_eq!(x.cached(&key, NOW_MS), None);
        }
        let (_, value) = x.upstream_header(&got.token);
        assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
    }
});
