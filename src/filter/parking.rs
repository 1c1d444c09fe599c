//! Requests paused until something they need arrives (keys, an exchanged token), each with a
//! deadline after which it is answered anyway.

use mcp_auth_core::authenticator::{Authenticated, IntrospectionNeed, KeyNeed};
use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::ProviderId;
use mcp_auth_core::time::UnixMillis;

use crate::filter::host::ContextId;
use crate::filter::pending::PendingRequest;

pub enum WaitingFor {
    Keys(KeyNeed),
    Exchange {
        key: Digest,
        authenticated: Authenticated,
    },
    /// The IdP's answer about this token (keyed by its hash).
    Introspection(IntrospectionNeed),
}

pub struct Parked {
    pub request: PendingRequest,
    pub deadline: UnixMillis,
    pub waiting_for: WaitingFor,
}

#[derive(Default)]
pub struct Parking {
    parked: Vec<Parked>,
}

impl Parking {
    pub fn park(&mut self, request: PendingRequest, deadline: UnixMillis, waiting_for: WaitingFor) {
        self.parked.push(Parked {
            request,
            deadline,
            waiting_for,
        });
    }

    /// Takes out the requests waiting for `provider`'s keys.
    pub fn take_waiting_for_keys(&mut self, provider: ProviderId) -> Vec<Parked> {
        self.take(|w| matches!(w, WaitingFor::Keys(need) if need.provider == provider))
    }

    /// Takes out the requests waiting for the exchange with this cache key.
    pub fn take_waiting_for_exchange(&mut self, key: &Digest) -> Vec<Parked> {
        self.take(|w| matches!(w, WaitingFor::Exchange { key: k, .. } if k == key))
    }

    /// Takes out the requests waiting for the introspection of the token with this hash.
    pub fn take_waiting_for_introspection(&mut self, key: &Digest) -> Vec<Parked> {
        self.take(|w| matches!(w, WaitingFor::Introspection(n) if n.token_hash == *key))
    }

    /// Lets the requests waiting for this exchange or introspection wait until `deadline`
    /// (it moved here).
    pub fn extend_wait(&mut self, key: &Digest, deadline: UnixMillis) {
        for p in &mut self.parked {
            let waits = match &p.waiting_for {
                WaitingFor::Exchange { key: k, .. } => k == key,
                WaitingFor::Introspection(n) => n.token_hash == *key,
                WaitingFor::Keys(_) => false,
            };
            if waits {
                p.deadline = p.deadline.max(deadline);
            }
        }
    }

    /// Takes out the requests whose deadline has come.
    pub fn take_expired(&mut self, now: UnixMillis) -> Vec<Parked> {
        let (expired, waiting) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.deadline);
        self.parked = waiting;
        expired
    }

    /// Whether this context's request is parked.
    pub fn holds(&self, context: ContextId) -> bool {
        self.parked.iter().any(|p| p.request.context == context)
    }

    /// Drops the request of a context that ended.
    pub fn remove(&mut self, context: ContextId) {
        self.parked.retain(|p| p.request.context != context);
    }

    fn take(&mut self, wanted: impl Fn(&WaitingFor) -> bool) -> Vec<Parked> {
        let (taken, waiting) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| wanted(&p.waiting_for));
        self.parked = waiting;
        taken
    }
}
