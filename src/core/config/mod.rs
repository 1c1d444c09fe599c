//! Plugin configuration: the JSON document Envoy passes as `configuration` (Istio: `pluginConfig`).
//!
//! Parsing happens in two steps: serde reads the raw document (unknown fields are errors, so a
//! typo is caught), then `validate` turns it into a [`Config`] whose invariants the rest of the
//! filter relies on. Every error names the field's path, e.g.
//! `providers.okta.remote_jwks.http_uri.uri: not an http(s) URL`.

mod reader;

use std::fmt;
use std::time::Duration;

use crate::jwks::KeySet;
use reader::Obj;

/// A configuration error: the path of the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

fn err(path: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        problem: problem.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

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
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub clock_skew_seconds: u64,
    pub claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    /// Keys given in the configuration, parsed at load.
    Local(KeySet),
    /// Keys fetched through an Envoy cluster and refreshed in the background.
    Remote(RemoteKeys),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    pub cluster: String,
    /// Where the first fetch goes: the JWKS itself or the issuer's OpenID configuration.
    pub start: FetchTarget,
    pub timeout: Duration,
    pub cache_duration: Duration,
    pub failed_refetch_duration: Duration,
    pub unknown_kid_refetch_interval: Duration,
}

/// An HTTP GET destination for a callout: Envoy needs the `:authority` and `:path` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub authority: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchTarget {
    Jwks(HttpTarget),
    Discovery(HttpTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub header_name: String,
    /// Dotted path into the claims (`sub`, `realm_access.roles`).
    pub claim_path: Vec<String>,
}

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
        let raw = RawConfig::read(&Obj::new(String::new(), &doc)?)?;
        validate(raw, env)
    }

    pub fn provider_for_issuer(&self, issuer: &str) -> Option<(usize, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == issuer)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw document
// ---------------------------------------------------------------------------------------------

struct RawConfig {
    resource: Option<String>,
    resource_name: Option<String>,
    authorization_servers: Option<Vec<String>>,
    scopes_supported: Option<Vec<String>>,
    required_scopes: Vec<String>,
    bypass_paths: Vec<RawPathMatch>,
    bypass_cors_preflight: Option<bool>,
    jwt_cache_config: Option<RawJwtCacheConfig>,
    max_token_bytes: Option<u64>,
    providers: Vec<(String, RawProvider)>,
    token_exchange: Option<RawTokenExchange>,
}

impl RawConfig {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&[
            "resource",
            "resource_name",
            "authorization_servers",
            "scopes_supported",
            "required_scopes",
            "bypass_paths",
            "bypass_cors_preflight",
            "jwt_cache_config",
            "max_token_bytes",
            "providers",
            "token_exchange",
        ])?;
        Ok(RawConfig {
            resource: o.string("resource")?,
            resource_name: o.string("resource_name")?,
            authorization_servers: o.strings("authorization_servers")?,
            scopes_supported: o.strings("scopes_supported")?,
            required_scopes: o.strings("required_scopes")?.unwrap_or_default(),
            bypass_paths: o
                .objects("bypass_paths")?
                .iter()
                .map(RawPathMatch::read)
                .collect::<Result<_, _>>()?,
            bypass_cors_preflight: o.boolean("bypass_cors_preflight")?,
            jwt_cache_config: o
                .object("jwt_cache_config")?
                .map(|c| RawJwtCacheConfig::read(&c))
                .transpose()?,
            max_token_bytes: o.number("max_token_bytes")?,
            providers: o
                .entries("providers")?
                .into_iter()
                .map(|(name, p)| Ok((name, RawProvider::read(&p)?)))
                .collect::<Result<_, ConfigError>>()?,
            token_exchange: o
                .object("token_exchange")?
                .map(|t| RawTokenExchange::read(&t))
                .transpose()?,
        })
    }
}

struct RawTokenExchange {
    token_endpoint: Option<RawHttpUri>,
    audience: Option<String>,
    scopes: Vec<String>,
    resource: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    client_auth: Option<RawClientAuth>,
    extra_params: Vec<(String, String)>,
    upstream_header: Option<RawUpstreamHeader>,
    accepted_token_types: Option<Vec<String>>,
    cache: Option<RawExchangeCache>,
}

