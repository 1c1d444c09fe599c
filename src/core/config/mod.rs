//! Plugin configuration: the JSON document Envoy passes as `configuration` (Istio: `pluginConfig`).
//!
//! serde_json parses the bytes into a `Value`, nothing more; [`reader`] then walks that value one
//! object at a time, and each concern below reads its own objects straight into the validated
//! [`Config`], whose invariants the rest of the filter relies on. Unknown fields are errors (a
//! typo is never silently ignored), and every error names the field's path, e.g.
//! `providers.okta.remote_jwks.http_uri.uri: not an http(s) URL`.

mod callout;
mod client_auth;
mod duration;
mod error;
mod grammar;
mod introspection;
mod key_source;
mod mcp;
mod metadata;
mod paths;
mod provider;
mod reader;
mod token_exchange;
mod url;

#[cfg(test)]
mod fixtures;

pub use client_auth::{ClientAuth, Secret};
pub use duration::parse_duration;
pub use error::ConfigError;
pub use introspection::IntrospectionConfig;
pub use key_source::{Discovery, FetchTarget, KeySource, RemoteKeys};
pub use mcp::{
    ClaimCondition, ClaimTest, ExchangeOverride, McpConfig, McpRule, NamedMethod, RuleAction,
    DEFAULT_RULE,
};
pub use metadata::PRM_WELL_KNOWN;
pub use paths::PathMatch;
pub use provider::{ClaimToHeader, Provider};
pub use token_exchange::{Grant, TokenExchangeConfig};
pub use url::{http_target, HttpTarget, HttpUrl, UrlError};

use error::err;
use reader::Obj;

#[derive(Debug, Clone)]
pub struct Config {
    /// Canonical URL of the protected MCP resource (RFC 9728 `resource`).
    pub resource: String,
    pub resource_name: Option<String>,
    /// Path of the path-inserted metadata URL (`/.well-known/oauth-protected-resource/mcp`).
    pub resource_metadata_path: String,
    /// Absolute metadata URL advertised in `WWW-Authenticate: Bearer resource_metadata="…"`.
    pub resource_metadata_url: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub required_scopes: Vec<String>,
    pub bypass_paths: Vec<PathMatch>,
    pub bypass_cors_preflight: bool,
    pub jwt_cache_size: usize,
    pub max_token_bytes: usize,
    pub providers: Vec<Provider>,
    /// Request headers removed before anything goes upstream: `authorization` and every header
    /// the filter itself sets (from claims, or the exchanged token), so a client cannot spoof them.
    pub stripped_headers: Vec<String>,
    pub token_exchange: Option<TokenExchangeConfig>,
    /// Authorization per MCP operation (`mcp`); `None`: authentication only.
    pub mcp: Option<McpConfig>,
    /// What the filter logs at load without refusing the configuration (e.g. a plain-HTTP URI
    /// to another host).
    pub warnings: Vec<String>,
}

const DEFAULT_JWT_CACHE_SIZE: usize = 10_000;
const MAX_JWT_CACHE_SIZE: usize = 1_000_000;
const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

impl Config {
    /// Parses and validates the plugin configuration document, with no environment.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json_with_env(bytes, &|_| None)
    }

    /// Parses and validates the plugin configuration; `env` reads the VM's environment
    /// variables (where secrets live, never in the document itself).
    pub fn from_json_with_env(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| err("", format!("not JSON ({e})")))?;
        read_config(Obj::root(&doc)?, env)
    }

    pub fn provider_for_issuer(&self, issuer: &str) -> Option<(ProviderId, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == issuer)
            .map(|(i, p)| (ProviderId(i), p))
    }

    pub fn provider(&self, id: ProviderId) -> Option<&Provider> {
        self.providers.get(id.0)
    }
}

/// A provider's position in [`Config::providers`] (configuration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub usize);

impl ProviderId {
    /// Every provider of a configuration with `count` providers.
    pub fn all(count: usize) -> impl Iterator<Item = ProviderId> {
        (0..count).map(ProviderId)
    }
}

