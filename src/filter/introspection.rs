//! The worker's token introspections (RFC 7662): one call per token for the whole Envoy at a
//! time, made through [`Flights`], the IdP's raw answers shared with the other workers (each
//! worker checks an answer itself before it trusts it), and a bound on how many are under way.

use mcp_auth_core::authenticator::{Authenticator, IntrospectionNeed, Vouched};
use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::{Config, KeySource};
use mcp_auth_core::introspection::{
    namespace, read_answer, IntrospectionFailure, MAX_ANSWER_BYTES,
};
use mcp_auth_core::time::UnixMillis;

use crate::filter::callouts::{Callouts, Purpose, Reply};
use crate::filter::flights::{Flights, Landing};
use crate::filter::host::{ContextId, Host};
use crate::filter::metrics::{IntrospectionCount, Metrics};

/// Introspections under way in one worker at most. Random opaque tokens defeat any cache, so
/// each costs the IdP a call: past this bound they are refused (503) instead.
pub const MAX_IN_FLIGHT: usize = 128;

/// How an introspection ended, for the requests waiting on its token.
pub struct Answered {
    pub key: Digest,
    pub outcome: Result<Vouched, IntrospectionFailure>,
}

pub struct Introspections {
    flights: Flights<IntrospectionNeed>,
}

impl Introspections {
    /// `None` when no provider introspects.
    pub fn new(config: &Config, me: u64) -> Option<Introspections> {
        let namespace = config.providers.iter().find_map(|p| match &p.keys {
            KeySource::Introspection(c) => Some(namespace(c, &p.issuer)),
            _ => None,
        })?;
        let flights = Flights::new("introspection", namespace, me, |key| {
            Purpose::Introspection { key }
        });
        Some(Introspections { flights })
    }

    /// Requests of this worker wait for another worker's introspection.
    pub fn watching(&self) -> bool {
        self.flights.watching()
    }

    /// An answer another worker got for this token, checked here as if it were ours.
    pub fn shared_answer(
        &self,
        host: &impl Host,
        auth: &mut Authenticator,
        need: &IntrospectionNeed,
    ) -> Option<Vouched> {
        let (value, _) = self.flights.shared_result(host, &need.token_hash)?;
        let answer = read_answer(Some(200), &value).ok()?;
        Some(auth.accept_introspection(need, answer, host.now()))
    }

    /// Joins the introspection under way for this token (here or in another worker), or
    /// starts one. Returns until when a waiting request may wait.
    pub fn join_or_start(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        auth: &Authenticator,
        need: &IntrospectionNeed,
        owner: ContextId,
    ) -> Result<UnixMillis, IntrospectionFailure> {
        let refused = |host: &mut _| {
            metrics.introspection(host, IntrospectionCount::Failed);
            IntrospectionFailure::Unavailable
        };
        let Some(request) = auth.introspection_request(need) else {
            return Err(refused(host));
        };
        if self.flights.in_flight() >= MAX_IN_FLIGHT && !self.flights.has(&need.token_hash) {
            log::warn!(
                "mcp_auth_filter: {MAX_IN_FLIGHT} introspections under way: refusing another"
            );
            return Err(refused(host));
        }
        let key = need.token_hash;
        self.flights
            .join_or_start(host, callouts, key, || request, need.clone(), owner)
            .map_err(|()| refused(host))
    }

    /// The IdP's answer for the token whose hash is `key`.
    pub fn on_reply(
        &mut self,
        host: &mut impl Host,
        metrics: &Metrics,
        auth: &mut Authenticator,
        key: Digest,
        body_size: usize,
    ) -> Option<Answered> {
        let flight = self.flights.take(&key)?;
        let now = host.now();
        let reply = Reply::read(host, body_size, MAX_ANSWER_BYTES);
        let body = reply.body.unwrap_or_default();
        let outcome = read_answer(reply.status, &body).map(|answer| {
            let vouched = auth.accept_introspection(&flight.data, answer, now);
            if let Some(until) = share_until(auth, &flight.data, vouched, now) {
                self.flights.publish(host, &key, &body, until);
            }
            vouched
        });
        let count = match &outcome {
            Ok(Vouched::Active { .. }) => IntrospectionCount::Active,
            Ok(Vouched::Refused { .. }) => IntrospectionCount::Refused,
            Err(failure) => {
                log::warn!(
                    "mcp_auth_filter: token introspection failed: {} (IdP status {})",
                    failure.label(),
                    reply.status.map_or("none".to_string(), |s| s.to_string()),
                );
                IntrospectionCount::Failed
            }
        };
        metrics.introspection(host, count);
        if flight.claimed {
            let code = outcome.as_ref().err().map_or(0, |f| f.code());
            self.flights.release(host, &key, code);
        }
        Some(Answered { key, outcome })
    }

    /// The context that owned this introspection's callout ended: the root resends it.
    pub fn orphan(&mut self, key: &Digest) {
        self.flights.orphan(key);
    }

    /// Introspections past their deadline time out; lost callouts are resent; those other
    /// workers make are looked at. Returns the answers, and the keys whose waiters may wait
    /// longer (until then).
    pub fn tick(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        auth: &mut Authenticator,
        root: ContextId,
    ) -> (Vec<Answered>, Vec<(Digest, UnixMillis)>) {
        let codes = (
            IntrospectionFailure::Timeout.code(),
            IntrospectionFailure::Unavailable.code(),
        );
        let tick = self.flights.tick(host, callouts, root, codes);
        let now = host.now();
        let answered = tick
            .landed
            .into_iter()
            .map(|landing| match landing {
                Landing::Published { key, data, value } => {
                    let outcome = read_answer(Some(200), &value)
                        .map(|answer| auth.accept_introspection(&data, answer, now));
                    Answered { key, outcome }
                }
                Landing::FailedElsewhere { key, code, .. } => Answered {
                    key,
                    outcome: Err(IntrospectionFailure::from_code(code)
                        .unwrap_or(IntrospectionFailure::Unavailable)),
                },
                Landing::TimedOut { key, .. } => {
                    metrics.introspection(host, IntrospectionCount::Failed);
                    Answered {
                        key,
                        outcome: Err(IntrospectionFailure::Timeout),
                    }
                }
                Landing::Unsendable { key, .. } => {
                    metrics.introspection(host, IntrospectionCount::Failed);
                    Answered {
                        key,
                        outcome: Err(IntrospectionFailure::Unavailable),
                    }
                }
            })
            .collect();
        (answered, tick.extended)
    }
}

/// Until when the other workers may use an answer: as long as this worker does (an active
/// token's cache end, or the negative cache duration for a refusal); `None` when not at all.
fn share_until(
    auth: &Authenticator,
    need: &IntrospectionNeed,
    vouched: Vouched,
    now: UnixMillis,
) -> Option<UnixMillis> {
    let until = match vouched {
        Vouched::Active { until } => until,
        Vouched::Refused { .. } => {
            let settings = auth.config().provider(need.provider).map(|p| &p.keys);
            match settings {
                Some(KeySource::Introspection(c)) => now.plus(c.negative_cache_duration),
                _ => now,
            }
        }
    };
    (until > now).then_some(until)
}
