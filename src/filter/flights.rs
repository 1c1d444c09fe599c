//! One callout per key for the whole Envoy at a time (token exchanges, token introspection):
//! deadlines, resending a callout whose context went away, and results shared with the other
//! workers.
//!
//! Before calling out, a worker claims the key in one of its candidate claim slots
//! (compare-and-swap, with an end so a dead owner never blocks anyone). A worker that finds the
//! key claimed by another parks its requests and watches the claim on the fast tick; once it
//! ends, it takes the result from the key's result slots or the failure the owner recorded, and
//! if there is neither, it calls out itself. Slots are bounded ([`Slots`]): a key whose every
//! candidate holds another key's live claim goes without a claim, and a result whose every
//! candidate is taken replaces the one that ends soonest. What a result means is the caller's
//! business (a token, an introspection answer).

use std::collections::HashMap;
use std::time::Duration;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::oauth_request::CalloutRequest;
use mcp_auth_core::time::UnixMillis;

use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::host::{CalloutToken, ContextId, Host, OutgoingCall, SharedEntry, SharedWrite};
use crate::filter::shared::{
    place, FlightClaim, Occupant, SharedResult, Slots, MAX_SHARED_VALUE_BYTES,
};

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
    /// This worker holds the key's claim (false when other keys' live claims fill its slots).
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
    /// Ours (or other keys' live claims fill every candidate slot: go without one).
    Go { claimed: bool },
    /// Another worker is at this key, until then.
    HeldElsewhere(UnixMillis),
}

pub struct Flights<T> {
    /// The digest of the configuration the results belong to.
    namespace: Digest,
    /// This family's (`exchange`, `introspection`) shared-data slots for results and claims.
    results: Slots,
    claims: Slots,
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
            namespace,
            results: Slots::results(family, &namespace),
            claims: Slots::claims(family, &namespace),
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

    /// A result another worker published for `key`, still valid, and its end.
    pub fn shared_result(&self, host: &impl Host, key: &Digest) -> Option<(Vec<u8>, UnixMillis)> {
        let now = host.now();
        self.results.candidates(key).iter().find_map(|slot| {
            let entry = host.shared_data(slot).ok().flatten()?;
            let shared = SharedResult::decode(&entry.value, &self.namespace)?;
            (shared.key == *key && now < shared.until)
                .then(|| (shared.value.to_vec(), shared.until))
        })
    }

    /// Publishes a result for the other workers, valid until `until`, in the candidate slot
    /// [`place`] picks (evicting, if it must, the result that ends soonest).
    pub fn publish(&self, host: &mut impl Host, key: &Digest, value: &[u8], until: UnixMillis) {
        if value.len() > MAX_SHARED_VALUE_BYTES {
            return;
        }
        let encoded = SharedResult {
            key: *key,
            until,
            value,
        }
        .encode(&self.namespace);
        // A CAS mismatch means another worker wrote the slot meanwhile: look again.
        for _ in 0..2 {
            let now = host.now();
            let slots = read_slots(host, self.results.candidates(key));
            let occupants = occupants(&slots, |value| {
                SharedResult::occupant(value, &self.namespace, key, now)
            });
            let Some((slot, entry)) = place(&occupants, true).and_then(|i| slots.get(i)) else {
                return;
            };
            let cas = entry.as_ref().map(|e| e.cas);
            match host.set_shared_data(slot, &encoded, cas) {
                Ok(SharedWrite::CasMismatch) => continue,
                Ok(SharedWrite::Stored) | Err(_) => return,
            }
        }
    }

