//! The worker's MCP side: requests whose body is being buffered for the gate, the list
//! results being filtered on their way back, and the MCP counters.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use mcp_auth_core::config::{Config, DEFAULT_RULE};
use mcp_auth_core::mcp::gate::{Gate, Refusal, Refused};
use mcp_auth_core::mcp::lists::{filter_response, ListKind, PendingList};
use mcp_auth_core::mcp::policy::RuleId;
use mcp_auth_core::mcp::sse::SseFilter;
use mcp_auth_core::time::UnixMillis;
use mcp_auth_core::token_cache::Identity;
use serde_json::Value;

use crate::filter::host::{ContextId, Host, MetricId, MetricKind};
use crate::filter::pending::PendingRequest;

/// Largest list response buffered whole to be filtered (beyond: replaced by an error).
const MAX_LIST_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Largest SSE event held to be filtered.
const MAX_SSE_EVENT_BYTES: usize = 1024 * 1024;

/// A request whose headers passed and whose body the gate waits for.
pub struct AwaitingBody {
    pub request: PendingRequest,
    pub deadline: UnixMillis,
    /// The size of the body buffered so far (the host keeps the bytes).
    pub body_size: usize,
    /// A body callback came for it (none ever does when the host stops all iteration at
    /// the headers, without `allow_on_headers_stop_iteration`).
    pub body_seen: bool,
}

/// How a list response is being filtered.
enum ListMode {
    /// Response headers not seen yet.
    Pending,
    /// `application/json`: buffered whole, filtered at its end.
    Json,
    /// `text/event-stream`: filtered event by event.
    Sse(Box<SseFilter>),
}

/// A response carrying list results to filter for `caller`.
struct ListWatch {
    pending: Vec<PendingList>,
    caller: Rc<Identity>,
    mode: ListMode,
    /// Bytes the upstream sent and bytes passed on: they differ once entries were removed.
    bytes_in: usize,
    bytes_out: usize,
}

/// What to do with a response callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStep {
    Continue,
    /// Keep buffering (the whole JSON list response is filtered at its end).
    Buffer,
}

struct McpMetrics {
    allowed: Vec<(String, Option<MetricId>)>,
    denied: Vec<(String, Option<MetricId>)>,
    header_mismatch: Option<MetricId>,
    body_refused: Option<MetricId>,
    lists_filtered: Option<MetricId>,
}

pub struct McpSide {
    gate: Gate,
    body_timeout: Duration,
    awaiting: HashMap<ContextId, AwaitingBody>,
    /// The hint about `allow_on_headers_stop_iteration` was logged.
    warned_no_body: bool,
    lists: HashMap<ContextId, ListWatch>,
    metrics: McpMetrics,
}

