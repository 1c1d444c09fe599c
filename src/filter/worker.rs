//! One Envoy worker's filter state, shared by its root context and its HTTP contexts, and the
//! request flow: headers → decide (waiting for keys if needed) → exchange (waiting for the STS
//! if needed) → forward with the headers rewritten, or answer.
//!
//! The worker composes parts that own their state: the authenticator, the keys, the token
//! exchanges, the callouts in flight, the parked requests and the audit log. A callout's reply
//! reaches the context that dispatched it (root or HTTP); whichever it is, the reply comes here
//! and the requests waiting on it are decided again. Those decisions are returned to the
//! caller, which acts on their contexts once this state is no longer borrowed (acting on a
//! request can call back into the VM).

use std::rc::Rc;

use mcp_auth_core::authenticator::{bearer_token, Authenticator, Decision, WaitFor};
use mcp_auth_core::config::Config;
use mcp_auth_core::jwt;
use mcp_auth_core::response::{DenyReason, LocalResponse};
use mcp_auth_core::token_exchange::{ExchangeFailure, TokenExchanger};

use crate::filter::audit_log::{AuditLog, ExchangeUse};
use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::exchange::{Exchanges, Settled};
use crate::filter::host::{CalloutToken, ContextId, Host};
use crate::filter::keys::{AfterReply, KeyLoader};
use crate::filter::metrics::Metrics;
use crate::filter::parking::{Parked, Parking, WaitingFor};
use crate::filter::pending::{Authenticated, PendingRequest};
use crate::filter::request::RequestHead;

/// Forward upstream after removing `remove` and setting `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub remove: Rc<[String]>,
    pub set: Vec<(String, String)>,
}

/// The end of a request's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Forward(Forwarding),
    Respond(LocalResponse),
}

/// What to do with a new request: act now, or leave it paused (it is parked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done(Outcome),
    Parked,
}

/// Whether a request may start a key fetch to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyWait {
    MayFetch,
    /// It already waited once: a second wait after a failed fetch would loop.
    AlreadyWaited,
}

pub struct Worker {
    auth: Authenticator,
    keys: KeyLoader,
    exchanges: Option<Exchanges>,
    metrics: Metrics,
    callouts: Callouts,
    parking: Parking,
    audit: AuditLog,
    /// Request headers removed before forwarding (built once from the configuration).
    stripped: Rc<[String]>,
}

impl Worker {
    pub fn new(config: Config, host: &mut impl Host) -> Worker {
        Worker {
            stripped: config.stripped_headers.clone().into(),
            keys: KeyLoader::new(&config),
            exchanges: config
                .token_exchange
                .clone()
                .map(|c| Exchanges::new(TokenExchanger::new(c))),
            auth: Authenticator::new(config),
            metrics: Metrics::define(host),
            callouts: Callouts::default(),
            parking: Parking::default(),
            audit: AuditLog::default(),
        }
    }

    /// Whether the root must tick: background key refreshes, deadlines, resends.
    pub fn needs_tick(&self) -> bool {
        self.exchanges.is_some() || self.keys.has_remote_keys()
    }

    /// Decides a new request whose headers just arrived.
    pub fn on_request(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        head: RequestHead,
    ) -> Verdict {
        let request = PendingRequest {
            context,
            head,
            started_ms: host.now_ms(),
        };
        self.evaluate(host, request, context, KeyWait::MayFetch)
    }

    /// Decides a request. `active` is the context whose host call we are in: callouts sent
    /// now reply there.
    fn evaluate(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        key_wait: KeyWait,
    ) -> Verdict {
        match self.decide_with_shared_keys(host, &request.head) {
            Decision::Wait { provider, wait_for } => {
                self.wait_for_keys(host, request, active, (provider, wait_for), key_wait)
            }
            Decision::Allow {
                identity,
                token_hash,
                cache_hit,
            } if self.exchanges.is_some() => {
                let authenticated = Authenticated {
                    identity,
                    token_hash,
                    cache_hit,
                };
                self.exchange_for(host, request, active, authenticated)
            }
            decision => Verdict::Done(self.conclude(host, &request, decision, None)),
        }
    }

