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
use std::time::Duration;

use mcp_auth_core::audit::Outcome as AuditOutcome;
use mcp_auth_core::authenticator::{
    Authenticated, Authenticator, Decision, Denial, KeyNeed, KeyNeedKind,
};
use mcp_auth_core::config::Config;
use mcp_auth_core::jwks_cache::FetchReason;
use mcp_auth_core::response::{DenyReason, LocalResponse};
use mcp_auth_core::token_exchange::{ExchangeFailure, TokenExchanger};

use crate::filter::audit_log::{AuditFacts, AuditLog, ExchangeUse};
use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::exchange::{Exchanges, Settled};
use crate::filter::host::{CalloutToken, ContextId, Host};
use crate::filter::keys::{AfterReply, FetchWait, KeyLoader};
use crate::filter::metrics::Metrics;
use crate::filter::parking::{Parked, Parking, WaitingFor};
use crate::filter::pending::PendingRequest;
use crate::filter::request::RequestHead;

/// The root's tick: background refreshes and deadlines.
pub const TICK: Duration = Duration::from_secs(1);
/// The tick while requests wait for another worker's fetch or exchange: how soon they see its
/// result in shared data.
pub const FAST_TICK: Duration = Duration::from_millis(50);

/// Forward upstream after removing `remove` (and `remove_also`) and setting `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub remove: Rc<[String]>,
    /// This request's own spellings of the removed headers (`x_mcp_user_sub`), which a
    /// CGI-style server would read as the same header.
    pub remove_also: Vec<String>,
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

/// A decision with nothing left to wait for.
enum Final {
    Metadata(LocalResponse),
    Bypass,
    Allow {
        authenticated: Authenticated,
        /// The upstream token's header, and the STS latency when just obtained.
        upstream: Option<((String, String), Option<u64>)>,
    },
    Deny(Denial),
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
    /// The tick period asked of the host last.
    tick: Option<Duration>,
}

impl Worker {
    pub fn new(config: Config, host: &mut impl Host) -> Worker {
        let me = host.random_u64();
        let mut worker = Worker {
            stripped: config.stripped_headers.clone().into(),
            keys: KeyLoader::new(&config, me),
            exchanges: config
                .token_exchange
                .clone()
                .map(|c| Exchanges::new(TokenExchanger::new(c), me)),
            auth: Authenticator::new(config),
            metrics: Metrics::define(host),
            callouts: Callouts::default(),
            parking: Parking::default(),
            audit: AuditLog::default(),
            tick: None,
        };
        worker.sync_tick(host);
        worker
    }

