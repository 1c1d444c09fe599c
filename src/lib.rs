//! mcp-auth-filter: a proxy-wasm HTTP filter that authenticates MCP clients in Envoy.
//!
//! * `mcp_auth_core` (the crate in `src/core`) decides: configuration, JWT and JWKS,
//!   challenges, metadata, caches. It has no proxy-wasm dependency, so it cannot call the host.
//! * `filter` translates host calls into core calls and holds the state of pending callouts
//!   and parked requests.

// The filter must never panic on input: a panic kills the worker's VM.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::string_slice
    )
)]

mod filter;
