//! Deciding a request: its headers, its MCP body, the keys it needs, its upstream token.

use super::*;

impl Worker {
    /// Decides a request. `active` is the context whose host call we are in: callouts sent
    /// now reply there.
    pub(super) fn evaluate(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        key_wait: KeyWait,
    ) -> Verdict {
        let decision = self.decide(host, &request.head);
        self.act_on(host, request, active, decision, key_wait)
    }

    /// Acts on a decision: waits for the body, keys or the IdP, gates and exchanges, or
    /// answers.
    fn act_on(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        decision: Decision,
        key_wait: KeyWait,
    ) -> Verdict {
        let may_pass = matches!(
            decision,
            Decision::Allow(_) | Decision::NeedKeys(_) | Decision::NeedIntrospection(_)
        );
        let needs_body = may_pass
            && request.body.is_none()
            && self.mcp.as_ref().is_some_and(|m| m.applies(&request));
        if needs_body {
            return self.await_body(host, request, decision);
        }
        match decision {
            Decision::NeedKeys(need) => self.wait_for_keys(host, request, active, need, key_wait),
            Decision::NeedIntrospection(need) => self.introspect(host, request, active, need),
            Decision::Allow(authenticated) => self.gate(host, request, active, authenticated),
            Decision::Respond(response) => {
                Verdict::Done(self.conclude(host, &request, Final::Metadata(response)))
            }
            Decision::Bypass => Verdict::Done(self.conclude(host, &request, Final::Bypass)),
            Decision::Deny(denial) => {
                Verdict::Done(self.conclude(host, &request, Final::Deny(denial)))
            }
        }
    }

    /// An MCP POST whose caller is (or may be) authenticated: its head is checked, then its
    /// body awaited; keys, if needed, are fetched once the body is in.
    pub(super) fn await_body(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        decision: Decision,
    ) -> Verdict {
        let Some(mcp) = self.mcp.as_mut() else {
            return Verdict::Done(self.conclude(host, &request, Final::Bypass));
        };
        if let Err(refusal) = mcp.gate().check_head(&request.head.post) {
            let (caller, token_hash) = match &decision {
                Decision::Allow(a) => (Some(Rc::clone(&a.identity)), Some(a.token_hash)),
                _ => (None, None),
            };
            let done = Final::McpRefused {
                caller,
                token_hash,
                refusal,
            };
            return Verdict::Done(self.conclude(host, &request, done));
        }
        mcp.await_body(request, host.now());
        Verdict::AwaitBody
    }

    /// A chunk of a request body; the whole body of an MCP POST is judged at its end.
    pub fn on_request_body(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        body_size: usize,
        end_of_stream: bool,
    ) -> BodyVerdict {
        // A request still waiting (keys, the IdP, the STS) keeps its body: letting a chunk
        // through would resume the request with its headers not yet rewritten.
        if self.parking.holds(context) {
            return BodyVerdict::Decided(Verdict::Parked);
        }
        let Some(mcp) = self.mcp.as_mut() else {
            return BodyVerdict::Continue;
        };
        if !mcp.is_awaiting(context) {
            return BodyVerdict::Continue;
        }
        mcp.saw_body(context, body_size);
        let too_large = body_size > mcp.gate().max_body_bytes();
        if !end_of_stream && !too_large {
            return BodyVerdict::Decided(Verdict::AwaitBody);
        }
        let Some(awaiting) = mcp.take_awaiting(context) else {
            return BodyVerdict::Continue;
        };
        let mut request = awaiting.request;
        if too_large {
            let done = Final::McpRefused {
                caller: None,
                token_hash: None,
                refusal: mcp.gate().too_large(),
            };
            return BodyVerdict::Decided(Verdict::Done(self.conclude(host, &request, done)));
        }
        request.body = Some(Rc::from(host.request_body(body_size)));
        let verdict = self.evaluate(host, request, context, KeyWait::MayFetch);
        self.sync_tick(host);
        BodyVerdict::Decided(verdict)
    }

    /// Request trailers: the body, if awaited, is complete; a request still waiting stays
    /// paused (a trailer let through would resume it unrewritten, like a body chunk).
    pub fn on_request_trailers(&mut self, host: &mut impl Host, context: ContextId) -> BodyVerdict {
        if self.parking.holds(context) {
            return BodyVerdict::Decided(Verdict::Parked);
        }
        match self.mcp.as_ref().and_then(|m| m.buffered(context)) {
            Some(size) => self.on_request_body(host, context, size, true),
            None => BodyVerdict::Continue,
        }
    }

