//! The worker's token exchanges: one STS call per cache key for the whole Envoy at a time,
//! deadlines, resending a callout whose context went away, and exchanged tokens shared with
//! the other workers.
//!
//! Before calling the STS a worker claims the key in a shared-data slot (compare-and-swap,
//! with an end so a dead owner never blocks anyone). A worker that finds the key claimed by
//! another parks its requests and watches, on the fast tick, for the token in the key's result
//! slot or for the failure the owner recorded; if the claim ends without either, it exchanges
//! itself. Slots are bounded: a key whose claim slot holds another key's live claim is simply
//! exchanged without a claim.

use std::collections::HashMap;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::ExchangeOverride;
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::time::{UnixMillis, UnixSeconds};
use mcp_auth_core::token_exchange::{
    ExchangeFailure, ExchangeRequest, TokenExchanger, MAX_RESPONSE_BYTES,
};
use std::time::Duration;

use crate::filter::callouts::{Callouts, Purpose, Reply};
use crate::filter::host::{CalloutToken, ContextId, Host, OutgoingCall, SharedWrite};
use crate::filter::metrics::Metrics;
use crate::filter::shared::{ExchangeClaim, SharedExchange};

/// Grace beyond a callout's own timeout before a waiting request is given up on.
pub const WAIT_GRACE: Duration = Duration::from_secs(1);

/// An exchange this worker is making.
struct Flight {
    /// Kept to send it again if the context that owned the callout goes away.
    request: ExchangeRequest,
    /// The exchanged token must not outlive the subject token.
    subject_exp: UnixSeconds,
    started: UnixMillis,
    deadline: UnixMillis,
    /// `None` when the callout's reply can no longer arrive and the root must resend it.
    callout: Option<CalloutToken>,
    /// This worker holds the key's claim (false when the slot was taken by another key).
    claimed: bool,
}

/// An exchange another worker is making, which requests here wait for.
struct Watched {
    subject: String,
    subject_exp: UnixSeconds,
    narrowing: Option<ExchangeOverride>,
    until: UnixMillis,
}

/// What the tick did to the exchanges requests wait for.
#[derive(Default)]
pub struct ExchangeTick {
    pub settled: Vec<Settled>,
    /// Keys whose waiters may wait longer (until then): the exchange moved to this worker.
    pub extended: Vec<(Digest, UnixMillis)>,
}

/// How an exchange ended, for the requests waiting on its key.
pub struct Settled {
    pub key: Digest,
    pub outcome: Result<String, ExchangeFailure>,
    /// The STS's latency, when this worker asked it.
    pub sts_ms: Option<u64>,
}

pub struct Exchanges {
    exchanger: TokenExchanger,
    flights: HashMap<Digest, Flight>,
    watched: HashMap<Digest, Watched>,
    /// This VM, as claims name it.
    me: u64,
}

enum Claim {
    /// Ours (or the slot is taken by another key: exchange without one).
    Go { claimed: bool },
    /// Another worker is exchanging this key, until then.
    HeldElsewhere(UnixMillis),
}

impl Exchanges {
    pub fn new(exchanger: TokenExchanger, me: u64) -> Exchanges {
        Exchanges {
            exchanger,
            flights: HashMap::new(),
            watched: HashMap::new(),
            me,
        }
    }

    pub fn key(&self, subject_hash: &Digest, narrowing: Option<&ExchangeOverride>) -> Digest {
        self.exchanger.key(subject_hash, narrowing)
    }

