//! RFC 8693 token exchange: the request to the STS, the reading of its answer, and the cache
//! of exchanged tokens.
//!
//! One exchange per (subject token, exchange parameters) for as long as the result may live:
//! min(`expires_in`, the subject token's `exp`) minus a safety margin. The cache key is a
//! SHA-256 over the subject token's hash and a digest of every parameter that can change what
//! the STS answers (endpoint, cluster, client and its authentication, audience, scopes,
//! resource, token types, extra parameters): two filters configured differently never share
//! an exchanged token, whatever their `vm_id`. A raw token is never a key.

use std::time::Duration;

use serde_json::Value;

use crate::cache::{sha256, BoundedCache, Digest};
use crate::config::{ExchangeOverride, Grant, TokenExchangeConfig};
use crate::oauth_request::{CalloutRequest, FormBody};
use crate::time::{UnixMillis, UnixSeconds};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 jwt-bearer, which Entra's on-behalf-of flow uses.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Largest STS answer read (a real one is well under 8 KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an exchange did not produce a token. Each maps to one client-facing answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeFailure {
    /// The STS refused the subject token (`invalid_grant`): the client must get a new one.
    Rejected,
    /// Any other refusal (4xx); the standard OAuth error code when the STS gave one.
    Refused(Option<&'static str>),
    /// The STS answered 5xx or something unusable.
    Failed,
    /// The STS could not be reached.
    Unavailable,
    /// No answer before the deadline.
    Timeout,
}

impl std::fmt::Display for ExchangeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeFailure::Rejected => f.write_str("the STS rejected the subject token"),
            ExchangeFailure::Refused(Some(code)) => write!(f, "the STS refused: {code}"),
            ExchangeFailure::Refused(None) => f.write_str("the STS refused"),
            ExchangeFailure::Failed => f.write_str("the STS failed"),
            ExchangeFailure::Unavailable => f.write_str("the STS is unreachable"),
            ExchangeFailure::Timeout => f.write_str("the STS did not answer in time"),
        }
    }
}

impl std::error::Error for ExchangeFailure {}

impl ExchangeFailure {
    /// A one-byte code, to tell other workers how a shared exchange ended.
    pub fn code(self) -> u8 {
        match self {
            ExchangeFailure::Rejected => 1,
            ExchangeFailure::Failed => 2,
            ExchangeFailure::Unavailable => 3,
            ExchangeFailure::Timeout => 4,
            ExchangeFailure::Refused(None) => 9,
            ExchangeFailure::Refused(Some(c)) => {
                let index = KNOWN_ERRORS.iter().position(|k| *k == c).unwrap_or(0);
                10 + index as u8
            }
        }
    }

    pub fn from_code(code: u8) -> Option<ExchangeFailure> {
        Some(match code {
            1 => ExchangeFailure::Rejected,
            2 => ExchangeFailure::Failed,
            3 => ExchangeFailure::Unavailable,
            4 => ExchangeFailure::Timeout,
            9 => ExchangeFailure::Refused(None),
            c => {
                ExchangeFailure::Refused(Some(*KNOWN_ERRORS.get(usize::from(c.checked_sub(10)?))?))
            }
        })
    }
}

/// OAuth error codes that may be named to the client (anything else is not echoed).
const KNOWN_ERRORS: [&str; 13] = [
    // Entra ID: conditional access or MFA demands a new interactive sign-in.
    "interaction_required",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "access_denied",
    "unsupported_token_type",
    // Entra ID: the user or an admin never consented to the backend API (AADSTS65001); signing
    // in again cannot fix that, so it is a refusal, not a rejection.
    "consent_required",
    // Named in the log line of a 5xx answer (the status decides what the client gets).
    "server_error",
    "temporarily_unavailable",
];

/// The STS callout of an exchange.
pub type ExchangeRequest = CalloutRequest;

/// A successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub token: String,
    /// Until when it is served from the cache; `None`: not cached.
    pub cached_until: Option<UnixMillis>,
}

pub struct TokenExchanger {
    config: TokenExchangeConfig,
    /// The scopes space-joined, as sent and as hashed into every cache key: joined once here.
    scope: String,
    /// Digest of every parameter that can change what the STS answers.
    namespace: Digest,
    cache: BoundedCache<(String, UnixMillis)>,
}

