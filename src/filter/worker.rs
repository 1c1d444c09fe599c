//! State of one Envoy worker's VM, shared by its root context and its HTTP contexts:
//! the authenticator, the keys, the token exchanger, callouts in flight and parked requests.
//!
//! A callout's reply reaches the context that dispatched it (root or HTTP). Whichever it is,
//! it hands the reply here, and every request parked on it is decided again. Decisions are
//! computed while this state is borrowed; the host calls that act on other requests (which can
//! call back into the VM) are made by the caller after the borrow is released.
//!
//! JWKS callouts live in `keys.rs`, token-exchange callouts in `exchange.rs`.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::filter::exchange::InFlightExchange;
use crate::filter::metrics::Metrics;
use mcp_auth_core::audit::{AuditRecord, Outcome};
use mcp_auth_core::authenticator::{Authenticator, Authorization, Decision, Keyring, Request};
use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::Config;
use mcp_auth_core::response::{DenyReason, LocalResponse};
use mcp_auth_core::token_cache::{token_fingerprint, Identity};
use mcp_auth_core::token_exchange::TokenExchanger;

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Grace beyond a callout's own timeout before a waiting request is given up on.
pub(super) const WAIT_GRACE_MS: u64 = 1_000;

/// A request head kept while its request is parked (the token stays in memory only).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub repeated_authorization: bool,
    pub is_cors_preflight: bool,
}

impl RequestHead {
    pub(super) fn view(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            authorization: match (&self.authorization, self.repeated_authorization) {
                (_, true) => Authorization::Repeated,
                (Some(v), false) => Authorization::Present(v),
                (None, false) => Authorization::Absent,
            },
            is_cors_preflight: self.is_cors_preflight,
        }
    }
}

/// What to do with a request once decided.
#[derive(Debug)]
pub enum Action {
    /// Forward upstream after removing `remove` and setting `set`.
    Forward {
        remove: Rc<[String]>,
        set: Vec<(String, String)>,
    },
    Respond(LocalResponse),
    /// Keep waiting (parked).
    Park,
}

/// An authenticated request (the `Decision::Allow` parts).
#[derive(Debug, Clone)]
pub(super) struct Allowed {
    pub identity: Rc<Identity>,
    pub token_hash: Digest,
    pub cache_hit: bool,
}

/// How the upstream token was obtained, for the audit line.
pub(super) struct ExchangeNote {
    pub header: (String, String),
    pub cache_hit: bool,
    pub sts_ms: Option<u64>,
}

pub(super) enum Waiting {
    Keys(usize),
    Exchange { key: Digest, allowed: Allowed },
}

/// A request being decided: its context, its head, and when its headers arrived.
pub(super) struct PendingRequest {
    pub context_id: u32,
    pub head: RequestHead,
    pub started_ms: u64,
}

pub(super) struct Parked {
    pub request: PendingRequest,
    pub deadline_ms: u64,
    pub waiting: Waiting,
}

pub(super) enum CalloutKind {
    Jwks { provider: usize, is_discovery: bool },
    Exchange { key: Digest },
}

pub(super) struct Callout {
    pub kind: CalloutKind,
    /// The context whose host call dispatched it: the reply is delivered there.
    pub owner: u32,
}

/// A callout reply as read from the host.
pub(super) struct Reply {
    pub status: Option<u16>,
    pub cache_control: Option<String>,
    /// `None` when the body was larger than the caller's limit.
    pub body: Option<Vec<u8>>,
}

pub struct Worker {
    pub(super) auth: Authenticator,
    pub(super) keyring: Keyring,
    pub(super) exchanger: Option<TokenExchanger>,
    pub(super) metrics: Metrics,
    pub(super) callouts: HashMap<u32, Callout>,
    pub(super) exchanges: HashMap<Digest, InFlightExchange>,
    pub(super) parked: Vec<Parked>,
    /// Shared-data key per provider, to share fetched keys with the other workers.
    pub(super) shared_keys: Vec<String>,
    pub(super) shared_cas: Vec<Option<u32>>,
    /// Request headers removed before forwarding (built once from the configuration).
    stripped: Rc<[String]>,
    /// Audit records of decided requests, logged when the request ends (`on_log`) with the
    /// status the client got.
    audits: HashMap<u32, (AuditRecord, u64)>,
}

