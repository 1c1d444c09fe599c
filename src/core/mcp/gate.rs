//! The MCP gate of a POST to the MCP endpoint: what its head may be (size, media type,
//! encoding), then, with the whole body in hand, whether the authenticated caller may do what
//! it asks. Every refusal is a JSON-RPC error an MCP client can show, or the 403 step-up.

use serde_json::{json, Value};

use crate::config::{ExchangeOverride, McpConfig};
use crate::mcp::headers::{self, MirrorHeaders};
use crate::mcp::message::{self, Body, BodyError};
use crate::mcp::policy::{Policy, RuleId, Verdict};
use crate::request::is_plain_path;
use crate::response::{LocalResponse, Responses};
use crate::token_cache::Identity;

/// JSON-RPC error codes the gate answers with.
pub const HEADER_MISMATCH: i64 = -32020;
/// Implementation-defined server error: the operation is not allowed for this caller.
pub const FORBIDDEN: i64 = -32001;
/// Longest name echoed in a denial (the name is the client's own; nothing else is echoed).
const MAX_ECHOED_NAME: usize = 128;

/// The head of a POST, as far as the gate reads it.
#[derive(Debug, Clone, Default)]
pub struct PostHead {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_length: Option<u64>,
    pub mirrors: MirrorHeaders,
}

/// What the audit line says about the MCP side of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpAudit {
    pub method: Option<String>,
    pub name: Option<String>,
    pub jsonrpc_id: Option<String>,
    /// The deciding rule's name (`default` for `default_action`).
    pub rule: Option<String>,
}

/// Why the gate refused, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A rule (or `default_action`) denied, or asked for a step-up.
    Rule {
        rule: RuleId,
        step_up: bool,
    },
    HeaderMismatch,
    Body(BodyError),
    TooLarge,
    UnsupportedMedia,
    /// The body did not arrive in time.
    Timeout,
    /// A JSON-RPC batch, and `allow_batches` is off.
    Batch,
}

/// Every `Refused::label`, for the counters (one per reason, defined up front).
pub const REFUSAL_LABELS: [&str; 11] = [
    "mcp_insufficient_scope",
    "mcp_forbidden",
    "mcp_header_mismatch",
    "mcp_body_not_json",
    "mcp_body_duplicate_member",
    "mcp_body_not_jsonrpc",
    "mcp_body_missing_name",
    "mcp_body_too_large",
    "mcp_unsupported_media",
    "mcp_body_timeout",
    "mcp_batch_refused",
];

impl Refused {
    /// The audit line's `reason` (and the counter's), one of `REFUSAL_LABELS`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Rule { step_up: true, .. } => "mcp_insufficient_scope",
            Refused::Rule { step_up: false, .. } => "mcp_forbidden",
            Refused::HeaderMismatch => "mcp_header_mismatch",
            Refused::Body(BodyError::NotJson) => "mcp_body_not_json",
            Refused::Body(BodyError::DuplicateMember) => "mcp_body_duplicate_member",
            Refused::Body(BodyError::NotJsonRpc) => "mcp_body_not_jsonrpc",
            Refused::Body(BodyError::MissingName) => "mcp_body_missing_name",
            Refused::TooLarge => "mcp_body_too_large",
            Refused::UnsupportedMedia => "mcp_unsupported_media",
            Refused::Timeout => "mcp_body_timeout",
            Refused::Batch => "mcp_batch_refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub response: LocalResponse,
    pub why: Refused,
    pub audit: McpAudit,
}

/// A body the caller may send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed<'a> {
    /// Backend-token parameters of the deciding rule, if it has any.
    pub exchange: Option<&'a ExchangeOverride>,
    /// The rules that allowed each operation (for the counters).
    pub rules: Vec<RuleId>,
    /// The list requests in the body (id, method), whose results are to be filtered.
    pub list_requests: Vec<(Value, String)>,
    pub audit: McpAudit,
    /// `Mcp-Method`/`Mcp-Name` as the body says, for the filters after this one (rate
    /// limits) and the server, whatever the client's protocol version.
    pub mirrors: Vec<(&'static str, String)>,
}

pub struct Gate {
    policy: Policy,
    max_body_bytes: usize,
    filter_lists: bool,
    /// JSON-RPC batches (MCP 2025-03-26 only) are judged; otherwise refused.
    allow_batches: bool,
    /// The MCP endpoint's path (the resource URL's), without a trailing `/`.
    endpoint: String,
}

