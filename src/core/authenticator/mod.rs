//! The decision for one request, given its head, the keys at hand and the time.
//!
//! Cheap checks run before the signature (a flood of expired or foreign tokens costs no RSA),
//! and the decision can be "keys needed": none are loaded yet, or the token names a `kid` we
//! do not know. The proxy-wasm layer then looks at what the other workers did, waits for a
//! fetch or refuses, and asks again when the keys change.

use std::rc::Rc;

use crate::cache::BoundedCache;
use crate::cache::Digest;
use crate::config::{Config, KeySource, ProviderId};
use crate::introspection::{looks_like_jwt, Introspected};
use crate::jwks::{KeyLookup, SignatureError, Thumbprint};
use crate::jwks_cache::Availability;
use crate::jwt::{self, Claims, TokenError, UnverifiedToken};
use crate::keyring::Keyring;
use crate::mcp::policy::{effective_scopes, Policy};
use crate::request::{bearer_token, is_plain_path, path_without_query, Authorization, Request};
use crate::response::{DenyReason, LocalResponse, Responses};
use crate::time::UnixMillis;
use crate::token_cache::{token_hash, Identity, VerifiedBy, VerifiedToken, VerifiedTokenCache};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answered by the filter itself (Protected Resource Metadata).
    Respond(LocalResponse),
    /// Forwarded without authentication (bypass path or CORS preflight).
    Bypass,
    Allow(Authenticated),
    Deny(Denial),
    /// A provider's keys are needed before the token can be judged.
    NeedKeys(KeyNeed),
    /// The token is judged by asking its IdP (RFC 7662).
    NeedIntrospection(IntrospectionNeed),
}

/// A token to introspect at `provider`'s IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionNeed {
    pub provider: ProviderId,
    pub token_hash: Digest,
    pub token: String,
}

