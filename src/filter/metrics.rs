//! The filter's counters and histogram, defined once per worker (Envoy shows them under
//! `wasmcustom.`). A metric the host refuses to define is simply not counted.

use mcp_auth_core::response::{DenyLabel, DenyReason};

use crate::filter::host::{Host, MetricId, MetricKind};

pub struct Metrics {
    allowed: Option<MetricId>,
    denied: Option<MetricId>,
    /// One per `DenyLabel`, indexed by the label's position in `DenyLabel::ALL`.
    denied_by: Vec<Option<MetricId>>,
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
            denied: counter("mcp_auth.denied"),
            denied_by: DenyLabel::ALL
                .iter()
                .map(|label| counter(&format!("mcp_auth.denied.{}", label.label())))
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
        bump(host, self.denied);
        // Discriminants follow declaration order, which is the order of `ALL`.
        bump(
            host,
            self.denied_by
                .get(reason.kind() as usize)
                .copied()
                .flatten(),
        );
    }

    /// A request the MCP gate refused (its own counters say why).
    pub fn denied_by_mcp(&self, host: &mut impl Host) {
        bump(host, self.denied);
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
