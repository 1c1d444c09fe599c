//! The floor of the benchmark: a proxy-wasm HTTP filter that does nothing, unless its plugin
//! configuration names probes, host calls and work it then does on every request exactly as
//! the real filter's warm path does. `make bench` runs it bare (what any wasm filter costs in
//! Envoy) and with each probe alone, to split the real filter's warm cost by cause.
//!
//! Configuration: probe names separated by commas, e.g. `map,remove,set,metrics,sha256`.
//!   map      read the whole request header map (the real filter's one header read)
//!   header   read `authorization` alone (the alternative to `map`)
//!   remove   remove `authorization` and `x-mcp-user-email` (the warm path's removals when
//!            the token has no email: a header it sets needs no removal)
//!   set      set `x-mcp-user-sub`
//!   metrics  increment two counters
//!   sha256   SHA-256 of the `authorization` value
//!   time     read the clock twice

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MetricType};
use sha2::{Digest, Sha256};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Probes {
    map: bool,
    header: bool,
    remove: bool,
    set: bool,
    metrics: Option<(u32, u32)>,
    sha256: bool,
    time: bool,
}

#[derive(Default)]
struct Root {
    probes: Probes,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        for probe in config.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match probe {
                "map" => self.probes.map = true,
                "header" => self.probes.header = true,
                "remove" => self.probes.remove = true,
                "set" => self.probes.set = true,
                "metrics" => {
                    let a = hostcalls::define_metric(MetricType::Counter, "probe.a").ok();
                    let b = hostcalls::define_metric(MetricType::Counter, "probe.b").ok();
                    self.probes.metrics = a.zip(b);
                }
                "sha256" => self.probes.sha256 = true,
                "time" => self.probes.time = true,
                _ => return false,
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough {
            probes: self.probes,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PassThrough {
    probes: Probes,
}

impl Context for PassThrough {}

impl HttpContext for PassThrough {
    fn on_http_request_headers(
        &mut self,
        _headers: usize,
        _end: bool,
    ) -> proxy_wasm::types::Action {
        let p = self.probes;
        let mut authorization = None;
        if p.map {
            let map = self.get_http_request_headers();
            authorization = map
                .into_iter()
                .find(|(n, _)| n == "authorization")
                .map(|(_, v)| v);
        }
        if p.header {
            authorization = self.get_http_request_header("authorization");
        }
        if p.sha256 {
            let value = authorization.unwrap_or_default();
            let digest = Sha256::digest(value.as_bytes());
            // Keep the work: a digest nobody reads could be optimised away.
            if digest.first() == Some(&0xff) && digest.get(1) == Some(&0xff) {
                self.set_http_request_header("x-probe-rare", Some("1"));
            }
        }
        if p.time {
            let _ = self.get_current_time();
            let _ = self.get_current_time();
        }
        if let Some((a, b)) = p.metrics {
            let _ = hostcalls::increment_metric(a, 1);
            let _ = hostcalls::increment_metric(b, 1);
        }
        if p.remove {
            for name in ["authorization", "x-mcp-user-email"] {
                self.set_http_request_header(name, None);
            }
        }
        if p.set {
            self.set_http_request_header("x-mcp-user-sub", Some("bench-user"));
        }
        proxy_wasm::types::Action::Continue
    }
}