impl RawTokenExchange {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&[
            "token_endpoint",
            "audience",
            "scopes",
            "resource",
            "subject_token_type",
            "requested_token_type",
            "client_auth",
            "extra_params",
            "upstream_header",
            "accepted_token_types",
            "cache",
        ])?;
        Ok(RawTokenExchange {
            token_endpoint: o
                .object("token_endpoint")?
                .map(|h| RawHttpUri::read(&h))
                .transpose()?,
            audience: o.string("audience")?,
            scopes: o.strings("scopes")?.unwrap_or_default(),
            resource: o.string("resource")?,
            subject_token_type: o.string("subject_token_type")?,
            requested_token_type: o.string("requested_token_type")?,
            client_auth: o
                .object("client_auth")?
                .map(|c| RawClientAuth::read(&c))
                .transpose()?,
            extra_params: o.string_entries("extra_params")?,
            upstream_header: o
                .object("upstream_header")?
                .map(|h| RawUpstreamHeader::read(&h))
                .transpose()?,
            accepted_token_types: o.strings("accepted_token_types")?,
            cache: o
                .object("cache")?
                .map(|c| RawExchangeCache::read(&c))
                .transpose()?,
        })
    }
}

#[derive(Default)]
struct RawClientAuth {
    method: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
}

impl RawClientAuth {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["method", "client_id", "client_secret_env"])?;
        Ok(RawClientAuth {
            method: o.string("method")?,
            client_id: o.string("client_id")?,
            client_secret_env: o.string("client_secret_env")?,
        })
    }
}

#[derive(Default)]
struct RawUpstreamHeader {
    name: Option<String>,
    prefix: Option<String>,
}

impl RawUpstreamHeader {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["name", "prefix"])?;
        Ok(RawUpstreamHeader {
            name: o.string("name")?,
            prefix: o.string("prefix")?,
        })
    }
}

#[derive(Default)]
struct RawExchangeCache {
    max_entries: Option<u64>,
    expiry_margin: Option<String>,
    default_ttl: Option<String>,
}

impl RawExchangeCache {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["max_entries", "expiry_margin", "default_ttl"])?;
        Ok(RawExchangeCache {
            max_entries: o.number("max_entries")?,
            expiry_margin: o.string("expiry_margin")?,
            default_ttl: o.string("default_ttl")?,
        })
    }
}

struct RawPathMatch {
    exact: Option<String>,
    prefix: Option<String>,
}

impl RawPathMatch {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["exact", "prefix"])?;
        Ok(RawPathMatch {
            exact: o.string("exact")?,
            prefix: o.string("prefix")?,
        })
    }
}

struct RawJwtCacheConfig {
    jwt_cache_size: Option<u64>,
}

impl RawJwtCacheConfig {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["jwt_cache_size"])?;
        Ok(RawJwtCacheConfig {
            jwt_cache_size: o.number("jwt_cache_size")?,
        })
    }
}

struct RawProvider {
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    remote_jwks: Option<RawRemoteJwks>,
    local_jwks: Option<RawLocalJwks>,
    oidc_discovery: Option<RawDiscovery>,
    clock_skew_seconds: Option<u64>,
    claim_to_headers: Vec<RawClaimToHeader>,
}

impl RawProvider {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&[
            "issuer",
            "audiences",
            "remote_jwks",
            "local_jwks",
            "oidc_discovery",
            "clock_skew_seconds",
            "claim_to_headers",
        ])?;
        Ok(RawProvider {
            issuer: o.string("issuer")?,
            audiences: o.strings("audiences")?,
            remote_jwks: o
                .object("remote_jwks")?
                .map(|r| RawRemoteJwks::read(&r))
                .transpose()?,
            local_jwks: o
                .object("local_jwks")?
                .map(|l| RawLocalJwks::read(&l))
                .transpose()?,
            oidc_discovery: o
                .object("oidc_discovery")?
                .map(|d| RawDiscovery::read(&d))
                .transpose()?,
            clock_skew_seconds: o.number("clock_skew_seconds")?,
            claim_to_headers: o
                .objects("claim_to_headers")?
                .iter()
                .map(RawClaimToHeader::read)
                .collect::<Result<_, _>>()?,
        })
    }
}

struct RawRemoteJwks {
    http_uri: Option<RawHttpUri>,
    cache_duration: Option<String>,
    failed_refetch_duration: Option<String>,
    unknown_kid_refetch_interval: Option<String>,
}