impl TokenExchanger {
    pub fn new(config: TokenExchangeConfig) -> TokenExchanger {
        let scope = config.scopes.join(" ");
        TokenExchanger {
            cache: BoundedCache::new(config.cache_max_entries),
            namespace: namespace(&config, &scope),
            scope,
            config,
        }
    }

    /// The digest that names this exchange configuration (and its shared-data entries).
    pub fn namespace(&self) -> &Digest {
        &self.namespace
    }

    /// The backend audience of an exchange (for the audit line), with a rule's override.
    pub fn audience<'a>(&'a self, narrowing: Option<&'a ExchangeOverride>) -> Option<&'a str> {
        narrowing
            .and_then(|n| n.audience.as_deref())
            .or(self.config.audience.as_deref())
            .or(self.config.resource.as_deref())
    }

    /// The cache key of an exchange for the subject token whose SHA-256 is `subject_hash`.
    /// With `narrowing` (an MCP rule's per-tool scopes or audience), the key covers them too:
    /// a read-only and a write token for the same user are two cache entries.
    pub fn key(&self, subject_hash: &Digest, narrowing: Option<&ExchangeOverride>) -> Digest {
        match narrowing {
            None => sha256(&[&self.namespace, subject_hash]),
            Some(n) => {
                let scope = n.scopes.as_ref().map(|s| s.join(" "));
                sha256(&[
                    &self.namespace,
                    subject_hash,
                    b"narrowed",
                    scope.as_deref().unwrap_or("\u{0}default").as_bytes(),
                    n.audience.as_deref().unwrap_or("\u{0}default").as_bytes(),
                ])
            }
        }
    }

    pub fn cached(&self, key: &Digest, now: UnixMillis) -> Option<&str> {
        match self.cache.get(key) {
            Some((token, until)) if now < *until => Some(token),
            _ => None,
        }
    }

    /// Remembers a token obtained elsewhere (another worker), if still fresh.
    pub fn remember(&mut self, key: Digest, token: String, until: UnixMillis, now: UnixMillis) {
        if now < until {
            self.cache.insert(key, (token, until));
        }
    }

    /// The header that carries an exchanged token upstream.
    pub fn upstream_header(&self, token: &str) -> (String, String) {
        (
            self.config.upstream_header.clone(),
            format!("{}{token}", self.config.upstream_prefix),
        )
    }

    /// The STS request for `subject_token`, with a rule's per-tool scopes or audience in
    /// place of the configured ones.
    pub fn request(
        &self,
        subject_token: &str,
        narrowing: Option<&ExchangeOverride>,
    ) -> ExchangeRequest {
        let c = &self.config;
        let audience = narrowing
            .and_then(|n| n.audience.as_deref())
            .or(c.audience.as_deref());
        let narrowed_scope = narrowing
            .and_then(|n| n.scopes.as_ref())
            .map(|s| s.join(" "));
        let scope = narrowed_scope.as_deref().unwrap_or(&self.scope);
        let mut form = FormBody::default();
        match c.grant {
            Grant::TokenExchange => {
                form.field("grant_type", GRANT_TYPE);
                form.field("subject_token", subject_token);
                form.field("subject_token_type", &c.subject_token_type);
                form.field("requested_token_type", &c.requested_token_type);
                if let Some(a) = audience {
                    form.field("audience", a);
                }
            }
            Grant::JwtBearerObo => {
                // Microsoft identity platform on-behalf-of: the user's token as the assertion.
                form.field("grant_type", JWT_BEARER_GRANT);
                form.field("assertion", subject_token);
                form.field("requested_token_use", "on_behalf_of");
            }
        }
        if !scope.is_empty() {
            form.field("scope", scope);
        }
        if let Some(r) = &c.resource {
            form.field("resource", r);
        }
        for (name, value) in &c.extra_params {
            form.field(name, value);
        }
        form.post(&c.cluster, &c.endpoint, &c.client_auth, c.timeout)
    }

