//! A request the worker is deciding.

use mcp_auth_core::time::UnixMillis;

use crate::filter::host::ContextId;
use crate::filter::request::RequestHead;

/// A request being decided: its context, its head, and when its headers arrived.
pub struct PendingRequest {
    pub context: ContextId,
    pub head: RequestHead,
    pub started: UnixMillis,
}
