//! One callout per key for the whole Envoy at a time (token exchanges, token introspection):
//! deadlines, resending a callout whose context went away, and results shared with the other
//! workers.
//!
//! Before calling out, a worker claims the key in a shared-data slot (compare-and-swap, with an
//! end so a dead owner never blocks anyone). A worker that finds the key claimed by another
//! parks its requests and watches, on the fast tick, for the result in the key's result slot or
//! for the failure the owner recorded; if the claim ends without either, it calls out itself.
//! Slots are bounded: a key whose claim slot holds another key's live claim simply goes without
//! a claim. What a result means is the caller's business (a token, an introspection answer).

use std::collections::HashMap;
use std::time::Duration;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::oauth_request::CalloutRequest;
use mcp_auth_core::time::UnixMillis;

use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::host::{CalloutToken, ContextId, Host, OutgoingCall, SharedWrite};
use crate::filter::shared::{FlightClaim, SharedResult};

/// Grace beyond a callout's own timeout before a waiting request is given up on.
pub const WAIT_GRACE: Duration = Duration::from_secs(1);

/// A callout this worker is making; `data` is what the caller needs to read its reply.
pub struct Flight<T> {
    /// Kept to send it again if the context that owned the callout goes away.
    request: CalloutRequest,
    pub data: T,
    pub started: UnixMillis,
    deadline: UnixMillis,
    /// `None` when the callout's reply can no longer arrive and the root must resend it.
    callout: Option<CalloutToken>,
    /// This worker holds the key's claim (false when the slot was taken by another key).
    pub claimed: bool,
}

/// A callout another worker is making, which requests here wait for.
struct Watched<T> {
    request: CalloutRequest,
    data: T,
    until: UnixMillis,
}

/// How a flight ended without a reply to this worker.
pub enum Landing<T> {
    /// Another worker published this result.
    Published {
        key: Digest,
        data: T,
        value: Vec<u8>,
    },
    /// Another worker's callout failed with this code (the caller's failure codes).
    FailedElsewhere { key: Digest, code: u8 },
    /// No reply before the deadline.
    TimedOut { key: Digest },
    /// The host refused to send (or resend) the callout.
    Unsendable { key: Digest },
}

/// What the tick did.
pub struct FlightTick<T> {
    pub landed: Vec<Landing<T>>,
    /// Keys whose waiters may wait longer (until then): the flight moved to this worker.
    pub extended: Vec<(Digest, UnixMillis)>,
}

enum Claim {
    /// Ours (or the slot is taken by another key: go without one).
    Go { claimed: bool },
    /// Another worker is at this key, until then.
    HeldElsewhere(UnixMillis),
}

pub struct Flights<T> {
    /// Names this family of entries in shared data (`exchange`, `introspection`).
    family: &'static str,
    /// The digest of the configuration the results belong to.
    namespace: Digest,
    flights: HashMap<Digest, Flight<T>>,
    watched: HashMap<Digest, Watched<T>>,
    /// This VM, as claims name it.
    me: u64,
    purpose: fn(Digest) -> Purpose,
}

impl<T> Flights<T> {
    pub fn new(
        family: &'static str,
        namespace: Digest,
        me: u64,
        purpose: fn(Digest) -> Purpose,
    ) -> Flights<T> {
        Flights {
            family,
            namespace,
            flights: HashMap::new(),
            watched: HashMap::new(),
            me,
            purpose,
        }
    }

    /// Requests of this worker wait for another worker's flight (the tick should be fast).
    pub fn watching(&self) -> bool {
        !self.watched.is_empty()
    }

    /// Flights under way in this worker (ours and watched).
    pub fn in_flight(&self) -> usize {
        self.flights.len() + self.watched.len()
    }

    /// This key is in flight here (ours or watched).
    pub fn has(&self, key: &Digest) -> bool {
        self.flights.contains_key(key) || self.watched.contains_key(key)
    }

    fn result_slot(&self, key: &Digest) -> String {
        SharedResult::slot_name(self.family, &self.namespace, key)
    }

    fn claim_slot(&self, key: &Digest) -> String {
        FlightClaim::slot_name(self.family, &self.namespace, key)
    }

