//! MCP awareness: what a request asks the server to do, whether this caller may, and what a
//! list result may show.

pub mod gate;
pub mod glob;
pub mod headers;
pub mod lists;
pub mod message;
pub mod policy;
pub mod sse;
