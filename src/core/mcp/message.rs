//! Reading an MCP POST body strictly, so that what the filter decides on is exactly what the
//! server will execute: valid UTF-8 JSON, no duplicate member at any depth (a second `name` is
//! how a parser differential picks another tool), bounded nesting, a JSON-RPC 2.0 envelope,
//! and for the named methods a string `params.name` (or `params.uri`), compared after JSON
//! unescaping — as the server reads it.

use std::fmt;

use serde_json::{Map, Value};

use crate::config::NamedMethod;
use crate::strict_json::{self, StrictJsonError};

/// The `_meta` key of the protocol version (MCP 2026-07-28).
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// One JSON-RPC message of a POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        /// The tool, prompt or resource it names, for the named methods.
        operation: Option<Operation>,
        /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
        protocol_version: Option<String>,
    },
    Notification {
        method: String,
        protocol_version: Option<String>,
    },
    /// The client's answer to a request of the server.
    Response,
}

/// What a named-method request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: NamedMethod,
    /// `params.name` or `params.uri`, unescaped.
    pub name: String,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response => None,
        }
    }

    pub fn protocol_version(&self) -> Option<&str> {
        match self {
            Message::Request {
                protocol_version, ..
            }
            | Message::Notification {
                protocol_version, ..
            } => protocol_version.as_deref(),
            Message::Response => None,
        }
    }

    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn operation(&self) -> Option<&Operation> {
        match self {
            Message::Request { operation, .. } => operation.as_ref(),
            _ => None,
        }
    }
}

/// A POST body: one message, or a batch (2025-03-26 clients).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(list) => list,
        }
    }
}

/// Why a body was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, not UTF-8, nested too deeply, or trailing bytes.
    NotJson,
    /// The same member twice in one object, at any depth.
    DuplicateMember,
    /// Valid JSON, but not a JSON-RPC 2.0 message (or batch of them).
    NotJsonRpc,
    /// A named method without a string `params.name`/`params.uri`.
    MissingName,
}

impl BodyError {
    /// The JSON-RPC error code of the answer.
    pub fn code(self) -> i64 {
        match self {
            BodyError::NotJson | BodyError::DuplicateMember => -32700,
            BodyError::NotJsonRpc | BodyError::MissingName => -32600,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BodyError::NotJson => "Parse error: the body is not valid JSON",
            BodyError::DuplicateMember => "Parse error: duplicate member in the body",
            BodyError::NotJsonRpc => "Invalid Request: not a JSON-RPC 2.0 message",
            BodyError::MissingName => "Invalid Request: the method's name or uri is missing",
        }
    }

    /// The label of its counter (`mcp_auth.mcp.body_refused.<label>`).
    pub fn label(self) -> &'static str {
        match self {
            BodyError::NotJson => "not_json",
            BodyError::DuplicateMember => "duplicate_member",
            BodyError::NotJsonRpc => "not_jsonrpc",
            BodyError::MissingName => "missing_name",
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for BodyError {}

pub fn parse(body: &[u8]) -> Result<Body, BodyError> {
    let value = strict_json::parse(body).map_err(|e| match e {
        StrictJsonError::DuplicateMember => BodyError::DuplicateMember,
        StrictJsonError::NotJson => BodyError::NotJson,
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(BodyError::NotJsonRpc),
        Value::Array(items) => items
            .into_iter()
            .map(message)
            .collect::<Result<_, _>>()
            .map(Body::Batch),
        other => message(other).map(Body::Single),
    }
}

fn message(value: Value) -> Result<Message, BodyError> {
    let Value::Object(mut envelope) = value else {
        return Err(BodyError::NotJsonRpc);
    };
    if envelope.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(BodyError::NotJsonRpc);
    }
    let method = match envelope.remove("method") {
        None => {
            // A response: a result or an error, and an id.
            let is_response = (envelope.contains_key("result") || envelope.contains_key("error"))
                && envelope.contains_key("id");
            return if is_response {
                Ok(Message::Response)
            } else {
                Err(BodyError::NotJsonRpc)
            };
        }
        Some(Value::String(m)) => m,
        Some(_) => return Err(BodyError::NotJsonRpc),
    };
    let params = match envelope.remove("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        // Positional params are JSON-RPC, but no MCP method takes them.
        Some(_) => return Err(BodyError::NotJsonRpc),
    };
    let params = params.as_ref();
    let protocol_version = params.and_then(protocol_version);
    let Some(id) = envelope.remove("id") else {
        return Ok(Message::Notification {
            method,
            protocol_version,
        });
    };
    // MCP: a request id is a string or a number, never null.
    if !(id.is_string() || id.is_number()) {
        return Err(BodyError::NotJsonRpc);
    }
    let operation = match NamedMethod::from_method(&method) {
        None => None,
        Some(named) => {
            let name = params
                .and_then(|p| p.get(named.name_member()))
                .and_then(Value::as_str)
                .ok_or(BodyError::MissingName)?;
            Some(Operation {
                method: named,
                name: name.to_string(),
            })
        }
    };
    Ok(Message::Request {
        id,
        method,
        operation,
        protocol_version,
    })
}

fn protocol_version(params: &Map<String, Value>) -> Option<String> {
    params
        .get("_meta")?
        .get(PROTOCOL_VERSION_META)?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name_json: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{name_json}}}}}"#
        )
    }

    #[test]
    fn a_tools_call_names_its_tool_unescaped() {
        let body = parse(call(r#""q\u0075ery_users""#).as_bytes()).unwrap();
        let [message] = body.messages() else {
            panic!("one message")
        };
        assert_eq!(
            message.operation(),
            Some(&Operation {
                method: NamedMethod::ToolsCall,
                name: "query_users".into()
            })
        );
        assert_eq!(message.id(), Some(&json!(1)));
        let read = br#"{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"file:///etc/passwd","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let body = parse(read).unwrap();
        let message = &body.messages()[0];
        assert_eq!(message.operation().unwrap().name, "file:///etc/passwd");
        assert_eq!(message.protocol_version(), Some("2026-07-28"));
    }

    #[test]
    fn duplicate_members_anywhere_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"k":[{"d":1,"d":1}]}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","jsonrpc":"2.0","id":2,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a","name":"b"}}"#,
        ] {
            assert_eq!(
                parse(body.as_bytes()),
                Err(BodyError::DuplicateMember),
                "{body}"
            );
        }
    }

    #[test]
    fn broken_json_and_envelopes_are_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for (body, error) in [
            (&b"not json"[..], BodyError::NotJson),
            (b"{\"jsonrpc\":\"2.0\"} trailing", BodyError::NotJson),
            (b"\xff\xfe", BodyError::NotJson),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}", BodyError::NotJson),
            (deep.as_bytes(), BodyError::NotJson),
            (b"[]", BodyError::NotJsonRpc),
            (b"42", BodyError::NotJsonRpc),
            (br#"{"id":1,"method":"ping"}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"2.0"}"#, BodyError::NotJsonRpc),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, BodyError::MissingName),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#, BodyError::MissingName),
            (br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#, BodyError::MissingName),
        ] {
            assert_eq!(parse(body), Err(error), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn notifications_responses_and_batches() {
        let body = br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
                        {"jsonrpc":"2.0","id":9,"result":{}},
                        {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}]"#;
        let Body::Batch(messages) = parse(body).unwrap() else {
            panic!("a batch")
        };
        assert!(matches!(messages[0], Message::Notification { .. }));
        assert_eq!(messages[1], Message::Response);
        assert_eq!(messages[2].operation().unwrap().name, "x");
    }
}