    /// The claims for `key` in its candidate slots (usually one), with their slots' entries.
    fn claims_for(
        &self,
        host: &impl Host,
        key: &Digest,
    ) -> Vec<(FlightClaim, String, SharedEntry)> {
        read_slots(host, self.claims.candidates(key))
            .into_iter()
            .filter_map(|(slot, entry)| {
                let entry = entry?;
                let claim = FlightClaim::decode(&entry.value, &self.namespace)?;
                (claim.key == *key).then_some((claim, slot, entry))
            })
            .collect()
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

    /// Claims `key` until `until` in one of its candidate claim slots, unless another worker
    /// holds a live claim for it in any of them.
    fn claim(&self, host: &mut impl Host, key: &Digest, until: UnixMillis) -> Claim {
        for _ in 0..2 {
            let now = host.now();
            let slots = read_slots(host, self.claims.candidates(key));
            let claims: Vec<Option<FlightClaim>> = slots
                .iter()
                .map(|(_, e)| {
                    e.as_ref()
                        .and_then(|e| FlightClaim::decode(&e.value, &self.namespace))
                })
                .collect();
            let held = claims
                .iter()
                .flatten()
                .find(|c| c.key == *key && c.owner != self.me && c.live(now));
            if let Some(c) = held {
                return Claim::HeldElsewhere(c.until);
            }
            let occupants = occupants(&slots, |value| {
                FlightClaim::occupant(value, &self.namespace, key, now)
            });
            // Every candidate holds another key's live claim: go without one.
            let Some((slot, entry)) = place(&occupants, false).and_then(|i| slots.get(i)) else {
                return Claim::Go { claimed: false };
            };
            let claim = FlightClaim {
                key: *key,
                owner: self.me,
                until,
                failure: 0,
            };
            let cas = entry.as_ref().map(|e| e.cas);
            match host.set_shared_data(slot, &claim.encode(&self.namespace), cas) {
                Ok(SharedWrite::Stored) => return Claim::Go { claimed: true },
                Ok(SharedWrite::CasMismatch) => continue,
                Err(_) => return Claim::Go { claimed: false },
            }
        }
        Claim::Go { claimed: false }
    }

    /// Ends our claim on `key`, recording `failure` (0: none) for the workers waiting on it.
    pub fn release(&self, host: &mut impl Host, key: &Digest, failure: u8) {
        let ours = self
            .claims_for(host, key)
            .into_iter()
            .find(|(c, _, _)| c.owner == self.me);
        let Some((_, slot, entry)) = ours else {
            return;
        };
        let released = FlightClaim {
            key: *key,
            owner: self.me,
            until: host.now(),
            failure,
        };
        // A CAS mismatch means someone else took the slot meanwhile: theirs stands.
        let encoded = released.encode(&self.namespace);
        let _ = host.set_shared_data(&slot, &encoded, Some(entry.cas));
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
            let now = host.now();
            let claims: Vec<FlightClaim> = self
                .claims_for(host, &key)
                .into_iter()
                .map(|(c, _, _)| c)
                .collect();
            // Under way elsewhere: only its small claims are read until it ends.
            if let Some(live) = claims.iter().filter(|c| c.live(now)).map(|c| c.until).max() {
                if let Some(w) = self.watched.get_mut(&key) {
                    if live > w.until {
                        w.until = live;
                        tick.extended.push((key, live.plus(WAIT_GRACE)));
                    }
                }
                continue;
            }
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
            if let Some(code) = claims.iter().map(|c| c.failure).find(|f| *f != 0) {
                if self.watched.remove(&key).is_some() {
                    tick.landed.push(Landing::FailedElsewhere { key, code });
                }
                continue;
            }
            // The claim ended without a shared result: call out from here.
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

/// Each slot with its entry as read now (`None`: empty, or unreadable).
fn read_slots(host: &impl Host, slots: Vec<String>) -> Vec<(String, Option<SharedEntry>)> {
    slots
        .into_iter()
        .map(|slot| {
            let entry = host.shared_data(&slot).ok().flatten();
            (slot, entry)
        })
        .collect()
}

/// What each slot holds as far as placing a key goes, read by `occupant` from its value.
fn occupants(
    slots: &[(String, Option<SharedEntry>)],
    occupant: impl Fn(Option<&[u8]>) -> Occupant,
) -> Vec<Occupant> {
    slots
        .iter()
        .map(|(_, e)| occupant(e.as_ref().map(|e| e.value.as_slice())))
        .collect()
}
