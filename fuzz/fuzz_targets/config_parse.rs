//! `Config::from_json_with_env` on arbitrary documents; whatever validates is usable: the
//! responses, the key ring, a decision and (when configured) an exchange request are built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::authenticator::Authenticator;
use mcp_auth_core::config::Config;
use mcp_auth_core::keyring::Keyring;
use mcp_auth_core::request::{Authorization, Request};
use mcp_auth_core::time::UnixMillis;
use mcp_auth_core::token_exchange::TokenExchanger;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (!name.is_empty()).then(|| format!("secret-of-{name}"));
    let Ok(config) = Config::from_json_with_env(data, &env) else {
        return;
    };
    assert!(!config.providers.is_empty());
    assert!(config.resource_metadata_url.starts_with("http"));
    let exchange = config.token_exchange.clone();
    let keyring = Keyring::new(&config);
    let mut auth = Authenticator::new(config);
    for (method, path, authorization) in [
        (
            "GET",
            "/.well-known/oauth-protected-resource",
            Authorization::Absent,
        ),
        ("POST", "/mcp", Authorization::Present("Bearer a.b.c")),
        ("GET", "/healthz", Authorization::Repeated),
    ] {
        let request = Request {
            method,
            path,
            authorization,
            is_cors_preflight: false,
        };
        let _ = auth.decide(&request, &keyring, UnixMillis(1_800_000_000_000));
    }
    if let Some(x) = exchange {
        let x = TokenExchanger::new(x);
        let request = x.request("subject.token.value", None);
        assert!(request.headers.iter().all(|(_, v)| !v.contains('\n')));
    }
});