impl McpSide {
    pub fn new(config: &Config, host: &mut impl Host) -> Option<McpSide> {
        let mcp = config.mcp.as_ref()?;
        let resource_path = mcp_auth_core::config::HttpUrl::parse(&config.resource)
            .map(|u| u.path)
            .unwrap_or_default();
        let gate = Gate::new(mcp, &config.required_scopes, &resource_path);
        let mut counter = |name: String| host.define_metric(MetricKind::Counter, &name);
        let per_rule = |kind: &str, counter: &mut dyn FnMut(String) -> Option<MetricId>| {
            gate.policy()
                .rule_names()
                .map(|rule| {
                    let id = counter(format!("mcp_auth.mcp.{kind}.{rule}"));
                    (rule.to_string(), id)
                })
                .collect::<Vec<_>>()
        };
        let metrics = McpMetrics {
            allowed: per_rule("allowed", &mut counter),
            denied: per_rule("denied", &mut counter),
            header_mismatch: counter("mcp_auth.mcp.header_mismatch".into()),
            body_refused: counter("mcp_auth.mcp.body_refused".into()),
            lists_filtered: counter("mcp_auth.mcp.lists_filtered".into()),
        };
        Some(McpSide {
            gate,
            body_timeout: mcp.body_timeout,
            awaiting: HashMap::new(),
            warned_no_body: false,
            lists: HashMap::new(),
            metrics,
        })
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Whether this request's body must be judged before anything goes upstream.
    pub fn applies(&self, request: &PendingRequest) -> bool {
        self.gate.applies(&request.head.method, &request.head.path)
    }

    pub fn await_body(&mut self, request: PendingRequest, now: UnixMillis) {
        let deadline = now.plus(self.body_timeout);
        let awaiting = AwaitingBody {
            request,
            deadline,
            body_size: 0,
            body_seen: false,
        };
        self.awaiting.insert(awaiting.request.context, awaiting);
    }

    pub fn is_awaiting(&self, context: ContextId) -> bool {
        self.awaiting.contains_key(&context)
    }

    /// The body buffered so far for this context, when its body is awaited.
    pub fn buffered(&self, context: ContextId) -> Option<usize> {
        self.awaiting.get(&context).map(|a| a.body_size)
    }

    /// Notes how much of an awaited body is buffered.
    pub fn saw_body(&mut self, context: ContextId, body_size: usize) {
        if let Some(a) = self.awaiting.get_mut(&context) {
            a.body_size = body_size;
            a.body_seen = true;
        }
    }

    pub fn take_awaiting(&mut self, context: ContextId) -> Option<AwaitingBody> {
        self.awaiting.remove(&context)
    }

    /// The requests whose body did not arrive in time.
    pub fn take_overdue(&mut self, now: UnixMillis) -> Vec<AwaitingBody> {
        let overdue: Vec<ContextId> = self
            .awaiting
            .iter()
            .filter(|(_, a)| now >= a.deadline)
            .map(|(c, _)| *c)
            .collect();
        let overdue: Vec<AwaitingBody> = overdue
            .into_iter()
            .filter_map(|c| self.awaiting.remove(&c))
            .collect();
        if !self.warned_no_body && overdue.iter().any(|a| !a.body_seen) {
            // Once per worker: the likely cause is the host's configuration, not the client.
            self.warned_no_body = true;
            log::warn!(
                "mcp_auth_filter: an MCP request body never reached the filter; the MCP gate \
                 needs `allow_on_headers_stop_iteration: true` in the wasm filter's config \
                 (Envoy 1.35 or later; with Istio, an EnvoyFilter: see docs/deploying.md)"
            );
        }
        overdue
    }

    pub fn forget(&mut self, context: ContextId) {
        self.awaiting.remove(&context);
        self.lists.remove(&context);
    }

    /// Counts a body that passed, and remembers its list requests for their results.
    pub fn passed(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        rules: &[RuleId],
        list_requests: Vec<(Value, String)>,
        caller: &Rc<Identity>,
    ) {
        for rule in rules {
            let name = self.gate.policy().rule_name(*rule).to_string();
            bump_named(host, &self.metrics.allowed, &name);
        }
        let pending: Vec<PendingList> = list_requests
            .into_iter()
            .filter_map(|(id, method)| {
                ListKind::of_method(&method).map(|kind| PendingList { id, kind })
            })
            .collect();
        if !pending.is_empty() {
            let watch = ListWatch {
                pending,
                caller: Rc::clone(caller),
                mode: ListMode::Pending,
                bytes_in: 0,
                bytes_out: 0,
            };
            self.lists.insert(context, watch);
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, host: &mut impl Host, refusal: &Refusal) {
        match refusal.why {
            Refused::Rule { rule, .. } => {
                let name = self.gate.policy().rule_name(rule).to_string();
                bump_named(host, &self.metrics.denied, &name);
            }
            Refused::HeaderMismatch => bump(host, self.metrics.header_mismatch),
            Refused::Body(_)
            | Refused::TooLarge
            | Refused::UnsupportedMedia
            | Refused::Timeout
            | Refused::Batch => bump(host, self.metrics.body_refused),
        }
    }

    // ---- list results --------------------------------------------------------------------

    /// The response headers of a request with list results to filter.
    pub fn on_response_headers(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
    ) -> ResponseStep {
        let Some(watch) = self.lists.get_mut(&context) else {
            return ResponseStep::Continue;
        };
        let media = host
            .response_header("content-type")
            .map(|v| String::from_utf8_lossy(&v).to_ascii_lowercase())
            .unwrap_or_default();
        let media = media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        match media.as_str() {
            "application/json" => {
                watch.mode = ListMode::Json;
                ResponseStep::Buffer
            }
            "text/event-stream" => {
                // Events change size as they are filtered; the stream is framed by chunks.
                host.remove_response_header("content-length");
                watch.mode = ListMode::Sse(Box::new(SseFilter::new(MAX_SSE_EVENT_BYTES)));
                ResponseStep::Continue
            }
            _ => {
                // Not a JSON-RPC answer (an HTTP error page): there is no list in it.
                self.lists.remove(&context);
                ResponseStep::Continue
            }
        }
    }

    /// A response body chunk of a request with list results to filter.
    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        body_size: usize,
        end_of_stream: bool,
    ) -> ResponseStep {
        let policy = self.gate.policy();
        let Some(watch) = self.lists.get_mut(&context) else {
            return ResponseStep::Continue;
        };
        let caller = Rc::clone(&watch.caller);
        let allowed = |kind: ListKind, name: &str| policy.shows(kind.call(), name, &caller);
        match &mut watch.mode {
            ListMode::Pending => {}
            ListMode::Json => {
                if !end_of_stream && body_size <= MAX_LIST_RESPONSE_BYTES {
                    return ResponseStep::Buffer;
                }
                let replacement = if body_size > MAX_LIST_RESPONSE_BYTES {
                    // Too large to filter: no unfiltered list gets out.
                    let id = watch
                        .pending
                        .first()
                        .map_or("null".into(), |p| p.id.to_string());
                    Some(mcp_auth_core::mcp::lists::unfilterable_response(&id).into_bytes())
                } else {
                    let body = host.response_body(body_size);
                    filter_response(&body, &watch.pending, &allowed)
                };
                watch.bytes_in = body_size;
                watch.bytes_out = body_size;
                if let Some(new_body) = &replacement {
                    host.replace_response_body(body_size, new_body);
                    host.set_response_header("content-length", &new_body.len().to_string());
                    watch.bytes_out = usize::MAX;
                }
            }
            ListMode::Sse(sse) => {
                let chunk = host.response_body(body_size);
                let out = sse.push(&chunk, end_of_stream, &watch.pending, &allowed);
                watch.bytes_in += chunk.len();
                watch.bytes_out += out.len();
                if out != chunk {
                    host.replace_response_body(body_size, &out);
                }
            }
        }
        if end_of_stream {
            if watch.bytes_in != watch.bytes_out {
                bump(host, self.metrics.lists_filtered);
            }
            self.lists.remove(&context);
        }
        ResponseStep::Continue
    }
}

fn bump(host: &mut impl Host, id: Option<MetricId>) {
    if let Some(id) = id {
        host.increment_metric(id, 1);
    }
}

fn bump_named(host: &mut impl Host, counters: &[(String, Option<MetricId>)], name: &str) {
    let found = counters
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| counters.iter().find(|(n, _)| n == DEFAULT_RULE));
    if let Some((_, id)) = found {
        bump(host, *id);
    }
}
