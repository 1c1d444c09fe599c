//! Token-exchange callouts of a worker: one STS call per cache key at a time (requests for
//! the same key wait for it), deadlines, and exchanged tokens shared with the other workers
//! through a bounded set of shared-data slots.

use proxy_wasm::hostcalls;

use crate::filter::keys::split_u64;
use crate::filter::worker::{
    Action, Allowed, CalloutKind, ExchangeNote, Parked, PendingRequest, Reply, Waiting, Worker,
    WAIT_GRACE_MS,
};
use mcp_auth_core::authenticator::{bearer_token, Decision};
use mcp_auth_core::cache::Digest;
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::token_exchange::{ExchangeFailure, ExchangeRequest};

/// Shared-data slots for exchanged tokens. Bounded: a slot holds one token, and a newer token
/// whose key falls in the same slot replaces it (the loser is simply exchanged again).
const SHARED_SLOTS: u16 = 2048;

/// An exchange in flight for one cache key.
pub(super) struct InFlightExchange {
    /// Kept to send it again if the context that owned the callout goes away.
    request: ExchangeRequest,
    subject_exp: u64,
    started_ms: u64,
    deadline_ms: u64,
    /// `None` when the callout's reply can no longer arrive and the root must resend it.
    pub callout: Option<u32>,
}

impl Worker {
    /// Gets the upstream token for an authenticated request: from the cache, from another
    /// worker, from an exchange in flight, or from a new exchange.
    pub(super) fn exchange_for(
        &mut self,
        request: PendingRequest,
        active: u32,
        now: u64,
        allowed: Allowed,
    ) -> Action {
        let subject = request.head.authorization.as_deref().and_then(bearer_token);
        let (Some(subject), Some(exchanger)) = (subject, self.exchanger.as_ref()) else {
            // Cannot happen: the request was authenticated with this header, and exchanges
            // are only asked for when configured.
            let decision = self.deny_allowed(allowed, DenyReason::InvalidRequest);
            return self.conclude(&request, decision, now, None);
        };
        let key = exchanger.key(&allowed.token_hash);
        let cached = exchanger.cached(&key, now).map(str::to_string);
        if let Some(token) = cached.or_else(|| self.adopt_shared_exchange(&key, now)) {
            self.metrics.exchange_cache(true);
            return self.forward_exchanged(&request, allowed, now, &token, None);
        }
        self.metrics.exchange_cache(false);

        // Single flight: a request for a key already being exchanged waits for that exchange.
        let call = if self.exchanges.contains_key(&key) {
            None
        } else {
            self.exchanger.as_ref().map(|x| x.request(subject))
        };
        if let Some(call) = call {
            let deadline_ms = now + call.timeout.as_millis() as u64 + WAIT_GRACE_MS;
            let subject_exp = allowed.identity.expires_at;
            let Some(callout) = self.send_exchange(&call, key, active) else {
                self.exchange_failed(ExchangeFailure::Unavailable, None);
                let reason = DenyReason::Exchange(ExchangeFailure::Unavailable);
                let decision = self.deny_allowed(allowed, reason);
                return self.conclude(&request, decision, now, None);
            };
            self.exchanges.insert(
                key,
                InFlightExchange {
                    request: call,
                    subject_exp,
                    started_ms: now,
                    deadline_ms,
                    callout: Some(callout),
                },
            );
        }
        let deadline_ms = self
            .exchanges
            .get(&key)
            .map_or(now, |f| f.deadline_ms + WAIT_GRACE_MS);
        self.parked.push(Parked {
            request,
            deadline_ms,
            waiting: Waiting::Exchange { key, allowed },
        });
        Action::Park
    }

    /// Forwards an authenticated request with its upstream token. `sts_ms` is the STS's
    /// latency when the token came from it just now, `None` for a cached token.
    fn forward_exchanged(
        &mut self,
        request: &PendingRequest,
        allowed: Allowed,
        now: u64,
        token: &str,
        sts_ms: Option<u64>,
    ) -> Action {
        let Some(exchanger) = self.exchanger.as_ref() else {
            return Action::Park;
        };
        let note = ExchangeNote {
            header: exchanger.upstream_header(token),
            cache_hit: sts_ms.is_none(),
            sts_ms,
        };
        let decision = Decision::Allow {
            identity: allowed.identity,
            token_hash: allowed.token_hash,
            cache_hit: allowed.cache_hit,
        };
        self.conclude(request, decision, now, Some(note))
    }

    fn send_exchange(&mut self, request: &ExchangeRequest, key: Digest, owner: u32) -> Option<u32> {
        let headers = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.send(
            &request.cluster,
            headers,
            Some(&request.body),
            request.timeout,
            CalloutKind::Exchange { key },
            owner,
        )
    }

