//! State of one Envoy worker's VM, shared by its root context and its HTTP contexts:
//! the authenticator, the keys, JWKS callouts in flight and requests parked waiting for keys.
//!
//! A callout's reply reaches the context that dispatched it (root or HTTP). Whichever it is,
//! it hands the reply here, and every request parked on that provider is decided again.
//! Decisions are computed while the state is borrowed; the host calls that act on them (which
//! can call back into the VM) are made by the caller after the borrow is released.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use crate::core::audit::{AuditRecord, Outcome};
use crate::core::authenticator::{
    bearer_token, Authenticator, Authorization, Decision, Keyring, Request,
};
use crate::core::config::Config;
use crate::core::jwks::MAX_JWKS_BYTES;
use crate::core::jwks_cache::{FetchOutcome, FetchRequest};
use crate::core::jwt;
use crate::core::response::DenyReason;
use crate::core::response::LocalResponse;
use crate::filter::metrics::Metrics;

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

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
    fn view(&self) -> Request<'_> {
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
        remove: Vec<String>,
        set: Vec<(String, String)>,
    },
    Respond(LocalResponse),
    /// Keep waiting (still parked).
    Park,
}

struct Parked {
    context_id: u32,
    provider: usize,
    head: RequestHead,
    started_ms: u64,
    deadline_ms: u64,
}

struct Callout {
    provider: usize,
    is_discovery: bool,
    /// The context whose host call dispatched it: the reply is delivered there.
    owner: u32,
}

