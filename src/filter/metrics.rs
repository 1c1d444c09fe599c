//! Envoy counters defined through proxy-wasm (Envoy shows them under `wasmcustom.`).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use mcp_auth_core::response::DenyReason;

pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    denied_by: Vec<Option<u32>>,
    bypassed: Option<u32>,
    metadata_served: Option<u32>,
    jwks_fetch_ok: Option<u32>,
    jwks_fetch_failed: Option<u32>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
    exchange_ok: Option<u32>,
    exchange_failed: Option<u32>,
    exchange_cache_hit: Option<u32>,
    exchange_cache_miss: Option<u32>,
    sts_latency_ms: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    // A metric the host refuses is not worth failing requests for: it is simply not counted.
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed: counter("mcp_auth.allowed"),
            denied: counter("mcp_auth.denied"),
            denied_by: DenyReason::ALL
                .iter()
                .map(|r| counter(&format!("mcp_auth.denied.{}", r.label())))
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
            sts_latency_ms: hostcalls::define_metric(
                MetricType::Histogram,
                "mcp_auth.exchange.sts_latency_ms",
            )
            .ok(),
        }
    }

    pub fn allowed(&self, cache_hit: bool) {
        bump(self.allowed);
        bump(if cache_hit {
            self.cache_hit
        } else {
            self.cache_miss
        });
    }

    pub fn denied(&self, reason: DenyReason) {
        bump(self.denied);
        if let Some(i) = DenyReason::ALL
            .iter()
            .position(|r| r.label() == reason.label())
        {
            bump(self.denied_by.get(i).copied().flatten());
        }
    }

    pub fn bypassed(&self) {
        bump(self.bypassed);
    }

    pub fn metadata_served(&self) {
        bump(self.metadata_served);
    }

    pub fn exchange(&self, ok: bool) {
        bump(if ok {
            self.exchange_ok
        } else {
            self.exchange_failed
        });
    }

    pub fn exchange_cache(&self, hit: bool) {
        bump(if hit {
            self.exchange_cache_hit
        } else {
            self.exchange_cache_miss
        });
    }

    pub fn sts_latency(&self, ms: u64) {
        if let Some(id) = self.sts_latency_ms {
            let _ = hostcalls::record_metric(id, ms);
        }
    }

    pub fn jwks_fetch(&self, ok: bool) {
        bump(if ok {
            self.jwks_fetch_ok
        } else {
            self.jwks_fetch_failed
        });
    }
}