    pub(super) fn on_exchange_reply(
        &mut self,
        key: Digest,
        reply: Reply,
        _active: u32,
        now: u64,
    ) -> Vec<(u32, Action)> {
        let (Some(flight), Some(exchanger)) =
            (self.exchanges.remove(&key), self.exchanger.as_mut())
        else {
            return Vec::new();
        };
        let sts_ms = now.saturating_sub(flight.started_ms);
        let result = match &reply.body {
            Some(body) => exchanger.accept(key, reply.status, body, now, flight.subject_exp),
            None => Err(ExchangeFailure::Failed),
        };
        self.metrics.sts_latency(sts_ms);
        match &result {
            Ok(exchanged) => {
                self.metrics.exchange(true);
                if let Some(until) = exchanged.cached_until {
                    publish_shared_exchange(&key, until, &exchanged.token);
                }
            }
            Err(failure) => self.exchange_failed(*failure, reply.status),
        }
        let outcome = result.map(|e| e.token);
        self.wake_exchange_waiters(&key, &outcome, Some(sts_ms), now)
    }

    fn exchange_failed(&self, failure: ExchangeFailure, status: Option<u16>) {
        self.metrics.exchange(false);
        let label = DenyReason::Exchange(failure).label();
        match status {
            Some(s) => {
                log::warn!("mcp_auth_filter: token exchange failed: {label} (STS status {s})")
            }
            None => log::warn!("mcp_auth_filter: token exchange failed: {label}"),
        }
    }

    fn wake_exchange_waiters(
        &mut self,
        key: &Digest,
        outcome: &Result<String, ExchangeFailure>,
        sts_ms: Option<u64>,
        now: u64,
    ) -> Vec<(u32, Action)> {
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| matches!(&p.waiting, Waiting::Exchange { key: k, .. } if k == key));
        self.parked = waiting;
        let mut actions = Vec::with_capacity(ready.len());
        for p in ready {
            let Waiting::Exchange { allowed, .. } = p.waiting else {
                continue;
            };
            let action = match outcome {
                Ok(token) => {
                    let sts_ms = Some(sts_ms.unwrap_or(0));
                    self.forward_exchanged(&p.request, allowed, now, token, sts_ms)
                }
                Err(failure) => {
                    let decision = self.deny_allowed(allowed, DenyReason::Exchange(*failure));
                    self.conclude(&p.request, decision, now, None)
                }
            };
            actions.push((p.request.context_id, action));
        }
        actions
    }

    /// Exchanges past their deadline fail with a timeout; exchanges whose callout was lost
    /// with its context are sent again from the root.
    pub(super) fn tick_exchanges(&mut self, root: u32, now: u64) -> Vec<(u32, Action)> {
        let overdue: Vec<Digest> = self
            .exchanges
            .iter()
            .filter(|(_, f)| now > f.deadline_ms)
            .map(|(k, _)| *k)
            .collect();
        let mut actions = Vec::new();
        for key in overdue {
            self.exchanges.remove(&key);
            self.callouts
                .retain(|_, c| !matches!(&c.kind, CalloutKind::Exchange { key: k } if *k == key));
            self.exchange_failed(ExchangeFailure::Timeout, None);
            actions.extend(self.wake_exchange_waiters(
                &key,
                &Err(ExchangeFailure::Timeout),
                None,
                now,
            ));
        }
        let lost: Vec<(Digest, ExchangeRequest)> = self
            .exchanges
            .iter()
            .filter(|(_, f)| f.callout.is_none())
            .map(|(k, f)| (*k, f.request.clone()))
            .collect();
        for (key, request) in lost {
            let callout = self.send_exchange(&request, key, root);
            match callout {
                Some(token) => {
                    if let Some(f) = self.exchanges.get_mut(&key) {
                        f.callout = Some(token);
                    }
                }
                None => {
                    self.exchanges.remove(&key);
                    self.exchange_failed(ExchangeFailure::Unavailable, None);
                    let failure = Err(ExchangeFailure::Unavailable);
                    actions.extend(self.wake_exchange_waiters(&key, &failure, None, now));
                }
            }
        }
        actions
    }

    /// A token another worker obtained for this key, if its slot still holds it.
    fn adopt_shared_exchange(&mut self, key: &Digest, now: u64) -> Option<String> {
        let Ok((Some(value), _)) = hostcalls::get_shared_data(&slot_name(key)) else {
            return None;
        };
        let (stored_key, rest) = value.split_first_chunk::<32>()?;
        if stored_key != key {
            return None;
        }
        let (until, token) = split_u64(rest)?;
        let token = std::str::from_utf8(token).ok()?.to_string();
        if now >= until {
            return None;
        }
        if let Some(x) = self.exchanger.as_mut() {
            x.remember(*key, token.clone(), until, now);
        }
        Some(token)
    }
}

fn slot_name(key: &Digest) -> String {
    let slot = key
        .first_chunk::<2>()
        .map_or(0, |b| u16::from_be_bytes(*b) % SHARED_SLOTS);
    format!("mcp_auth_filter.exchange.{slot}")
}

fn publish_shared_exchange(key: &Digest, until: u64, token: &str) {
    let mut value = Vec::with_capacity(40 + token.len());
    value.extend_from_slice(key);
    value.extend_from_slice(&until.to_be_bytes());
    value.extend_from_slice(token.as_bytes());
    let _ = hostcalls::set_shared_data(&slot_name(key), Some(&value), None);
}
