//! The decision for one request, given its head, the keys at hand and the time.
//!
//! Cheap checks run before the signature (a flood of expired or foreign tokens costs no RSA),
//! and the decision can be "wait": the keys are loading, or the token names a `kid` we do not
//! know yet and a refetch is allowed. The proxy-wasm layer parks the request and asks again
//! when the keys change.

use crate::config::{Config, KeySource};
use crate::jwks::{KeyLookup, KeySet, SignatureError};
use crate::jwks_cache::{Availability, FetchRequest, JwksCache};
use crate::jwt::{self, TokenError, UnverifiedToken};
use crate::response::{DenyReason, LocalResponse, Responses};
use std::rc::Rc;

use crate::cache::Digest;
use crate::token_cache::{token_hash, Identity, VerifiedToken, VerifiedTokenCache};

/// The parts of a request the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    pub authorization: Authorization<'a>,
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: a CORS preflight, which
    /// browsers send without credentials.
    pub is_cors_preflight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    Absent,
    Present(&'a str),
    /// More than one `Authorization` header: ambiguous, refused.
    Repeated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    FirstKeys,
    UnknownKid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answered by the filter itself (Protected Resource Metadata).
    Respond(LocalResponse),
    /// Forwarded without authentication (bypass path or CORS preflight).
    Bypass,
    Allow {
        identity: Rc<Identity>,
        /// SHA-256 of the token: the audit fingerprint and the base of the exchange cache key.
        token_hash: Digest,
        cache_hit: bool,
    },
    Deny {
        reason: DenyReason,
        response: LocalResponse,
        identity: Option<Rc<Identity>>,
        token_hash: Option<Digest>,
    },
    /// Keys are needed from this provider first.
    Wait { provider: usize, wait_for: WaitFor },
}

/// Keys of every provider, local or remote, in configuration order.
pub struct Keyring {
    providers: Vec<ProviderKeys>,
}

enum ProviderKeys {
    Local(KeySet),
    Remote(Box<JwksCache>),
}

impl Keyring {
    pub fn new(config: &Config) -> Keyring {
        let providers = config
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Local(set) => ProviderKeys::Local(set.clone()),
                KeySource::Remote(r) => ProviderKeys::Remote(Box::new(JwksCache::new(r.clone()))),
            })
            .collect();
        Keyring { providers }
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn keys(&self, provider: usize) -> Option<&KeySet> {
        match self.providers.get(provider)? {
            ProviderKeys::Local(set) => Some(set),
            ProviderKeys::Remote(cache) => cache.keys(),
        }
    }

    pub fn remote(&self, provider: usize) -> Option<&JwksCache> {
        match self.providers.get(provider)? {
            ProviderKeys::Remote(cache) => Some(cache),
            ProviderKeys::Local(_) => None,
        }
    }

    pub fn remote_mut(&mut self, provider: usize) -> Option<&mut JwksCache> {
        match self.providers.get_mut(provider)? {
            ProviderKeys::Remote(cache) => Some(cache),
            ProviderKeys::Local(_) => None,
        }
    }

    fn availability(&self, provider: usize, now_ms: u64) -> Availability {
        match self.providers.get(provider) {
            Some(ProviderKeys::Local(_)) => Availability::Ready,
            Some(ProviderKeys::Remote(cache)) => cache.availability(now_ms),
            None => Availability::Unavailable,
        }
    }

    fn may_refetch_for_unknown_kid(&self, provider: usize, now_ms: u64) -> bool {
        self.remote(provider)
            .is_some_and(|c| c.may_refetch_for_unknown_kid(now_ms))
    }

    /// The fetch to start for a request that must wait, if one is not already in flight.
    pub fn fetch_for(
        &mut self,
        provider: usize,
        wait_for: WaitFor,
        now_ms: u64,
    ) -> Option<FetchRequest> {
        let cache = self.remote_mut(provider)?;
        match wait_for {
            WaitFor::FirstKeys => cache.due_fetch(now_ms),
            WaitFor::UnknownKid => cache.refetch_for_unknown_kid(now_ms),
        }
    }
}