    /// Reads the STS answer and caches a good one under `key`; it never outlives the subject
    /// token (`subject_exp`).
    pub fn accept(
        &mut self,
        key: Digest,
        status: Option<u16>,
        body: &[u8],
        now: UnixMillis,
        subject_exp: UnixSeconds,
    ) -> Result<Exchanged, ExchangeFailure> {
        let status = status.ok_or(ExchangeFailure::Unavailable)?;
        match status {
            200 => {}
            // Overloaded or rate-limited: temporary, the client may retry.
            429 | 503 => return Err(ExchangeFailure::Unavailable),
            504 => return Err(ExchangeFailure::Timeout),
            400..=499 => return Err(refusal(body, self.config.grant)),
            _ => return Err(ExchangeFailure::Failed),
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(ExchangeFailure::Failed);
        }
        let doc: Value = serde_json::from_slice(body).map_err(|_| ExchangeFailure::Failed)?;
        let token = doc
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| is_header_safe(t))
            .ok_or(ExchangeFailure::Failed)?;
        let token_type = doc
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let accepted = self
            .config
            .accepted_token_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token_type));
        if !accepted {
            return Err(ExchangeFailure::Failed);
        }
        let ttl = match doc.get("expires_in") {
            None | Some(Value::Null) => self.config.default_ttl,
            // `as` saturates: a huge expires_in is bounded by the subject token below.
            Some(v) => match v.as_f64() {
                Some(secs) if secs.is_finite() && secs >= 0.0 => {
                    Duration::from_millis((secs * 1000.0) as u64)
                }
                _ => return Err(ExchangeFailure::Failed),
            },
        };
        let lifetime_end = now.plus(ttl).min(subject_exp.millis());
        let cached_until =
            Some(lifetime_end.minus(self.config.expiry_margin)).filter(|until| *until > now);
        if let Some(until) = cached_until {
            self.cache.insert(key, (token.to_string(), until));
        }
        Ok(Exchanged {
            token: token.to_string(),
            cached_until,
        })
    }
}

/// A digest of every parameter that can change what the STS answers. The client secret goes in
/// hashed with the rest (a wrong secret is refused by the STS; a right one must not inherit
/// tokens obtained with another), and never appears anywhere.
fn namespace(c: &TokenExchangeConfig, scope: &str) -> Digest {
    let extra: Vec<u8> = c
        .extra_params
        .iter()
        .flat_map(|(name, value)| sha256(&[name.as_bytes(), value.as_bytes()]))
        .collect();
    let grant: &[u8] = match c.grant {
        Grant::TokenExchange => b"token_exchange",
        Grant::JwtBearerObo => b"jwt_bearer_obo",
    };
    sha256(&[
        b"mcp-auth-filter token exchange v2",
        grant,
        c.cluster.as_bytes(),
        c.endpoint.authority.as_bytes(),
        c.endpoint.path.as_bytes(),
        &c.client_auth.digest(),
        c.audience.as_deref().unwrap_or_default().as_bytes(),
        scope.as_bytes(),
        c.resource.as_deref().unwrap_or_default().as_bytes(),
        c.subject_token_type.as_bytes(),
        c.requested_token_type.as_bytes(),
        &extra,
    ])
}

/// What a 4xx answer means for the client. 401 (sign in again) when the subject token is what
/// the STS refused: `invalid_grant`, `interaction_required`, and for RFC 8693 also
/// `invalid_request` (§2.2.2: the error for a subject token that is invalid or unacceptable by
/// policy). Everything else is a 403 naming the standard code.
fn refusal(body: &[u8], grant: Grant) -> ExchangeFailure {
    let doc = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        doc.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let consent_missing = field("suberror").as_deref() == Some("consent_required")
        || doc
            .as_ref()
            .and_then(|v| v.get("error_codes"))
            .and_then(Value::as_array)
            .is_some_and(|codes| codes.iter().any(|c| c.as_u64() == Some(65001)));
    if grant == Grant::JwtBearerObo && consent_missing {
        return ExchangeFailure::Refused(Some("consent_required"));
    }
    let code = field("error").and_then(|e| KNOWN_ERRORS.iter().find(|k| **k == e).copied());
    match (code, grant) {
        (Some("invalid_grant" | "interaction_required"), _)
        | (Some("invalid_request"), Grant::TokenExchange) => ExchangeFailure::Rejected,
        (other, _) => ExchangeFailure::Refused(other),
    }
}