    pub fn backend_audience<'a>(
        &'a self,
        narrowing: Option<&'a ExchangeOverride>,
    ) -> Option<&'a str> {
        self.exchanger.audience(narrowing)
    }

    pub fn upstream_header(&self, token: &str) -> (String, String) {
        self.exchanger.upstream_header(token)
    }

    /// Requests of this worker wait for another worker's exchange (the tick should be fast).
    pub fn watching(&self) -> bool {
        !self.watched.is_empty()
    }

    fn result_slot(&self, key: &Digest) -> String {
        SharedExchange::slot_name(self.exchanger.namespace(), key)
    }

    fn claim_slot(&self, key: &Digest) -> String {
        ExchangeClaim::slot_name(self.exchanger.namespace(), key)
    }

    /// A token for this key from this worker's cache or from another worker.
    pub fn cached(&mut self, host: &impl Host, key: &Digest) -> Option<String> {
        let now = host.now();
        if let Some(token) = self.exchanger.cached(key, now) {
            return Some(token.to_string());
        }
        let entry = host.shared_data(&self.result_slot(key)).ok().flatten()?;
        let shared = SharedExchange::decode(&entry.value, key)?;
        if now >= shared.until {
            return None;
        }
        let token = shared.token.to_string();
        self.exchanger
            .remember(*key, token.clone(), shared.until, now);
        Some(token)
    }

    /// Joins the exchange under way for `key` (here or in another worker), or starts one for
    /// `subject`. Returns until when a waiting request may wait.
    #[allow(clippy::too_many_arguments)]
    pub fn join_or_start(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        key: Digest,
        subject: &str,
        subject_exp: UnixSeconds,
        narrowing: Option<&ExchangeOverride>,
        owner: ContextId,
    ) -> Result<UnixMillis, ExchangeFailure> {
        if let Some(flight) = self.flights.get(&key) {
            return Ok(flight.deadline.plus(WAIT_GRACE));
        }
        if let Some(watched) = self.watched.get(&key) {
            return Ok(watched.until.plus(WAIT_GRACE));
        }
        let request = self.exchanger.request(subject, narrowing);
        let deadline = host.now().plus(request.timeout).plus(WAIT_GRACE);
        match self.claim(host, &key, deadline) {
            Claim::HeldElsewhere(until) => {
                let watched = Watched {
                    subject: subject.to_string(),
                    subject_exp,
                    narrowing: narrowing.cloned(),
                    until,
                };
                self.watched.insert(key, watched);
                Ok(until.plus(WAIT_GRACE))
            }
            Claim::Go { claimed } => {
                self.fly(
                    host,
                    callouts,
                    metrics,
                    key,
                    request,
                    subject_exp,
                    claimed,
                    owner,
                )?;
                Ok(deadline.plus(WAIT_GRACE))
            }
        }
    }

    /// Sends the exchange and records the flight.
    #[allow(clippy::too_many_arguments)]
    fn fly(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        key: Digest,
        request: ExchangeRequest,
        subject_exp: UnixSeconds,
        claimed: bool,
        owner: ContextId,
    ) -> Result<(), ExchangeFailure> {
        let now = host.now();
        let Some(callout) = send(host, callouts, &request, key, owner) else {
            exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
            if claimed {
                self.release(host, &key, Some(ExchangeFailure::Unavailable));
            }
            return Err(ExchangeFailure::Unavailable);
        };
        let deadline = now.plus(request.timeout).plus(WAIT_GRACE);
        self.flights.insert(
            key,
            Flight {
                request,
                subject_exp,
                started: now,
                deadline,
                callout: Some(callout),
                claimed,
            },
        );
        Ok(())
    }

    /// Claims `key` until `until` in its claim slot.
    fn claim(&self, host: &mut impl Host, key: &Digest, until: UnixMillis) -> Claim {
        let slot = self.claim_slot(key);
        for _ in 0..2 {
            let now = host.now();
            let current = host.shared_data(&slot).ok().flatten();
            let held = current
                .as_ref()
                .and_then(|e| ExchangeClaim::decode(&e.value))
                .filter(|c| c.owner != self.me && now < c.until && c.failure == 0);
            match held {
                Some(c) if c.key == *key => return Claim::HeldElsewhere(c.until),
                // Another key's live claim in this slot: go without one.
                Some(_) => return Claim::Go { claimed: false },
                None => {}
            }
            let claim = ExchangeClaim {
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

    /// Ends our claim on `key`, recording a failure for the workers waiting on it.
    fn release(&self, host: &mut impl Host, key: &Digest, failure: Option<ExchangeFailure>) {
        let slot = self.claim_slot(key);
        let Ok(Some(entry)) = host.shared_data(&slot) else {
            return;
        };
        let ours = ExchangeClaim::decode(&entry.value)
            .is_some_and(|c| c.key == *key && c.owner == self.me);
        if !ours {
            return;
        }
        let released = ExchangeClaim {
            key: *key,
            owner: self.me,
            until: host.now(),
            failure: failure.map_or(0, ExchangeFailure::code),
        };
        // A CAS mismatch means someone else took the slot meanwhile: theirs stands.
        let _ = host.set_shared_data(&slot, &released.encode(), Some(entry.cas));
    }

    /// The STS's reply for `key`.
    pub fn on_reply(
        &mut self,
        host: &mut impl Host,
        metrics: &Metrics,
        key: Digest,
        body_size: usize,
    ) -> Option<Settled> {
        let flight = self.flights.remove(&key)?;
        let now = host.now();
        let reply = Reply::read(host, body_size, MAX_RESPONSE_BYTES);
        let sts_ms = now.since(flight.started).as_millis() as u64;
        let result = match &reply.body {
            Some(body) => self
                .exchanger
                .accept(key, reply.status, body, now, flight.subject_exp),
            None => Err(ExchangeFailure::Failed),
        };
        metrics.sts_latency(host, sts_ms);
        match &result {
            Ok(exchanged) => {
                metrics.exchange(host, true);
                if let Some(until) = exchanged.cached_until {
                    let value = SharedExchange {
                        key,
                        until,
                        token: &exchanged.token,
                    }
                    .encode();
                    let _ = host.set_shared_data(&self.result_slot(&key), &value, None);
                }
            }
            Err(failure) => exchange_failed(host, metrics, *failure, reply.status),
        }
        if flight.claimed {
            // A token not cached (about to expire) is not shared: waiters elsewhere retry.
            self.release(host, &key, result.as_ref().err().copied());
        }
        Some(Settled {
            key,
            outcome: result.map(|e| e.token),
            sts_ms: Some(sts_ms),
        })
    }

    /// The context that owned this exchange's callout ended: the root resends it on the tick.
    pub fn orphan(&mut self, key: &Digest) {
        if let Some(flight) = self.flights.get_mut(key) {
            flight.callout = None;
        }
    }

    /// Exchanges past their deadline fail with a timeout; exchanges whose callout was lost
    /// with its context are sent again from the root; exchanges watched in other workers are
    /// looked at.
    pub fn tick(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        root: ContextId,
    ) -> ExchangeTick {
        let now = host.now();
        let mut settled = Vec::new();
        let overdue: Vec<Digest> = self
            .flights
            .iter()
            .filter(|(_, f)| now > f.deadline)
            .map(|(k, _)| *k)
            .collect();
        for key in overdue {
            if let Some(flight) = self.flights.remove(&key) {
                if flight.claimed {
                    self.release(host, &key, Some(ExchangeFailure::Timeout));
                }
            }
            callouts.forget(|p| matches!(p, Purpose::Exchange { key: k } if *k == key));
            exchange_failed(host, metrics, ExchangeFailure::Timeout, None);
            settled.push(Settled {
                key,
                outcome: Err(ExchangeFailure::Timeout),
                sts_ms: None,
            });
        }
        let lost: Vec<(Digest, ExchangeRequest)> = self
            .flights
            .iter()
            .filter(|(_, f)| f.callout.is_none())
            .map(|(k, f)| (*k, f.request.clone()))
            .collect();
        for (key, request) in lost {
            match send(host, callouts, &request, key, root) {
                Some(token) => {
                    if let Some(f) = self.flights.get_mut(&key) {
                        f.callout = Some(token);
                    }
                }
                None => {
                    if let Some(flight) = self.flights.remove(&key) {
                        if flight.claimed {
                            self.release(host, &key, Some(ExchangeFailure::Unavailable));
                        }
                    }
                    exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
                    settled.push(Settled {
                        key,
                        outcome: Err(ExchangeFailure::Unavailable),
                        sts_ms: None,
                    });
                }
            }
        }
        let mut tick = self.tick_watched(host, callouts, metrics, root);
        tick.settled.extend(settled);
        tick
    }

    /// Looks at the exchanges other workers make for requests waiting here.
    fn tick_watched(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        root: ContextId,
    ) -> ExchangeTick {
        let keys: Vec<Digest> = self.watched.keys().copied().collect();
        let mut tick = ExchangeTick::default();
        for key in keys {
            if let Some(token) = self.cached(host, &key) {
                self.watched.remove(&key);
                tick.settled.push(Settled {
                    key,
                    outcome: Ok(token),
                    sts_ms: None,
                });
                continue;
            }
            let now = host.now();
            let claim = host
                .shared_data(&self.claim_slot(&key))
                .ok()
                .flatten()
                .and_then(|e| ExchangeClaim::decode(&e.value))
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
                    self.watched.remove(&key);
                    let failure =
                        ExchangeFailure::from_code(c.failure).unwrap_or(ExchangeFailure::Failed);
                    tick.settled.push(Settled {
                        key,
                        outcome: Err(failure),
                        sts_ms: None,
                    });
                }
                // The claim ended without a shared token: exchange here.
                _ => {
                    let Some(w) = self.watched.remove(&key) else {
                        continue;
                    };
                    let started = self.join_or_start(
                        host,
                        callouts,
                        metrics,
                        key,
                        &w.subject,
                        w.subject_exp,
                        w.narrowing.as_ref(),
                        root,
                    );
                    match started {
                        Ok(deadline) => tick.extended.push((key, deadline)),
                        Err(failure) => tick.settled.push(Settled {
                            key,
                            outcome: Err(failure),
                            sts_ms: None,
                        }),
                    }
                }
            }
        }
        tick
    }
}

fn send(
    host: &mut impl Host,
    callouts: &mut Callouts,
    request: &ExchangeRequest,
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
    callouts.send(host, &call, Purpose::Exchange { key }, owner)
}

fn exchange_failed(
    host: &mut impl Host,
    metrics: &Metrics,
    failure: ExchangeFailure,
    status: Option<u16>,
) {
    metrics.exchange(host, false);
    let label = DenyReason::Exchange(failure).label();
    match status {
        Some(s) => log::warn!("mcp_auth_filter: token exchange failed: {label} (STS status {s})"),
        None => log::warn!("mcp_auth_filter: token exchange failed: {label}"),
    }
}