pub struct Authenticator {
    config: Config,
    responses: Responses,
    cache: VerifiedTokenCache,
}

impl Authenticator {
    pub fn new(config: Config) -> Authenticator {
        Authenticator {
            responses: Responses::new(&config),
            cache: VerifiedTokenCache::new(config.jwt_cache_size),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn responses(&self) -> &Responses {
        &self.responses
    }

    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    pub fn decide(&mut self, request: &Request<'_>, keyring: &Keyring, now_ms: u64) -> Decision {
        if let Some(response) = self.responses.metadata(request.method, request.path) {
            return Decision::Respond(response);
        }
        if self.bypasses(request) {
            return Decision::Bypass;
        }
        let token = match request.authorization {
            Authorization::Absent => return self.deny(DenyReason::MissingToken, None, None),
            Authorization::Repeated => return self.deny(DenyReason::InvalidRequest, None, None),
            Authorization::Present(value) => match bearer_token(value) {
                Some(t) => t,
                None => return self.deny(DenyReason::InvalidRequest, None, None),
            },
        };
        let hash = token_hash(token);
        let now_s = now_ms / 1000;

        if let Some(hit) = self.cache.get(&hash) {
            let skew = self.provider_skew(hit.identity.provider);
            let time_ok = now_s < hit.identity.expires_at.saturating_add(skew)
                && hit.nbf.is_none_or(|nbf| now_s.saturating_add(skew) >= nbf);
            let key_still_published = match (&hit.kid, keyring.keys(hit.identity.provider)) {
                (Some(kid), Some(keys)) => keys.contains_kid(kid),
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if time_ok && key_still_published {
                let identity = Rc::clone(&hit.identity);
                return self.authorize(identity, hash, true);
            }
            // Stale entry: drop it and decide from scratch (which names the precise reason).
            self.cache.remove(&hash);
        }

        let parsed = match jwt::parse(token, self.config.max_token_bytes) {
            Ok(p) => p,
            Err(e) => return self.deny(DenyReason::Token(e), None, Some(hash)),
        };
        match self.verify(&parsed, token, keyring, now_ms) {
            Ok(provider) => {
                let identity = Rc::new(self.identity(provider, &parsed));
                let verified = VerifiedToken {
                    identity: Rc::clone(&identity),
                    nbf: parsed.claims.nbf,
                    kid: parsed.kid.clone(),
                    alg: parsed.alg,
                };
                self.cache.insert(hash, verified);
                self.authorize(identity, hash, false)
            }
            Err(Verification::Wait(provider, wait_for)) => Decision::Wait { provider, wait_for },
            Err(Verification::Deny(reason)) => self.deny(reason, None, Some(hash)),
        }
    }

    /// Signature and claims; `Ok` carries the provider's index.
    fn verify(
        &self,
        token: &UnverifiedToken,
        raw: &str,
        keyring: &Keyring,
        now_ms: u64,
    ) -> Result<usize, Verification> {
        let claims = &token.claims;
        let deny = |e: TokenError| Verification::Deny(DenyReason::Token(e));
        let (provider_index, provider) = claims
            .iss
            .as_deref()
            .and_then(|iss| self.config.provider_for_issuer(iss))
            .ok_or(deny(TokenError::IssuerNotTrusted))?;
        claims
            .check_time(now_ms / 1000, provider.clock_skew_seconds)
            .map_err(deny)?;
        if !claims.has_audience_in(&provider.audiences) {
            return Err(deny(TokenError::AudienceNotAccepted));
        }
        let keys = match keyring.availability(provider_index, now_ms) {
            Availability::Ready => keyring.keys(provider_index),
            Availability::Loading => {
                return Err(Verification::Wait(provider_index, WaitFor::FirstKeys))
            }
            Availability::Unavailable => None,
        }
        .ok_or(Verification::Deny(DenyReason::JwksUnavailable))?;
        let candidates = match keys.lookup(token.kid.as_deref(), token.alg) {
            KeyLookup::Candidates(c) => c,
            KeyLookup::AlgorithmMismatch => return Err(deny(TokenError::AlgorithmMismatch)),
            KeyLookup::UnknownKey => {
                return Err(
                    if keyring.may_refetch_for_unknown_kid(provider_index, now_ms) {
                        Verification::Wait(provider_index, WaitFor::UnknownKid)
                    } else {
                        deny(TokenError::KeyNotFound)
                    },
                )
            }
        };
        let mut failure = TokenError::SignatureInvalid;
        for key in candidates {
            match key.verify(token.alg, raw) {
                Ok(()) => return Ok(provider_index),
                Err(SignatureError::Invalid) => {}
                Err(SignatureError::KeyMismatch) => failure = TokenError::AlgorithmMismatch,
                Err(SignatureError::Unreadable) => failure = TokenError::Malformed,
            }
        }
        Err(deny(failure))
    }

    fn identity(&self, provider: usize, token: &UnverifiedToken) -> Identity {
        let p = self.config.providers.get(provider);
        let claims = &token.claims;
        let headers = p
            .map(|p| p.claim_to_headers.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| Some((c.header_name.clone(), claims.header_value(&c.claim_path)?)))
            .collect();
        Identity {
            provider,
            issuer: p.map(|p| p.issuer.clone()).unwrap_or_default(),
            subject: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            scopes: claims.scopes.clone(),
            expires_at: claims.exp.unwrap_or(0),
            headers,
        }
    }

    fn authorize(&self, identity: Rc<Identity>, token_hash: Digest, cache_hit: bool) -> Decision {
        let missing_scope = self
            .config
            .required_scopes
            .iter()
            .any(|s| !identity.scopes.contains(s));
        if missing_scope {
            return self.deny(
                DenyReason::InsufficientScope,
                Some(identity),
                Some(token_hash),
            );
        }
        Decision::Allow {
            identity,
            token_hash,
            cache_hit,
        }
    }

    fn deny(
        &self,
        reason: DenyReason,
        identity: Option<Rc<Identity>>,
        token_hash: Option<Digest>,
    ) -> Decision {
        Decision::Deny {
            reason,
            response: self.responses.deny(reason),
            identity,
            token_hash,
        }
    }

    /// The answer for a request whose keys never came (fetch failed or timed out).
    pub fn keys_unavailable(&self, token_hash: Option<Digest>) -> Decision {
        self.deny(DenyReason::JwksUnavailable, None, token_hash)
    }

    fn provider_skew(&self, provider: usize) -> u64 {
        self.config
            .providers
            .get(provider)
            .map_or(0, |p| p.clock_skew_seconds)
    }

    fn bypasses(&self, request: &Request<'_>) -> bool {
        if request.is_cors_preflight && self.config.bypass_cors_preflight {
            return true;
        }
        if self.config.bypass_paths.is_empty() {
            return false;
        }
        let path = request.path.split('?').next().unwrap_or(request.path);
        is_plain_path(path) && self.config.bypass_paths.iter().any(|m| m.matches(path))
    }
}

enum Verification {
    Wait(usize, WaitFor),
    Deny(DenyReason),
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750 b64token). `None` when malformed.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    valid.then_some(token)
}

/// A path fit for bypass matching: ASCII, no dot segments, no encoded separators or dots,
/// no backslash. Envoy normalises paths when configured to; this holds even when it is not.
fn is_plain_path(path: &str) -> bool {
    if !path.is_ascii() || path.contains('\\') || path.contains("//") {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    !(lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use jwt_simple::prelude::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.com";
    const RESOURCE: &str = "https://mcp.example.com/mcp";
    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn config_json(keys: serde_json::Value) -> serde_json::Value {
        json!({
            "resource": RESOURCE,
            "required_scopes": ["mcp:tools:call"],
            "bypass_paths": [{"exact": "/healthz"}, {"prefix": "/public/"}],
            "providers": {"idp": {
                "issuer": ISS,
                "clock_skew_seconds": 60,
                "local_jwks": {"inline_string": String::from_utf8(keys_doc(keys)).unwrap()},
                "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
            }}
        })
    }

    fn keys_doc(keys: serde_json::Value) -> Vec<u8> {
        keys.to_string().into_bytes()
    }

    fn local_setup() -> (Authenticator, Keyring) {
        let doc = json!({"keys": [rsa_jwk(rsa(), "rsa-1", None)]});
        let config = Config::from_json(config_json(doc).to_string().as_bytes()).unwrap();
        let keyring = Keyring::new(&config);
        (Authenticator::new(config), keyring)
    }

    fn remote_setup(extra: serde_json::Value) -> (Authenticator, Keyring) {
        let mut remote =
            json!({"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}});
        if let (Some(r), Some(e)) = (remote.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        let v = json!({
            "resource": RESOURCE,
            "providers": {"idp": {"issuer": ISS, "remote_jwks": remote}}
        });
        let config = Config::from_json(v.to_string().as_bytes()).unwrap();
        let keyring = Keyring::new(&config);
        (Authenticator::new(config), keyring)
    }

    #[derive(Serialize, Deserialize)]
    struct Extra {
        #[serde(skip_serializing_if = "Option::is_none")]
        scp: Option<Vec<String>>,
    }

    fn claims_at(now: u64) -> JWTClaims<Extra> {
        let mut c = Claims::with_custom_claims(
            Extra {
                scp: Some(vec!["mcp:tools:call".into()]),
            },
            Duration::from_secs(300),
        )
        .with_issuer(ISS)
        .with_audience(RESOURCE)
        .with_subject("alice");
        c.issued_at = Some(UnixTimeStamp::from_secs(now));
        c.invalid_before = Some(UnixTimeStamp::from_secs(now));
        c.expires_at = Some(UnixTimeStamp::from_secs(now + 300));
        c
    }

    fn sign(claims: JWTClaims<Extra>) -> String {
        rsa().sign(claims).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn request<'a>(authorization: Authorization<'a>) -> Request<'a> {
        Request {
            method: "POST",
            path: "/mcp",
            authorization,
            is_cors_preflight: false,
        }
    }

    fn reason(d: &Decision) -> Option<DenyReason> {
        match d {
            Decision::Deny { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn valid_token_is_allowed_with_identity_headers_then_cached() {
        let (mut auth, keyring) = local_setup();
        let header = bearer(&sign(claims_at(NOW)));
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        let Decision::Allow {
            identity,
            cache_hit,
            token_hash,
        } = d
        else {
            panic!("expected allow, got {d:?}")
        };
        assert!(!cache_hit);
        let raw = header.strip_prefix("Bearer ").unwrap();
        assert_eq!(token_hash, crate::token_cache::token_hash(raw));
        assert_eq!(identity.subject.as_deref(), Some("alice"));
        assert_eq!(
            identity.headers,
            vec![("x-user".to_string(), "alice".to_string())]
        );
        let again = auth.decide(
            &request(Authorization::Present(&header)),
            &keyring,
            NOW_MS + 1000,
        );
        assert!(matches!(
            again,
            Decision::Allow {
                cache_hit: true,
                ..
            }
        ));
    }

    #[test]
    fn cache_hit_still_rechecks_expiry() {
        let (mut auth, keyring) = local_setup();
        let header = bearer(&sign(claims_at(NOW)));
        assert!(matches!(
            auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS),
            Decision::Allow { .. }
        ));
        let later = NOW_MS + (300 + 60) * 1000;
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, later);
        assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::Expired)));
        // Within the skew it is still fine.
        let (mut auth, keyring) = local_setup();
        let d = auth.decide(
            &request(Authorization::Present(&header)),
            &keyring,
            later - 1000,
        );
        assert!(matches!(d, Decision::Allow { .. }));
    }

    #[test]
    fn missing_and_malformed_credentials() {
        let (mut auth, keyring) = local_setup();
        let d = auth.decide(&request(Authorization::Absent), &keyring, NOW_MS);
        assert_eq!(reason(&d), Some(DenyReason::MissingToken));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "bearer,x",
            "Token x",
        ] {
            let d = auth.decide(&request(Authorization::Present(bad)), &keyring, NOW_MS);
            assert_eq!(reason(&d), Some(DenyReason::InvalidRequest), "{bad}");
        }
        let d = auth.decide(&request(Authorization::Repeated), &keyring, NOW_MS);
        assert_eq!(reason(&d), Some(DenyReason::InvalidRequest));
    }

    #[test]
    fn bearer_scheme_parsing() {
        assert_eq!(bearer_token("Bearer abc.def-_~+/="), Some("abc.def-_~+/="));
        assert_eq!(bearer_token("bEaReR   abc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer a=b"), None);
        assert_eq!(bearer_token("Bearer ==="), None);
    }

    #[test]
    fn claim_failures_name_the_reason() {
        let (mut auth, keyring) = local_setup();
        let mut check = |claims: JWTClaims<Extra>, expected: TokenError| {
            let header = bearer(&sign(claims));
            let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
            assert_eq!(reason(&d), Some(DenyReason::Token(expected)));
        };
        check(claims_at(NOW - 1000), TokenError::Expired);
        check(claims_at(NOW + 1000), TokenError::NotYetValid);
        check(
            claims_at(NOW).with_issuer("https://evil.example.com"),
            TokenError::IssuerNotTrusted,
        );
        check(
            claims_at(NOW).with_issuer(format!("{ISS}/")),
            TokenError::IssuerNotTrusted,
        );
        check(
            claims_at(NOW).with_audience("https://other.example.com"),
            TokenError::AudienceNotAccepted,
        );
        let mut no_exp = claims_at(NOW);
        no_exp.expires_at = None;
        check(no_exp, TokenError::MissingExpiry);
        let mut future_iat = claims_at(NOW);
        future_iat.invalid_before = None;
        future_iat.issued_at = Some(UnixTimeStamp::from_secs(NOW + 600));
        check(future_iat, TokenError::IssuedInFuture);
    }

    #[test]
    fn audience_may_be_an_array() {
        let (mut auth, keyring) = local_setup();
        let mut audiences = std::collections::HashSet::new();
        audiences.insert("https://other".to_string());
        audiences.insert(RESOURCE.to_string());
        let header = bearer(&sign(claims_at(NOW).with_audiences(audiences)));
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    }

    #[test]
    fn forged_and_confused_tokens_are_refused() {
        let (mut auth, keyring) = local_setup();
        // Signed by another key that claims our kid.
        let forged = rsa_other()
            .clone()
            .with_key_id("rsa-1")
            .sign(claims_at(NOW))
            .unwrap();
        let header = bearer(&forged);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(
            reason(&d),
            Some(DenyReason::Token(TokenError::SignatureInvalid))
        );

        // HS256 with the RSA public key (PEM) as the HMAC secret.
        let pem = rsa().public_key().to_pem().unwrap();
        let hs = HS256Key::from_bytes(pem.as_bytes())
            .with_key_id("rsa-1")
            .authenticate(claims_at(NOW))
            .unwrap();
        let header = bearer(&hs);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(
            reason(&d),
            Some(DenyReason::Token(TokenError::AlgorithmNotAllowed))
        );

        // alg: none, unsigned.
        let real = sign(claims_at(NOW));
        let payload = real.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","kid":"rsa-1"}"#),
            payload
        );
        let header = bearer(&none);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(
            reason(&d),
            Some(DenyReason::Token(TokenError::AlgorithmNotAllowed))
        );

        // RS256 signature relabelled as ES256 on an RSA key.
        let sig = real.split('.').nth(2).unwrap();
        let relabelled = format!(
            "{}.{}.{}",
            base64_url(r#"{"alg":"ES256","kid":"rsa-1"}"#),
            payload,
            sig
        );
        let header = bearer(&relabelled);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(
            reason(&d),
            Some(DenyReason::Token(TokenError::AlgorithmMismatch))
        );

        // A tampered payload.
        let tampered_payload = base64_url(&format!(
            r#"{{"iss":"{ISS}","aud":"{RESOURCE}","sub":"mallory","exp":{},"scp":["mcp:tools:call"]}}"#,
            NOW + 100
        ));
        let parts: Vec<&str> = real.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
        let header = bearer(&tampered);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        assert_eq!(
            reason(&d),
            Some(DenyReason::Token(TokenError::SignatureInvalid))
        );
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn missing_scope_is_insufficient_scope_with_identity() {
        let (mut auth, keyring) = local_setup();
        let mut claims = claims_at(NOW);
        claims.custom.scp = Some(vec!["other".into()]);
        let header = bearer(&sign(claims));
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, NOW_MS);
        let Decision::Deny {
            reason,
            response,
            identity,
            ..
        } = d
        else {
            panic!("expected deny")
        };
        assert_eq!(reason, DenyReason::InsufficientScope);
        assert_eq!(response.status, 403);
        assert_eq!(identity.unwrap().subject.as_deref(), Some("alice"));
    }

    #[test]
    fn metadata_bypass_and_preflight() {
        let (mut auth, keyring) = local_setup();
        let mut r = request(Authorization::Absent);
        r.method = "GET";
        r.path = "/.well-known/oauth-protected-resource/mcp";
        assert!(matches!(
            auth.decide(&r, &keyring, NOW_MS),
            Decision::Respond(_)
        ));
        for (path, bypass) in [
            ("/healthz", true),
            ("/healthz?x=1", true),
            ("/public/a", true),
            ("/healthz/", false),
            ("/public/../mcp", false),
            ("/public/%2e%2e/mcp", false),
            ("/public/caf\u{e9}", false),
            ("/public//mcp", false),
            ("/mcp", false),
        ] {
            r.path = path;
            let d = auth.decide(&r, &keyring, NOW_MS);
            assert_eq!(matches!(d, Decision::Bypass), bypass, "{path}: {d:?}");
        }
        let mut preflight = request(Authorization::Absent);
        preflight.method = "OPTIONS";
        preflight.is_cors_preflight = true;
        assert!(matches!(
            auth.decide(&preflight, &keyring, NOW_MS),
            Decision::Bypass
        ));
    }

    #[test]
    fn remote_keys_make_requests_wait_then_decide() {
        let (mut auth, mut keyring) = remote_setup(json!({}));
        let header = bearer(&sign(claims_at(NOW)));
        let req = request(Authorization::Present(&header));
        assert_eq!(
            auth.decide(&req, &keyring, NOW_MS),
            Decision::Wait {
                provider: 0,
                wait_for: WaitFor::FirstKeys
            }
        );
        // Cheap checks happen before waiting: an expired token is refused at once.
        let expired = bearer(&sign(claims_at(NOW - 1000)));
        let d = auth.decide(&request(Authorization::Present(&expired)), &keyring, NOW_MS);
        assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::Expired)));

        let fetch = keyring.fetch_for(0, WaitFor::FirstKeys, NOW_MS).unwrap();
        assert_eq!(fetch.cluster, "idp");
        assert_eq!(
            keyring.fetch_for(0, WaitFor::FirstKeys, NOW_MS),
            None,
            "already in flight"
        );
        let cache = keyring.remote_mut(0).unwrap();
        cache.on_response(
            NOW_MS,
            false,
            Some(200),
            None,
            &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
        );
        assert!(matches!(
            auth.decide(&req, &keyring, NOW_MS),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn failed_first_fetch_gives_503_then_recovers() {
        let (mut auth, mut keyring) = remote_setup(json!({}));
        let header = bearer(&sign(claims_at(NOW)));
        let req = request(Authorization::Present(&header));
        keyring.fetch_for(0, WaitFor::FirstKeys, NOW_MS).unwrap();
        keyring
            .remote_mut(0)
            .unwrap()
            .on_failure(NOW_MS, "refused".into());
        let d = auth.decide(&req, &keyring, NOW_MS + 10);
        assert_eq!(reason(&d), Some(DenyReason::JwksUnavailable));
        // After the backoff the request waits for a new fetch, which succeeds.
        let later = NOW_MS + 1_000;
        assert!(matches!(
            auth.decide(&req, &keyring, later),
            Decision::Wait { .. }
        ));
        keyring.fetch_for(0, WaitFor::FirstKeys, later).unwrap();
        keyring.remote_mut(0).unwrap().on_response(
            later,
            false,
            Some(200),
            None,
            &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
        );
        assert!(matches!(
            auth.decide(&req, &keyring, later),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn unknown_kid_waits_for_one_rate_limited_refetch() {
        let (mut auth, mut keyring) = remote_setup(json!({"unknown_kid_refetch_interval": "30s"}));
        keyring.fetch_for(0, WaitFor::FirstKeys, NOW_MS).unwrap();
        keyring.remote_mut(0).unwrap().on_response(
            NOW_MS,
            false,
            Some(200),
            None,
            &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
        );

        // Rotated key: its kid is not known yet, and the last fetch was just now.
        let rotated = rsa_other().sign(claims_at(NOW)).unwrap();
        let header = bearer(&rotated);
        let req = request(Authorization::Present(&header));
        let d = auth.decide(&req, &keyring, NOW_MS + 1_000);
        assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::KeyNotFound)));

        let t = NOW_MS + 30_000;
        assert_eq!(
            auth.decide(&req, &keyring, t),
            Decision::Wait {
                provider: 0,
                wait_for: WaitFor::UnknownKid
            }
        );
        assert!(keyring.fetch_for(0, WaitFor::UnknownKid, t).is_some());
        assert!(
            keyring.fetch_for(0, WaitFor::UnknownKid, t).is_none(),
            "one refetch"
        );
        keyring.remote_mut(0).unwrap().on_response(
            t,
            false,
            Some(200),
            None,
            &jwks(vec![
                rsa_jwk(rsa(), "rsa-1", None),
                rsa_jwk(rsa_other(), "rsa-2", None),
            ]),
        );
        assert!(matches!(
            auth.decide(&req, &keyring, t),
            Decision::Allow { .. }
        ));

        // A kid that is still unknown after the refetch is refused, without another fetch.
        let token = rsa_other()
            .clone()
            .with_key_id("rsa-3")
            .sign(claims_at(NOW))
            .unwrap();
        let header = bearer(&token);
        let d = auth.decide(&request(Authorization::Present(&header)), &keyring, t + 1);
        assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::KeyNotFound)));
    }