    /// Judges an authenticated request's MCP body (when the gate applies), then gets its
    /// upstream token.
    pub(super) fn gate(
        &mut self,
        host: &mut impl Host,
        mut request: PendingRequest,
        active: ContextId,
        authenticated: Authenticated,
    ) -> Verdict {
        let (Some(mcp), Some(body)) = (self.mcp.as_mut(), request.body.clone()) else {
            return self.exchange_for(host, request, active, authenticated);
        };
        if !mcp.applies(&request) {
            return self.exchange_for(host, request, active, authenticated);
        }
        let identity = &authenticated.identity;
        let checked =
            mcp.gate()
                .check_body(&request.head.post, &body, identity, self.auth.responses());
        match checked {
            Ok(passed) => {
                let narrowing = passed.exchange.cloned();
                let (rules, lists) = (passed.rules, passed.list_requests);
                request.mcp = Some(McpPassed {
                    audit: passed.audit,
                    narrowing,
                    mirrors: passed.mirrors,
                });
                mcp.passed(host, request.context, &rules, lists, identity);
                self.exchange_for(host, request, active, authenticated)
            }
            Err(refusal) => {
                let done = Final::McpRefused {
                    caller: Some(Rc::clone(&authenticated.identity)),
                    token_hash: Some(authenticated.token_hash),
                    refusal,
                };
                Verdict::Done(self.conclude(host, &request, done))
            }
        }
    }

    /// Decides; when keys are needed, first looks at what the other workers did (published
    /// keys, a fetch under way, the rate limit's history) and decides again if that changed
    /// anything: a worker never refuses a token another worker's keys accept.
    pub(super) fn decide(&mut self, host: &mut impl Host, head: &RequestHead) -> Decision {
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
    pub(super) fn wait_for_keys(
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

    /// Asks the IdP about a token (or takes another worker's answer), parking the request
    /// until the answer comes.
    pub(super) fn introspect(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        need: IntrospectionNeed,
    ) -> Verdict {
        let Some(x) = self.introspections.as_mut() else {
            let denial = self
                .auth
                .refuse_unanswered(&need, IntrospectionFailure::Unavailable);
            return Verdict::Done(self.conclude(host, &request, Final::Deny(denial)));
        };
        if let Some(vouched) = x.shared_answer(host, &mut self.auth, &need) {
            return self.after_introspection(host, request, active, &need, Ok(vouched));
        }
        let started = x.join_or_start(
            host,
            &mut self.callouts,
            &self.metrics,
            &self.auth,
            &need,
            active,
        );
        match started {
            Ok(deadline) => {
                self.parking
                    .park(request, deadline, WaitingFor::Introspection(need));
                Verdict::Parked
            }
            Err(failure) => {
                let denial = self.auth.refuse_unanswered(&need, failure);
                Verdict::Done(self.conclude(host, &request, Final::Deny(denial)))
            }
        }
    }

    /// Goes on with a request once its token's introspection is answered.
    pub(super) fn after_introspection(
        &mut self,
        host: &mut impl Host,
        request: PendingRequest,
        active: ContextId,
        need: &IntrospectionNeed,
        outcome: Result<Vouched, IntrospectionFailure>,
    ) -> Verdict {
        let denial = match outcome {
            Ok(Vouched::Active { .. }) => {
                let decision = self.decide(host, &request.head);
                if !matches!(decision, Decision::NeedIntrospection(_)) {
                    return self.act_on(host, request, active, decision, KeyWait::MayFetch);
                }
                // The answer did not stay remembered (evicted at once): fail closed, never
                // loop.
                self.auth
                    .refuse_unanswered(need, IntrospectionFailure::Unavailable)
            }
            Ok(Vouched::Refused { reason }) => self.auth.refuse_token(need, reason),
            Err(failure) => self.auth.refuse_unanswered(need, failure),
        };
        Verdict::Done(self.conclude(host, &request, Final::Deny(denial)))
    }

    /// Gets the upstream token for an authenticated request (when an exchange is configured):
    /// from the cache, from another worker, from an exchange under way, or from a new one.
    pub(super) fn exchange_for(
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
        let narrowing = request.mcp.as_ref().and_then(|m| m.narrowing.clone());
        let key = exchanges.key(&authenticated.token_hash, narrowing.as_ref());
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
            narrowing.as_ref(),
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
    pub(super) fn forward_exchanged(
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
        // Forwarding from a body callback: nothing more to buffer.
        let done = Final::Allow {
            authenticated,
            upstream,
        };
        self.conclude(host, request, done)
    }
}