/// A caller whose token was verified, with what the later steps need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub identity: Rc<Identity>,
    /// SHA-256 of the token: the audit fingerprint and the base of the exchange cache key.
    pub token_hash: Digest,
    /// The token itself: the subject token of a token exchange.
    pub token: String,
    pub cache_hit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub response: LocalResponse,
    /// The caller, when the token was verified before the request was refused.
    pub identity: Option<Rc<Identity>>,
    pub token_hash: Option<Digest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyNeed {
    pub provider: ProviderId,
    pub kind: KeyNeedKind,
    pub token_hash: Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNeedKind {
    /// No keys yet; a fetch is under way or may start: wait for it.
    FirstKeys,
    /// The token's `kid` is unknown; a refetch is under way or may start: wait for it.
    UnknownKid,
    /// No keys, and the last fetch failed recently: refused (503) unless another worker has
    /// keys.
    KeysUnavailable,
    /// The `kid` is unknown and no refetch may start now: refused unless another worker has
    /// newer keys.
    KeyNotFound,
}

impl KeyNeed {
    /// Whether the request may wait for a fetch (rather than be refused).
    pub fn may_wait(&self) -> bool {
        matches!(self.kind, KeyNeedKind::FirstKeys | KeyNeedKind::UnknownKid)
    }
}

pub struct Authenticator {
    config: Config,
    responses: Responses,
    cache: VerifiedTokenCache,
    /// The claims MCP rules look at, kept with each identity.
    rule_claims: Vec<Vec<String>>,
    /// `mcp.scope_implies`: a broader scope implies narrower ones.
    scope_implies: Vec<(String, Vec<String>)>,
    /// Tokens the IdP refused when introspected (or whose answer failed our checks): why, and
    /// until when that is remembered.
    refused: BoundedCache<(TokenError, UnixMillis)>,
    /// The provider that introspects opaque tokens (there is at most one).
    introspecting: Option<ProviderId>,
}

impl Authenticator {
    pub fn new(config: Config) -> Authenticator {
        let (rule_claims, scope_implies) = match &config.mcp {
            Some(mcp) => (Policy::claim_paths(mcp), mcp.scope_implies.clone()),
            None => (Vec::new(), Vec::new()),
        };
        let introspecting = config
            .providers
            .iter()
            .position(|p| matches!(p.keys, KeySource::Introspection(_)))
            .map(ProviderId);
        Authenticator {
            responses: Responses::new(&config),
            cache: VerifiedTokenCache::new(config.jwt_cache_size),
            refused: BoundedCache::new(config.jwt_cache_size.min(MAX_REFUSED_REMEMBERED)),
            introspecting,
            rule_claims,
            scope_implies,
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn responses(&self) -> &Responses {
        &self.responses
    }

    pub fn decide(
        &mut self,
        request: &Request<'_>,
        keyring: &Keyring,
        now: UnixMillis,
    ) -> Decision {
        if let Some(response) = self.responses.metadata(request.method, request.path) {
            return Decision::Respond(response);
        }
        if self.bypasses(request) {
            return Decision::Bypass;
        }
        let token = match request.authorization {
            Authorization::Absent => return self.deny(DenyReason::MissingToken, None),
            Authorization::Repeated => return self.deny(DenyReason::InvalidRequest, None),
            Authorization::Present(value) => match bearer_token(value) {
                Some(t) => t,
                None => return self.deny(DenyReason::InvalidRequest, None),
            },
        };
        let hash = token_hash(token);

        if let Some(hit) = self.cache.get(&hash) {
            if self.still_valid(hit, keyring, now) {
                let identity = Rc::clone(&hit.identity);
                return self.authorize(identity, hash, token, true);
            }
            // Stale entry: drop it and decide from scratch (which names the precise reason).
            self.cache.remove(&hash);
        }
        if let Some((reason, until)) = self.refused.get(&hash) {
            if now < *until {
                return self.deny(DenyReason::Token(*reason), Some(hash));
            }
        }
        if token.len() > self.config.max_token_bytes {
            return self.deny(DenyReason::Token(TokenError::TooLarge), Some(hash));
        }
        // An opaque token: only the introspecting provider can say what it is.
        if let (Some(provider), false) = (self.introspecting, looks_like_jwt(token)) {
            return self.introspect(provider, hash, token);
        }

        let parsed = match jwt::parse(token, self.config.max_token_bytes) {
            Ok(p) => p,
            Err(e) => return self.deny(DenyReason::Token(e), Some(hash)),
        };
        // A JWT from the introspecting provider is vouched for by its IdP, not its signature.
        let by_introspection = parsed
            .claims
            .iss
            .as_deref()
            .and_then(|iss| self.config.provider_for_issuer(iss))
            .filter(|(id, _)| Some(*id) == self.introspecting);
        if let Some((provider, _)) = by_introspection {
            return self.introspect(provider, hash, token);
        }
        match self.verify(&parsed, token, keyring, now) {
            Ok((provider, key)) => {
                let identity = Rc::new(self.identity(provider, &parsed));
                let verified = VerifiedToken {
                    identity: Rc::clone(&identity),
                    nbf: parsed.claims.nbf,
                    by: VerifiedBy::Key(key),
                };
                self.cache.insert(hash, verified);
                self.authorize(identity, hash, token, false)
            }
            Err(Verification::NeedKeys(provider, kind)) => Decision::NeedKeys(KeyNeed {
                provider,
                kind,
                token_hash: hash,
            }),
            Err(Verification::Deny(reason)) => self.deny(reason, Some(hash)),
        }
    }

    /// A cached token is still good: its time window (with the provider's skew) and the key
    /// that verified it, which must still be published.
    fn still_valid(&self, hit: &VerifiedToken, keyring: &Keyring, now: UnixMillis) -> bool {
        let now_s = now.seconds();
        let skew = self
            .config
            .provider(hit.identity.provider)
            .map_or(0, |p| p.clock_skew_seconds);
        let time_ok = now_s < hit.identity.expires_at.plus(skew)
            && hit.nbf.is_none_or(|nbf| now_s.plus(skew) >= nbf);
        let still_vouched = match &hit.by {
            VerifiedBy::Key(key) => keyring
                .keys(hit.identity.provider)
                .is_some_and(|keys| keys.contains_thumbprint(key)),
            VerifiedBy::Introspection { until } => now < *until,
        };
        time_ok && still_vouched
    }

    /// Signature and claims; `Ok` carries the provider and the key that verified the token.
    fn verify(
        &self,
        token: &UnverifiedToken,
        raw: &str,
        keyring: &Keyring,
        now: UnixMillis,
    ) -> Result<(ProviderId, Thumbprint), Verification> {
        let claims = &token.claims;
        let deny = |e: TokenError| Verification::Deny(DenyReason::Token(e));
        let (provider_id, provider) = claims
            .iss
            .as_deref()
            .and_then(|iss| self.config.provider_for_issuer(iss))
            .ok_or(deny(TokenError::IssuerNotTrusted))?;
        claims
            .check_time(
                now.seconds(),
                provider.clock_skew_seconds,
                provider.max_lifetime,
            )
            .map_err(deny)?;
        if !claims.has_audience_in(&provider.audiences) {
            return Err(deny(TokenError::AudienceNotAccepted));
        }
        let need = |kind| Verification::NeedKeys(provider_id, kind);
        let keys = match keyring.availability(provider_id, now) {
            Availability::Ready => keyring.keys(provider_id),
            Availability::Loading => return Err(need(KeyNeedKind::FirstKeys)),
            Availability::Unavailable => None,
        }
        .ok_or(need(KeyNeedKind::KeysUnavailable))?;
        let candidates = match keys.lookup(token.kid.as_deref(), token.alg) {
            KeyLookup::Candidates(c) => c,
            KeyLookup::AlgorithmMismatch => return Err(deny(TokenError::AlgorithmMismatch)),
            KeyLookup::UnknownKey => {
                return Err(if keyring.may_refetch_for_unknown_kid(provider_id, now) {
                    need(KeyNeedKind::UnknownKid)
                } else {
                    need(KeyNeedKind::KeyNotFound)
                })
            }
        };
        let mut failure = TokenError::SignatureInvalid;
        for key in candidates {
            match key.verify(token.alg, raw) {
                Ok(verified_by) => return Ok((provider_id, verified_by.thumbprint())),
                Err(SignatureError::Invalid) => {}
                Err(SignatureError::KeyMismatch) => failure = TokenError::AlgorithmMismatch,
            }
        }
        Err(deny(failure))
    }

    fn identity(&self, provider: ProviderId, token: &UnverifiedToken) -> Identity {
        self.identity_from(provider, &token.claims)
    }

    /// The caller a verified token (or an active introspection answer) describes.
    fn identity_from(&self, provider: ProviderId, claims: &Claims) -> Identity {
        let p = self.config.provider(provider);
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
            scopes: effective_scopes(&self.scopes_of(provider, claims), &self.scope_implies),
            expires_at: claims.exp.unwrap_or_default(),
            headers,
            claims: self
                .rule_claims
                .iter()
                .filter_map(|path| Some((path.clone(), claims.value(path)?.clone())))
                .collect(),
        }
    }

    /// The token's scopes, from the claims the provider names (`scope_claims`).
    /// With a `scope_prefix`, every scope gets it (unless it already has it).
    fn scopes_of(&self, provider: ProviderId, claims: &Claims) -> Vec<String> {
        let Some(p) = self.config.provider(provider) else {
            return claims.scopes.clone();
        };
        let scopes = if p.scope_claims != ["scp", "scope"] {
            jwt::scopes_in(&claims.all, &p.scope_claims).unwrap_or_default()
        } else {
            claims.scopes.clone()
        };
        match &p.scope_prefix {
            None => scopes,
            Some(prefix) => scopes
                .into_iter()
                .map(|s| {
                    if s.starts_with(prefix.as_str()) {
                        s
                    } else {
                        format!("{prefix}{s}")
                    }
                })
                .collect(),
        }
    }

    fn authorize(
        &self,
        identity: Rc<Identity>,
        token_hash: Digest,
        token: &str,
        cache_hit: bool,
    ) -> Decision {
        let missing_scope = self
            .config
            .required_scopes
            .iter()
            .any(|s| !identity.scopes.contains(s));
        if missing_scope {
            return Decision::Deny(self.deny_with(
                DenyReason::InsufficientScope,
                Some(identity),
                Some(token_hash),
            ));
        }
        Decision::Allow(Authenticated {
            identity,
            token_hash,
            token: token.to_string(),
            cache_hit,
        })
    }

    fn deny(&self, reason: DenyReason, token_hash: Option<Digest>) -> Decision {
        Decision::Deny(self.deny_with(reason, None, token_hash))
    }

    fn deny_with(
        &self,
        reason: DenyReason,
        identity: Option<Rc<Identity>>,
        token_hash: Option<Digest>,
    ) -> Denial {
        Denial {
            reason,
            response: self.responses.deny(reason),
            identity,
            token_hash,
        }
    }

    /// The refusal of a request whose keys are not to be had: 503 when none are loaded, the
    /// unknown `kid` otherwise.
    pub fn refuse(&self, need: &KeyNeed) -> Denial {
        let reason = match need.kind {
            KeyNeedKind::UnknownKid | KeyNeedKind::KeyNotFound => {
                DenyReason::Token(TokenError::KeyNotFound)
            }
            KeyNeedKind::FirstKeys | KeyNeedKind::KeysUnavailable => DenyReason::JwksUnavailable,
        };
        self.deny_with(reason, None, Some(need.token_hash))
    }

    /// The refusal of an authenticated request (its identity stays in the audit line).
    pub fn deny_authenticated(&self, authenticated: Authenticated, reason: DenyReason) -> Denial {
        self.deny_with(
            reason,
            Some(authenticated.identity),
            Some(authenticated.token_hash),
        )
    }

    fn bypasses(&self, request: &Request<'_>) -> bool {
        if request.is_cors_preflight && self.config.bypass_cors_preflight {
            return true;
        }
        if self.config.bypass_paths.is_empty() {
            return false;
        }
        let path = path_without_query(request.path);
        is_plain_path(path) && self.config.bypass_paths.iter().any(|m| m.matches(path))
    }
}

/// How many refused introspections are remembered at most.
const MAX_REFUSED_REMEMBERED: usize = 10_000;

enum Verification {
    NeedKeys(ProviderId, KeyNeedKind),
    Deny(DenyReason),
}

mod introspected;
pub use introspected::Vouched;

#[cfg(test)]
mod introspected_tests;
#[cfg(test)]
mod tests;