pub struct Worker {
    auth: Authenticator,
    keyring: Keyring,
    metrics: Metrics,
    callouts: HashMap<u32, Callout>,
    parked: Vec<Parked>,
    /// Shared-data key per provider, to share fetched keys with the other workers.
    shared_keys: Vec<String>,
    shared_cas: Vec<Option<u32>>,
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
            keyring: Keyring::new(&config),
            auth: Authenticator::new(config),
            metrics: Metrics::define(),
            callouts: HashMap::new(),
            parked: Vec::new(),
            shared_keys,
            shared_cas: vec![None; n],
            audits: HashMap::new(),
        }
    }

    pub fn has_remote_keys(&self) -> bool {
        (0..self.keyring.len()).any(|p| self.keyring.remote(p).is_some())
    }

    /// Decides a new request. `Action::Park` means the request is parked: return `Pause`.
    pub fn on_request(&mut self, context_id: u32, head: RequestHead, now: u64) -> Action {
        self.decide_and_act(context_id, head, now, now, true)
    }

    fn decide_and_act(
        &mut self,
        context_id: u32,
        head: RequestHead,
        started_ms: u64,
        now: u64,
        may_fetch: bool,
    ) -> Action {
        let mut decision = self.auth.decide(&head.view(), &self.keyring, now);
        // Keys another worker loaded (it may have fetched while this one backs off) beat
        // waiting or failing.
        let wants_keys = match &decision {
            Decision::Wait { provider, .. } => Some(*provider),
            Decision::Deny {
                reason: DenyReason::JwksUnavailable,
                ..
            } => self.provider_of(&head),
            _ => None,
        };
        if let Some(provider) = wants_keys {
            if self.adopt_shared_keys(provider) {
                decision = self.auth.decide(&head.view(), &self.keyring, now);
            }
        }
        let Decision::Wait { provider, wait_for } = decision else {
            return self.conclude(context_id, decision, &head, started_ms, now);
        };
        let fetching = self
            .keyring
            .remote(provider)
            .is_some_and(|c| c.is_fetching());
        if !fetching && may_fetch {
            match self.keyring.fetch_for(provider, wait_for, now) {
                Some(request) => {
                    if !self.dispatch(provider, request, context_id, now) {
                        // The failure is recorded; decide again without waiting.
                        let decision = self.auth.decide(&head.view(), &self.keyring, now);
                        return self
                            .conclude_or_unavailable(context_id, decision, &head, started_ms, now);
                    }
                }
                None => {
                    let decision = self.auth.keys_unavailable(None);
                    return self.conclude(context_id, decision, &head, started_ms, now);
                }
            }
        } else if !fetching {
            let decision = self.auth.decide(&head.view(), &self.keyring, now);
            return self.conclude_or_unavailable(context_id, decision, &head, started_ms, now);
        }
        let deadline_ms = now + self.wait_budget_ms(provider);
        self.parked.push(Parked {
            context_id,
            provider,
            head,
            started_ms,
            deadline_ms,
        });
        Action::Park
    }

    /// The provider a request's token claims to come from (unverified `iss`), for the rare
    /// paths that need it before the decision.
    fn provider_of(&self, head: &RequestHead) -> Option<usize> {
        let token = bearer_token(head.authorization.as_deref()?)?;
        let parsed = jwt::parse(token, self.auth.config().max_token_bytes).ok()?;
        let (index, _) = self
            .auth
            .config()
            .provider_for_issuer(parsed.claims.iss.as_deref()?)?;
        Some(index)
    }

    /// A second `Wait` after a failed fetch would loop: answer 503 instead.
    fn conclude_or_unavailable(
        &mut self,
        context_id: u32,
        decision: Decision,
        head: &RequestHead,
        started_ms: u64,
        now: u64,
    ) -> Action {
        let decision = match decision {
            Decision::Wait { .. } => self.auth.keys_unavailable(None),
            other => other,
        };
        self.conclude(context_id, decision, head, started_ms, now)
    }

    /// How long a parked request may wait: a discovery fetch and a JWKS fetch, plus grace.
    fn wait_budget_ms(&self, provider: usize) -> u64 {
        let timeout = self
            .keyring
            .remote(provider)
            .map_or(Duration::from_secs(5), |c| c.timeout());
        2 * timeout.as_millis() as u64 + 1_000
    }

    /// Metrics, the audit record and the action for a final decision.
    fn conclude(
        &mut self,
        context_id: u32,
        decision: Decision,
        head: &RequestHead,
        started_ms: u64,
        now: u64,
    ) -> Action {
        let mut record = AuditRecord::new(Outcome::Allow, &head.method, &head.path);
        record.auth_ms = now.saturating_sub(started_ms);
        let stripped = &self.auth.config().stripped_headers;
        let action = match &decision {
            Decision::Respond(response) => {
                self.metrics.metadata_served();
                record.outcome = Outcome::Metadata;
                Action::Respond(response.clone())
            }
            Decision::Bypass => {
                self.metrics.bypassed();
                record.outcome = Outcome::Bypass;
                Action::Forward {
                    remove: stripped.clone(),
                    set: Vec::new(),
                }
            }
            Decision::Allow {
                identity,
                fingerprint,
                cache_hit,
            } => {
                self.metrics.allowed(*cache_hit);
                record.user = identity.subject.clone();
                record.client_id = identity.client_id.clone();
                record.issuer = Some(identity.issuer.clone());
                record.token_sha256 = Some(fingerprint.clone());
                record.cache = Some(if *cache_hit { "hit" } else { "miss" });
                Action::Forward {
                    remove: stripped.clone(),
                    set: identity.headers.clone(),
                }
            }
            Decision::Deny {
                reason,
                response,
                identity,
                fingerprint,
            } => {
                self.metrics.denied(*reason);
                record.outcome = Outcome::Deny;
                record.reason = Some(reason.label());
                record.user = identity.as_ref().and_then(|i| i.subject.clone());
                record.client_id = identity.as_ref().and_then(|i| i.client_id.clone());
                record.issuer = identity.as_ref().map(|i| i.issuer.clone());
                record.token_sha256 = fingerprint.clone();
                Action::Respond(response.clone())
            }
            Decision::Wait { .. } => return Action::Park,
        };
        self.audits.insert(context_id, (record, started_ms));
        action
    }

    /// Logs the audit line of a request that ended, with the status the client got.
    pub fn log_audit(&mut self, context_id: u32, status: Option<u32>, now: u64) {
        if let Some((mut record, started_ms)) = self.audits.remove(&context_id) {
            record.status = status;
            record.latency_ms = now.saturating_sub(started_ms);
            log::info!("{}", record.to_line());
        }
    }

    /// Sends a JWKS or discovery callout; `false` if the host refused it (failure recorded).
    fn dispatch(&mut self, provider: usize, request: FetchRequest, owner: u32, now: u64) -> bool {
        let headers = vec![
            (":method", "GET"),
            (":path", request.target.path.as_str()),
            (":authority", request.target.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "mcp-auth-filter"),
        ];
        match hostcalls::dispatch_http_call(
            &request.cluster,
            headers,
            None,
            vec![],
            request.timeout,
        ) {
            Ok(token) => {
                self.callouts.insert(
                    token,
                    Callout {
                        provider,
                        is_discovery: request.is_discovery,
                        owner,
                    },
                );
                true
            }
            Err(status) => {
                let reason = format!("cannot call cluster {:?}: {status:?}", request.cluster);
                self.record_failure(provider, reason, now);
                false
            }
        }
    }

    fn record_failure(&mut self, provider: usize, reason: String, now: u64) {
        self.metrics.jwks_fetch(false);
        log::warn!(
            "mcp_auth_filter: JWKS fetch for provider {} failed: {reason}",
            self.provider_name(provider)
        );
        if let Some(cache) = self.keyring.remote_mut(provider) {
            cache.on_failure(now, reason);
        }
    }

    fn provider_name(&self, provider: usize) -> &str {
        self.auth
            .config()
            .providers
            .get(provider)
            .map_or("?", |p| p.name.as_str())
    }

    /// Handles a callout reply delivered to `current_context`. Returns the parked requests
    /// decided as a result, for the caller to act on once this state is no longer borrowed.
    pub fn on_fetch_reply(
        &mut self,
        token: u32,
        current_context: u32,
        body_size: usize,
        now: u64,
    ) -> Vec<(u32, Action)> {
        let Some(callout) = self.callouts.remove(&token) else {
            return Vec::new();
        };
        let provider = callout.provider;
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        let cache_control =
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, "cache-control")
                .ok()
                .flatten();
        let outcome = if body_size > MAX_JWKS_BYTES {
            self.keyring
                .remote_mut(provider)
                .map(|c| c.on_failure(now, format!("response of {body_size} bytes is too large")))
        } else {
            let body = hostcalls::get_buffer(
                proxy_wasm::types::BufferType::HttpCallResponseBody,
                0,
                body_size,
            )
            .ok()
            .flatten()
            .unwrap_or_default();
            let outcome = self.keyring.remote_mut(provider).map(|c| {
                c.on_response(
                    now,
                    callout.is_discovery,
                    status,
                    cache_control.as_deref(),
                    &body,
                )
            });
            if outcome == Some(FetchOutcome::KeysUpdated) {
                self.publish_shared_keys(provider, &body);
            }
            outcome
        };
        match outcome {
            Some(FetchOutcome::KeysUpdated) => {
                self.metrics.jwks_fetch(true);
                let keys = self.keyring.keys(provider).map_or(0, |k| k.len());
                log::info!(
                    "mcp_auth_filter: loaded {keys} signing keys for provider {}",
                    self.provider_name(provider)
                );
            }
            Some(FetchOutcome::FetchNext(next)) => {
                // The JWKS fetch follows discovery; parked requests keep waiting for it.
                let dispatched = self.dispatch(provider, next, current_context, now);
                if dispatched {
                    return Vec::new();
                }
            }
            Some(FetchOutcome::Failed(reason)) => {
                self.metrics.jwks_fetch(false);
                log::warn!(
                    "mcp_auth_filter: JWKS fetch for provider {} failed: {reason}",
                    self.provider_name(provider)
                );
            }
            None => {}
        }
        self.decide_parked(Some(provider), now)
    }

    /// Decides again the requests parked on `provider` (all when `None`).
    fn decide_parked(&mut self, provider: Option<usize>, now: u64) -> Vec<(u32, Action)> {
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| provider.is_none_or(|q| q == p.provider));
        self.parked = waiting;
        let mut actions = Vec::with_capacity(ready.len());
        for p in ready {
            // No new fetch from here: a request gets one round of waiting.
            let action = self.decide_and_act(p.context_id, p.head, p.started_ms, now, false);
            if !matches!(action, Action::Park) {
                actions.push((p.context_id, action));
            }
        }
        actions
    }

    /// Periodic work (root context's tick): adopt keys other workers fetched, give up on
    /// overdue callouts and over-waited requests, start background refreshes.
    pub fn on_tick(&mut self, root_context: u32, now: u64) -> Vec<(u32, Action)> {
        let mut actions = Vec::new();
        for provider in 0..self.keyring.len() {
            if self.keyring.remote(provider).is_none() {
                continue;
            }
            if self.adopt_shared_keys(provider) {
                actions.extend(self.decide_parked(Some(provider), now));
            }
            let overdue = self
                .keyring
                .remote_mut(provider)
                .is_some_and(|c| c.expire_overdue(now));
            if overdue {
                self.callouts.retain(|_, c| c.provider != provider);
                self.metrics.jwks_fetch(false);
                log::warn!(
                    "mcp_auth_filter: JWKS fetch for provider {} got no reply in time",
                    self.provider_name(provider)
                );
                actions.extend(self.decide_parked(Some(provider), now));
            }
            let due = self
                .keyring
                .remote_mut(provider)
                .and_then(|c| c.due_fetch(now));
            if let Some(request) = due {
                if !self.dispatch(provider, request, root_context, now) {
                    actions.extend(self.decide_parked(Some(provider), now));
                }
            }
        }
        let (expired, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.deadline_ms);
        self.parked = waiting;
        for p in expired {
            let decision = self.auth.keys_unavailable(None);
            let action = self.conclude(p.context_id, decision, &p.head, p.started_ms, now);
            actions.push((p.context_id, action));
        }
        actions
    }

    /// An HTTP context ended. Its parked request is dropped; a callout it owned will never
    /// deliver its reply, so the fetch is forgotten and the next tick starts another.
    pub fn on_context_gone(&mut self, context_id: u32) {
        // A request that ended without `on_log` (client gone while it waited) is still audited.
        self.log_audit(context_id, None, now_ms());
        self.parked.retain(|p| p.context_id != context_id);
        let orphaned: Vec<u32> = self
            .callouts
            .iter()
            .filter(|(_, c)| c.owner == context_id)
            .map(|(t, _)| *t)
            .collect();
        for token in orphaned {
            if let Some(c) = self.callouts.remove(&token) {
                if let Some(cache) = self.keyring.remote_mut(c.provider) {
                    cache.abandon_fetch();
                }
            }
        }
    }

    // --- Keys shared across workers: 8 bytes fetched_at, 8 bytes refresh_at, the JWKS. ---

    fn publish_shared_keys(&mut self, provider: usize, body: &[u8]) {
        let (Some(key), Some(cache)) = (
            self.shared_keys.get(provider),
            self.keyring.remote(provider),
        ) else {
            return;
        };
        let mut value = Vec::with_capacity(16 + body.len());
        value.extend_from_slice(&cache.fetched_at.to_be_bytes());
        value.extend_from_slice(&cache.refresh_at().to_be_bytes());
        value.extend_from_slice(body);
        // Without a CAS: the newest fetch wins, and readers only adopt newer keys anyway.
        let _ = hostcalls::set_shared_data(key, Some(&value), None);
    }

    /// Adopts keys another worker published, if newer than ours. True when adopted.
    fn adopt_shared_keys(&mut self, provider: usize) -> bool {
        let Some(key) = self.shared_keys.get(provider) else {
            return false;
        };
        let Ok((Some(value), cas)) = hostcalls::get_shared_data(key) else {
            return false;
        };
        if cas.is_some() && self.shared_cas.get(provider).copied().flatten() == cas {
            return false;
        }
        if let Some(slot) = self.shared_cas.get_mut(provider) {
            *slot = cas;
        }
        let Some((fetched_at, rest)) = split_u64(&value) else {
            return false;
        };
        let Some((refresh_at, body)) = split_u64(rest) else {
            return false;
        };
        self.keyring
            .remote_mut(provider)
            .is_some_and(|c| !c.is_fetching() && c.adopt_shared(body, fetched_at, refresh_at))
    }
}

/// Reads a big-endian u64 off the front of `bytes`.
fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
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
            Action::Respond(response) => send(&response),
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

pub fn send(response: &LocalResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let body = (!response.body.is_empty()).then_some(response.body.as_slice());
    let _ = hostcalls::send_http_response(response.status, headers, body);
}