impl RawRemoteJwks {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&[
            "http_uri",
            "cache_duration",
            "failed_refetch_duration",
            "unknown_kid_refetch_interval",
        ])?;
        Ok(RawRemoteJwks {
            http_uri: o
                .object("http_uri")?
                .map(|h| RawHttpUri::read(&h))
                .transpose()?,
            cache_duration: o.string("cache_duration")?,
            failed_refetch_duration: o.string("failed_refetch_duration")?,
            unknown_kid_refetch_interval: o.string("unknown_kid_refetch_interval")?,
        })
    }
}

struct RawHttpUri {
    uri: Option<String>,
    cluster: Option<String>,
    timeout: Option<String>,
}

impl RawHttpUri {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["uri", "cluster", "timeout"])?;
        Ok(RawHttpUri {
            uri: o.string("uri")?,
            cluster: o.string("cluster")?,
            timeout: o.string("timeout")?,
        })
    }
}

struct RawLocalJwks {
    inline_string: Option<String>,
    filename: Option<String>,
}

impl RawLocalJwks {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["inline_string", "filename"])?;
        Ok(RawLocalJwks {
            inline_string: o.string("inline_string")?,
            filename: o.string("filename")?,
        })
    }
}

struct RawDiscovery {
    cluster: Option<String>,
    timeout: Option<String>,
    cache_duration: Option<String>,
    failed_refetch_duration: Option<String>,
    unknown_kid_refetch_interval: Option<String>,
}

impl RawDiscovery {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&[
            "cluster",
            "timeout",
            "cache_duration",
            "failed_refetch_duration",
            "unknown_kid_refetch_interval",
        ])?;
        Ok(RawDiscovery {
            cluster: o.string("cluster")?,
            timeout: o.string("timeout")?,
            cache_duration: o.string("cache_duration")?,
            failed_refetch_duration: o.string("failed_refetch_duration")?,
            unknown_kid_refetch_interval: o.string("unknown_kid_refetch_interval")?,
        })
    }
}

struct RawClaimToHeader {
    header_name: Option<String>,
    claim_name: Option<String>,
}