    /// A result another worker published for `key`, still valid, and its end.
    pub fn shared_result(&self, host: &impl Host, key: &Digest) -> Option<(Vec<u8>, UnixMillis)> {
        let entry = host.shared_data(&self.result_slot(key)).ok().flatten()?;
        let shared = SharedResult::decode(&entry.value, key)?;
        (host.now() < shared.until).then(|| (shared.value.to_vec(), shared.until))
    }

    /// Publishes a result for the other workers, valid until `until`.
    pub fn publish(&self, host: &mut impl Host, key: &Digest, value: &[u8], until: UnixMillis) {
        let encoded = SharedResult {
            key: *key,
            until,
            value,
        }
        .encode();
        let _ = host.set_shared_data(&self.result_slot(key), &encoded, None);
    }

    /// Joins the flight under way for `key` (here or in another worker), or starts one with
    /// `request`. Returns until when a waiting request may wait; `Err` when the host refused
    /// the callout.
    pub fn join_or_start(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        key: Digest,
        request: impl FnOnce() -> CalloutRequest,
        data: T,
        owner: ContextId,
    ) -> Result<UnixMillis, ()> {
        if let Some(flight) = self.flights.get(&key) {
            return Ok(flight.deadline.plus(WAIT_GRACE));
        }
        if let Some(watched) = self.watched.get(&key) {
            return Ok(watched.until.plus(WAIT_GRACE));
        }
        let request = request();
        let deadline = host.now().plus(request.timeout).plus(WAIT_GRACE);
        match self.claim(host, &key, deadline) {
            Claim::HeldElsewhere(until) => {
                let watched = Watched {
                    request,
                    data,
                    until,
                };
                self.watched.insert(key, watched);
                Ok(until.plus(WAIT_GRACE))
            }
            Claim::Go { claimed } => {
                self.fly(host, callouts, key, request, data, claimed, owner)?;
                Ok(deadline.plus(WAIT_GRACE))
            }
        }
    }

    /// Sends the callout and records the flight.
    #[allow(clippy::too_many_arguments)]
    fn fly(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        key: Digest,
        request: CalloutRequest,
        data: T,
        claimed: bool,
        owner: ContextId,
    ) -> Result<(), ()> {
        let now = host.now();
        let Some(callout) = self.send(host, callouts, &request, key, owner) else {
            if claimed {
                // Nobody is at it now: another worker may try.
                self.release(host, &key, 0);
            }
            return Err(());
        };
        let deadline = now.plus(request.timeout).plus(WAIT_GRACE);
        self.flights.insert(
            key,
            Flight {
                request,
                data,
                started: now,
                deadline,
                callout: Some(callout),
                claimed,
            },
        );
        Ok(())
    }

    fn send(
        &self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        request: &CalloutRequest,
        key: Digest,
        owner: ContextId,
    ) -> Option<CalloutToken> {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let call = OutgoingCall {
            cluster: &request.cluster,
            headers: &headers,
            body: Some(&request.body),
            timeout: request.timeout,
        };
        callouts.send(host, &call, (self.purpose)(key), owner)
    }

    /// Claims `key` until `until` in its claim slot.
    fn claim(&self, host: &mut impl Host, key: &Digest, until: UnixMillis) -> Claim {
        let slot = self.claim_slot(key);
        for _ in 0..2 {
            let now = host.now();
            let current = host.shared_data(&slot).ok().flatten();
            let held = current
                .as_ref()
                .and_then(|e| FlightClaim::decode(&e.value))
                .filter(|c| c.owner != self.me && now < c.until && c.failure == 0);
            match held {
                Some(c) if c.key == *key => return Claim::HeldElsewhere(c.until),
                // Another key's live claim in this slot: go without one.
                Some(_) => return Claim::Go { claimed: false },
                None => {}
            }
            let claim = FlightClaim {
                key: *key,
                owner: self.me,
                until,
                failure: 0,
            };
            let cas = current.map(|e| e.cas);
            match host.set_shared_data(&slot, &claim.encode(), cas) {
                Ok(SharedWrite::Stored) => return Claim::Go { claimed: true },
                Ok(SharedWrite::CasMismatch) => continue,
                Err(_) => return Claim::Go { claimed: false },
            }
        }
        Claim::Go { claimed: false }
    }

