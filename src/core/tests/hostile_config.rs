//! Hostile configurations against `Config::from_json_with_env`: URLs, durations and numbers
//! built to overflow or to smuggle headers, unknown keys, deep or broken JSON. Each is refused
//! with an error that names where it is, and no error or Debug output shows a secret.
//!
//! Crashes found by the `config_parse` fuzz target are added here with the crashing input.

use mcp_auth_core::config::Config;
use mcp_auth_core::testing::{exchange_config_doc, RESOURCE};
use serde_json::{json, Value};

#[test]
fn hostile_configurations_are_refused_with_a_path_and_never_echo_the_secret() {
    let base = exchange_config_doc();
    let secret = "top-secret-value-\u{1F511}";
    let env = |name: &str| (name == "SECRET").then(|| secret.to_string());
    assert!(Config::from_json_with_env(base.to_string().as_bytes(), &env).is_ok());
    let set = |pointer: &str, value: Value| {
        let mut doc = base.clone();
        let (parent, name) = pointer.rsplit_once('/').expect("a pointer");
        let target = doc.pointer_mut(parent).expect("parent exists");
        target[name] = value;
        doc
    };
    let remote = "/providers/idp/remote_jwks";
    let mut cases = vec![
        set("/resource", json!("not a url")),
        set("/resource", json!("https://user:pw@mcp.example.com/mcp")),
        set("/resource", json!("https://mcp.example.com/mcp#frag")),
        set("/resource", json!("https://mcp.example.com:0/mcp")),
        set("/resource", json!("https://mcp.example.com:65536/mcp")),
        set("/resource", json!("https://[::1/mcp")),
        set("/resource", json!("https://mcp.example.com/m cp")),
        set("/resource", json!(7)),
        set(&format!("{remote}/http_uri/timeout"), json!("-1s")),
        set(&format!("{remote}/http_uri/timeout"), json!("1e3s")),
        set(&format!("{remote}/http_uri/timeout"), json!("NaNs")),
        set(&format!("{remote}/http_uri/timeout"), json!("infs")),
        set(&format!("{remote}/http_uri/timeout"), json!("1..5s")),
        set(
            &format!("{remote}/http_uri/timeout"),
            json!("999999999999999999999h"),
        ),
        set(&format!("{remote}/http_uri/timeout"), json!("61s")),
        set(&format!("{remote}/http_uri/timeout"), json!("0s")),
        set(&format!("{remote}/cache_duration"), json!("5")),
        set("/providers/idp/clock_skew_seconds", json!(-1)),
        set("/providers/idp/clock_skew_seconds", json!(1e30)),
        set("/providers/idp/clock_skew_seconds", json!(1.5)),
        set("/providers/idp/clock_skew_seconds", json!(3601)),
        set(
            "/token_exchange/client_auth/client_secret_env",
            json!("MISSING"),
        ),
        set(
            "/token_exchange/token_endpoint/uri",
            json!("https://sts.example.com/token\r\nx: y"),
        ),
    ];
    // Security review: a bypass path is matched only against plain request paths, so one that
    // is not plain itself is a configuration error now (it could never match, or would invite
    // encoded variants).
    for path in [
        "/public/../mcp",
        "/public/%2e%2e/",
        "/public;/",
        "/public\\",
        "//public/",
        "/caf\u{e9}",
        "/healthz#x",
    ] {
        cases.push(set("/bypass_paths", json!([{ "prefix": path }])));
    }
    let mut deep = base.clone();
    deep["resource_name"] =
        serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100)))
            .unwrap_or(Value::Null);
    cases.push(deep);
    let mut unknown = base.clone();
    unknown["providers"]["idp"]["remote_jwks"]["cache_durationn"] = json!("5s");
    cases.push(unknown);
    for doc in cases {
        let e = Config::from_json_with_env(doc.to_string().as_bytes(), &env)
            .expect_err(&doc.to_string());
        assert!(!e.path.is_empty(), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains(secret) && !text.contains("top-secret"),
            "{text}"
        );
    }
    for bytes in [
        b"".to_vec(),
        b"null".to_vec(),
        vec![0xff; 10],
        format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
    ] {
        assert!(Config::from_json_with_env(&bytes, &env).is_err());
    }
    // The secret never shows in the configuration's Debug output.
    let config = Config::from_json_with_env(base.to_string().as_bytes(), &env).expect("config");
    assert!(!format!("{config:?}").contains("top-secret"));
    assert_eq!(config.resource, RESOURCE);
}