impl RawClaimToHeader {
    fn read(o: &Obj) -> Result<Self, ConfigError> {
        o.only(&["header_name", "claim_name"])?;
        Ok(RawClaimToHeader {
            header_name: o.string("header_name")?,
            claim_name: o.string("claim_name")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
const DEFAULT_FAILED_REFETCH: Duration = Duration::from_secs(1);
const DEFAULT_UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
const DEFAULT_CLOCK_SKEW: u64 = 60;
const DEFAULT_JWT_CACHE_SIZE: usize = 10_000;
const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let resource = raw.resource.ok_or_else(|| {
        err(
            "resource",
            "required: the canonical URL of the MCP resource",
        )
    })?;
    let resource_url = parse_http_url("resource", &resource)?;
    if resource_url.query.is_some() {
        return Err(err("resource", "must not have a query (RFC 9728)"));
    }
    let resource_path = resource_url.path.trim_end_matches('/');
    let resource_metadata_path = format!("{PRM_WELL_KNOWN}{resource_path}");
    let resource_metadata_url = format!("{}{}", resource_url.origin(), resource_metadata_path);

    if raw.providers.is_empty() {
        return Err(err("providers", "at least one provider is required"));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, p) in raw.providers {
        providers.push(validate_provider(&name, p, &resource)?);
    }
    for (i, p) in providers.iter().enumerate() {
        if providers.iter().take(i).any(|q| q.issuer == p.issuer) {
            return Err(err(
                format!("providers.{}.issuer", p.name),
                "another provider has the same issuer (the token's iss selects the provider)",
            ));
        }
    }

    let authorization_servers = match raw.authorization_servers {
        Some(list) => {
            if list.is_empty() {
                return Err(err("authorization_servers", "must not be empty"));
            }
            for (i, s) in list.iter().enumerate() {
                parse_http_url(&format!("authorization_servers[{i}]"), s)?;
            }
            list
        }
        None => providers.iter().map(|p| p.issuer.clone()).collect(),
    };

    for (i, s) in raw.required_scopes.iter().enumerate() {
        check_scope_token(&format!("required_scopes[{i}]"), s)?;
    }
    let scopes_supported = match raw.scopes_supported {
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                check_scope_token(&format!("scopes_supported[{i}]"), s)?;
            }
            for (i, s) in raw.required_scopes.iter().enumerate() {
                if !list.contains(s) {
                    return Err(err(
                        format!("required_scopes[{i}]"),
                        format!("{s:?} is not listed in scopes_supported, so clients cannot discover it"),
                    ));
                }
            }
            list
        }
        None => raw.required_scopes.clone(),
    };

    let mut bypass_paths = Vec::with_capacity(raw.bypass_paths.len());
    for (i, m) in raw.bypass_paths.into_iter().enumerate() {
        let path = format!("bypass_paths[{i}]");
        let matcher = match (m.exact, m.prefix) {
            (Some(p), None) => PathMatch::Exact(p),
            (None, Some(p)) => PathMatch::Prefix(p),
            _ => return Err(err(path, "give exactly one of exact or prefix")),
        };
        let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &matcher;
        if !p.starts_with('/') {
            return Err(err(path, "must start with '/'"));
        }
        bypass_paths.push(matcher);
    }

    let jwt_cache_size = raw
        .jwt_cache_config
        .and_then(|c| c.jwt_cache_size)
        .map_or(DEFAULT_JWT_CACHE_SIZE, |n| {
            n.min(usize::MAX as u64) as usize
        });
    if jwt_cache_size > 1_000_000 {
        return Err(err("jwt_cache_config.jwt_cache_size", "at most 1000000"));
    }
    let max_token_bytes = raw.max_token_bytes.map_or(DEFAULT_MAX_TOKEN_BYTES, |n| {
        n.min(usize::MAX as u64) as usize
    });
    if !(1024..=1024 * 1024).contains(&max_token_bytes) {
        return Err(err("max_token_bytes", "must be between 1024 and 1048576"));
    }

    let token_exchange = raw
        .token_exchange
        .map(|t| validate_token_exchange(t, env))
        .transpose()?;

    let mut stripped_headers = vec!["authorization".to_string()];
    let set_by_filter = providers
        .iter()
        .flat_map(|p| p.claim_to_headers.iter().map(|c| &c.header_name))
        .chain(token_exchange.iter().map(|t| &t.upstream_header));
    for name in set_by_filter {
        if !stripped_headers.contains(name) {
            stripped_headers.push(name.clone());
        }
    }

    Ok(Config {
        resource,
        resource_name: raw.resource_name,
        resource_metadata_path,
        resource_metadata_url,
        authorization_servers,
        scopes_supported,
        required_scopes: raw.required_scopes,
        bypass_paths,
        bypass_cors_preflight: raw.bypass_cors_preflight.unwrap_or(true),
        jwt_cache_size,
        max_token_bytes,
        providers,
        stripped_headers,
        token_exchange,
    })
}

const TOKEN_TYPE_URN: &str = "urn:ietf:params:oauth:token-type:";
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

fn token_type_urn(path: &str, value: Option<String>) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| "access_token".into());
    match value.as_str() {
        "access_token" | "id_token" | "jwt" | "refresh_token" | "saml1" | "saml2" => {
            Ok(format!("{TOKEN_TYPE_URN}{value}"))
        }
        urn if urn.starts_with("urn:") && is_visible_ascii(urn) => Ok(value),
        _ => Err(err(
            path,
            "access_token, id_token, jwt, refresh_token, saml1, saml2 or a URN",
        )),
    }
}

