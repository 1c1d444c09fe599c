//! mcp-auth-filter: a proxy-wasm HTTP filter that authenticates MCP clients in Envoy.
//!
//! * [`core`] decides (configuration, JWT and JWKS, challenges, metadata, caches) and knows
//!   nothing of the host.
//! * `filter` (wasm32 only) translates host calls into core calls and holds the state of
//!   pending callouts and parked requests.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod filter;
