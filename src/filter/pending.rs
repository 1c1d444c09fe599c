//! A request the worker is deciding, and what it knows once the caller is authenticated.

use std::rc::Rc;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::token_cache::Identity;

use crate::filter::host::ContextId;
use crate::filter::request::RequestHead;

/// A request being decided: its context, its head, and when its headers arrived (ms).
pub struct PendingRequest {
    pub context: ContextId,
    pub head: RequestHead,
    pub started_ms: u64,
}

/// An authenticated caller (what `Decision::Allow` established).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Rc<Identity>,
    pub token_hash: Digest,
    pub cache_hit: bool,
}
