//! The filter's counters and histogram, defined once per worker (Envoy shows them under
//! `wasmcustom.`). A metric the host refuses to define is simply not counted.

use mcp_auth_core::mcp::gate::REFUSAL_LABELS;
use mcp_auth_core::response::{DenyLabel, DenyReason};

use crate::filter::host::{Host, MetricId, MetricKind};

pub struct Metrics {
    allowed: Option<MetricId>,
    /// One per `DenyLabel`, indexed by the label's position in `DenyLabel::ALL`. There is no
    /// separate total: every refusal has a reason, so the sum over reasons is the total (and a
    /// Prometheus `sum(mcp_auth_denied)` counts each refusal once).
    denied_by: Vec<Option<MetricId>>,
    /// One per MCP gate refusal reason, in `REFUSAL_LABELS` order.
    denied_by_mcp: Vec<Option<MetricId>>,
    bypassed: Option<MetricId>,
    metadata_served: Option<MetricId>,
    jwks_fetch_ok: Option<MetricId>,
    jwks_fetch_failed: Option<MetricId>,
    cache_hit: Option<MetricId>,
    cache_miss: Option<MetricId>,
    exchange_ok: Option<MetricId>,
    exchange_failed: Option<MetricId>,
    exchange_cache_hit: Option<MetricId>,
    exchange_cache_miss: Option<MetricId>,
    sts_latency_ms: Option<MetricId>,
    introspection_active: Option<MetricId>,
    introspection_refused: Option<MetricId>,
    introspection_failed: Option<MetricId>,
}

/// How an introspection this worker made ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionCount {
    /// The IdP vouched for the token and it passed our checks.
    Active,
    /// Inactive, or an answer that failed our checks.
    Refused,
    /// No usable answer (unreachable, error status, timeout, not an answer).
    Failed,
}

fn bump(host: &mut impl Host, id: Option<MetricId>) {
    if let Some(id) = id {
        host.increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define(host: &mut impl Host) -> Metrics {
        let mut counter = |name: &str| host.define_metric(MetricKind::Counter, name);
        Metrics {
            allowed: counter("mcp_auth.allowed"),
            denied_by: DenyLabel::ALL
                .iter()
                .map(|label| counter(&format!("mcp_auth.denied.{}", label.label())))
                .collect(),
            denied_by_mcp: REFUSAL_LABELS
                .iter()
                .map(|label| counter(&format!("mcp_auth.denied.{label}")))
                .collect(),
            bypassed: counter("mcp_auth.bypassed"),
            metadata_served: counter("mcp_auth.metadata_served"),
            jwks_fetch_ok: counter("mcp_auth.jwks_fetch.ok"),
            jwks_fetch_failed: counter("mcp_auth.jwks_fetch.failed"),
            cache_hit: counter("mcp_auth.jwt_cache.hit"),
            cache_miss: counter("mcp_auth.jwt_cache.miss"),
            exchange_ok: counter("mcp_auth.exchange.ok"),
            exchange_failed: counter("mcp_auth.exchange.failed"),
            exchange_cache_hit: counter("mcp_auth.exchange.cache_hit"),
            exchange_cache_miss: counter("mcp_auth.exchange.cache_miss"),
            introspection_active: counter("mcp_auth.introspection.active"),
            introspection_refused: counter("mcp_auth.introspection.refused"),
            introspection_failed: counter("mcp_auth.introspection.failed"),
            sts_latency_ms: host
                .define_metric(MetricKind::Histogram, "mcp_auth.exchange.sts_latency_ms"),
        }
    }

    pub fn allowed(&self, host: &mut impl Host, cache_hit: bool) {
        bump(host, self.allowed);
        bump(
            host,
            if cache_hit {
                self.cache_hit
            } else {
                self.cache_miss
            },
        );
    }

    pub fn denied(&self, host: &mut impl Host, reason: DenyReason) {
        // Discriminants follow declaration order, which is the order of `ALL`.
        bump(
            host,
            self.denied_by
                .get(reason.kind() as usize)
                .copied()
                .flatten(),
        );
    }

    /// A request the MCP gate refused, counted under its reason (`Refused::label`).
    pub fn denied_by_mcp(&self, host: &mut impl Host, label: &str) {
        let index = REFUSAL_LABELS.iter().position(|l| *l == label);
        bump(
            host,
            index
                .and_then(|i| self.denied_by_mcp.get(i))
                .copied()
                .flatten(),
        );
    }

    pub fn bypassed(&self, host: &mut impl Host) {
        bump(host, self.bypassed);
    }

    pub fn metadata_served(&self, host: &mut impl Host) {
        bump(host, self.metadata_served);
    }

    pub fn exchange(&self, host: &mut impl Host, ok: bool) {
        bump(
            host,
            if ok {
                self.exchange_ok
            } else {
                self.exchange_failed
            },
        );
    }

    pub fn exchange_cache(&self, host: &mut impl Host, hit: bool) {
        bump(
            host,
            if hit {
                self.exchange_cache_hit
            } else {
                self.exchange_cache_miss
            },
        );
    }

    pub fn sts_latency(&self, host: &mut impl Host, ms: u64) {
        if let Some(id) = self.sts_latency_ms {
            host.record_metric(id, ms);
        }
    }

    pub fn introspection(&self, host: &mut impl Host, count: IntrospectionCount) {
        let id = match count {
            IntrospectionCount::Active => self.introspection_active,
            IntrospectionCount::Refused => self.introspection_refused,
            IntrospectionCount::Failed => self.introspection_failed,
        };
        bump(host, id);
    }

    pub fn jwks_fetch(&self, host: &mut impl Host, ok: bool) {
        bump(
            host,
            if ok {
                self.jwks_fetch_ok
            } else {
                self.jwks_fetch_failed
            },
        );
    }
}