impl Worker {
    pub fn new(config: Config) -> Worker {
        let shared_keys = config
            .providers
            .iter()
            .map(|p| format!("mcp_auth_filter.jwks.{}", p.name))
            .collect::<Vec<_>>();
        let n = shared_keys.len();
        Worker {
            stripped: config.stripped_headers.clone().into(),
            keyring: Keyring::new(&config),
            exchanger: config.token_exchange.clone().map(TokenExchanger::new),
            auth: Authenticator::new(config),
            metrics: Metrics::define(),
            callouts: HashMap::new(),
            exchanges: HashMap::new(),
            parked: Vec::new(),
            shared_keys,
            shared_cas: vec![None; n],
            audits: HashMap::new(),
        }
    }

    pub fn needs_tick(&self) -> bool {
        self.exchanger.is_some()
            || (0..self.keyring.len()).any(|p| self.keyring.remote(p).is_some())
    }

    /// Decides a new request. `Action::Park` means the request is parked: return `Pause`.
    pub fn on_request(&mut self, context_id: u32, head: RequestHead, now: u64) -> Action {
        let request = PendingRequest {
            context_id,
            head,
            started_ms: now,
        };
        self.evaluate(request, context_id, now, true)
    }

    /// Decides a request. `active` is the context whose host call we are in: callouts sent
    /// now reply there. `may_fetch_keys` is false for requests that already waited for keys.
    pub(super) fn evaluate(
        &mut self,
        request: PendingRequest,
        active: u32,
        now: u64,
        may_fetch_keys: bool,
    ) -> Action {
        match self.decide_with_shared_keys(&request.head, now) {
            Decision::Wait { provider, wait_for } => {
                self.wait_for_keys(request, active, now, (provider, wait_for), may_fetch_keys)
            }
            Decision::Allow {
                identity,
                token_hash,
                cache_hit,
            } if self.exchanger.is_some() => {
                let allowed = Allowed {
                    identity,
                    token_hash,
                    cache_hit,
                };
                self.exchange_for(request, active, now, allowed)
            }
            decision => self.conclude(&request, decision, now, None),
        }
    }

    /// A second `Wait` after a failed fetch would loop: answer 503 instead.
    pub(super) fn conclude_or_unavailable(
        &mut self,
        request: &PendingRequest,
        decision: Decision,
        now: u64,
    ) -> Action {
        let decision = match decision {
            Decision::Wait { .. } => self.auth.keys_unavailable(None),
            other => other,
        };
        self.conclude(request, decision, now, None)
    }

    /// Metrics, the audit record and the action for a final decision. With `exchange`, an
    /// allowed request also carries the upstream token.
    pub(super) fn conclude(
        &mut self,
        request: &PendingRequest,
        decision: Decision,
        now: u64,
        exchange: Option<ExchangeNote>,
    ) -> Action {
        let exchange_used = exchange.as_ref().map(|note| (note.cache_hit, note.sts_ms));
        let action = match &decision {
            Decision::Respond(response) => {
                self.metrics.metadata_served();
                Action::Respond(response.clone())
            }
            Decision::Bypass => {
                self.metrics.bypassed();
                Action::Forward {
                    remove: Rc::clone(&self.stripped),
                    set: Vec::new(),
                }
            }
            Decision::Allow {
                identity,
                cache_hit,
                ..
            } => {
                self.metrics.allowed(*cache_hit);
                let mut set = identity.headers.clone();
                set.extend(exchange.map(|note| note.header));
                Action::Forward {
                    remove: Rc::clone(&self.stripped),
                    set,
                }
            }
            Decision::Deny {
                reason, response, ..
            } => {
                self.metrics.denied(*reason);
                Action::Respond(response.clone())
            }
            Decision::Wait { .. } => return Action::Park,
        };
        // The audit line costs a record per request: only when Envoy logs at info.
        if log::log_enabled!(log::Level::Info) {
            let record = self.audit_record(request, &decision, now, exchange_used);
            self.audits
                .insert(request.context_id, (record, request.started_ms));
        }
        action
    }