fn is_visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn validate_token_exchange(
    t: RawTokenExchange,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TokenExchangeConfig, ConfigError> {
    let at = |field: &str| format!("token_exchange.{field}");
    let endpoint = t
        .token_endpoint
        .ok_or_else(|| err(at("token_endpoint"), "required"))?;
    let uri = endpoint
        .uri
        .ok_or_else(|| err(at("token_endpoint.uri"), "required"))?;
    let target = http_target(&at("token_endpoint.uri"), &uri)?;
    let cluster = cluster_name(&at("token_endpoint.cluster"), endpoint.cluster)?;
    let timeout = timeout_value(&at("token_endpoint.timeout"), endpoint.timeout)?;

    if t.audience.is_none() && t.resource.is_none() {
        return Err(err(
            "token_exchange",
            "give audience or resource: the STS must know what the token is for",
        ));
    }
    if let Some(a) = &t.audience {
        if !is_visible_ascii(a) {
            return Err(err(at("audience"), "must be non-empty printable ASCII"));
        }
    }
    if let Some(r) = &t.resource {
        parse_http_url(&at("resource"), r)?;
    }
    for (i, s) in t.scopes.iter().enumerate() {
        check_scope_token(&at(&format!("scopes[{i}]")), s)?;
    }
    let subject_token_type = token_type_urn(&at("subject_token_type"), t.subject_token_type)?;
    let requested_token_type = token_type_urn(&at("requested_token_type"), t.requested_token_type)?;

    let auth = t.client_auth.unwrap_or_default();
    let method = auth.method.unwrap_or_else(|| "client_secret_basic".into());
    let client_auth = match method.as_str() {
        "client_secret_basic" | "client_secret_post" => {
            let client_id = auth.client_id.filter(|c| !c.is_empty()).ok_or_else(|| {
                err(
                    at("client_auth.client_id"),
                    format!("required with {method}"),
                )
            })?;
            let var = auth
                .client_secret_env
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    err(
                        at("client_auth.client_secret_env"),
                        "required: the name of the VM environment variable holding the secret",
                    )
                })?;
            let secret = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
                err(
                    at("client_auth.client_secret_env"),
                    format!(
                        "environment variable {var} is not set in the VM \
                         (Envoy vm_config.environment_variables, Istio vmConfig.env)"
                    ),
                )
            })?;
            if method == "client_secret_basic" {
                ClientAuth::Basic {
                    client_id,
                    secret: Secret(secret),
                }
            } else {
                ClientAuth::Post {
                    client_id,
                    secret: Secret(secret),
                }
            }
        }
        "none" => {
            if auth.client_secret_env.is_some() {
                return Err(err(
                    at("client_auth.client_secret_env"),
                    "not used with method none",
                ));
            }
            ClientAuth::None {
                client_id: auth.client_id,
            }
        }
        _ => {
            return Err(err(
                at("client_auth.method"),
                "client_secret_basic, client_secret_post or none",
            ))
        }
    };

    let mut extra_params = Vec::with_capacity(t.extra_params.len());
    for (name, value) in t.extra_params {
        if EXCHANGE_FIELDS.contains(&name.as_str()) {
            return Err(err(
                at(&format!("extra_params.{name}")),
                "set by the filter; cannot be overridden",
            ));
        }
        extra_params.push((name, value));
    }

    let header = t.upstream_header.unwrap_or_default();
    let upstream_header = header
        .name
        .unwrap_or_else(|| "authorization".into())
        .to_ascii_lowercase();
    if !is_http_token(&upstream_header)
        || matches!(
            upstream_header.as_str(),
            "host" | "content-length" | "cookie"
        )
    {
        return Err(err(
            at("upstream_header.name"),
            "not a header that can carry a token",
        ));
    }
    let upstream_prefix = header.prefix.unwrap_or_else(|| {
        if upstream_header == "authorization" {
            "Bearer ".into()
        } else {
            String::new()
        }
    });
    if upstream_prefix.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(err(
            at("upstream_header.prefix"),
            "must not contain control characters",
        ));
    }

    let accepted_token_types = t
        .accepted_token_types
        .unwrap_or_else(|| vec!["Bearer".into()]);
    if accepted_token_types.is_empty() {
        return Err(err(at("accepted_token_types"), "must not be empty"));
    }
    let cache = t.cache.unwrap_or_default();
    let cache_max_entries = cache
        .max_entries
        .map_or(10_000, |n| n.min(usize::MAX as u64) as usize);
    if cache_max_entries > 1_000_000 {
        return Err(err(at("cache.max_entries"), "at most 1000000"));
    }
    Ok(TokenExchangeConfig {
        cluster,
        endpoint: target,
        timeout,
        audience: t.audience,
        scopes: t.scopes,
        resource: t.resource,
        subject_token_type,
        requested_token_type,
        client_auth,
        extra_params,
        upstream_header,
        upstream_prefix,
        accepted_token_types,
        cache_max_entries,
        expiry_margin: duration_at_least(
            &at("cache.expiry_margin"),
            cache.expiry_margin,
            Duration::from_secs(30),
            Duration::ZERO,
        )?,
        default_ttl: duration_at_least(
            &at("cache.default_ttl"),
            cache.default_ttl,
            Duration::from_secs(300),
            Duration::from_secs(1),
        )?,
    })
}

