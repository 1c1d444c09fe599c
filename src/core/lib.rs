//! The host-independent core of mcp-auth-filter: everything the filter decides, with no
//! proxy-wasm dependency (the crate cannot call the host), unit-tested natively. Times are passed
//! in, never read.

// The core must never panic on input: a panic kills the worker's VM.
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

#[macro_use]
mod listed;

pub mod audit;
pub mod authenticator;
pub mod cache;
pub mod config;
pub mod introspection;
pub mod jwks;
pub mod jwks_cache;
pub mod jwt;
pub mod keyring;
pub mod mcp;
pub mod oauth_request;
pub mod request;
pub mod response;
pub mod rsa;
mod signature;
pub mod strict_json;
pub mod time;
pub mod token_cache;
pub mod token_exchange;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