impl Gate {
    pub fn new(mcp: &McpConfig, required_scopes: &[String], resource_path: &str) -> Gate {
        Gate {
            policy: Policy::new(mcp, required_scopes),
            max_body_bytes: mcp.max_body_bytes,
            filter_lists: mcp.filter_lists,
            allow_batches: mcp.allow_batches,
            endpoint: resource_path.trim_end_matches('/').to_string(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Whether a request goes through the gate: a POST to the MCP endpoint, however spelt
    /// (trailing `/`, or any path an upstream might normalise to it: not plain).
    pub fn applies(&self, method: &str, path: &str) -> bool {
        if method != "POST" {
            return false;
        }
        let path = crate::request::path_without_query(path);
        let trimmed = path.trim_end_matches('/');
        let endpoint = if self.endpoint.is_empty() {
            ""
        } else {
            &self.endpoint
        };
        trimmed.eq_ignore_ascii_case(endpoint) || !is_plain_path(path)
    }

    /// Checks what the head says before any body is read.
    pub fn check_head(&self, head: &PostHead) -> Result<(), Box<Refusal>> {
        if head
            .content_length
            .is_some_and(|n| n > self.max_body_bytes as u64)
        {
            return Err(Box::new(too_large()));
        }
        let json = head.content_type.as_deref().is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        let identity_encoding = head
            .content_encoding
            .as_deref()
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
        if !json || !identity_encoding {
            return Err(Box::new(refusal(
                415,
                None,
                -32600,
                "Invalid Request: the body must be application/json without content encoding",
                Refused::UnsupportedMedia,
                McpAudit::default(),
            )));
        }
        Ok(())
    }

    /// A body that outgrew `max_body_bytes`.
    pub fn too_large(&self) -> Box<Refusal> {
        Box::new(too_large())
    }

    /// A body that did not finish in time.
    pub fn timed_out(&self) -> Box<Refusal> {
        Box::new(refusal(
            408,
            None,
            -32600,
            "Invalid Request: the body did not arrive in time",
            Refused::Timeout,
            McpAudit::default(),
        ))
    }

    /// Judges the whole body for `caller`.
    pub fn check_body<'a>(
        &'a self,
        head: &PostHead,
        body: &[u8],
        caller: &Identity,
        responses: &Responses,
    ) -> Result<Passed<'a>, Box<Refusal>> {
        if body.len() > self.max_body_bytes {
            return Err(Box::new(too_large()));
        }
        let parsed = message::parse(body).map_err(|e| {
            Box::new(refusal(
                400,
                None,
                e.code(),
                e.describe(),
                Refused::Body(e),
                McpAudit::default(),
            ))
        })?;
        let audit = audit_of(&parsed);
        if matches!(parsed, Body::Batch(_)) && !self.allow_batches {
            // A batch is one HTTP request for the limiters after this filter, however many
            // calls it holds; MCP dropped batches in 2025-06-18.
            return Err(Box::new(refusal(
                400,
                None,
                -32600,
                "Invalid Request: JSON-RPC batches are not accepted",
                Refused::Batch,
                audit,
            )));
        }
        if let Err(mismatch) = headers::check(&head.mirrors, &parsed) {
            let id = single_id(&parsed);
            return Err(Box::new(refusal(
                400,
                id,
                HEADER_MISMATCH,
                mismatch.describe(),
                Refused::HeaderMismatch,
                audit,
            )));
        }
        let mut passed = Passed {
            exchange: None,
            rules: Vec::new(),
            list_requests: Vec::new(),
            audit,
            mirrors: crate::mcp::headers::mirrors_of(&parsed),
        };
        let mut exchange: Option<Option<&ExchangeOverride>> = None;
        for m in parsed.messages() {
            if let (true, Some(method), Some(id)) = (self.filter_lists, m.method(), m.id()) {
                if method.ends_with("/list") {
                    passed.list_requests.push((id.clone(), method.to_string()));
                }
            }
            let Some(operation) = m.operation() else {
                continue;
            };
            let verdict = self.policy.judge(operation, caller);
            let rule = verdict.rule();
            passed.audit.rule = Some(self.policy.rule_name(rule).to_string());
            match verdict {
                Verdict::Allow { exchange: this, .. } => {
                    // One backend token per HTTP request: a batch must agree on it.
                    if exchange.is_some_and(|e| e != this) {
                        let what = "a batch mixing backend scopes";
                        return Err(Box::new(self.deny(m.id(), what, rule, passed.audit)));
                    }
                    exchange = Some(this);
                    passed.rules.push(rule);
                }
                Verdict::StepUp { scopes, .. } => {
                    let mut response = responses.step_up(&scopes);
                    response.body =
                        error_body(m.id(), FORBIDDEN, "insufficient scope for this operation");
                    return Err(Box::new(Refusal {
                        response,
                        why: Refused::Rule {
                            rule,
                            step_up: true,
                        },
                        audit: passed.audit,
                    }));
                }
                Verdict::Deny { .. } => {
                    let what = format!(
                        "{} \"{}\"",
                        operation.method.method(),
                        echoable(&operation.name)
                    );
                    return Err(Box::new(self.deny(m.id(), &what, rule, passed.audit)));
                }
            }
        }
        passed.exchange = exchange.flatten();
        Ok(passed)
    }

    fn deny(&self, id: Option<&Value>, what: &str, rule: RuleId, audit: McpAudit) -> Refusal {
        refusal(
            403,
            id,
            FORBIDDEN,
            &format!("Forbidden: {what} is not allowed for this caller"),
            Refused::Rule {
                rule,
                step_up: false,
            },
            audit,
        )
    }
}

fn too_large() -> Refusal {
    refusal(
        413,
        None,
        -32600,
        "Invalid Request: the body is too large",
        Refused::TooLarge,
        McpAudit::default(),
    )
}

/// The name, bounded and without control characters (it goes into a JSON string, escaped).
fn echoable(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHOED_NAME)
        .collect()
}