/// For the log line of a refused exchange: the standard error code and the numeric codes an
/// STS adds (Entra's `error_codes`, shown as `AADSTS<n>`), never its free-text description.
pub fn refusal_summary(body: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let code = doc
        .get("error")
        .and_then(Value::as_str)
        .and_then(|e| KNOWN_ERRORS.iter().find(|k| **k == e))?;
    let numbers: Vec<String> = doc
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|codes| {
            codes
                .iter()
                .filter_map(Value::as_u64)
                .take(4)
                .map(|n| format!("AADSTS{n}"))
                .collect()
        })
        .unwrap_or_default();
    Some(if numbers.is_empty() {
        (*code).to_string()
    } else {
        format!("{code} ({})", numbers.join(", "))
    })
}

/// Visible ASCII only, bounded: an issued token goes into a request header as it is.
fn is_header_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const NOW_MS: UnixMillis = UnixMillis(NOW * 1000);
    const SUBJECT_EXP: UnixSeconds = UnixSeconds(NOW + 3600);

    /// `ms` milliseconds after NOW_MS.
    fn at(ms: u64) -> UnixMillis {
        UnixMillis(NOW_MS.0 + ms)
    }

    fn config(exchange: serde_json::Value) -> TokenExchangeConfig {
        let v = json!({
            "resource": "https://mcp.example.com/mcp",
            "providers": {"p": {"issuer": "https://idp", "local_jwks": {"inline_string": "{\"keys\":[]}"}}},
            "token_exchange": exchange,
        });
        // local_jwks with no key fails; use remote so the config is valid.
        let mut v = v;
        v["providers"]["p"] = json!({"issuer": "https://idp",
            "remote_jwks": {"http_uri": {"uri": "https://idp/jwks", "cluster": "idp"}}});
        let env = |name: &str| (name == "STS_SECRET").then(|| "s3cr&t pw".to_string());
        Config::from_json_with_env(v.to_string().as_bytes(), &env)
            .unwrap()
            .token_exchange
            .unwrap()
    }

    fn okta() -> TokenExchanger {
        TokenExchanger::new(config(json!({
            "token_endpoint": {"uri": "https://backend-as.example.com/oauth2/v1/token", "cluster": "sts", "timeout": "2s"},
            "audience": "backend",
            "scopes": ["backend-api:read", "backend-api:list"],
            "client_auth": {"client_id": "mcp filter", "client_secret_env": "STS_SECRET"},
            "cache": {"expiry_margin": "30s"}
        })))
    }

    fn form(body: &[u8]) -> Vec<(String, String)> {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            let mut out = Vec::new();
            let bytes = s.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        };
        std::str::from_utf8(body)
            .unwrap()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (decode(k), decode(v))
            })
            .collect()
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn rfc8693_request_with_basic_auth() {
        let x = okta();
        let r = x.request("subject.jwt.token", None);
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(r.cluster, "sts");
        assert_eq!(r.timeout, Duration::from_secs(2));
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(header(":path"), Some("/oauth2/v1/token"));
        assert_eq!(header(":authority"), Some("backend-as.example.com"));
        assert_eq!(
            header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let basic = STANDARD.encode("mcp+filter:s3cr%26t+pw");
        assert_eq!(
            header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
        let f = form(&r.body);
        assert_eq!(field(&f, "grant_type"), Some(GRANT_TYPE));
        assert_eq!(field(&f, "subject_token"), Some("subject.jwt.token"));
        assert_eq!(
            field(&f, "subject_token_type"),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(
            field(&f, "requested_token_type"),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(field(&f, "audience"), Some("backend"));
        assert_eq!(
            field(&f, "scope"),
            Some("backend-api:read backend-api:list")
        );
        assert_eq!(field(&f, "resource"), None);
        assert_eq!(field(&f, "client_secret"), None);
    }

    #[test]
    fn post_auth_and_google_sts_shape() {
        let post = TokenExchanger::new(config(json!({
            "token_endpoint": {"uri": "https://as/token", "cluster": "sts"},
            "audience": "backend",
            "client_auth": {"method": "client_secret_post", "client_id": "c", "client_secret_env": "STS_SECRET"}
        })));
        let r = post.request("t", None);
        assert!(r.headers.iter().all(|(k, _)| k != "authorization"));
        let f = form(&r.body);
        assert_eq!(field(&f, "client_id"), Some("c"));
        assert_eq!(field(&f, "client_secret"), Some("s3cr&t pw"));

        let google = TokenExchanger::new(config(json!({
            "token_endpoint": {"uri": "https://sts.googleapis.com/v1/token", "cluster": "google_sts"},
            "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/okta-pool/providers/okta-provider",
            "scopes": ["https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform"],
            "subject_token_type": "id_token",
            "client_auth": {"method": "none"},
            "extra_params": {"options": "{\"userProject\":\"123\"}"}
        })));
        let r = google.request("okta.id.token", None);
        assert!(r.headers.iter().all(|(k, _)| k != "authorization"));
        let f = form(&r.body);
        assert_eq!(
            field(&f, "subject_token_type"),
            Some("urn:ietf:params:oauth:token-type:id_token")
        );
        assert_eq!(
            field(&f, "scope"),
            Some("https://www.googleapis.com/auth/bigquery https://www.googleapis.com/auth/cloud-platform")
        );
        assert_eq!(field(&f, "options"), Some("{\"userProject\":\"123\"}"));
        assert_eq!(field(&f, "client_id"), None);
        assert_eq!(
            google.upstream_header("ya29.x"),
            ("authorization".into(), "Bearer ya29.x".into())
        );
    }

    #[test]
    fn good_answer_is_cached_for_its_lifetime_minus_the_margin() {
        let mut x = okta();
        let key = x.key(&crate::token_cache::token_hash("subject"), None);
        let body = br#"{"access_token":"backend-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}"#;
        let got = x.accept(key, Some(200), body, NOW_MS, SUBJECT_EXP).unwrap();
        assert_eq!(got.token, "backend-token");
        assert_eq!(got.cached_until, Some(at(270_000)));
        assert_eq!(x.cached(&key, at(269_999)), Some("backend-token"));
        assert_eq!(x.cached(&key, at(270_000)), None);
        assert_eq!(
            x.cached(
                &x.key(&crate::token_cache::token_hash("other subject"), None),
                NOW_MS
            ),
            None
        );
    }

    #[test]
    fn cache_never_outlives_the_subject_token() {
        let mut x = okta();
        let key = x.key(&crate::token_cache::token_hash("subject"), None);
        let body = br#"{"access_token":"t","token_type":"bearer","expires_in":3600}"#;
        let subject_exp = UnixSeconds(NOW + 100);
        let got = x.accept(key, Some(200), body, NOW_MS, subject_exp).unwrap();
        assert_eq!(got.cached_until, Some(at(70_000)));
        // Less than the margin left: used once, not cached.
        let key2 = x.key(&crate::token_cache::token_hash("short"), None);
        let got = x
            .accept(key2, Some(200), body, NOW_MS, UnixSeconds(NOW + 20))
            .unwrap();
        assert_eq!(got.cached_until, None);
        assert_eq!(x.cached(&key2, NOW_MS), None);
    }

    #[test]
    fn key_depends_on_every_parameter() {
        let a = okta();
        let b = TokenExchanger::new(config(json!({
            "token_endpoint": {"uri": "https://backend-as.example.com/oauth2/v1/token", "cluster": "sts"},
            "audience": "backend",
            "scopes": ["backend-api:read"],
            "client_auth": {"client_id": "mcp filter", "client_secret_env": "STS_SECRET"}
        })));
        assert_ne!(
            a.key(&crate::token_cache::token_hash("s"), None),
            b.key(&crate::token_cache::token_hash("s"), None)
        );
        assert_ne!(
            a.key(&crate::token_cache::token_hash("s"), None),
            a.key(&crate::token_cache::token_hash("t"), None)
        );
        assert_eq!(
            a.key(&crate::token_cache::token_hash("s"), None),
            a.key(&crate::token_cache::token_hash("s"), None)
        );
    }

    #[test]
    fn failures_map_to_their_kind() {
        let mut x = okta();
        let k = x.key(&crate::token_cache::token_hash("s"), None);
        let mut check = |status: Option<u16>, body: &[u8], expected: ExchangeFailure| {
            assert_eq!(
                x.accept(k, status, body, NOW_MS, SUBJECT_EXP),
                Err(expected),
                "{status:?} {body:?}"
            );
        };
        check(
            Some(400),
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            ExchangeFailure::Rejected,
        );
        check(
            Some(401),
            br#"{"error":"invalid_client"}"#,
            ExchangeFailure::Refused(Some("invalid_client")),
        );
        check(
            Some(400),
            br#"{"error":"invalid_scope"}"#,
            ExchangeFailure::Refused(Some("invalid_scope")),
        );
        check(
            Some(403),
            br#"{"error":"<script>"}"#,
            ExchangeFailure::Refused(None),
        );
        check(Some(403), b"forbidden", ExchangeFailure::Refused(None));
        check(Some(500), b"oops", ExchangeFailure::Failed);
        check(Some(502), b"", ExchangeFailure::Failed);
        check(Some(503), b"", ExchangeFailure::Unavailable);
        check(
            Some(429),
            br#"{"error":"slow_down"}"#,
            ExchangeFailure::Unavailable,
        );
        check(Some(504), b"", ExchangeFailure::Timeout);
        check(None, b"", ExchangeFailure::Unavailable);
        check(Some(200), b"not json", ExchangeFailure::Failed);
        check(
            Some(200),
            br#"{"token_type":"Bearer"}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"","token_type":"Bearer"}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"a\r\nb","token_type":"Bearer"}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"t","token_type":"N_A"}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"t"}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":-5}"#,
            ExchangeFailure::Failed,
        );
        check(
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":"300"}"#,
            ExchangeFailure::Failed,
        );
        let huge = format!(
            r#"{{"access_token":"t","token_type":"Bearer","pad":"{}"}}"#,
            "x".repeat(MAX_RESPONSE_BYTES)
        );
        check(Some(200), huge.as_bytes(), ExchangeFailure::Failed);
    }

    #[test]
    fn huge_expires_in_is_bounded_by_the_subject() {
        let mut x = okta();
        let k = x.key(&crate::token_cache::token_hash("s"), None);
        let body = br#"{"access_token":"t","token_type":"Bearer","expires_in":1e300}"#;
        let got = x.accept(k, Some(200), body, NOW_MS, SUBJECT_EXP).unwrap();
        assert_eq!(
            got.cached_until,
            Some(UnixMillis(SUBJECT_EXP.0 * 1000 - 30_000))
        );
    }

    #[test]
    fn missing_expires_in_uses_the_default_ttl() {
        let mut x = okta();
        let k = x.key(&crate::token_cache::token_hash("s"), None);
        let got = x
            .accept(
                k,
                Some(200),
                br#"{"access_token":"t","token_type":"Bearer"}"#,
                NOW_MS,
                SUBJECT_EXP,
            )
            .unwrap();
        assert_eq!(got.cached_until, Some(at(300_000 - 30_000)));
    }

    #[test]
    fn a_rules_narrowing_replaces_scopes_and_audience_and_has_its_own_key() {
        let x = okta();
        let read_only = ExchangeOverride {
            scopes: Some(vec!["backend-api:read".into()]),
            audience: None,
        };
        let other_audience = ExchangeOverride {
            scopes: None,
            audience: Some("reports".into()),
        };
        let f = form(&x.request("s", Some(&read_only)).body);
        assert_eq!(field(&f, "scope"), Some("backend-api:read"));
        assert_eq!(field(&f, "audience"), Some("backend"));
        let f = form(&x.request("s", Some(&other_audience)).body);
        assert_eq!(
            field(&f, "scope"),
            Some("backend-api:read backend-api:list")
        );
        assert_eq!(field(&f, "audience"), Some("reports"));
        assert_eq!(x.audience(Some(&other_audience)), Some("reports"));
        let subject = crate::token_cache::token_hash("s");
        let keys = [
            x.key(&subject, None),
            x.key(&subject, Some(&read_only)),
            x.key(&subject, Some(&other_audience)),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
        assert_ne!(keys[0], keys[2]);
    }

    #[test]
    fn failure_codes_round_trip() {
        let mut all = vec![
            ExchangeFailure::Rejected,
            ExchangeFailure::Failed,
            ExchangeFailure::Unavailable,
            ExchangeFailure::Timeout,
            ExchangeFailure::Refused(None),
        ];
        all.extend(
            KNOWN_ERRORS
                .iter()
                .map(|c| ExchangeFailure::Refused(Some(c))),
        );
        for failure in all {
            assert_eq!(ExchangeFailure::from_code(failure.code()), Some(failure));
        }
        assert_eq!(ExchangeFailure::from_code(0), None);
        assert_eq!(ExchangeFailure::from_code(200), None);
    }

    #[test]
    fn entra_on_behalf_of_request_and_errors() {
        let entra = TokenExchanger::new(config(json!({
            "grant": "jwt_bearer_obo",
            "token_endpoint": {"uri": "https://login.microsoftonline.com/tid/oauth2/v2.0/token",
                               "cluster": "entra"},
            "scopes": ["api://backend/.default"],
            "client_auth": {"method": "client_secret_post", "client_id": "filter-app",
                            "client_secret_env": "STS_SECRET"}
        })));
        let f = form(&entra.request("user.jwt", None).body);
        assert_eq!(field(&f, "grant_type"), Some(JWT_BEARER_GRANT));
        assert_eq!(field(&f, "assertion"), Some("user.jwt"));
        assert_eq!(field(&f, "requested_token_use"), Some("on_behalf_of"));
        assert_eq!(field(&f, "scope"), Some("api://backend/.default"));
        assert_eq!(field(&f, "client_id"), Some("filter-app"));
        assert_eq!(field(&f, "subject_token"), None);
        assert_eq!(field(&f, "audience"), None);
        let aadsts = br#"{"error":"interaction_required","error_description":"AADSTS50079: Due to a configuration change made by your administrator, you must enroll in MFA","error_codes":[50079],"suberror":"basic_action"}"#;
        let mut x = entra;
        let k = x.key(&crate::token_cache::token_hash("s"), None);
        assert_eq!(
            x.accept(k, Some(400), aadsts, NOW_MS, SUBJECT_EXP),
            Err(ExchangeFailure::Rejected)
        );
        assert_eq!(
            refusal_summary(aadsts).as_deref(),
            Some("interaction_required (AADSTS50079)")
        );
        assert_eq!(refusal_summary(br#"{"error":"<b>bad</b>"}"#), None);
        // Missing consent is not fixed by signing in again: a refusal, not a 401 loop.
        let consent = br#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented","error_codes":[65001],"suberror":"consent_required"}"#;
        assert_eq!(
            x.accept(k, Some(400), consent, NOW_MS, SUBJECT_EXP),
            Err(ExchangeFailure::Refused(Some("consent_required")))
        );
        // For on-behalf-of, invalid_request is our request's fault, not the user's token.
        assert_eq!(
            x.accept(
                k,
                Some(400),
                br#"{"error":"invalid_request"}"#,
                NOW_MS,
                SUBJECT_EXP
            ),
            Err(ExchangeFailure::Refused(Some("invalid_request")))
        );
        let consent = ExchangeFailure::Refused(Some("consent_required"));
        assert_eq!(ExchangeFailure::from_code(consent.code()), Some(consent));
    }

    #[test]
    fn an_rfc_8693_invalid_request_means_the_subject_token_was_refused() {
        // RFC 8693 §2.2.2: an invalid or unacceptable subject token is `invalid_request`
        // (Keycloak answers an ended user session so): the client signs in again.
        let mut x = okta();
        let k = x.key(&crate::token_cache::token_hash("s"), None);
        let body = br#"{"error":"invalid_request","error_description":"Invalid token"}"#;
        assert_eq!(
            x.accept(k, Some(400), body, NOW_MS, SUBJECT_EXP),
            Err(ExchangeFailure::Rejected)
        );
    }
}
