//! Hostile STS answers against the token exchanger (`TokenExchanger::accept`): bodies that are
//! not a token response, tokens that could not sit in a header, odd statuses and `expires_in`
//! values built to overflow or to outlive the subject token.
//!
//! Crashes found by the `sts_accept` fuzz target are added here with the crashing input.

use std::time::Duration;

use mcp_auth_core::config::Config;
use mcp_auth_core::testing::{exchange_config_doc, NOW, NOW_MS};
use mcp_auth_core::time::{UnixMillis, UnixSeconds};
use mcp_auth_core::token_cache::token_hash;
use mcp_auth_core::token_exchange::{ExchangeFailure, TokenExchanger, MAX_RESPONSE_BYTES};
use serde_json::json;

/// The exchange's `expiry_margin` below.
const MARGIN: Duration = Duration::from_secs(30);

fn exchanger() -> TokenExchanger {
    let mut doc = exchange_config_doc();
    doc["token_exchange"]["cache"] = json!({"expiry_margin": "30s", "default_ttl": "300s"});
    let env = |name: &str| (name == "SECRET").then(|| "sts-secret-value".to_string());
    let config = Config::from_json_with_env(doc.to_string().as_bytes(), &env).expect("config");
    TokenExchanger::new(config.token_exchange.expect("exchange"))
}

/// `ms` milliseconds after `NOW_MS`.
fn after(ms: u64) -> UnixMillis {
    UnixMillis(NOW_MS.0 + ms)
}

#[test]
fn malformed_sts_answers_fail_the_exchange() {
    let subject_exp = NOW.plus(3600);
    let oversized = format!(
        r#"{{"access_token":"t","token_type":"Bearer","pad":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES)
    );
    let long_token = format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "t".repeat(16 * 1024 + 1)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let token_response =
        |rest: &str| format!(r#"{{"access_token":"t","token_type":"Bearer"{rest}}}"#);
    let failed = |body: &[u8]| (Some(200), body.to_vec(), ExchangeFailure::Failed);
    let cases: Vec<(Option<u16>, Vec<u8>, ExchangeFailure)> = vec![
        failed(b""),
        failed(b"<html>not json</html>"),
        failed(b"null"),
        failed(br#"[{"access_token":"t","token_type":"Bearer"}]"#),
        failed(br#"{"token_type":"Bearer","expires_in":300}"#),
        failed(br#"{"access_token":null,"token_type":"Bearer"}"#),
        failed(br#"{"access_token":7,"token_type":"Bearer"}"#),
        failed(br#"{"access_token":["t"],"token_type":"Bearer"}"#),
        failed(br#"{"access_token":"a b","token_type":"Bearer"}"#),
        failed(br#"{"access_token":"a\u0000b","token_type":"Bearer"}"#),
        failed("{\"access_token\":\"t\u{00e9}\",\"token_type\":\"Bearer\"}".as_bytes()),
        failed(long_token.as_bytes()),
        failed(token_response(r#","expires_in":-1"#).as_bytes()),
        failed(token_response(r#","expires_in":-1e300"#).as_bytes()),
        failed(token_response(r#","expires_in":"300""#).as_bytes()),
        failed(token_response(r#","expires_in":true"#).as_bytes()),
        failed(token_response(r#","expires_in":{}"#).as_bytes()),
        failed(token_response(r#","expires_in":1e400"#).as_bytes()),
        failed(br#"{"access_token":"t","token_type":"N_A"}"#),
        failed(br#"{"access_token":"t","token_type":7}"#),
        failed(br#"{"access_token":"t"}"#),
        failed(oversized.as_bytes()),
        failed(deep.as_bytes()),
        failed(&[0xff; 64]),
        (
            Some(201),
            token_response("").into_bytes(),
            ExchangeFailure::Failed,
        ),
        (Some(302), b"".to_vec(), ExchangeFailure::Failed),
        (Some(0), b"".to_vec(), ExchangeFailure::Failed),
        (Some(999), b"".to_vec(), ExchangeFailure::Failed),
        (
            Some(400),
            b"not json".to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":["invalid_grant"]}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":"INVALID_GRANT"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":"invalid_grant\r\nx"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(401),
            br#"{"error":"invalid_client"}"#.to_vec(),
            ExchangeFailure::Refused(Some("invalid_client")),
        ),
        (
            Some(400),
            br#"{"error":"invalid_grant","error":"x"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (Some(503), b"".to_vec(), ExchangeFailure::Unavailable),
        (Some(504), b"".to_vec(), ExchangeFailure::Timeout),
        (None, b"".to_vec(), ExchangeFailure::Unavailable),
    ];
    for (status, body, expected) in cases {
        let mut x = exchanger();
        let key = x.key(&token_hash("subject"), None);
        let got = x.accept(key, status, &body, NOW_MS, subject_exp);
        assert_eq!(
            got,
            Err(expected),
            "{status:?} {:.60}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(x.cached(&key, NOW_MS), None, "a failure is never cached");
    }
}

#[test]
fn expires_in_extremes_are_bounded() {
    let subject_exp = NOW.plus(3600);
    let until_subject_exp = Some(subject_exp.millis().minus(MARGIN));
    for (expires_in, until) in [
        ("1e300", until_subject_exp),
        ("18446744073709551615", until_subject_exp),
        ("1.7976931348623157e308", until_subject_exp),
        ("0", None),
        ("0.5", None),
        ("30", None),
        ("31", Some(after(1_000))),
        ("null", Some(after(300_000).minus(MARGIN))),
    ] {
        let mut x = exchanger();
        let key = x.key(&token_hash("subject"), None);
        let body =
            format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#);
        let got = x
            .accept(key, Some(200), body.as_bytes(), NOW_MS, subject_exp)
            .expect(expires_in);
        assert_eq!(got.cached_until, until, "{expires_in}");
    }
    // A subject token already past its exp (or at u64::MAX): never cached beyond it.
    let mut x = exchanger();
    let key = x.key(&token_hash("s"), None);
    let body = br#"{"access_token":"t","token_type":"Bearer","expires_in":300}"#;
    assert_eq!(
        x.accept(key, Some(200), body, NOW_MS, UnixSeconds(NOW.0 - 1))
            .map(|e| e.cached_until),
        Ok(None)
    );
    let got = x
        .accept(key, Some(200), body, NOW_MS, UnixSeconds(u64::MAX))
        .expect("accepted");
    assert_eq!(got.cached_until, Some(after(300_000).minus(MARGIN)));
}