fn single_id(body: &Body) -> Option<&Value> {
    match body {
        Body::Single(m) => m.id(),
        Body::Batch(_) => None,
    }
}

fn audit_of(body: &Body) -> McpAudit {
    let first = body.messages().iter().find(|m| m.method().is_some());
    let Some(m) = first else {
        return McpAudit::default();
    };
    let batch = matches!(body, Body::Batch(_));
    McpAudit {
        method: m.method().map(|s| {
            if batch {
                format!("batch:{s}")
            } else {
                s.to_string()
            }
        }),
        name: m.operation().map(|o| echoable(&o.name)),
        jsonrpc_id: m.id().map(|id| match id {
            Value::String(s) => echoable(s),
            other => other.to_string(),
        }),
        rule: None,
    }
}

fn error_body(id: Option<&Value>, code: i64, message: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    })
    .to_string()
    .into_bytes()
}

fn refusal(
    status: u32,
    id: Option<&Value>,
    code: i64,
    message: &str,
    why: Refused,
    audit: McpAudit,
) -> Refusal {
    Refusal {
        response: LocalResponse {
            status,
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("cache-control", "no-store".to_string()),
                ("access-control-allow-origin", "*".to_string()),
                (
                    "access-control-expose-headers",
                    "www-authenticate".to_string(),
                ),
            ],
            body: error_body(id, code, message),
        },
        why,
        audit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ProviderId};
    use crate::mcp::headers::Mirror;
    use crate::time::UnixSeconds;

    fn setup() -> (Gate, Responses) {
        let doc = json!({
            "resource": "https://mcp.example.com/mcp",
            "scopes_supported": ["mcp:tools:call", "bigquery:read", "bigquery:write"],
            "required_scopes": ["mcp:tools:call"],
            "providers": {"p": {"issuer": "https://idp",
                "remote_jwks": {"http_uri": {"uri": "https://idp/jwks", "cluster": "idp"}}}},
            "token_exchange": {"token_endpoint": {"uri": "https://sts/t", "cluster": "sts"},
                "audience": "bq", "client_auth": {"method": "none"}},
            "mcp": {"filter_lists": true, "default_action": "deny", "allow_batches": true, "rules": [
                {"name": "read", "names": ["query_*"], "required_scopes": ["bigquery:read"],
                 "exchange": {"scopes": ["bq.readonly"]}},
                {"name": "write", "names": ["drop_*"], "required_scopes": ["bigquery:write"],
                 "claims": [{"claim": "groups", "contains": "dba"}]},
                {"name": "ping-ish", "names": ["free"]}
            ]}
        });
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let gate = Gate::new(
            config.mcp.as_ref().unwrap(),
            &config.required_scopes,
            "/mcp",
        );
        (gate, Responses::new(&config))
    }

    fn caller(scopes: &[&str], groups: &[&str]) -> Identity {
        Identity {
            provider: ProviderId(0),
            issuer: "https://idp".into(),
            subject: Some("alice".into()),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: UnixSeconds(0),
            headers: Vec::new(),
            claims: vec![(vec!["groups".into()], json!(groups))],
        }
    }

    fn json_head() -> PostHead {
        PostHead {
            content_type: Some("application/json; charset=utf-8".into()),
            ..PostHead::default()
        }
    }

    fn call(id: u32, name: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"sql":"select 1"}}}}}}"#
        )
    }

    fn body_json(r: &Refusal) -> Value {
        serde_json::from_slice(&r.response.body).unwrap()
    }

    #[test]
    fn it_applies_to_posts_to_the_endpoint_in_any_spelling() {
        let (gate, _) = setup();
        assert!(gate.applies("POST", "/mcp"));
        assert!(gate.applies("POST", "/mcp/?x=1"));
        assert!(gate.applies("POST", "/MCP"));
        assert!(gate.applies("POST", "/%6dcp"));
        assert!(!gate.applies("GET", "/mcp"));
        assert!(!gate.applies("POST", "/other"));
    }

    #[test]
    fn the_head_is_checked_before_the_body() {
        let (gate, _) = setup();
        assert!(gate.check_head(&json_head()).is_ok());
        let big = PostHead {
            content_length: Some(2 * 1024 * 1024),
            ..json_head()
        };
        assert_eq!(gate.check_head(&big).unwrap_err().response.status, 413);
        for (t, e) in [
            (Some("text/plain"), None),
            (None, None),
            (Some("application/json"), Some("gzip")),
        ] {
            let head = PostHead {
                content_type: t.map(str::to_string),
                content_encoding: e.map(str::to_string),
                ..PostHead::default()
            };
            assert_eq!(gate.check_head(&head).unwrap_err().response.status, 415);
        }
    }

    #[test]
    fn an_allowed_call_carries_its_rule_and_backend_scopes() {
        let (gate, responses) = setup();
        let who = caller(&["mcp:tools:call", "bigquery:read"], &[]);
        let passed = gate
            .check_body(
                &json_head(),
                call(5, "query_users").as_bytes(),
                &who,
                &responses,
            )
            .unwrap();
        assert_eq!(passed.rules, [RuleId::Rule(0)]);
        assert_eq!(
            passed.exchange.and_then(|e| e.scopes.clone()),
            Some(vec!["bq.readonly".to_string()])
        );
        assert_eq!(
            passed.audit,
            McpAudit {
                method: Some("tools/call".into()),
                name: Some("query_users".into()),
                jsonrpc_id: Some("5".into()),
                rule: Some("read".into()),
            }
        );
    }

    #[test]
    fn missing_scopes_get_one_step_up_challenge_with_all_of_them() {
        let (gate, responses) = setup();
        let who = caller(&["bigquery:read"], &["dba"]);
        let r = gate
            .check_body(
                &json_head(),
                call(6, "drop_table").as_bytes(),
                &who,
                &responses,
            )
            .unwrap_err();
        assert_eq!(r.response.status, 403);
        let challenge = &r
            .response
            .headers
            .iter()
            .find(|(n, _)| *n == "www-authenticate")
            .unwrap()
            .1;
        assert!(
            challenge.contains(r#"scope="mcp:tools:call bigquery:write""#),
            "{challenge}"
        );
        assert!(challenge.contains("error=\"insufficient_scope\""));
        assert_eq!(body_json(&r)["id"], 6);
    }

    #[test]
    fn denials_name_the_tool_carry_the_id_and_echo_nothing_else() {
        let (gate, responses) = setup();
        let who = caller(&["mcp:tools:call", "bigquery:write"], &["eng"]);
        let r = gate
            .check_body(
                &json_head(),
                call(7, "drop_table").as_bytes(),
                &who,
                &responses,
            )
            .unwrap_err();
        assert_eq!(r.response.status, 403);
        assert!(r
            .response
            .headers
            .iter()
            .all(|(n, _)| *n != "www-authenticate"));
        let body = body_json(&r);
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], FORBIDDEN);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("drop_table"), "{message}");
        assert!(!String::from_utf8_lossy(&r.response.body).contains("select 1"));
        assert_eq!(
            r.why,
            Refused::Rule {
                rule: RuleId::Rule(1),
                step_up: false
            }
        );
        let unknown = gate
            .check_body(&json_head(), call(8, "other").as_bytes(), &who, &responses)
            .unwrap_err();
        assert_eq!(unknown.audit.rule.as_deref(), Some("default"));
    }

    #[test]
    fn every_refusal_label_is_listed_once() {
        let all = [
            Refused::Rule {
                rule: RuleId::Default,
                step_up: true,
            },
            Refused::Rule {
                rule: RuleId::Default,
                step_up: false,
            },
            Refused::HeaderMismatch,
            Refused::Body(BodyError::NotJson),
            Refused::Body(BodyError::DuplicateMember),
            Refused::Body(BodyError::NotJsonRpc),
            Refused::Body(BodyError::MissingName),
            Refused::TooLarge,
            Refused::UnsupportedMedia,
            Refused::Timeout,
            Refused::Batch,
        ];
        let labels: Vec<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels, REFUSAL_LABELS);
    }

    #[test]
    fn batches_are_refused_unless_allowed() {
        let (mut gate, responses) = setup();
        gate.allow_batches = false;
        let who = caller(&["mcp:tools:call", "bigquery:read"], &[]);
        let fine = format!("[{},{}]", call(1, "query_a"), call(2, "query_b"));
        let r = gate
            .check_body(&json_head(), fine.as_bytes(), &who, &responses)
            .unwrap_err();
        assert_eq!((r.response.status, r.why), (400, Refused::Batch));
        let single = call(1, "query_a");
        assert!(gate
            .check_body(&json_head(), single.as_bytes(), &who, &responses)
            .is_ok());
    }

    #[test]
    fn a_batch_passes_only_if_every_call_does() {
        let (gate, responses) = setup();
        let who = caller(&["mcp:tools:call", "bigquery:read"], &[]);
        let mixed = format!("[{},{}]", call(1, "query_a"), call(2, "drop_b"));
        let r = gate
            .check_body(&json_head(), mixed.as_bytes(), &who, &responses)
            .unwrap_err();
        assert_eq!(r.response.status, 403);
        let scopes_differ = format!("[{},{}]", call(1, "query_a"), call(2, "free"));
        assert_eq!(
            gate.check_body(&json_head(), scopes_differ.as_bytes(), &who, &responses)
                .unwrap_err()
                .response
                .status,
            403
        );
        let fine = format!("[{},{}]", call(1, "query_a"), call(2, "query_b"));
        assert!(gate
            .check_body(&json_head(), fine.as_bytes(), &who, &responses)
            .is_ok());
    }

    #[test]
    fn mismatched_mirrors_and_bad_bodies_are_400() {
        let (gate, responses) = setup();
        let who = caller(&["mcp:tools:call", "bigquery:read"], &[]);
        let modern = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query_a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let head = PostHead {
            mirrors: MirrorHeaders {
                method: Mirror::Present("tools/call".into()),
                name: Mirror::Present("query_b".into()),
                protocol_version: Mirror::Present("2026-07-28".into()),
            },
            ..json_head()
        };
        let r = gate
            .check_body(&head, modern.as_bytes(), &who, &responses)
            .unwrap_err();
        assert_eq!((r.response.status, r.why), (400, Refused::HeaderMismatch));
        assert_eq!(body_json(&r)["error"]["code"], HEADER_MISMATCH);
        assert_eq!(body_json(&r)["id"], 3);
        let dup = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query_a","name":"drop_b"}}"#;
        let r = gate
            .check_body(&json_head(), dup.as_bytes(), &who, &responses)
            .unwrap_err();
        assert_eq!(
            (r.response.status, body_json(&r)["error"]["code"].clone()),
            (400, json!(-32700))
        );
    }

    #[test]
    fn list_requests_are_remembered_for_their_results() {
        let (gate, responses) = setup();
        let who = caller(&["mcp:tools:call"], &[]);
        let list = r#"{"jsonrpc":"2.0","id":"l1","method":"tools/list"}"#;
        let passed = gate
            .check_body(&json_head(), list.as_bytes(), &who, &responses)
            .unwrap();
        assert_eq!(
            passed.list_requests,
            [(json!("l1"), "tools/list".to_string())]
        );
        assert!(
            passed.rules.is_empty(),
            "no operation named: authentication only"
        );
    }
}
