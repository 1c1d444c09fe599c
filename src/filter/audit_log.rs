//! Audit records of decided requests, kept until the request ends and then logged with the
//! status the client got (`on_log`, or the context going away).

use std::collections::HashMap;

use mcp_auth_core::audit::{AuditRecord, Outcome};
use mcp_auth_core::authenticator::Decision;
use mcp_auth_core::token_cache::token_fingerprint;

use crate::filter::host::ContextId;
use crate::filter::pending::PendingRequest;

/// How the upstream token was obtained, for the audit line.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeUse<'a> {
    pub cache_hit: bool,
    /// The STS's latency when the token came from it just now.
    pub sts_ms: Option<u64>,
    pub backend_audience: Option<&'a str>,
}

#[derive(Default)]
pub struct AuditLog {
    records: HashMap<ContextId, (AuditRecord, u64)>,
}

impl AuditLog {
    /// Keeps the record of a decided request. Only when Envoy logs at info: below, no audit
    /// line is even built.
    pub fn record(
        &mut self,
        request: &PendingRequest,
        decision: &Decision,
        now_ms: u64,
        exchange: Option<ExchangeUse<'_>>,
    ) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let record = build(request, decision, now_ms, exchange);
        self.records
            .insert(request.context, (record, request.started_ms));
    }

    /// Logs the line of a request that ended; `status` is asked for only when there is one.
    pub fn finish(
        &mut self,
        context: ContextId,
        status: impl FnOnce() -> Option<u32>,
        now_ms: u64,
    ) {
        if let Some((mut record, started_ms)) = self.records.remove(&context) {
            record.status = status();
            record.latency_ms = now_ms.saturating_sub(started_ms);
            log::info!("{}", record.to_line());
        }
    }
}

fn build(
    request: &PendingRequest,
    decision: &Decision,
    now_ms: u64,
    exchange: Option<ExchangeUse<'_>>,
) -> AuditRecord {
    let head = &request.head;
    let mut record = AuditRecord::new(Outcome::Allow, &head.method, &head.path);
    record.auth_ms = now_ms.saturating_sub(request.started_ms);
    let (identity, token_hash) = match decision {
        Decision::Respond(_) => {
            record.outcome = Outcome::Metadata;
            (None, None)
        }
        Decision::Bypass => {
            record.outcome = Outcome::Bypass;
            (None, None)
        }
        Decision::Allow {
            identity,
            token_hash,
            cache_hit,
        } => {
            record.cache = Some(if *cache_hit { "hit" } else { "miss" });
            if let Some(used) = exchange {
                record.exchange = Some(if used.cache_hit { "hit" } else { "miss" });
                record.backend_audience = used.backend_audience.map(str::to_string);
                record.sts_ms = used.sts_ms;
            }
            (Some(identity), Some(token_hash))
        }
        Decision::Deny {
            reason,
            identity,
            token_hash,
            ..
        } => {
            record.outcome = Outcome::Deny;
            record.reason = Some(reason.label());
            (identity.as_ref(), token_hash.as_ref())
        }
        Decision::Wait { .. } => (None, None),
    };
    if let Some(identity) = identity {
        record.user = identity.subject.clone();
        record.client_id = identity.client_id.clone();
        record.issuer = Some(identity.issuer.clone());
    }
    record.token_sha256 = token_hash.map(token_fingerprint);
    record
}
