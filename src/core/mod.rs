//! The host-independent core: everything the filter decides, with no proxy-wasm imports, so
//! that it is unit-tested natively (`cargo test`). Times are passed in, never read.

pub mod audit;
pub mod authenticator;
pub mod cache;
pub mod config;
pub mod jwks;
pub mod jwks_cache;
pub mod jwt;
pub mod response;
pub mod rsa;
pub mod token_cache;
pub mod token_exchange;
