//! Tokens the IdP vouches for: what the authenticator asks, and how it reads the answer —
//! the answer's members are checked like a JWT's claims (issuer, time, audience), then the
//! caller is remembered like a verified token, until min(`exp`, `cache_duration`).

use std::rc::Rc;

use super::*;
use crate::time::UnixSeconds;

/// What an introspection answer made of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouched {
    /// Active and accepted: the caller is remembered until then.
    Active { until: UnixMillis },
    /// Inactive, or an answer that failed our checks (issuer, time, audience).
    Refused { reason: TokenError },
}

impl Authenticator {
    pub(super) fn introspect(
        &self,
        provider: ProviderId,
        token_hash: Digest,
        token: &str,
    ) -> Decision {
        Decision::NeedIntrospection(IntrospectionNeed {
            provider,
            token_hash,
            token: token.to_string(),
        })
    }

    /// The request to send for `need`.
    pub fn introspection_request(
        &self,
        need: &IntrospectionNeed,
    ) -> Option<crate::oauth_request::CalloutRequest> {
        match &self.config.provider(need.provider)?.keys {
            KeySource::Introspection(c) => Some(crate::introspection::request(c, &need.token)),
            _ => None,
        }
    }

    /// Takes the IdP's answer about a token: an active one that passes our checks is
    /// remembered as a verified token, anything else as a refusal (for a short while, so that
    /// a flood of the same junk costs one call).
    pub fn accept_introspection(
        &mut self,
        need: &IntrospectionNeed,
        answer: Introspected,
        now: UnixMillis,
    ) -> Vouched {
        let settings = match self.config.provider(need.provider).map(|p| &p.keys) {
            Some(KeySource::Introspection(s)) => s,
            _ => {
                return Vouched::Refused {
                    reason: TokenError::IssuerNotTrusted,
                }
            }
        };
        let (cache_for, refuse_for) = (settings.cache_duration, settings.negative_cache_duration);
        let skew = self
            .config
            .provider(need.provider)
            .map_or(0, |p| p.clock_skew_seconds);
        let checked = match answer {
            Introspected::Inactive => Err(TokenError::Inactive),
            Introspected::Active(members) => self.check_answer(need.provider, members, now),
        };
        match checked {
            Ok(claims) => {
                let mut until = now.plus(cache_for);
                if let Some(exp) = claims.exp {
                    // The cache honours the skew exactly as the first check did.
                    until = until.min(exp.plus(skew).millis());
                }
                let mut identity = self.identity_from(need.provider, &claims);
                if claims.exp.is_none() {
                    // No `exp`: the answer is good for `cache_duration`, and so is the caller.
                    identity.expires_at = UnixSeconds(until.0.div_ceil(1000));
                }
                let verified = VerifiedToken {
                    identity: Rc::new(identity),
                    nbf: claims.nbf,
                    by: VerifiedBy::Introspection { until },
                };
                self.cache.insert(need.token_hash, verified);
                Vouched::Active { until }
            }
            Err(reason) => {
                let until = now.plus(refuse_for);
                self.refused.insert(need.token_hash, (reason, until));
                Vouched::Refused { reason }
            }
        }
    }

    /// The refusal of a token its IdP would not vouch for.
    pub fn refuse_token(&self, need: &IntrospectionNeed, reason: TokenError) -> Denial {
        self.deny_with(DenyReason::Token(reason), None, Some(need.token_hash))
    }

    /// The refusal of a token whose IdP gave no answer (503, or 504 on a timeout).
    pub fn refuse_unanswered(
        &self,
        need: &IntrospectionNeed,
        failure: crate::introspection::IntrospectionFailure,
    ) -> Denial {
        self.deny_with(
            DenyReason::Introspection(failure),
            None,
            Some(need.token_hash),
        )
    }

    /// An active answer's members as claims, checked like a verified JWT's.
    fn check_answer(
        &self,
        provider_id: ProviderId,
        members: serde_json::Map<String, serde_json::Value>,
        now: UnixMillis,
    ) -> Result<Claims, TokenError> {
        let provider = self
            .config
            .provider(provider_id)
            .ok_or(TokenError::IssuerNotTrusted)?;
        let claims = Claims::from_map(members)?;
        // RFC 7662 makes `iss` optional; when given it must be the provider's.
        if claims
            .iss
            .as_deref()
            .is_some_and(|iss| iss != provider.issuer)
        {
            return Err(TokenError::IssuerNotTrusted);
        }
        if claims.exp.is_some() {
            claims.check_time(
                now.seconds(),
                provider.clock_skew_seconds,
                provider.max_lifetime,
            )?;
        }
        if !claims.has_audience_in(&provider.audiences) {
            return Err(TokenError::AudienceNotAccepted);
        }
        Ok(claims)
    }
}
