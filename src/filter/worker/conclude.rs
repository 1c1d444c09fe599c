//! Concluding a request: a final decision becomes metrics, an audit record and an outcome.

use super::*;

impl Worker {
    /// Metrics, the audit record and the outcome of a final decision.
    pub(super) fn conclude(
        &mut self,
        host: &mut impl Host,
        request: &PendingRequest,
        done: Final,
    ) -> Outcome {
        let remove_also = request.head.aliases_of(&self.stripped);
        let forward = |set| {
            Outcome::Forward(Forwarding {
                remove: Rc::clone(&self.stripped),
                remove_also,
                set,
            })
        };
        let narrowing = request.mcp.as_ref().and_then(|m| m.narrowing.as_ref());
        let backend_audience = self
            .exchanges
            .as_ref()
            .and_then(|x| x.backend_audience(narrowing));
        let mcp_audit = request.mcp.as_ref().map(|m| &m.audit);
        let (outcome, facts) = match &done {
            Final::Metadata(response) => {
                self.metrics.metadata_served(host);
                (
                    Outcome::Respond(response.clone()),
                    facts(AuditOutcome::Metadata),
                )
            }
            Final::Bypass => {
                self.metrics.bypassed(host);
                (forward(Vec::new()), facts(AuditOutcome::Bypass))
            }
            Final::Allow {
                authenticated,
                upstream,
            } => {
                self.metrics.allowed(host, authenticated.cache_hit);
                let mut set = authenticated.identity.headers.clone();
                set.extend(upstream.as_ref().map(|(header, _)| header.clone()));
                let mirrors = request.mcp.iter().flat_map(|m| &m.mirrors);
                set.extend(mirrors.map(|(name, value)| (name.to_string(), value.clone())));
                let exchange = upstream.as_ref().map(|(_, sts_ms)| ExchangeUse {
                    cache_hit: sts_ms.is_none(),
                    sts_ms: *sts_ms,
                    backend_audience,
                });
                let facts = AuditFacts {
                    identity: Some(&authenticated.identity),
                    token_hash: Some(&authenticated.token_hash),
                    cache_hit: Some(authenticated.cache_hit),
                    exchange,
                    mcp: mcp_audit,
                    ..facts(AuditOutcome::Allow)
                };
                (forward(set), facts)
            }
            Final::McpRefused {
                caller,
                token_hash,
                refusal,
            } => {
                self.metrics.denied_by_mcp(host, refusal.why.label());
                if let Some(mcp) = &self.mcp {
                    mcp.refused(host, refusal);
                }
                let facts = AuditFacts {
                    reason: Some(refusal.why.label()),
                    identity: caller.as_ref(),
                    token_hash: token_hash.as_ref(),
                    mcp: Some(&refusal.audit),
                    ..facts(AuditOutcome::Deny)
                };
                (Outcome::Respond(refusal.response.clone()), facts)
            }
            Final::Deny(denial) => {
                self.metrics.denied(host, denial.reason);
                let facts = AuditFacts {
                    reason: Some(denial.reason.label()),
                    identity: denial.identity.as_ref(),
                    token_hash: denial.token_hash.as_ref(),
                    ..facts(AuditOutcome::Deny)
                };
                (Outcome::Respond(denial.response.clone()), facts)
            }
        };
        self.audit.record(request, facts, host.now());
        outcome
    }
}

fn facts<'a>(outcome: AuditOutcome) -> AuditFacts<'a> {
    AuditFacts {
        outcome,
        reason: None,
        identity: None,
        token_hash: None,
        cache_hit: None,
        exchange: None,
        mcp: None,
    }
}
