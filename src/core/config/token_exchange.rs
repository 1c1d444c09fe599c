//! `token_exchange`: RFC 8693 exchange of the client's token at an STS, for the token that goes
//! upstream.

use std::fmt;
use std::time::Duration;

use super::callout::Endpoint;
use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::grammar::{check_scope_token, is_http_token, is_visible_ascii, token_type_urn};
use super::reader::Obj;
use super::url::{parse_http_url, HttpTarget};

/// RFC 8693 token exchange at an STS, for the token that goes upstream.
#[derive(Debug, Clone)]
pub struct TokenExchangeConfig {
    pub cluster: String,
    pub endpoint: HttpTarget,
    pub timeout: Duration,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    /// Full URN, e.g. `urn:ietf:params:oauth:token-type:access_token`.
    pub subject_token_type: String,
    pub requested_token_type: String,
    pub client_auth: ClientAuth,
    pub extra_params: Vec<(String, String)>,
    pub upstream_header: String,
    pub upstream_prefix: String,
    pub accepted_token_types: Vec<String>,
    pub cache_max_entries: usize,
    pub expiry_margin: Duration,
    pub default_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the url-encoded id and secret (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: Secret },
    /// `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: Secret },
    /// No client authentication (Google STS); `client_id` sent when given.
    None { client_id: Option<String> },
}

/// A secret read from the VM's environment. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Form fields the filter sets itself; `extra_params` may not override them.
const EXCHANGE_FIELDS: [&str; 10] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "audience",
    "scope",
    "resource",
    "client_id",
    "client_secret",
    "actor_token",
];

const MAX_CACHE_ENTRIES: usize = 1_000_000;

/// Reads `token_exchange`; `env` reads the VM's environment, where the client secret lives.
pub(super) fn read_token_exchange(
    mut o: Obj,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TokenExchangeConfig, ConfigError> {
    let token_endpoint = o.object("token_endpoint")?;
    let audience = o.string("audience")?;
    let scopes = o.strings("scopes")?.unwrap_or_default();
    let resource = o.string("resource")?;
    let subject_token_type = o.string("subject_token_type")?;
    let requested_token_type = o.string("requested_token_type")?;
    let client_auth = o.object_or_empty("client_auth")?;
    let extra_params = o.string_entries("extra_params")?;
    let upstream_header = o.object_or_empty("upstream_header")?;
    let accepted_token_types = o.strings("accepted_token_types")?;
    let cache = o.object_or_empty("cache")?;
    o.finish()?;

    let token_endpoint = token_endpoint.ok_or_else(|| err(o.at("token_endpoint"), "required"))?;
    let endpoint = Endpoint::read(token_endpoint)?;
    if audience.is_none() && resource.is_none() {
        return Err(err(
            o.path(),
            "give audience or resource: the STS must know what the token is for",
        ));
    }
    if let Some(a) = &audience {
        if !is_visible_ascii(a) {
            return Err(err(o.at("audience"), "must be non-empty printable ASCII"));
        }
    }
    if let Some(r) = &resource {
        parse_http_url(&o.at("resource"), r)?;
    }
    for (i, s) in scopes.iter().enumerate() {
        check_scope_token(&o.at(&format!("scopes[{i}]")), s)?;
    }
    let subject_token_type = token_type_urn(&o.at("subject_token_type"), subject_token_type)?;
    let requested_token_type = token_type_urn(&o.at("requested_token_type"), requested_token_type)?;
    let client_auth = read_client_auth(client_auth, env)?;
    if let Some((name, _)) = extra_params
        .iter()
        .find(|(name, _)| EXCHANGE_FIELDS.contains(&name.as_str()))
    {
        return Err(err(
            o.at(&format!("extra_params.{name}")),
            "set by the filter; cannot be overridden",
        ));
    }
    let upstream = read_upstream_header(upstream_header)?;
    let accepted_token_types = accepted_token_types.unwrap_or_else(|| vec!["Bearer".into()]);
    if accepted_token_types.is_empty() {
        return Err(err(o.at("accepted_token_types"), "must not be empty"));
    }
    let cache = read_cache(cache)?;
    Ok(TokenExchangeConfig {
        cluster: endpoint.callout.cluster,
        endpoint: endpoint.target,
        timeout: endpoint.callout.timeout,
        audience,
        scopes,
        resource,
        subject_token_type,
        requested_token_type,
        client_auth,
        extra_params,
        upstream_header: upstream.name,
        upstream_prefix: upstream.prefix,
        accepted_token_types,
        cache_max_entries: cache.max_entries,
        expiry_margin: cache.expiry_margin,
        default_ttl: cache.default_ttl,
    })
}

/// `client_auth`: how the filter authenticates to the STS (default `client_secret_basic`).
fn read_client_auth(
    mut o: Obj,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientAuth, ConfigError> {
    let method = o.string("method")?;
    let client_id = o.string("client_id")?;
    let client_secret_env = o.string("client_secret_env")?;
    o.finish()?;

    let method = method.unwrap_or_else(|| "client_secret_basic".into());
    match method.as_str() {
        "client_secret_basic" | "client_secret_post" => {
            let client_id = client_id
                .filter(|c| !c.is_empty())
                .ok_or_else(|| err(o.at("client_id"), format!("required with {method}")))?;
            let var = client_secret_env.filter(|v| !v.is_empty()).ok_or_else(|| {
                err(
                    o.at("client_secret_env"),
                    "required: the name of the VM environment variable holding the secret",
                )
            })?;
            let secret = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
                err(
                    o.at("client_secret_env"),
                    format!(
                        "environment variable {var} is not set in the VM \
                         (Envoy vm_config.environment_variables, Istio vmConfig.env)"
                    ),
                )
            })?;
            let secret = Secret(secret);
            Ok(if method == "client_secret_basic" {
                ClientAuth::Basic { client_id, secret }
            } else {
                ClientAuth::Post { client_id, secret }
            })
        }
        "none" => match client_secret_env {
            Some(_) => Err(err(o.at("client_secret_env"), "not used with method none")),
            None => Ok(ClientAuth::None { client_id }),
        },
        _ => Err(err(
            o.at("method"),
            "client_secret_basic, client_secret_post or none",
        )),
    }
}