fn validate_provider(name: &str, p: RawProvider, resource: &str) -> Result<Provider, ConfigError> {
    let at = |field: &str| format!("providers.{name}.{field}");
    let issuer = p.issuer.ok_or_else(|| err(at("issuer"), "required"))?;
    if issuer.is_empty() {
        return Err(err(at("issuer"), "must not be empty"));
    }
    let audiences = match p.audiences {
        Some(a) if a.is_empty() => {
            return Err(err(
                at("audiences"),
                "must not be empty (omit it to accept the resource URL)",
            ))
        }
        Some(a) => a,
        None => vec![resource.to_string()],
    };

    let sources = [
        p.remote_jwks.is_some(),
        p.local_jwks.is_some(),
        p.oidc_discovery.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(err(
            format!("providers.{name}"),
            "give exactly one of remote_jwks, local_jwks or oidc_discovery",
        ));
    }
    let keys = if let Some(r) = p.remote_jwks {
        let http_uri = r
            .http_uri
            .ok_or_else(|| err(at("remote_jwks.http_uri"), "required"))?;
        let uri = http_uri
            .uri
            .ok_or_else(|| err(at("remote_jwks.http_uri.uri"), "required"))?;
        let target = http_target(&at("remote_jwks.http_uri.uri"), &uri)?;
        KeySource::Remote(RemoteKeys {
            cluster: cluster_name(&at("remote_jwks.http_uri.cluster"), http_uri.cluster)?,
            start: FetchTarget::Jwks(target),
            timeout: timeout_value(&at("remote_jwks.http_uri.timeout"), http_uri.timeout)?,
            cache_duration: duration_at_least(
                &at("remote_jwks.cache_duration"),
                r.cache_duration,
                DEFAULT_CACHE_DURATION,
                Duration::from_secs(1),
            )?,
            failed_refetch_duration: duration_at_least(
                &at("remote_jwks.failed_refetch_duration"),
                r.failed_refetch_duration,
                DEFAULT_FAILED_REFETCH,
                Duration::from_millis(100),
            )?,
            unknown_kid_refetch_interval: duration_at_least(
                &at("remote_jwks.unknown_kid_refetch_interval"),
                r.unknown_kid_refetch_interval,
                DEFAULT_UNKNOWN_KID_REFETCH,
                Duration::from_secs(1),
            )?,
        })
    } else if let Some(d) = p.oidc_discovery {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let target = http_target(&at("issuer"), &discovery_url)?;
        KeySource::Remote(RemoteKeys {
            cluster: cluster_name(&at("oidc_discovery.cluster"), d.cluster)?,
            start: FetchTarget::Discovery(target),
            timeout: timeout_value(&at("oidc_discovery.timeout"), d.timeout)?,
            cache_duration: duration_at_least(
                &at("oidc_discovery.cache_duration"),
                d.cache_duration,
                DEFAULT_CACHE_DURATION,
                Duration::from_secs(1),
            )?,
            failed_refetch_duration: duration_at_least(
                &at("oidc_discovery.failed_refetch_duration"),
                d.failed_refetch_duration,
                DEFAULT_FAILED_REFETCH,
                Duration::from_millis(100),
            )?,
            unknown_kid_refetch_interval: duration_at_least(
                &at("oidc_discovery.unknown_kid_refetch_interval"),
                d.unknown_kid_refetch_interval,
                DEFAULT_UNKNOWN_KID_REFETCH,
                Duration::from_secs(1),
            )?,
        })
    } else if let Some(l) = p.local_jwks {
        if l.filename.is_some() {
            return Err(err(
                at("local_jwks.filename"),
                "a wasm filter cannot read files; use inline_string",
            ));
        }
        let inline = l
            .inline_string
            .ok_or_else(|| err(at("local_jwks.inline_string"), "required"))?;
        let set = KeySet::parse(inline.as_bytes())
            .map_err(|e| err(at("local_jwks.inline_string"), e.to_string()))?;
        KeySource::Local(set)
    } else {
        return Err(err(format!("providers.{name}"), "no key source"));
    };

    let clock_skew_seconds = p.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW);
    if clock_skew_seconds > 3600 {
        return Err(err(at("clock_skew_seconds"), "at most 3600"));
    }

    let mut claim_to_headers = Vec::with_capacity(p.claim_to_headers.len());
    for (i, c) in p.claim_to_headers.into_iter().enumerate() {
        let here = |f: &str| at(&format!("claim_to_headers[{i}].{f}"));
        let header = c
            .header_name
            .ok_or_else(|| err(here("header_name"), "required"))?
            .to_ascii_lowercase();
        if !is_http_token(&header) {
            return Err(err(here("header_name"), "not a valid HTTP header name"));
        }
        if matches!(
            header.as_str(),
            "authorization" | "host" | "content-length" | "cookie"
        ) {
            return Err(err(here("header_name"), "this header cannot carry a claim"));
        }
        let claim = c
            .claim_name
            .ok_or_else(|| err(here("claim_name"), "required"))?;
        let claim_path: Vec<String> = claim.split('.').map(str::to_string).collect();
        if claim_path.iter().any(String::is_empty) {
            return Err(err(here("claim_name"), "empty claim name or path segment"));
        }
        claim_to_headers.push(ClaimToHeader {
            header_name: header,
            claim_path,
        });
    }

    Ok(Provider {
        name: name.to_string(),
        issuer,
        audiences,
        keys,
        clock_skew_seconds,
        claim_to_headers,
    })
}