    /// Decides, first adopting keys another worker loaded when the decision wants keys (it
    /// may have fetched while this worker backs off): that beats waiting or failing.
    fn decide_with_shared_keys(&mut self, host: &mut impl Host, head: &RequestHead) -> Decision {
        let now = host.now_ms();
        let decision = self.auth.decide(&head.view(), self.keys.keyring(), now);
        let wants_keys = match &decision {
            Decision::Wait { provider, .. } => Some(*provider),
            Decision::Deny {
                reason: DenyReason::JwksUnavailable,
                ..
            } => self.provider_of(head),
            _ => None,
        };
        match wants_keys {
            Some(provider) if self.keys.adopt_shared(host, provider) => {
                self.auth.decide(&head.view(), self.keys.keyring(), now)
            }
            _ => decision,
        }
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

    /// Parks a request until keys arrive, starting the fetch if none is in flight.
    fn wait_for_keys(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        (provider, wait_for): (usize, WaitFor),
        key_wait: KeyWait,
    ) -> Verdict {
        let waiting = self.keys.fetch_for_waiter(
            host,
            &mut self.callouts,
            &self.metrics,
            provider,
            wait_for,
            key_wait == KeyWait::MayFetch,
            active,
        );
        if !waiting {
            // Nothing to wait for (fetch refused, or this request already waited once):
            // decide with what there is.
            let now = host.now_ms();
            let decision = match self
                .auth
                .decide(&request.head.view(), self.keys.keyring(), now)
            {
                Decision::Wait { .. } => self.auth.keys_unavailable(None),
                other => other,
            };
            return Verdict::Done(self.conclude(host, &request, decision, None));
        }
        let deadline_ms = self.keys.wait_deadline(provider, host.now_ms());
        self.parking
            .park(request, deadline_ms, WaitingFor::Keys(provider));
        Verdict::Parked
    }

    /// Gets the upstream token for an authenticated request: from the cache, from another
    /// worker, from an exchange in flight, or from a new exchange.
    fn exchange_for(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        authenticated: Authenticated,
    ) -> Verdict {
        let subject = request
            .head
            .authorization
            .as_deref()
            .and_then(bearer_token)
            .map(str::to_string);
        let (Some(subject), Some(exchanges)) = (subject, self.exchanges.as_mut()) else {
            // Cannot happen: the request was authenticated with this header, and exchanges
            // are only asked for when configured.
            let decision = self.deny_authenticated(authenticated, DenyReason::InvalidRequest);
            return Verdict::Done(self.conclude(host, &request, decision, None));
        };
        let key = exchanges.key(&authenticated.token_hash);
        if let Some(token) = exchanges.cached(host, &key) {
            self.metrics.exchange_cache(host, true);
            let outcome = self.forward_exchanged(host, &request, authenticated, &token, None);
            return Verdict::Done(outcome);
        }
        self.metrics.exchange_cache(host, false);
        let started = exchanges.join_or_start(
            host,
            &mut self.callouts,
            &self.metrics,
            key,
            &subject,
            authenticated.identity.expires_at,
            active,
        );
        match started {
            Ok(deadline_ms) => {
                self.parking.park(
                    request,
                    deadline_ms,
                    WaitingFor::Exchange { key, authenticated },
                );
                Verdict::Parked
            }
            Err(failure) => {
                let decision =
                    self.deny_authenticated(authenticated, DenyReason::Exchange(failure));
                Verdict::Done(self.conclude(host, &request, decision, None))
            }
        }
    }

    /// Forwards an authenticated request with its upstream token. `sts_ms` is the STS's
    /// latency when the token came from it just now, `None` for a cached token.
    fn forward_exchanged(
        &mut self,
        host: &mut impl Host,
        request: &PendingRequest,
        authenticated: Authenticated,
        token: &str,
        sts_ms: Option<u64>,
    ) -> Outcome {
        let header = self.exchanges.as_ref().map(|x| x.upstream_header(token));
        let decision = Decision::Allow {
            identity: authenticated.identity,
            token_hash: authenticated.token_hash,
            cache_hit: authenticated.cache_hit,
        };
        self.conclude(host, request, decision, header.map(|h| (h, sts_ms)))
    }

    /// Metrics, the audit record and the outcome of a final decision. With `exchanged`, an
    /// allowed request also carries its upstream token header (and the STS latency, if any).
    fn conclude(
        &mut self,
        host: &mut impl Host,
        request: &PendingRequest,
        decision: Decision,
        exchanged: Option<((String, String), Option<u64>)>,
    ) -> Outcome {
        let outcome = match &decision {
            Decision::Respond(response) => {
                self.metrics.metadata_served(host);
                Outcome::Respond(response.clone())
            }
            Decision::Bypass => {
                self.metrics.bypassed(host);
                Outcome::Forward(Forwarding {
                    remove: Rc::clone(&self.stripped),
                    set: Vec::new(),
                })
            }
            Decision::Allow {
                identity,
                cache_hit,
                ..
            } => {
                self.metrics.allowed(host, *cache_hit);
                let mut set = identity.headers.clone();
                set.extend(exchanged.as_ref().map(|(header, _)| header.clone()));
                Outcome::Forward(Forwarding {
                    remove: Rc::clone(&self.stripped),
                    set,
                })
            }
            Decision::Deny {
                reason, response, ..
            } => {
                self.metrics.denied(host, *reason);
                Outcome::Respond(response.clone())
            }
            Decision::Wait { .. } => {
                // Callers resolve waits before concluding; answer as if keys never came.
                let reason = DenyReason::JwksUnavailable;
                self.metrics.denied(host, reason);
                Outcome::Respond(self.auth.responses().deny(reason))
            }
        };
        let exchange_use = exchanged.map(|(_, sts_ms)| ExchangeUse {
            cache_hit: sts_ms.is_none(),
            sts_ms,
            backend_audience: self.exchanges.as_ref().and_then(|x| x.backend_audience()),
        });
        self.audit
            .record(request, &decision, host.now_ms(), exchange_use);
        outcome
    }

    /// The denial of an authenticated request (its identity stays in the audit line).
    fn deny_authenticated(&self, authenticated: Authenticated, reason: DenyReason) -> Decision {
        Decision::Deny {
            reason,
            response: self.auth.responses().deny(reason),
            identity: Some(authenticated.identity),
            token_hash: Some(authenticated.token_hash),
        }
    }

    /// Logs the audit line of a request that ended, with the status the client got.
    pub fn finish_audit(
        &mut self,
        context: ContextId,
        status: impl FnOnce() -> Option<u32>,
        now_ms: u64,
    ) {
        self.audit.finish(context, status, now_ms);
    }

    /// Handles a callout reply delivered to `active`. Returns the parked requests decided as
    /// a result.
    pub fn on_callout_reply(
        &mut self,
        host: &mut impl Host,
        token: CalloutToken,
        active: ContextId,
        body_size: usize,
    ) -> Vec<(ContextId, Outcome)> {
        match self.callouts.take(token) {
            None => Vec::new(),
            Some(Purpose::Keys { provider, step }) => {
                let after = self.keys.on_reply(
                    host,
                    &mut self.callouts,
                    &self.metrics,
                    provider,
                    step,
                    body_size,
                    active,
                );
                match after {
                    AfterReply::WakeWaiters => self.wake_key_waiters(host, provider, active),
                    AfterReply::KeepWaiting => Vec::new(),
                }
            }
            Some(Purpose::Exchange { key }) => {
                let settled = self
                    .exchanges
                    .as_mut()
                    .and_then(|x| x.on_reply(host, &self.metrics, key, body_size));
                match settled {
                    Some(settled) => self.wake_exchange_waiters(host, settled),
                    None => Vec::new(),
                }
            }
        }
    }

    /// Decides again the requests parked on `provider`'s keys.
    fn wake_key_waiters(
        &mut self,
        host: &mut impl Host,
        provider: usize,
        active: ContextId,
    ) -> Vec<(ContextId, Outcome)> {
        let ready = self.parking.take_waiting_for_keys(provider);
        ready
            .into_iter()
            .filter_map(|p| {
                // A request gets one round of waiting for keys, then a final answer; it may
                // still wait for a token exchange.
                let context = p.request.context;
                match self.evaluate(host, p.request, active, KeyWait::AlreadyWaited) {
                    Verdict::Done(outcome) => Some((context, outcome)),
                    Verdict::Parked => None,
                }
            })
            .collect()
    }

    /// Answers the requests parked on a settled exchange.
    fn wake_exchange_waiters(
        &mut self,
        host: &mut impl Host,
        settled: Settled,
    ) -> Vec<(ContextId, Outcome)> {
        let ready = self.parking.take_waiting_for_exchange(&settled.key);
        let mut decided = Vec::with_capacity(ready.len());
        for p in ready {
            let WaitingFor::Exchange { authenticated, .. } = p.waiting_for else {
                continue;
            };
            let outcome = match &settled.outcome {
                Ok(token) => {
                    let sts_ms = Some(settled.sts_ms.unwrap_or(0));
                    self.forward_exchanged(host, &p.request, authenticated, token, sts_ms)
                }
                Err(failure) => {
                    let decision =
                        self.deny_authenticated(authenticated, DenyReason::Exchange(*failure));
                    self.conclude(host, &p.request, decision, None)
                }
            };
            decided.push((p.request.context, outcome));
        }
        decided
    }

    /// Periodic work (the root context's tick): adopt keys other workers fetched, give up on
    /// overdue callouts and over-waited requests, start background refreshes, resend
    /// exchanges whose callout was lost.
    pub fn on_tick(&mut self, host: &mut impl Host, root: ContextId) -> Vec<(ContextId, Outcome)> {
        let mut decided = Vec::new();
        for provider in self.keys.remote_providers() {
            if self.keys.adopt_shared(host, provider) {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
            if self
                .keys
                .expire_overdue(host, &mut self.callouts, &self.metrics, provider)
            {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
            let refused =
                self.keys
                    .start_due_fetch(host, &mut self.callouts, &self.metrics, provider, root)
                    == Some(false);
            if refused {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
        }
        let settled = match self.exchanges.as_mut() {
            Some(x) => x.tick(host, &mut self.callouts, &self.metrics, root),
            None => Vec::new(),
        };
        for s in settled {
            decided.extend(self.wake_exchange_waiters(host, s));
        }
        for p in self.parking.take_expired(host.now_ms()) {
            decided.push(self.give_up(host, p));
        }
        decided
    }

    /// Answers a request whose wait outlived its deadline.
    fn give_up(&mut self, host: &mut impl Host, parked: Parked) -> (ContextId, Outcome) {
        let decision = match parked.waiting_for {
            WaitingFor::Keys(_) => self.auth.keys_unavailable(None),
            WaitingFor::Exchange { authenticated, .. } => self.deny_authenticated(
                authenticated,
                DenyReason::Exchange(ExchangeFailure::Timeout),
            ),
        };
        let outcome = self.conclude(host, &parked.request, decision, None);
        (parked.request.context, outcome)
    }

    /// An HTTP context ended. Its parked request is dropped; a callout it owned will never
    /// deliver its reply, so it is forgotten (a key fetch is started again on the next tick,
    /// an exchange is resent by the root).
    pub fn on_context_gone(&mut self, host: &mut impl Host, context: ContextId) {
        // A request that ended without `on_log` (client gone while it waited) is still audited.
        self.audit.finish(context, || None, host.now_ms());
        self.parking.remove(context);
        for purpose in self.callouts.take_owned_by(context) {
            match purpose {
                Purpose::Keys { provider, .. } => self.keys.abandon(provider),
                Purpose::Exchange { key } => {
                    if let Some(x) = self.exchanges.as_mut() {
                        x.orphan(&key);
                    }
                }
            }
        }
    }
}
