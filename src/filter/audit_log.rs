//! Audit records of decided requests, kept until the request ends and then logged with the
//! status the client got (`on_log`, or the context going away).

use std::collections::HashMap;
use std::rc::Rc;

use mcp_auth_core::audit::{AuditRecord, Outcome};
use mcp_auth_core::cache::Digest;
use mcp_auth_core::mcp::gate::McpAudit;
use mcp_auth_core::time::UnixMillis;
use mcp_auth_core::token_cache::{token_fingerprint, Identity};

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

/// What the audit line says about a decided request.
pub struct AuditFacts<'a> {
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    pub identity: Option<&'a Rc<Identity>>,
    pub token_hash: Option<&'a Digest>,
    /// Whether the token came from the verified-token cache (allowed requests).
    pub cache_hit: Option<bool>,
    pub exchange: Option<ExchangeUse<'a>>,
    /// The MCP operation, when the body was read.
    pub mcp: Option<&'a McpAudit>,
}

#[derive(Default)]
pub struct AuditLog {
    records: HashMap<ContextId, (AuditRecord, UnixMillis)>,
}

impl AuditLog {
    /// Keeps the record of a decided request. Only when Envoy logs at info: below, no audit
    /// line is even built.
    pub fn record(&mut self, request: &PendingRequest, facts: AuditFacts<'_>, now: UnixMillis) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let record = build(request, facts, now);
        self.records
            .insert(request.context, (record, request.started));
    }

    /// Logs the line of a request that ended; `status` is asked for only when there is one.
    pub fn finish(
        &mut self,
        context: ContextId,
        status: impl FnOnce() -> Option<u32>,
        now: UnixMillis,
    ) {
        if let Some((mut record, started)) = self.records.remove(&context) {
            record.status = status();
            record.latency_ms = now.since(started).as_millis() as u64;
            log::info!("{}", record.to_line());
        }
    }
}

fn build(request: &PendingRequest, facts: AuditFacts<'_>, now: UnixMillis) -> AuditRecord {
    let head = &request.head;
    let mut record = AuditRecord::new(facts.outcome, &head.method, &head.path);
    record.auth_ms = now.since(request.started).as_millis() as u64;
    record.reason = facts.reason;
    record.cache = facts.cache_hit.map(|hit| if hit { "hit" } else { "miss" });
    if let Some(used) = facts.exchange {
        record.exchange = Some(if used.cache_hit { "hit" } else { "miss" });
        record.backend_audience = used.backend_audience.map(str::to_string);
        record.sts_ms = used.sts_ms;
    }
    if let Some(mcp) = facts.mcp {
        record.mcp_method = mcp.method.clone();
        record.mcp_name = mcp.name.clone();
        record.jsonrpc_id = mcp.jsonrpc_id.clone();
        record.rule = mcp.rule.clone();
    }
    if let Some(identity) = facts.identity {
        record.user = identity.subject.clone();
        record.client_id = identity.client_id.clone();
        record.issuer = Some(identity.issuer.clone());
    }
    record.token_sha256 = facts.token_hash.map(token_fingerprint);
    record
}