    #[test]
    fn cached_token_is_refused_once_its_key_is_withdrawn() {
        let (mut auth, mut keyring) = remote_setup(json!({"cache_duration": "60s"}));
        keyring.fetch_for(0, WaitFor::FirstKeys, NOW_MS).unwrap();
        keyring.remote_mut(0).unwrap().on_response(
            NOW_MS,
            false,
            Some(200),
            None,
            &jwks(vec![rsa_jwk(rsa(), "rsa-1", None)]),
        );
        let header = bearer(&sign(claims_at(NOW)));
        let req = request(Authorization::Present(&header));
        assert!(matches!(
            auth.decide(&req, &keyring, NOW_MS),
            Decision::Allow {
                cache_hit: false,
                ..
            }
        ));
        assert!(matches!(
            auth.decide(&req, &keyring, NOW_MS),
            Decision::Allow {
                cache_hit: true,
                ..
            }
        ));
        // The IdP withdraws rsa-1.
        let cache = keyring.remote_mut(0).unwrap();
        let t = cache.refresh_at();
        cache.due_fetch(t).unwrap();
        cache.on_response(
            t,
            false,
            Some(200),
            None,
            &jwks(vec![rsa_jwk(rsa_other(), "rsa-2", None)]),
        );
        let d = auth.decide(&req, &keyring, t);
        assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::KeyNotFound)));
    }
}
