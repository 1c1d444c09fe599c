//! Requests paused until something they need arrives (keys, an exchanged token), each with a
//! deadline after which it is answered anyway.

use mcp_auth_core::cache::Digest;

use crate::filter::host::ContextId;
use crate::filter::pending::{Authenticated, PendingRequest};

pub enum WaitingFor {
    Keys(usize),
    Exchange {
        key: Digest,
        authenticated: Authenticated,
    },
}

pub struct Parked {
    pub request: PendingRequest,
    pub deadline_ms: u64,
    pub waiting_for: WaitingFor,
}

#[derive(Default)]
pub struct Parking {
    parked: Vec<Parked>,
}

impl Parking {
    pub fn park(&mut self, request: PendingRequest, deadline_ms: u64, waiting_for: WaitingFor) {
        self.parked.push(Parked {
            request,
            deadline_ms,
            waiting_for,
        });
    }

    /// Takes out the requests waiting for `provider`'s keys.
    pub fn take_waiting_for_keys(&mut self, provider: usize) -> Vec<Parked> {
        self.take(|w| matches!(w, WaitingFor::Keys(p) if *p == provider))
    }

    /// Takes out the requests waiting for the exchange with this cache key.
    pub fn take_waiting_for_exchange(&mut self, key: &Digest) -> Vec<Parked> {
        self.take(|w| matches!(w, WaitingFor::Exchange { key: k, .. } if k == key))
    }

    /// Takes out the requests whose deadline has come.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<Parked> {
        let (expired, waiting) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now_ms >= p.deadline_ms);
        self.parked = waiting;
        expired
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