/// The request header the exchanged token goes upstream in.
struct UpstreamHeader {
    /// Lowercase.
    name: String,
    /// Written before the token (`Bearer ` for `authorization`).
    prefix: String,
}

fn read_upstream_header(mut o: Obj) -> Result<UpstreamHeader, ConfigError> {
    let name = o.string("name")?;
    let prefix = o.string("prefix")?;
    o.finish()?;

    let name = name
        .unwrap_or_else(|| "authorization".into())
        .to_ascii_lowercase();
    if !is_http_token(&name) || matches!(name.as_str(), "host" | "content-length" | "cookie") {
        return Err(err(o.at("name"), "not a header that can carry a token"));
    }
    let prefix = prefix.unwrap_or_else(|| {
        if name == "authorization" {
            "Bearer ".into()
        } else {
            String::new()
        }
    });
    if prefix.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(err(o.at("prefix"), "must not contain control characters"));
    }
    Ok(UpstreamHeader { name, prefix })
}

/// `cache`: how many exchanged tokens are kept and for how long.
struct ExchangeCache {
    max_entries: usize,
    expiry_margin: Duration,
    default_ttl: Duration,
}

fn read_cache(mut o: Obj) -> Result<ExchangeCache, ConfigError> {
    let max_entries = o
        .number("max_entries")?
        .map_or(10_000, |n| n.min(usize::MAX as u64) as usize);
    let expiry_margin = duration_at_least(
        &mut o,
        "expiry_margin",
        Duration::from_secs(30),
        Duration::ZERO,
    )?;
    let default_ttl = duration_at_least(
        &mut o,
        "default_ttl",
        Duration::from_secs(300),
        Duration::from_secs(1),
    )?;
    o.finish()?;
    if max_entries > MAX_CACHE_ENTRIES {
        return Err(err(o.at("max_entries"), "at most 1000000"));
    }
    Ok(ExchangeCache {
        max_entries,
        expiry_margin,
        default_ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use super::super::Config;
    use super::*;

    fn with_exchange(exchange: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        v["token_exchange"] = exchange;
        v
    }

    #[test]
    fn token_exchange_reads_the_secret_from_the_environment() {
        let v = with_exchange(serde_json::json!({
            "token_endpoint": {"uri": "https://as.example.com/token", "cluster": "as"},
            "audience": "backend",
            "scopes": ["backend-api:read"],
            "client_auth": {"client_id": "filter", "client_secret_env": "STS_SECRET"}
        }));
        let env = |k: &str| (k == "STS_SECRET").then(|| "hunter2".to_string());
        let c = Config::from_json_with_env(v.to_string().as_bytes(), &env).unwrap();
        let t = c.token_exchange.as_ref().unwrap();
        assert_eq!(
            t.client_auth,
            ClientAuth::Basic {
                client_id: "filter".into(),
                secret: Secret("hunter2".into())
            }
        );
        assert_eq!(
            t.subject_token_type,
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert_eq!(
            (t.upstream_header.as_str(), t.upstream_prefix.as_str()),
            ("authorization", "Bearer ")
        );
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "Debug must not show the secret"
        );

        let e = Config::from_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, "token_exchange.client_auth.client_secret_env");
        assert!(e.problem.contains("STS_SECRET"), "{e}");
    }

    #[test]
    fn token_exchange_errors_name_the_field() {
        let cases = [
            (
                serde_json::json!({"audience": "b"}),
                "token_exchange.token_endpoint",
            ),
            (
                serde_json::json!({"token_endpoint": {"uri": "https://as/t", "cluster": "as"},
                                   "client_auth": {"method": "none"}}),
                "token_exchange",
            ),
            (
                serde_json::json!({"token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b",
                                   "client_auth": {"method": "private_key_jwt"}}),
                "token_exchange.client_auth.method",
            ),
            (
                serde_json::json!({"token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b",
                                   "client_auth": {"method": "none"}, "extra_params": {"scope": "x"}}),
                "token_exchange.extra_params.scope",
            ),
            (
                serde_json::json!({"token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b",
                                   "client_auth": {"method": "none"}, "subject_token_type": "cookie"}),
                "token_exchange.subject_token_type",
            ),
            (
                serde_json::json!({"token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b",
                                   "client_auth": {"method": "none", "client_secret_env": "X"}}),
                "token_exchange.client_auth.client_secret_env",
            ),
        ];
        for (exchange, path) in cases {
            let e = load(&with_exchange(exchange)).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
    }

    #[test]
    fn exchanged_token_header_is_stripped_from_client_requests() {
        let v = with_exchange(serde_json::json!({
            "token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b",
            "client_auth": {"method": "none"}, "upstream_header": {"name": "X-Backend-Token"}
        }));
        let c = load(&v).unwrap();
        let t = c.token_exchange.as_ref().unwrap();
        assert_eq!(
            (t.upstream_header.as_str(), t.upstream_prefix.as_str()),
            ("x-backend-token", "")
        );
        assert!(c.stripped_headers.contains(&"x-backend-token".to_string()));
        assert!(c.stripped_headers.contains(&"authorization".to_string()));
    }

    #[test]
    fn an_absent_client_auth_means_client_secret_basic() {
        let v = with_exchange(serde_json::json!({
            "token_endpoint": {"uri": "https://as/t", "cluster": "as"}, "audience": "b"
        }));
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "token_exchange.client_auth.client_id");
        assert_eq!(e.problem, "required with client_secret_basic");
    }

    #[test]
    fn cache_and_header_defaults_and_limits() {
        let exchange = serde_json::json!({
            "token_endpoint": {"uri": "https://as/t", "cluster": "as", "timeout": "2s"},
            "resource": "https://backend.example.com/",
            "client_auth": {"method": "none"}
        });
        let c = load(&with_exchange(exchange.clone())).unwrap();
        let t = c.token_exchange.as_ref().unwrap();
        assert_eq!(
            (t.cluster.as_str(), t.endpoint.path.as_str(), t.timeout),
            ("as", "/t", Duration::from_secs(2))
        );
        assert_eq!(t.accepted_token_types, vec!["Bearer"]);
        assert_eq!(
            (t.cache_max_entries, t.expiry_margin, t.default_ttl),
            (10_000, Duration::from_secs(30), Duration::from_secs(300))
        );
        for (field, value, path) in [
            (
                "cache",
                serde_json::json!({"max_entries": 1_000_001}),
                "token_exchange.cache.max_entries",
            ),
            (
                "cache",
                serde_json::json!({"default_ttl": "0s"}),
                "token_exchange.cache.default_ttl",
            ),
            (
                "upstream_header",
                serde_json::json!({"name": "Cookie"}),
                "token_exchange.upstream_header.name",
            ),
            (
                "upstream_header",
                serde_json::json!({"prefix": "a\nb"}),
                "token_exchange.upstream_header.prefix",
            ),
            (
                "accepted_token_types",
                serde_json::json!([]),
                "token_exchange.accepted_token_types",
            ),
        ] {
            let mut exchange = exchange.clone();
            exchange[field] = value;
            assert_eq!(load(&with_exchange(exchange)).unwrap_err().path, path);
        }
    }
}