    fn audit_record(
        &self,
        request: &PendingRequest,
        decision: &Decision,
        now: u64,
        exchange: Option<(bool, Option<u64>)>,
    ) -> AuditRecord {
        let head = &request.head;
        let mut record = AuditRecord::new(Outcome::Allow, &head.method, &head.path);
        record.auth_ms = now.saturating_sub(request.started_ms);
        let (identity, token_hash) = match decision {
            Decision::Respond(_) => {
                record.outcome = Outcome::Metadata;
                (None, None)
            }
            Decision::Bypass => {
                record.outcome = Outcome::Bypass;
                (None, None)
            }
            Decision::Allow {
                identity,
                token_hash,
                cache_hit,
            } => {
                record.cache = Some(if *cache_hit { "hit" } else { "miss" });
                if let Some((hit, sts_ms)) = exchange {
                    record.exchange = Some(if hit { "hit" } else { "miss" });
                    record.backend_audience = self
                        .exchanger
                        .as_ref()
                        .and_then(|x| x.audience().map(str::to_string));
                    record.sts_ms = sts_ms;
                }
                (Some(identity), Some(token_hash))
            }
            Decision::Deny {
                reason,
                identity,
                token_hash,
                ..
            } => {
                record.outcome = Outcome::Deny;
                record.reason = Some(reason.label());
                (identity.as_ref(), token_hash.as_ref())
            }
            Decision::Wait { .. } => (None, None),
        };
        if let Some(identity) = identity {
            record.user = identity.subject.clone();
            record.client_id = identity.client_id.clone();
            record.issuer = Some(identity.issuer.clone());
        }
        record.token_sha256 = token_hash.map(token_fingerprint);
        record
    }

    /// The denial of an authenticated request (its identity stays in the audit line).
    pub(super) fn deny_allowed(&self, allowed: Allowed, reason: DenyReason) -> Decision {
        Decision::Deny {
            reason,
            response: self.auth.responses().deny(reason),
            identity: Some(allowed.identity),
            token_hash: Some(allowed.token_hash),
        }
    }

    /// Logs the audit line of a request that ended, with the status the client got (asked
    /// for only when there is a line to log).
    pub fn log_audit(&mut self, context_id: u32, status: impl FnOnce() -> Option<u32>, now: u64) {
        if let Some((mut record, started_ms)) = self.audits.remove(&context_id) {
            record.status = status();
            record.latency_ms = now.saturating_sub(started_ms);
            log::info!("{}", record.to_line());
        }
    }

    /// Handles a callout reply delivered to `active`. Returns the parked requests decided as
    /// a result, for the caller to act on once this state is no longer borrowed.
    pub fn on_callout_reply(
        &mut self,
        token: u32,
        active: u32,
        body_size: usize,
        now: u64,
    ) -> Vec<(u32, Action)> {
        let Some(callout) = self.callouts.remove(&token) else {
            return Vec::new();
        };
        match callout.kind {
            CalloutKind::Jwks {
                provider,
                is_discovery,
            } => {
                let reply = read_reply(body_size, mcp_auth_core::jwks::MAX_JWKS_BYTES);
                self.on_jwks_reply(provider, is_discovery, reply, active, now)
            }
            CalloutKind::Exchange { key } => {
                let reply =
                    read_reply(body_size, mcp_auth_core::token_exchange::MAX_RESPONSE_BYTES);
                self.on_exchange_reply(key, reply, active, now)
            }
        }
    }

