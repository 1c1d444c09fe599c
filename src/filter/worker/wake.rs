//! Waking waiting requests: callout replies and the tick decide them again.

use super::*;

impl Worker {
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
            Some(Purpose::Introspection { key }) => {
                let answered = self
                    .introspections
                    .as_mut()
                    .and_then(|x| x.on_reply(host, &self.metrics, &mut self.auth, key, body_size));
                match answered {
                    Some(answered) => self.wake_introspection_waiters(host, answered, active),
                    None => Vec::new(),
                }
            }
        };
        self.sync_tick(host);
        decided
    }

    /// Decides again the requests parked on `provider`'s keys.
    pub(super) fn wake_key_waiters(
        &mut self,
        host: &mut impl Host,
        provider: mcp_auth_core::config::ProviderId,
        active: ContextId,
    ) -> Vec<(ContextId, Outcome)> {
        let ready = self.parking.take_waiting_for_keys(provider);
        let from_request = ready.iter().any(|p| p.request.context == active);
        let decided = ready
            .into_iter()
            .filter_map(|p| {
                // A request gets one round of waiting for keys, then a final answer; it may
                // still wait for a token exchange.
                let context = p.request.context;
                let sender = sender_for(host, context, active, from_request);
                match self.evaluate(host, p.request, sender, KeyWait::AlreadyWaited) {
                    Verdict::Done(outcome) => Some((context, outcome)),
                    // Waiting again (an exchange), or for its body: it stays paused.
                    Verdict::Parked | Verdict::AwaitBody => None,
                }
            })
            .collect();
        if from_request {
            let _ = host.set_effective_context(active);
        }
        decided
    }

    /// Answers the requests parked on a settled exchange.
    pub(super) fn wake_exchange_waiters(
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

    /// Decides again the requests parked on a token's introspection.
    pub(super) fn wake_introspection_waiters(
        &mut self,
        host: &mut impl Host,
        answered: Answered,
        active: ContextId,
    ) -> Vec<(ContextId, Outcome)> {
        let ready = self.parking.take_waiting_for_introspection(&answered.key);
        let from_request = ready.iter().any(|p| p.request.context == active);
        let decided = ready
            .into_iter()
            .filter_map(|p| {
                let WaitingFor::Introspection(need) = &p.waiting_for else {
                    return None;
                };
                let context = p.request.context;
                let outcome = answered.outcome;
                let sender = sender_for(host, context, active, from_request);
                match self.after_introspection(host, p.request, sender, need, outcome) {
                    Verdict::Done(outcome) => Some((context, outcome)),
                    Verdict::Parked | Verdict::AwaitBody => None,
                }
            })
            .collect();
        if from_request {
            let _ = host.set_effective_context(active);
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
            self.parking.extend_wait(&key, deadline);
        }
        for s in tick.settled {
            decided.extend(self.wake_exchange_waiters(host, s));
        }
        let (answered, extended) = match self.introspections.as_mut() {
            Some(x) => x.tick(
                host,
                &mut self.callouts,
                &self.metrics,
                &mut self.auth,
                root,
            ),
            None => Default::default(),
        };
        for (key, deadline) in extended {
            self.parking.extend_wait(&key, deadline);
        }
        for a in answered {
            decided.extend(self.wake_introspection_waiters(host, a, root));
        }
        for p in self.parking.take_expired(host.now()) {
            decided.push(self.give_up(host, p));
        }
        let overdue = self
            .mcp
            .as_mut()
            .map(|m| m.take_overdue(host.now()))
            .unwrap_or_default();
        for awaiting in overdue {
            let Some(refusal) = self.mcp.as_ref().map(|m| m.gate().timed_out()) else {
                continue;
            };
            let done = Final::McpRefused {
                caller: None,
                token_hash: None,
                refusal,
            };
            let outcome = self.conclude(host, &awaiting.request, done);
            decided.push((awaiting.request.context, outcome));
        }
        self.sync_tick(host);
        decided
    }

    /// Answers a request whose wait outlived its deadline.
    pub(super) fn give_up(&mut self, host: &mut impl Host, parked: Parked) -> (ContextId, Outcome) {
        let denial = match parked.waiting_for {
            WaitingFor::Keys(need) => self.auth.refuse(&KeyNeed {
                kind: KeyNeedKind::KeysUnavailable,
                ..need
            }),
            WaitingFor::Exchange { authenticated, .. } => self.auth.deny_authenticated(
                authenticated,
                DenyReason::Exchange(ExchangeFailure::Timeout),
            ),
            WaitingFor::Introspection(need) => self
                .auth
                .refuse_unanswered(&need, IntrospectionFailure::Timeout),
        };
        let outcome = self.conclude(host, &parked.request, Final::Deny(denial));
        (parked.request.context, outcome)
    }
}

/// The context a woken request sends its callouts (an exchange) from, made effective. Woken by
/// a reply to one request's context (`from_request`), each request uses its own: that context
/// ends with its own request and Envoy cancels what it sent, so the others' callouts would be
/// lost and sent again. Woken from the root (a tick, a callout resent from there), the root
/// keeps them, since it never ends.
fn sender_for(
    host: &mut impl Host,
    context: ContextId,
    active: ContextId,
    from_request: bool,
) -> ContextId {
    if !from_request {
        return active;
    }
    if host.set_effective_context(context).is_ok() {
        return context;
    }
    let _ = host.set_effective_context(active);
    active
}
