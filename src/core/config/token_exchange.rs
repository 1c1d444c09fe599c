//! `token_exchange`: RFC 8693 exchange of the client's token at an STS, for the token that goes
//! upstream.

use std::time::Duration;

use super::callout::Endpoint;
use super::client_auth::{read_client_auth, ClientAuth};
use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::grammar::{check_scope_token, is_http_token, is_visible_ascii, token_type_urn};
use super::reader::Obj;
use super::url::{parse_http_url, HttpTarget};

/// Which grant asks the STS for the backend token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// RFC 8693 token exchange (Okta, Keycloak, Auth0, Google STS).
    TokenExchange,
    /// Microsoft Entra ID's OAuth 2.0 on-behalf-of flow: the jwt-bearer grant with
    /// `requested_token_use=on_behalf_of` (Entra does not implement RFC 8693).
    JwtBearerObo,
}

/// RFC 8693 token exchange at an STS, for the token that goes upstream.
#[derive(Debug, Clone)]
pub struct TokenExchangeConfig {
    pub grant: Grant,
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

/// Form fields the filter sets itself; `extra_params` may not override them.
const EXCHANGE_FIELDS: [&str; 13] = [
    "assertion",
    "requested_token_use",
    "client_assertion",
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
    let grant = o.string("grant")?;
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
    let grant = match grant.as_deref() {
        None | Some("token_exchange") => Grant::TokenExchange,
        Some("jwt_bearer_obo") => Grant::JwtBearerObo,
        Some(_) => return Err(err(o.at("grant"), "token_exchange or jwt_bearer_obo")),
    };
    match grant {
        Grant::TokenExchange if audience.is_none() && resource.is_none() => {
            return Err(err(
                o.path(),
                "give audience or resource: the STS must know what the token is for",
            ));
        }
        Grant::JwtBearerObo => {
            // On-behalf-of names the backend by scope (`api://backend/.default`) only.
            for (field, given) in [
                ("audience", audience.is_some()),
                ("resource", resource.is_some()),
                ("subject_token_type", subject_token_type.is_some()),
                ("requested_token_type", requested_token_type.is_some()),
            ] {
                if given {
                    return Err(err(o.at(field), "not used with grant jwt_bearer_obo"));
                }
            }
            if scopes.is_empty() {
                return Err(err(
                    o.at("scopes"),
                    "required with jwt_bearer_obo (e.g. api://backend/.default)",
                ));
            }
        }
        Grant::TokenExchange => {}
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
    if grant == Grant::JwtBearerObo && matches!(client_auth, ClientAuth::None { .. }) {
        return Err(err(
            o.at("client_auth.method"),
            "on-behalf-of needs client_secret_basic or client_secret_post",
        ));
    }
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
        grant,
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
    use crate::config::Secret;
    use serde_json::json;

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
    fn on_behalf_of_names_the_backend_by_scope_and_authenticates_the_client() {
        let obo = |extra: serde_json::Value| {
            let mut t = json!({
                "grant": "jwt_bearer_obo",
                "token_endpoint": {"uri": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
                                   "cluster": "entra"},
                "scopes": ["api://backend/.default"],
                "client_auth": {"method": "client_secret_post", "client_id": "c",
                                "client_secret_env": "S"}
            });
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            let env = |k: &str| (k == "S").then(|| "secret".to_string());
            Config::from_json_with_env(with_exchange(t).to_string().as_bytes(), &env)
        };
        let c = obo(json!({})).unwrap();
        assert_eq!(c.token_exchange.unwrap().grant, Grant::JwtBearerObo);
        for (extra, path) in [
            (json!({"audience": "x"}), "token_exchange.audience"),
            (
                json!({"subject_token_type": "jwt"}),
                "token_exchange.subject_token_type",
            ),
            (json!({"scopes": []}), "token_exchange.scopes"),
            (
                json!({"client_auth": {"method": "none"}}),
                "token_exchange.client_auth.method",
            ),
            (json!({"grant": "saml"}), "token_exchange.grant"),
        ] {
            assert_eq!(obo(extra.clone()).unwrap_err().path, path, "{extra}");
        }
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
