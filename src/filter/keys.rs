//! JWKS callouts of a worker: starting fetches, reading replies, waking requests parked on
//! keys, and sharing fetched keys with the other workers through proxy-wasm shared data.

use proxy_wasm::hostcalls;

use crate::filter::worker::{
    Action, CalloutKind, Parked, PendingRequest, Reply, RequestHead, Waiting, Worker, WAIT_GRACE_MS,
};
use mcp_auth_core::authenticator::{bearer_token, Decision, WaitFor};
use mcp_auth_core::jwks_cache::{FetchOutcome, FetchRequest};
use mcp_auth_core::jwt;
use mcp_auth_core::response::DenyReason;

impl Worker {
    /// Decides, first adopting keys another worker loaded when the decision wants keys (it
    /// may have fetched while this worker backs off): that beats waiting or failing.
    pub(super) fn decide_with_shared_keys(&mut self, head: &RequestHead, now: u64) -> Decision {
        let decision = self.auth.decide(&head.view(), &self.keyring, now);
        let wants_keys = match &decision {
            Decision::Wait { provider, .. } => Some(*provider),
            Decision::Deny {
                reason: DenyReason::JwksUnavailable,
                ..
            } => self.provider_of(head),
            _ => None,
        };
        match wants_keys {
            Some(provider) if self.adopt_shared_keys(provider) => {
                self.auth.decide(&head.view(), &self.keyring, now)
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
    pub(super) fn wait_for_keys(
        &mut self,
        request: PendingRequest,
        active: u32,
        now: u64,
        (provider, wait_for): (usize, WaitFor),
        may_fetch: bool,
    ) -> Action {
        let fetching = self
            .keyring
            .remote(provider)
            .is_some_and(|c| c.is_fetching());
        if !fetching {
            let fetch = if may_fetch {
                self.keyring.fetch_for(provider, wait_for, now)
            } else {
                None
            };
            let started = match fetch {
                Some(fetch) => self.fetch_keys(provider, fetch, active, now),
                None => false,
            };
            if !started {
                // Nothing to wait for (fetch refused, or this request already waited once):
                // decide with what there is.
                let decision = self.auth.decide(&request.head.view(), &self.keyring, now);
                return self.conclude_or_unavailable(&request, decision, now);
            }
        }
        // Up to a discovery fetch and a JWKS fetch, plus grace.
        let timeout = self
            .keyring
            .remote(provider)
            .map_or(0, |c| c.timeout().as_millis() as u64);
        self.parked.push(Parked {
            request,
            deadline_ms: now + 2 * timeout + WAIT_GRACE_MS,
            waiting: Waiting::Keys(provider),
        });
        Action::Park
    }

    /// Sends a JWKS or discovery callout; `false` if the host refused it (failure recorded).
    fn fetch_keys(&mut self, provider: usize, request: FetchRequest, owner: u32, now: u64) -> bool {
        let headers = vec![
            (":method", "GET"),
            (":path", request.target.path.as_str()),
            (":authority", request.target.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "mcp-auth-filter"),
        ];
        let kind = CalloutKind::Jwks {
            provider,
            is_discovery: request.is_discovery,
        };
        let sent = self.send(
            &request.cluster,
            headers,
            None,
            request.timeout,
            kind,
            owner,
        );
        if sent.is_none() {
            let reason = format!("cluster {:?} refused the callout", request.cluster);
            self.keys_failed(provider, &reason);
            if let Some(cache) = self.keyring.remote_mut(provider) {
                cache.on_failure(now, reason);
            }
        }
        sent.is_some()
    }

    fn keys_failed(&self, provider: usize, reason: &str) {
        self.metrics.jwks_fetch(false);
        log::warn!(
            "mcp_auth_filter: JWKS fetch for provider {} failed: {reason}",
            self.provider_name(provider)
        );
    }

    fn provider_name(&self, provider: usize) -> &str {
        self.auth
            .config()
            .providers
            .get(provider)
            .map_or("?", |p| p.name.as_str())
    }

    pub(super) fn on_jwks_reply(
        &mut self,
        provider: usize,
        is_discovery: bool,
        reply: Reply,
        active: u32,
        now: u64,
    ) -> Vec<(u32, Action)> {
        let Some(cache) = self.keyring.remote_mut(provider) else {
            return Vec::new();
        };
        let outcome = match &reply.body {
            None => cache.on_failure(now, "response too large".into()),
            Some(body) => cache.on_response(
                now,
                is_discovery,
                reply.status,
                reply.cache_control.as_deref(),
                body,
            ),
        };
        match outcome {
            FetchOutcome::KeysUpdated => {
                self.metrics.jwks_fetch(true);
                if let Some(body) = &reply.body {
                    self.publish_shared_keys(provider, body);
                }
                let keys = self.keyring.keys(provider).map_or(0, |k| k.len());
                log::info!(
                    "mcp_auth_filter: loaded {keys} signing keys for provider {}",
                    self.provider_name(provider)
                );
            }
            FetchOutcome::FetchNext(next) => {
                // The JWKS fetch follows discovery; parked requests keep waiting for it.
                if self.fetch_keys(provider, next, active, now) {
                    return Vec::new();
                }
            }
            FetchOutcome::Failed(reason) => self.keys_failed(provider, &reason),
        }
        self.wake_key_waiters(provider, active, now)
    }

    /// Decides again the requests parked on `provider`'s keys.
    fn wake_key_waiters(&mut self, provider: usize, active: u32, now: u64) -> Vec<(u32, Action)> {
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| matches!(p.waiting, Waiting::Keys(q) if q == provider));
        self.parked = waiting;
        ready
            .into_iter()
            .filter_map(|p| {
                // A request gets one round of waiting for keys, then a final answer; it may
                // still wait for a token exchange.
                let context_id = p.request.context_id;
                let action = self.evaluate(p.request, active, now, false);
                (!matches!(action, Action::Park)).then_some((context_id, action))
            })
            .collect()
    }

    pub(super) fn tick_keys(&mut self, root: u32, now: u64) -> Vec<(u32, Action)> {
        let mut actions = Vec::new();
        for provider in 0..self.keyring.len() {
            if self.keyring.remote(provider).is_none() {
                continue;
            }
            if self.adopt_shared_keys(provider) {
                actions.extend(self.wake_key_waiters(provider, root, now));
            }
            let overdue = self
                .keyring
                .remote_mut(provider)
                .is_some_and(|c| c.expire_overdue(now));
            if overdue {
                self.callouts.retain(
                    |_, c| !matches!(c.kind, CalloutKind::Jwks { provider: p, .. } if p == provider),
                );
                self.keys_failed(provider, "no reply before the deadline");
                actions.extend(self.wake_key_waiters(provider, root, now));
            }
            let due = self
                .keyring
                .remote_mut(provider)
                .and_then(|c| c.due_fetch(now));
            if let Some(request) = due {
                if !self.fetch_keys(provider, request, root, now) {
                    actions.extend(self.wake_key_waiters(provider, root, now));
                }
            }
        }
        actions
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
pub(super) fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}