fn read_config(mut o: Obj, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let resource = o.string("resource")?;
    let resource_name = o.string("resource_name")?;
    let authorization_servers = o.strings("authorization_servers")?;
    let scopes_supported = o.strings("scopes_supported")?;
    let required_scopes = o.strings("required_scopes")?.unwrap_or_default();
    let bypass_paths = o.objects("bypass_paths")?;
    let bypass_cors_preflight = o.boolean("bypass_cors_preflight")?.unwrap_or(true);
    let jwt_cache_config = o.object_or_empty("jwt_cache_config")?;
    let max_token_bytes = o.number("max_token_bytes")?;
    let providers = o.entries("providers")?;
    let token_exchange = o.object("token_exchange")?;
    let mcp = o.object("mcp")?;
    o.finish()?;

    let resource = metadata::resource(&o.at("resource"), resource)?;
    let providers = provider::read_providers(&o.at("providers"), providers, &resource.url, env)?;
    let authorization_servers = metadata::authorization_servers(
        &o.at("authorization_servers"),
        authorization_servers,
        &providers,
    )?;
    let scopes_supported = metadata::scopes_supported(scopes_supported, &required_scopes)?;

    let bypass_paths = bypass_paths
        .into_iter()
        .map(paths::read_path_match)
        .collect::<Result<_, _>>()?;
    let jwt_cache_size = jwt_cache_size(jwt_cache_config)?;
    let max_token_bytes = max_token_bytes.map_or(DEFAULT_MAX_TOKEN_BYTES, |n| {
        n.min(usize::MAX as u64) as usize
    });
    if !(1024..=1024 * 1024).contains(&max_token_bytes) {
        return Err(err(
            o.at("max_token_bytes"),
            "must be between 1024 and 1048576",
        ));
    }

    let token_exchange = token_exchange
        .map(|t| token_exchange::read_token_exchange(t, env))
        .transpose()?;
    let mcp = mcp.map(mcp::read_mcp).transpose()?;
    if let Some(m) = &mcp {
        mcp::check_exchange_use(&o.at("mcp"), m, token_exchange.is_some())?;
    }

    Ok(Config {
        warnings: plain_http_warnings(&providers, token_exchange.as_ref()),
        stripped_headers: stripped_headers(&providers, token_exchange.as_ref(), mcp.is_some()),
        resource: resource.url,
        resource_name,
        resource_metadata_path: resource.metadata_path,
        resource_metadata_url: resource.metadata_url,
        authorization_servers,
        scopes_supported,
        required_scopes,
        bypass_paths,
        bypass_cors_preflight,
        jwt_cache_size,
        max_token_bytes,
        providers,
        token_exchange,
        mcp,
    })
}

/// `authorization` and every header the filter sets itself, so a client cannot spoof them.
/// With the MCP gate, that includes the `Mcp-Method`/`Mcp-Name` mirrors: set from the body the
/// gate read, and never passed on unverified (rate limits key on them).
fn stripped_headers(
    providers: &[Provider],
    token_exchange: Option<&TokenExchangeConfig>,
    mcp_gate: bool,
) -> Vec<String> {
    let mut stripped = vec!["authorization".to_string()];
    let mirrors = [
        crate::mcp::headers::METHOD_HEADER.to_string(),
        crate::mcp::headers::NAME_HEADER.to_string(),
    ];
    let set_by_filter = providers
        .iter()
        .flat_map(|p| p.claim_to_headers.iter().map(|c| &c.header_name))
        .chain(token_exchange.map(|t| &t.upstream_header))
        .chain(mirrors.iter().filter(|_| mcp_gate));
    for name in set_by_filter {
        if !stripped.contains(name) {
            stripped.push(name.clone());
        }
    }
    stripped
}

/// A warning per callout URI that says `http://` to a host other than this machine: TLS is the
/// Envoy cluster's business (its `transport_socket`), never the URI's, so nothing here protects
/// the keys or tokens on the wire.
fn plain_http_warnings(
    providers: &[Provider],
    token_exchange: Option<&TokenExchangeConfig>,
) -> Vec<String> {
    let mut targets: Vec<(String, &HttpTarget)> = providers
        .iter()
        .filter_map(|p| {
            let path = format!("providers.{}", p.name);
            match &p.keys {
                KeySource::Remote(r) => Some(match &r.start {
                    FetchTarget::Jwks(t) => (format!("{path}.remote_jwks.http_uri.uri"), t),
                    FetchTarget::Discovery(d) => (format!("{path}.issuer"), &d.target),
                }),
                KeySource::Introspection(i) => {
                    Some((format!("{path}.introspection.endpoint.uri"), &i.endpoint))
                }
                KeySource::Local(_) => None,
            }
        })
        .collect();
    if let Some(t) = token_exchange {
        targets.push(("token_exchange.token_endpoint.uri".into(), &t.endpoint));
    }
    targets
        .into_iter()
        .filter(|(_, t)| HttpUrl::parse(&t.origin).is_ok_and(|u| u.is_plain_http_off_loopback()))
        .map(|(path, t)| {
            format!(
                "{path}: {} is plain http to another host; whether the callout uses TLS is \
                 decided by its Envoy cluster (give it a TLS transport_socket)",
                t.origin
            )
        })
        .collect()
}

