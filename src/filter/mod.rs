//! The proxy-wasm layer: everything between Envoy and the core. No policy lives here.
//!
//! * `contexts`: the proxy-wasm root and HTTP contexts (thin).
//! * `host`: the seam to Envoy (the `Host` trait, the real ABI calls, a fake for tests).
//! * `worker`: one worker's state and the request flow, composed of `keys` (signing keys),
//!   `exchange` (token exchanges), `introspection` (RFC 7662), both over `flights` (one
//!   callout per key for the whole Envoy), `mcp` (the MCP gate's side), `callouts`,
//!   `parking`, `audit_log`, `metrics` and the shared-data layouts in `shared`.

mod audit_log;
mod callouts;
mod contexts;
mod exchange;
mod flights;
mod host;
mod introspection;
mod keys;
mod mcp;
mod metrics;
mod outcome;
mod parking;
mod pending;
mod request;
mod shared;
mod worker;

#[cfg(test)]
mod tests;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(contexts::new_root);
}}
