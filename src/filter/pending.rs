//! A request the worker is deciding.

use std::rc::Rc;

use mcp_auth_core::config::ExchangeOverride;
use mcp_auth_core::mcp::gate::McpAudit;
use mcp_auth_core::time::UnixMillis;

use crate::filter::host::ContextId;
use crate::filter::request::RequestHead;

/// A request being decided: its context, its head, and when its headers arrived.
pub struct PendingRequest {
    pub context: ContextId,
    pub head: RequestHead,
    pub started: UnixMillis,
    /// The whole body, once read (MCP POSTs only; `None` before or without the gate).
    pub body: Option<Rc<[u8]>>,
    /// What the MCP gate found in the body, once it passed.
    pub mcp: Option<McpPassed>,
}

/// A body that passed the MCP gate: what the audit line says, and the deciding rule's
/// backend-token parameters.
#[derive(Debug, Clone)]
pub struct McpPassed {
    pub audit: McpAudit,
    pub narrowing: Option<ExchangeOverride>,
    /// `Mcp-Method`/`Mcp-Name` to set, from the body.
    pub mirrors: Vec<(&'static str, String)>,
}