    /// Periodic work (root context's tick): adopt keys other workers fetched, give up on
    /// overdue callouts and over-waited requests, start background refreshes, resend
    /// exchanges whose callout was lost.
    pub fn on_tick(&mut self, root_context: u32, now: u64) -> Vec<(u32, Action)> {
        let mut actions = self.tick_keys(root_context, now);
        actions.extend(self.tick_exchanges(root_context, now));
        let (expired, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.deadline_ms);
        self.parked = waiting;
        for p in expired {
            let decision = match p.waiting {
                Waiting::Keys(_) => self.auth.keys_unavailable(None),
                Waiting::Exchange { allowed, .. } => self.deny_allowed(
                    allowed,
                    DenyReason::Exchange(mcp_auth_core::token_exchange::ExchangeFailure::Timeout),
                ),
            };
            let action = self.conclude(&p.request, decision, now, None);
            actions.push((p.request.context_id, action));
        }
        actions
    }

    /// An HTTP context ended. Its parked request is dropped; a callout it owned will never
    /// deliver its reply, so it is forgotten and sent again by the root on the next tick.
    pub fn on_context_gone(&mut self, context_id: u32) {
        // A request that ended without `on_log` (client gone while it waited) is still audited.
        self.log_audit(context_id, || None, now_ms());
        self.parked.retain(|p| p.request.context_id != context_id);
        let orphaned: Vec<u32> = self
            .callouts
            .iter()
            .filter(|(_, c)| c.owner == context_id)
            .map(|(t, _)| *t)
            .collect();
        for token in orphaned {
            let Some(callout) = self.callouts.remove(&token) else {
                continue;
            };
            match callout.kind {
                CalloutKind::Jwks { provider, .. } => {
                    if let Some(cache) = self.keyring.remote_mut(provider) {
                        cache.abandon_fetch();
                    }
                }
                CalloutKind::Exchange { key } => {
                    if let Some(flight) = self.exchanges.get_mut(&key) {
                        flight.callout = None;
                    }
                }
            }
        }
    }

    /// Sends an HTTP callout and records it; `None` if the host refused it.
    pub(super) fn send(
        &mut self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
        kind: CalloutKind,
        owner: u32,
    ) -> Option<u32> {
        match hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout) {
            Ok(token) => {
                self.callouts.insert(token, Callout { kind, owner });
                Some(token)
            }
            Err(status) => {
                log::warn!("mcp_auth_filter: cannot call cluster {cluster:?}: {status:?}");
                None
            }
        }
    }
}

fn read_reply(body_size: usize, limit: usize) -> Reply {
    // Bytes, decoded fallibly: a reply header that is not UTF-8 must not panic the VM.
    let header = |name: &str| {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
    };
    let body = (body_size <= limit).then(|| {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    });
    Reply {
        status: header(":status").and_then(|s| s.parse::<u16>().ok()),
        cache_control: header("cache-control"),
        body,
    }
}

/// Carries out decided actions for other (or the current) HTTP contexts, then restores the
/// effective context. Called with the worker state not borrowed.
pub fn apply_to_contexts(actions: Vec<(u32, Action)>, current_context: u32) {
    if actions.is_empty() {
        return;
    }
    for (context_id, action) in actions {
        // The context may have ended meanwhile; then there is nothing to act on.
        if hostcalls::set_effective_context(context_id).is_err() {
            continue;
        }
        match action {
            Action::Forward { remove, set } => {
                apply_headers(&remove, &set);
                let _ = hostcalls::resume_http_request();
            }
            Action::Respond(response) => send_response(&response),
            Action::Park => {}
        }
    }
    let _ = hostcalls::set_effective_context(current_context);
}

pub fn apply_headers(remove: &[String], set: &[(String, String)]) {
    for name in remove {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }
    for (name, value) in set {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }
}

pub fn send_response(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let body = (!response.body.is_empty()).then_some(response.body.as_slice());
    let _ = hostcalls::send_http_response(response.status, headers, body);
}
