//! The seam between the filter's logic and Envoy: everything the worker asks of the host.
//!
//! [`ProxyWasmHost`] is the real thing (thin calls into the proxy-wasm ABI); `FakeHost` (tests
//! only) records what the worker did and plays the host's part, so that parking, single flight,
//! deadlines and shared data are unit-tested natively.

mod ffi;
mod proxy;

#[cfg(test)]
pub mod fake;

use std::time::Duration;

use mcp_auth_core::response::LocalResponse;
use mcp_auth_core::time::UnixMillis;

pub use proxy::{install_logger, ProxyWasmHost};

/// An HTTP stream's (or the root's) proxy-wasm context id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub u32);

/// The token of an HTTP callout, as the host returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CalloutToken(pub u32);

/// A host call that failed, with the ABI status it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call failed with status {}", self.0)
    }
}

impl std::error::Error for HostError {}

/// A header map as the host holds it: names and values as bytes, in order, repeats kept.
pub type HeaderPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A shared-data entry's version: a write with it succeeds only if nobody wrote since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cas(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    pub value: Vec<u8>,
    pub cas: Cas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Stored,
    /// Someone wrote the entry after the CAS we gave was read.
    CasMismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// An HTTP callout to send through an Envoy cluster.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingCall<'a> {
    pub cluster: &'a str,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) included.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
}

/// Everything the worker and the contexts ask of Envoy. Methods about "the request" act on the
/// effective context (set by the host for each callback, or by `set_effective_context`).
pub trait Host {
    fn now(&self) -> UnixMillis;
    /// A random number, to tell this VM apart from the other workers' (claims in shared data).
    fn random_u64(&self) -> u64;

    fn dispatch(&mut self, call: &OutgoingCall<'_>) -> Result<CalloutToken, HostError>;
    /// A header of the callout reply being delivered now.
    fn callout_response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// The body of the callout reply being delivered now (its first `size` bytes).
    fn callout_response_body(&self, size: usize) -> Vec<u8>;

    fn shared_data(&self, key: &str) -> Result<Option<SharedEntry>, HostError>;
    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<Cas>,
    ) -> Result<SharedWrite, HostError>;

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<MetricId>;
    fn increment_metric(&mut self, id: MetricId, by: i64);
    fn record_metric(&mut self, id: MetricId, value: u64);

    fn set_tick_period(&mut self, period: Duration);

    /// Makes `context` the one later calls act on; fails when it has ended.
    fn set_effective_context(&mut self, context: ContextId) -> Result<(), HostError>;
    /// Every request header, names and values as bytes.
    fn request_headers(&self) -> Result<HeaderPairs, HostError>;
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    fn set_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// The request body buffered so far (its first `size` bytes).
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// The response body buffered so far (its first `size` bytes).
    fn response_body(&self, size: usize) -> Vec<u8>;
    /// Replaces the buffered response body (its first `size` bytes) with `body`.
    fn replace_response_body(&mut self, size: usize, body: &[u8]);
    fn remove_request_header(&mut self, name: &str);
    fn set_request_header(&mut self, name: &str, value: &str);
    /// Lets a paused request go on to the next filter.
    fn resume_request(&mut self);
    fn send_response(&mut self, response: &LocalResponse);
}