/// An absolute http(s) URL as the configuration uses it (resource, issuer endpoints).
///
/// Deliberately small and strict instead of a general URL parser (which would bring IDNA and
/// Unicode tables into the .wasm): no user info, no fragment, no spaces, ASCII host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// Path, at least `/`.
    pub path: String,
    pub query: Option<String>,
}

impl HttpUrl {
    pub fn parse(value: &str) -> Result<HttpUrl, &'static str> {
        if value.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err("contains spaces, control or non-ASCII characters");
        }
        let (scheme, rest) = value.split_once("://").ok_or("not an absolute URL")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("not an http(s) URL");
        }
        if rest.contains('#') {
            return Err("must not have a fragment");
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err("must not contain user info");
        }
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_string(),
            query,
        })
    }

    /// `host[:port]`, as `:authority` of a request to this URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority())
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("unclosed IPv6 address")?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("invalid port")?),
        };
        let bracketed = authority
            .get(..inside.len() + 2)
            .ok_or("invalid IPv6 address")?;
        (bracketed, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_name = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !valid_name {
        return Err("missing or invalid host");
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("invalid port")?,
        ),
    };
    Ok((host, port))
}

fn parse_http_url(path: &str, value: &str) -> Result<HttpUrl, ConfigError> {
    HttpUrl::parse(value).map_err(|problem| err(path, problem))
}

/// Splits a URL into the `:authority` and `:path` of an Envoy callout.
pub fn http_target(path: &str, value: &str) -> Result<HttpTarget, ConfigError> {
    let url = parse_http_url(path, value)?;
    let mut request_path = url.path.clone();
    if let Some(q) = &url.query {
        request_path.push('?');
        request_path.push_str(q);
    }
    Ok(HttpTarget {
        authority: url.authority(),
        path: request_path,
    })
}

fn cluster_name(path: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(err(
            path,
            "required: the Envoy cluster that reaches this host",
        )),
    }
}

fn timeout_value(path: &str, value: Option<String>) -> Result<Duration, ConfigError> {
    let timeout = duration_at_least(path, value, DEFAULT_TIMEOUT, Duration::from_millis(1))?;
    if timeout > Duration::from_secs(60) {
        return Err(err(path, "at most 60s: requests wait for this callout"));
    }
    Ok(timeout)
}

fn duration_at_least(
    path: &str,
    value: Option<String>,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let d = match value {
        None => return Ok(default),
        Some(v) => parse_duration(&v).ok_or_else(|| {
            err(
                path,
                format!("{v:?} is not a duration such as \"5s\", \"500ms\", \"10m\""),
            )
        })?,
    };
    if d < min {
        return Err(err(path, format!("must be at least {}ms", min.as_millis())));
    }
    Ok(d)
}

/// Parses `"5s"`, `"1.5s"`, `"500ms"`, `"10m"`, `"1h"` (protobuf JSON durations use `s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let ms = value * unit_ms;
    if !ms.is_finite() || !(0.0..=1.0e12).contains(&ms) {
        return None;
    }
    Some(Duration::from_millis(ms.round() as u64))
}

/// RFC 6749 scope-token: printable ASCII except space, `"` and `\`, so it can sit in a
/// quoted-string of `WWW-Authenticate` without escaping.
fn check_scope_token(path: &str, s: &str) -> Result<(), ConfigError> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            "not a valid scope (printable ASCII, no space, quote or backslash)",
        ))
    }
}

fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "required_scopes": ["mcp:tools:call"],
            "providers": {
                "okta": {
                    "issuer": "https://idp.example.com/oauth2/default",
                    "remote_jwks": {
                        "http_uri": {
                            "uri": "https://idp.example.com/oauth2/default/v1/keys",
                            "cluster": "okta",
                            "timeout": "2s"
                        },
                        "cache_duration": "300s"
                    },
                    "claim_to_headers": [{"header_name": "X-User", "claim_name": "sub"}]
                }
            }
        })
    }

    fn load(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes())
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
                        authority: "idp.example.com".into(),
                        path: "/oauth2/default/v1/keys".into()
                    })
                );
            }
            KeySource::Local(_) => panic!("expected remote keys"),
        }
        assert_eq!(c.stripped_headers, vec!["authorization", "x-user"]);
    }

    #[test]
    fn resource_at_root_uses_the_root_metadata_path() {
        let mut v = base();
        v["resource"] = "http://127.0.0.1:10000".into();
        let c = load(&v).unwrap();
        assert_eq!(c.resource_metadata_path, PRM_WELL_KNOWN);
        assert_eq!(
            c.resource_metadata_url,
            "http://127.0.0.1:10000/.well-known/oauth-protected-resource"
        );
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
    fn exactly_one_key_source() {
        let mut v = base();
        v["providers"]["okta"]["local_jwks"] =
            serde_json::json!({"inline_string": "{\"keys\":[]}"});
        assert_eq!(load(&v).unwrap_err().path, "providers.okta");
        let mut v = base();
        v["providers"]["okta"]
            .as_object_mut()
            .unwrap()
            .remove("remote_jwks");
        assert_eq!(load(&v).unwrap_err().path, "providers.okta");
    }

    #[test]
    fn local_jwks_is_parsed_at_load() {
        let mut v = base();
        let p = v["providers"]["okta"].as_object_mut().unwrap();
        p.remove("remote_jwks");
        p.insert(
            "local_jwks".into(),
            serde_json::json!({"inline_string": "not json"}),
        );
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "providers.okta.local_jwks.inline_string");
    }

    #[test]
    fn discovery_targets_the_issuers_openid_configuration() {
        let mut v = base();
        let p = v["providers"]["okta"].as_object_mut().unwrap();
        p.remove("remote_jwks");
        p.insert(
            "oidc_discovery".into(),
            serde_json::json!({"cluster": "okta"}),
        );
        let c = load(&v).unwrap();
        match &c.providers[0].keys {
            KeySource::Remote(r) => assert_eq!(
                r.start,
                FetchTarget::Discovery(HttpTarget {
                    authority: "idp.example.com".into(),
                    path: "/oauth2/default/.well-known/openid-configuration".into()
                })
            ),
            KeySource::Local(_) => panic!("expected remote"),
        }
    }

    #[test]
    fn duplicate_issuers_are_refused() {
        let mut v = base();
        let okta = v["providers"]["okta"].clone();
        v["providers"]["second"] = okta;
        assert_eq!(load(&v).unwrap_err().path, "providers.second.issuer");
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(Config::from_json(b"{").is_err());
        assert!(Config::from_json(b"").is_err());
        assert!(Config::from_json(b"[]").is_err());
    }

    #[test]
    fn http_urls() {
        let u = HttpUrl::parse("HTTPS://IdP.example.com:8443/a/b?x=1").unwrap();
        assert_eq!(
            (
                u.scheme.as_str(),
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.query.as_deref()
            ),
            ("https", "idp.example.com", Some(8443), "/a/b", Some("x=1"))
        );
        assert_eq!(u.authority(), "idp.example.com:8443");
        assert_eq!(HttpUrl::parse("http://127.0.0.1").unwrap().path, "/");
        assert_eq!(
            HttpUrl::parse("http://[::1]:9000/k").unwrap().authority(),
            "[::1]:9000"
        );
        for bad in [
            "idp.example.com/keys",
            "ftp://idp/keys",
            "http://",
            "http://user:pw@idp/keys",
            "http://idp/keys#frag",
            "http://idp:99999/",
            "http://idp:/",
            "http://idp:-1/",
            "http://id p/",
            "http://idp/ke ys",
            "http://[::1/",
            "http://idp\u{e9}/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

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
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "5", "-1s", "1e3s", "5 s", "abc"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
