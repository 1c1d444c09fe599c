//! The real host: each method is one proxy-wasm ABI call, its status handled, never a panic.

use std::time::Duration;

use mcp_auth_core::response::LocalResponse;
use mcp_auth_core::time::UnixMillis;

use super::ffi;
use super::{
    CalloutToken, Cas, ContextId, HeaderPairs, Host, HostError, MetricId, MetricKind, OutgoingCall,
    SharedEntry, SharedWrite,
};

/// Stateless: the host keeps the state, this only calls it.
pub struct ProxyWasmHost;

fn host_error(status: ffi::Status) -> HostError {
    HostError(status.0)
}

impl ProxyWasmHost {
    /// The plugin configuration Envoy passes (`configuration`, Istio `pluginConfig`).
    pub fn plugin_configuration(&self) -> Vec<u8> {
        ffi::buffer_bytes(ffi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX).unwrap_or_default()
    }

    /// Envoy's log level for the wasm component (ABI numbering: 0 trace … 5 critical).
    pub fn log_level(&self) -> Option<u32> {
        ffi::log_level().ok()
    }
}

impl Host for ProxyWasmHost {
    fn now(&self) -> UnixMillis {
        UnixMillis(ffi::current_time_nanos().map_or(0, |nanos| nanos / 1_000_000))
    }

    fn random_u64(&self) -> u64 {
        // std seeds RandomState from the platform's randomness (WASI random_get in Envoy).
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }

    fn dispatch(&mut self, call: &OutgoingCall<'_>) -> Result<CalloutToken, HostError> {
        // Through the SDK: its dispatcher routes the reply to this context by the token. It
        // panics only on statuses Envoy does not return from this call.
        proxy_wasm::hostcalls::dispatch_http_call(
            call.cluster,
            call.headers.to_vec(),
            call.body,
            Vec::new(),
            call.timeout,
        )
        .map(CalloutToken)
        .map_err(|status| HostError(status as u32))
    }

    fn callout_response_header(&self, name: &str) -> Option<Vec<u8>> {
        ffi::header_map_value(ffi::MAP_CALLOUT_RESPONSE_HEADERS, name)
            .ok()
            .flatten()
    }

    fn callout_response_body(&self, size: usize) -> Vec<u8> {
        ffi::buffer_bytes(ffi::BUFFER_CALLOUT_RESPONSE_BODY, 0, size).unwrap_or_default()
    }

    fn shared_data(&self, key: &str) -> Result<Option<SharedEntry>, HostError> {
        ffi::shared_data(key)
            .map(|entry| {
                entry.map(|(value, cas)| SharedEntry {
                    value,
                    cas: Cas(cas),
                })
            })
            .map_err(host_error)
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<Cas>,
    ) -> Result<SharedWrite, HostError> {
        match ffi::set_shared_data(key, value, cas.map_or(0, |c| c.0)) {
            Ok(()) => Ok(SharedWrite::Stored),
            Err(ffi::CAS_MISMATCH) => Ok(SharedWrite::CasMismatch),
            Err(e) => Err(host_error(e)),
        }
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<MetricId> {
        let abi_kind = match kind {
            MetricKind::Counter => 0,
            MetricKind::Histogram => 2,
        };
        ffi::define_metric(abi_kind, name).ok().map(MetricId)
    }

    fn increment_metric(&mut self, id: MetricId, by: i64) {
        // A metric the host refuses is not worth failing a request for.
        let _ = ffi::increment_metric(id.0, by);
    }

    fn record_metric(&mut self, id: MetricId, value: u64) {
        let _ = ffi::record_metric(id.0, value);
    }

    fn set_tick_period(&mut self, period: Duration) {
        let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        let _ = ffi::set_tick_period_ms(ms);
    }

    fn set_effective_context(&mut self, context: ContextId) -> Result<(), HostError> {
        ffi::set_effective_context(context.0).map_err(host_error)
    }

    fn request_headers(&self) -> Result<HeaderPairs, HostError> {
        ffi::header_map_pairs(ffi::MAP_REQUEST_HEADERS).map_err(host_error)
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        ffi::header_map_value(ffi::MAP_RESPONSE_HEADERS, name)
            .ok()
            .flatten()
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        let _ = ffi::replace_header_map_value(ffi::MAP_RESPONSE_HEADERS, name, value.as_bytes());
    }

    fn remove_response_header(&mut self, name: &str) {
        let _ = ffi::remove_header_map_value(ffi::MAP_RESPONSE_HEADERS, name);
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        ffi::buffer_bytes(ffi::BUFFER_REQUEST_BODY, 0, size).unwrap_or_default()
    }

    fn response_body(&self, size: usize) -> Vec<u8> {
        ffi::buffer_bytes(ffi::BUFFER_RESPONSE_BODY, 0, size).unwrap_or_default()
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        let _ = ffi::set_buffer_bytes(ffi::BUFFER_RESPONSE_BODY, 0, size, body);
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = ffi::remove_header_map_value(ffi::MAP_REQUEST_HEADERS, name);
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        let _ = ffi::replace_header_map_value(ffi::MAP_REQUEST_HEADERS, name, value.as_bytes());
    }

    fn resume_request(&mut self) {
        let _ = ffi::continue_stream(ffi::STREAM_HTTP_REQUEST);
    }

    fn send_response(&mut self, response: &LocalResponse) {
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let _ = ffi::send_local_response(response.status, &headers, &response.body);
    }
}

/// `log` records go to Envoy's log through the fallible ABI call (the SDK's logger unwraps).
struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        let _ = ffi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (ABI numbering; `None`: info). The first call also makes a
/// panic (which aborts the VM) leave its message in Envoy's log.
pub fn install_logger(level: Option<u32>) {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|panic| {
            let _ = ffi::log(5, &panic.to_string());
        }));
    }
    log::set_max_level(match level {
        Some(0) => log::LevelFilter::Trace,
        Some(1) => log::LevelFilter::Debug,
        Some(3) => log::LevelFilter::Warn,
        Some(4) => log::LevelFilter::Error,
        Some(5) => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    });
}
