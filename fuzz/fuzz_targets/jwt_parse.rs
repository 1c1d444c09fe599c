//! `core::jwt::parse` and the bearer-header reader on arbitrary bytes: never panic, and
//! whatever parses has claims that the time checks and claim-to-header paths handle.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::jwt::{self, MAX_NUMERIC_DATE};
use mcp_auth_core::request::bearer_token;
use mcp_auth_core::time::UnixSeconds;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for max in [16_384, 1 << 20] {
        if let Ok(token) = jwt::parse(&text, max) {
            let claims = &token.claims;
            // A NumericDate past year 9999 makes the token malformed, so none is parsed.
            for date in [claims.exp, claims.nbf, claims.iat].into_iter().flatten() {
                assert!(date.0 <= MAX_NUMERIC_DATE, "{date:?}");
            }
            for (now, skew) in [(NOW, 60), (0, 0), (u64::MAX, u64::MAX), (NOW, 3600)] {
                for max_lifetime in [None, Some(Duration::from_secs(300)), Some(Duration::MAX)] {
                    let _ = claims.check_time(UnixSeconds(now), skew, max_lifetime);
                }
            }
            let _ = claims.has_audience_in(&["a".to_string()]);
            for path in [&["sub"][..], &["org", "id"], &["groups"], &["exp"], &[""]] {
                let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                if let Some(value) = claims.header_value(&path) {
                    // A header value never carries CR, LF or NUL.
                    assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
                }
            }
        }
    }
    if let Some(token) = bearer_token(&text) {
        assert!(!token.is_empty());
        assert!(text.contains(token));
        let _ = jwt::parse(token, 16_384);
    }
});