    /// Ends our claim on `key`, recording `failure` (0: none) for the workers waiting on it.
    pub fn release(&self, host: &mut impl Host, key: &Digest, failure: u8) {
        let slot = self.claim_slot(key);
        let Ok(Some(entry)) = host.shared_data(&slot) else {
            return;
        };
        let ours =
            FlightClaim::decode(&entry.value).is_some_and(|c| c.key == *key && c.owner == self.me);
        if !ours {
            return;
        }
        let released = FlightClaim {
            key: *key,
            owner: self.me,
            until: host.now(),
            failure,
        };
        // A CAS mismatch means someone else took the slot meanwhile: theirs stands.
        let _ = host.set_shared_data(&slot, &released.encode(), Some(entry.cas));
    }

    /// The flight whose reply arrived (it is no longer in flight).
    pub fn take(&mut self, key: &Digest) -> Option<Flight<T>> {
        self.flights.remove(key)
    }

    /// The context that owned this flight's callout ended: the root resends it on the tick.
    pub fn orphan(&mut self, key: &Digest) {
        if let Some(flight) = self.flights.get_mut(key) {
            flight.callout = None;
        }
    }

    /// Flights past their deadline time out; flights whose callout was lost with its context
    /// are sent again from the root; flights watched in other workers are looked at.
    /// `failure_timeout`/`failure_unavailable`: the caller's codes to record for the others.
    pub fn tick(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        root: ContextId,
        (failure_timeout, failure_unavailable): (u8, u8),
    ) -> FlightTick<T> {
        let now = host.now();
        let mut tick = FlightTick {
            landed: Vec::new(),
            extended: Vec::new(),
        };
        let overdue: Vec<Digest> = self
            .flights
            .iter()
            .filter(|(_, f)| now > f.deadline)
            .map(|(k, _)| *k)
            .collect();
        let purpose = self.purpose;
        for key in overdue {
            if let Some(flight) = self.flights.remove(&key) {
                if flight.claimed {
                    self.release(host, &key, failure_timeout);
                }
                let forgotten = purpose(key);
                callouts.forget(|p| *p == forgotten);
                tick.landed.push(Landing::TimedOut { key });
            }
        }
        let lost: Vec<Digest> = self
            .flights
            .iter()
            .filter(|(_, f)| f.callout.is_none())
            .map(|(k, _)| *k)
            .collect();
        for key in lost {
            let Some(request) = self.flights.get(&key).map(|f| f.request.clone()) else {
                continue;
            };
            match self.send(host, callouts, &request, key, root) {
                Some(token) => {
                    if let Some(f) = self.flights.get_mut(&key) {
                        f.callout = Some(token);
                    }
                }
                None => {
                    if let Some(flight) = self.flights.remove(&key) {
                        if flight.claimed {
                            self.release(host, &key, failure_unavailable);
                        }
                        tick.landed.push(Landing::Unsendable { key });
                    }
                }
            }
        }
        self.tick_watched(host, callouts, root, &mut tick);
        tick
    }

    fn tick_watched(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        root: ContextId,
        tick: &mut FlightTick<T>,
    ) {
        let keys: Vec<Digest> = self.watched.keys().copied().collect();
        for key in keys {
            if let Some((value, _)) = self.shared_result(host, &key) {
                if let Some(w) = self.watched.remove(&key) {
                    tick.landed.push(Landing::Published {
                        key,
                        data: w.data,
                        value,
                    });
                }
                continue;
            }
            let now = host.now();
            let claim = host
                .shared_data(&self.claim_slot(&key))
                .ok()
                .flatten()
                .and_then(|e| FlightClaim::decode(&e.value))
                .filter(|c| c.key == key);
            match claim {
                Some(c) if c.failure == 0 && now < c.until => {
                    if let Some(w) = self.watched.get_mut(&key) {
                        if c.until > w.until {
                            w.until = c.until;
                            tick.extended.push((key, c.until.plus(WAIT_GRACE)));
                        }
                    }
                }
                Some(c) if c.failure != 0 => {
                    if self.watched.remove(&key).is_some() {
                        tick.landed.push(Landing::FailedElsewhere {
                            key,
                            code: c.failure,
                        });
                    }
                }
                // The claim ended without a shared result: call out from here.
                _ => {
                    let Some(w) = self.watched.remove(&key) else {
                        continue;
                    };
                    let request = w.request;
                    match self.join_or_start(host, callouts, key, || request, w.data, root) {
                        Ok(deadline) => tick.extended.push((key, deadline)),
                        Err(()) => tick.landed.push(Landing::Unsendable { key }),
                    }
                }
            }
        }
    }
}