    /// Asks the host for the tick this worker needs now: none without remote keys or
    /// exchanges, fast while requests wait on another worker, else once a second.
    fn sync_tick(&mut self, host: &mut impl Host) {
        let needs_tick = self.exchanges.is_some() || !self.keys.remote_providers().is_empty();
        if !needs_tick {
            return;
        }
        let watching =
            self.keys.watching() || self.exchanges.as_ref().is_some_and(Exchanges::watching);
        let period = if watching { FAST_TICK } else { TICK };
        if self.tick != Some(period) {
            host.set_tick_period(period);
            self.tick = Some(period);
        }
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
            started: host.now(),
        };
        let verdict = self.evaluate(host, request, context, KeyWait::MayFetch);
        self.sync_tick(host);
        verdict
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
        match self.decide(host, &request.head) {
            Decision::NeedKeys(need) => self.wait_for_keys(host, request, active, need, key_wait),
            Decision::Allow(authenticated) => {
                self.exchange_for(host, request, active, authenticated)
            }
            Decision::Respond(response) => {
                Verdict::Done(self.conclude(host, &request, Final::Metadata(response)))
            }
            Decision::Bypass => Verdict::Done(self.conclude(host, &request, Final::Bypass)),
            Decision::Deny(denial) => {
                Verdict::Done(self.conclude(host, &request, Final::Deny(denial)))
            }
        }
    }

    /// Decides; when keys are needed, first looks at what the other workers did (published
    /// keys, a fetch under way, the rate limit's history) and decides again if that changed
    /// anything: a worker never refuses a token another worker's keys accept.
    fn decide(&mut self, host: &mut impl Host, head: &RequestHead) -> Decision {
        let now = host.now();
        let decision = self.auth.decide(&head.view(), self.keys.keyring(), now);
        let Decision::NeedKeys(need) = &decision else {
            return decision;
        };
        self.keys.sync(host, need.provider);
        self.auth.decide(&head.view(), self.keys.keyring(), now)
    }

    /// Parks a request until keys arrive, starting the fetch if none is under way, or refuses
    /// it when there is nothing to wait for.
    fn wait_for_keys(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        need: KeyNeed,
        key_wait: KeyWait,
    ) -> Verdict {
        let reason = match need.kind {
            KeyNeedKind::FirstKeys => Some(FetchReason::Scheduled),
            KeyNeedKind::UnknownKid => Some(FetchReason::UnknownKid),
            KeyNeedKind::KeysUnavailable | KeyNeedKind::KeyNotFound => None,
        };
        let wait = match reason {
            Some(reason) => self.keys.fetch_for_waiter(
                host,
                &mut self.callouts,
                &self.metrics,
                need.provider,
                reason,
                key_wait == KeyWait::MayFetch,
                active,
            ),
            None => FetchWait::Nothing,
        };
        if wait == FetchWait::Nothing {
            let denial = self.auth.refuse(&need);
            return Verdict::Done(self.conclude(host, &request, Final::Deny(denial)));
        }
        let deadline = self.keys.wait_deadline(need.provider, host.now());
        self.parking.park(request, deadline, WaitingFor::Keys(need));
        Verdict::Parked
    }

    /// Gets the upstream token for an authenticated request (when an exchange is configured):
    /// from the cache, from another worker, from an exchange under way, or from a new one.
    fn exchange_for(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        authenticated: Authenticated,
    ) -> Verdict {
        let Some(exchanges) = self.exchanges.as_mut() else {
            let done = Final::Allow {
                authenticated,
                upstream: None,
            };
            return Verdict::Done(self.conclude(host, &request, done));
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
            &authenticated.token,
            authenticated.identity.expires_at,
            active,
        );
        match started {
            Ok(deadline) => {
                self.parking.park(
                    request,
                    deadline,
                    WaitingFor::Exchange { key, authenticated },
                );
                Verdict::Parked
            }
            Err(failure) => {
                let denial = self
                    .auth
                    .deny_authenticated(authenticated, DenyReason::Exchange(failure));
                Verdict::Done(self.conclude(host, &request, Final::Deny(denial)))
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
        let upstream = self
            .exchanges
            .as_ref()
            .map(|x| (x.upstream_header(token), sts_ms));
        let done = Final::Allow {
            authenticated,
            upstream,
        };
        self.conclude(host, request, done)
    }

    /// Metrics, the audit record and the outcome of a final decision.
    fn conclude(&mut self, host: &mut impl Host, request: &PendingRequest, done: Final) -> Outcome {
        let remove_also = request.head.aliases_of(&self.stripped);
        let forward = |set| {
            Outcome::Forward(Forwarding {
                remove: Rc::clone(&self.stripped),
                remove_also,
                set,
            })
        };
        let backend_audience = self.exchanges.as_ref().and_then(|x| x.backend_audience());
        let (outcome, facts) = match &done {
            Final::Metadata(response) => {
                self.metrics.metadata_served(host);
                (
                    Outcome::Respond(response.clone()),
                    facts(AuditOutcome::Metadata),
                )
            }
            Final::Bypass => {
                self.metrics.bypassed(host);
                (forward(Vec::new()), facts(AuditOutcome::Bypass))
            }
            Final::Allow {
                authenticated,
                upstream,
            } => {
                self.metrics.allowed(host, authenticated.cache_hit);
                let mut set = authenticated.identity.headers.clone();
                set.extend(upstream.as_ref().map(|(header, _)| header.clone()));
                let exchange = upstream.as_ref().map(|(_, sts_ms)| ExchangeUse {
                    cache_hit: sts_ms.is_none(),
                    sts_ms: *sts_ms,
                    backend_audience,
                });
                let facts = AuditFacts {
                    identity: Some(&authenticated.identity),
                    token_hash: Some(&authenticated.token_hash),
                    cache_hit: Some(authenticated.cache_hit),
                    exchange,
                    ..facts(AuditOutcome::Allow)
                };
                (forward(set), facts)
            }
            Final::Deny(denial) => {
                self.metrics.denied(host, denial.reason);
                let facts = AuditFacts {
                    reason: Some(denial.reason.label()),
                    identity: denial.identity.as_ref(),
                    token_hash: denial.token_hash.as_ref(),
                    ..facts(AuditOutcome::Deny)
                };
                (Outcome::Respond(denial.response.clone()), facts)
            }
        };
        self.audit.record(request, facts, host.now());
        outcome
    }

    /// Logs the audit line of a request that ended, with the status the client got.
    pub fn finish_audit(
        &mut self,
        context: ContextId,
        status: impl FnOnce() -> Option<u32>,
        host: &impl Host,
    ) {
        self.audit.finish(context, status, host.now());
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
        let decided = match self.callouts.take(token) {
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
        };
        self.sync_tick(host);
        decided
    }

    /// Decides again the requests parked on `provider`'s keys.
    fn wake_key_waiters(
        &mut self,
        host: &mut impl Host,
        provider: mcp_auth_core::config::ProviderId,
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
                    // A token this worker did not fetch counts as a cache hit.
                    let sts_ms = settled.sts_ms;
                    self.forward_exchanged(host, &p.request, authenticated, token, sts_ms)
                }
                Err(failure) => {
                    let denial = self
                        .auth
                        .deny_authenticated(authenticated, DenyReason::Exchange(*failure));
                    self.conclude(host, &p.request, Final::Deny(denial))
                }
            };
            decided.push((p.request.context, outcome));
        }
        decided
    }

    /// Periodic work (the root context's tick): adopt keys other workers fetched, give up on
    /// overdue callouts and over-waited requests, resend lost callouts, start background
    /// refreshes, look at other workers' exchanges.
    pub fn on_tick(&mut self, host: &mut impl Host, root: ContextId) -> Vec<(ContextId, Outcome)> {
        let mut decided = Vec::new();
        for provider in self.keys.remote_providers() {
            if self.keys.tick_shared(host, provider) {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
            if self
                .keys
                .expire_overdue(host, &mut self.callouts, &self.metrics, provider)
            {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
            let resend =
                self.keys
                    .resend_orphaned(host, &mut self.callouts, &self.metrics, provider, root);
            let due =
                self.keys
                    .start_due_fetch(host, &mut self.callouts, &self.metrics, provider, root);
            if resend == Some(false) || due == Some(false) {
                decided.extend(self.wake_key_waiters(host, provider, root));
            }
        }
        let tick = match self.exchanges.as_mut() {
            Some(x) => x.tick(host, &mut self.callouts, &self.metrics, root),
            None => Default::default(),
        };
        for (key, deadline) in tick.extended {
            self.parking.extend_exchange_wait(&key, deadline);
        }
        for s in tick.settled {
            decided.extend(self.wake_exchange_waiters(host, s));
        }
        for p in self.parking.take_expired(host.now()) {
            decided.push(self.give_up(host, p));
        }
        self.sync_tick(host);
        decided
    }

    /// Answers a request whose wait outlived its deadline.
    fn give_up(&mut self, host: &mut impl Host, parked: Parked) -> (ContextId, Outcome) {
        let denial = match parked.waiting_for {
            WaitingFor::Keys(need) => self.auth.refuse(&KeyNeed {
                kind: KeyNeedKind::KeysUnavailable,
                ..need
            }),
            WaitingFor::Exchange { authenticated, .. } => self.auth.deny_authenticated(
                authenticated,
                DenyReason::Exchange(ExchangeFailure::Timeout),
            ),
        };
        let outcome = self.conclude(host, &parked.request, Final::Deny(denial));
        (parked.request.context, outcome)
    }

    /// An HTTP context ended. Its parked request is dropped; a callout it owned will never
    /// deliver its reply, so the root sends it again on the next tick (keeping its place:
    /// a client that goes away can neither cancel a refetch nor spend its rate limit).
    pub fn on_context_gone(&mut self, host: &mut impl Host, context: ContextId) {
        // A request that ended without `on_log` (client gone while it waited) is still audited.
        self.audit.finish(context, || None, host.now());
        self.parking.remove(context);
        for purpose in self.callouts.take_owned_by(context) {
            match purpose {
                Purpose::Keys { provider, .. } => self.keys.orphan(provider),
                Purpose::Exchange { key } => {
                    if let Some(x) = self.exchanges.as_mut() {
                        x.orphan(&key);
                    }
                }
            }
        }
    }
}

fn facts<'a>(outcome: AuditOutcome) -> AuditFacts<'a> {
    AuditFacts {
        outcome,
        reason: None,
        identity: None,
        token_hash: None,
        cache_hit: None,
        exchange: None,
    }
}