fn jwt_cache_size(mut o: Obj) -> Result<usize, ConfigError> {
    let size = o
        .number("jwt_cache_size")?
        .map_or(DEFAULT_JWT_CACHE_SIZE, |n| {
            n.min(usize::MAX as u64) as usize
        });
    o.finish()?;
    if size > MAX_JWT_CACHE_SIZE {
        return Err(err(o.at("jwt_cache_size"), "at most 1000000"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::fixtures::{base, load};
    use super::*;
    use std::time::Duration;

    #[test]
    fn plain_http_to_another_host_is_a_warning_not_an_error() {
        let mut v = base();
        v["providers"]["okta"]["remote_jwks"]["http_uri"]["uri"] =
            "http://idp.example.com/keys".into();
        let c = load(&v).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("providers.okta.remote_jwks.http_uri.uri: "));
        v["providers"]["okta"]["remote_jwks"]["http_uri"]["uri"] =
            "http://127.0.0.1:9000/keys".into();
        assert!(load(&v).unwrap().warnings.is_empty());
        assert!(
            load(&base()).unwrap().warnings.is_empty(),
            "https: no warning"
        );
    }

    #[test]
    fn valid_config_gets_defaults_and_derived_urls() {
        let c = load(&base()).unwrap();
        assert_eq!(
            c.resource_metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            c.resource_metadata_path,
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            c.authorization_servers,
            vec!["https://idp.example.com/oauth2/default"]
        );
        assert_eq!(c.scopes_supported, vec!["mcp:tools:call"]);
        let p = &c.providers[0];
        assert_eq!(p.audiences, vec!["https://mcp.example.com/mcp"]);
        assert_eq!(p.clock_skew_seconds, 60);
        assert_eq!(p.claim_to_headers[0].header_name, "x-user");
        match &p.keys {
            KeySource::Remote(r) => {
                assert_eq!(r.cluster, "okta");
                assert_eq!(r.timeout, Duration::from_secs(2));
                assert_eq!(r.cache_duration, Duration::from_secs(300));
                assert_eq!(r.failed_refetch_duration, Duration::from_secs(1));
                assert_eq!(
                    r.start,
                    FetchTarget::Jwks(HttpTarget {
                        origin: "https://idp.example.com".into(),
                        authority: "idp.example.com".into(),
                        path: "/oauth2/default/v1/keys".into()
                    })
                );
            }
            other => panic!("expected remote keys, got {other:?}"),
        }
        assert_eq!(c.stripped_headers, vec!["authorization", "x-user"]);
    }

    #[test]
    fn errors_name_the_field_path() {
        let mut v = base();
        v["providers"]["okta"]["remote_jwks"]["http_uri"]["uri"] = "not a url".into();
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "providers.okta.remote_jwks.http_uri.uri");

        let mut v = base();
        v["providers"]["okta"]["remote_jwks"]["http_uri"]["timeout"] = "soon".into();
        assert_eq!(
            load(&v).unwrap_err().path,
            "providers.okta.remote_jwks.http_uri.timeout"
        );

        let mut v = base();
        v.as_object_mut().unwrap().remove("resource");
        assert_eq!(load(&v).unwrap_err().path, "resource");

        let mut v = base();
        v["providers"]["okta"]["audiencez"] = serde_json::json!(["x"]);
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "providers.okta.audiencez");
        assert!(e.problem.contains("unknown field"), "{e}");

        let mut v = base();
        v["providers"]["okta"]["clock_skew_seconds"] = "60".into();
        assert_eq!(
            load(&v).unwrap_err().path,
            "providers.okta.clock_skew_seconds"
        );

        let mut v = base();
        v["required_scopes"] = serde_json::json!(["has space"]);
        assert_eq!(load(&v).unwrap_err().path, "required_scopes[0]");

        let mut v = base();
        v["scopes_supported"] = serde_json::json!(["other"]);
        assert_eq!(load(&v).unwrap_err().path, "required_scopes[0]");

        let mut v = base();
        v["providers"]["okta"]["claim_to_headers"][0]["header_name"] = "authorization".into();
        assert_eq!(
            load(&v).unwrap_err().path,
            "providers.okta.claim_to_headers[0].header_name"
        );

        let mut v = base();
        v["bypass_paths"] = serde_json::json!([{"exact": "healthz"}]);
        assert_eq!(load(&v).unwrap_err().path, "bypass_paths[0]");
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(Config::from_json(b"{").is_err());
        assert!(Config::from_json(b"").is_err());
        assert!(Config::from_json(b"[]").is_err());
    }

    /// A document with every object the configuration has, each with fields set.
    fn full() -> serde_json::Value {
        use crate::testing::{ec256_jwk, es256, jwks};
        let local_keys = String::from_utf8(jwks(vec![ec256_jwk(es256(), "k")])).unwrap();
        serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "resource_name": "MCP",
            "authorization_servers": ["https://idp.example.com"],
            "scopes_supported": ["a", "b"],
            "required_scopes": ["a"],
            "bypass_paths": [{"exact": "/healthz"}, {"prefix": "/public/"}],
            "bypass_cors_preflight": false,
            "jwt_cache_config": {"jwt_cache_size": 100},
            "max_token_bytes": 4096,
            "providers": {
                "jwks": {
                    "issuer": "https://idp.example.com",
                    "audiences": ["x"],
                    "remote_jwks": {
                        "http_uri": {"uri": "https://idp.example.com/keys", "cluster": "idp"},
                        "cache_duration": "60s"
                    },
                    "clock_skew_seconds": 5,
                    "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
                },
                "discovery": {
                    "issuer": "https://other.example.com",
                    "oidc_discovery": {"cluster": "other", "timeout": "2s"}
                },
                "local": {
                    "issuer": "https://local.example.com",
                    "local_jwks": {"inline_string": local_keys}
                }
            },
            "token_exchange": {
                "token_endpoint": {"uri": "https://sts.example.com/token", "cluster": "sts"},
                "audience": "backend",
                "client_auth": {"method": "client_secret_post", "client_id": "c",
                                "client_secret_env": "SECRET"},
                "extra_params": {"foo": "bar"},
                "upstream_header": {"name": "x-token"},
                "cache": {"max_entries": 10}
            }
        })
    }

    #[test]
    fn every_object_rejects_a_key_it_does_not_know() {
        let env = |name: &str| (name == "SECRET").then(|| "s".to_string());
        let read =
            |v: &serde_json::Value| Config::from_json_with_env(v.to_string().as_bytes(), &env);
        assert!(read(&full()).is_ok());
        for (object, path) in [
            ("", "zz"),
            ("/bypass_paths/1", "bypass_paths[1].zz"),
            ("/jwt_cache_config", "jwt_cache_config.zz"),
            ("/providers/jwks", "providers.jwks.zz"),
            (
                "/providers/jwks/remote_jwks",
                "providers.jwks.remote_jwks.zz",
            ),
            (
                "/providers/jwks/remote_jwks/http_uri",
                "providers.jwks.remote_jwks.http_uri.zz",
            ),
            (
                "/providers/jwks/claim_to_headers/0",
                "providers.jwks.claim_to_headers[0].zz",
            ),
            (
                "/providers/discovery/oidc_discovery",
                "providers.discovery.oidc_discovery.zz",
            ),
            (
                "/providers/local/local_jwks",
                "providers.local.local_jwks.zz",
            ),
            ("/token_exchange", "token_exchange.zz"),
            (
                "/token_exchange/token_endpoint",
                "token_exchange.token_endpoint.zz",
            ),
            (
                "/token_exchange/client_auth",
                "token_exchange.client_auth.zz",
            ),
            (
                "/token_exchange/upstream_header",
                "token_exchange.upstream_header.zz",
            ),
            ("/token_exchange/cache", "token_exchange.cache.zz"),
        ] {
            let mut v = full();
            v.pointer_mut(object).unwrap()["zz"] = serde_json::json!(1);
            let e = read(&v).unwrap_err();
            assert_eq!(e.path, path);
            assert!(
                e.problem.starts_with("unknown field, expected one of: "),
                "{e}"
            );
        }
    }

    #[test]
    fn an_unknown_field_lists_the_fields_of_its_object() {
        let mut v = base();
        v["jwt_cache_config"] = serde_json::json!({"size": 5});
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "jwt_cache_config.size: unknown field, expected one of: jwt_cache_size"
        );
        let mut v = base();
        v["resourse"] = v["resource"].take();
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "resourse: unknown field, expected one of: resource, resource_name, \
             authorization_servers, scopes_supported, required_scopes, bypass_paths, \
             bypass_cors_preflight, jwt_cache_config, max_token_bytes, providers, token_exchange, \
             mcp"
        );
    }
}
