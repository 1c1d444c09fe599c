//! The worker's token exchanges: the exchanged-token cache, and STS calls made through
//! [`Flights`] (one per cache key for the whole Envoy, deadlines, resends, results shared with
//! the other workers).

use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::ExchangeOverride;
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::time::{UnixMillis, UnixSeconds};
use mcp_auth_core::token_exchange::{
    refusal_summary, ExchangeFailure, TokenExchanger, MAX_RESPONSE_BYTES,
};

use crate::filter::callouts::{Callouts, Purpose, Reply};
use crate::filter::flights::{Flights, Landing};
use crate::filter::host::{ContextId, Host};
use crate::filter::metrics::Metrics;

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
    /// Per flight: the subject token's `exp`, which an exchanged token must not outlive.
    flights: Flights<UnixSeconds>,
}

impl Exchanges {
    pub fn new(exchanger: TokenExchanger, me: u64) -> Exchanges {
        let namespace = *exchanger.namespace();
        Exchanges {
            exchanger,
            flights: Flights::new("exchange", namespace, me, |key| Purpose::Exchange { key }),
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
        self.flights.watching()
    }

    /// A token for this key from this worker's cache or from another worker.
    pub fn cached(&mut self, host: &impl Host, key: &Digest) -> Option<String> {
        let now = host.now();
        if let Some(token) = self.exchanger.cached(key, now) {
            return Some(token.to_string());
        }
        let (value, until) = self.flights.shared_result(host, key)?;
        let token = String::from_utf8(value).ok()?;
        self.exchanger.remember(*key, token.clone(), until, now);
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
        let exchanger = &self.exchanger;
        let request = || exchanger.request(subject, narrowing);
        let started = self
            .flights
            .join_or_start(host, callouts, key, request, subject_exp, owner);
        started.map_err(|()| {
            exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
            ExchangeFailure::Unavailable
        })
    }

    /// The STS's reply for `key`.
    pub fn on_reply(
        &mut self,
        host: &mut impl Host,
        metrics: &Metrics,
        key: Digest,
        body_size: usize,
    ) -> Option<Settled> {
        let flight = self.flights.take(&key)?;
        let now = host.now();
        let reply = Reply::read(host, body_size, MAX_RESPONSE_BYTES);
        let sts_ms = now.since(flight.started).as_millis() as u64;
        let result = match &reply.body {
            Some(body) => self
                .exchanger
                .accept(key, reply.status, body, now, flight.data),
            None => Err(ExchangeFailure::Failed),
        };
        metrics.sts_latency(host, sts_ms);
        match &result {
            Ok(exchanged) => {
                metrics.exchange(host, true);
                if let Some(until) = exchanged.cached_until {
                    self.flights
                        .publish(host, &key, exchanged.token.as_bytes(), until);
                }
            }
            Err(failure) => {
                let summary = reply.body.as_deref().and_then(refusal_summary);
                exchange_failed(host, metrics, *failure, Some((reply.status, summary)));
            }
        }
        if flight.claimed {
            // A token not cached (about to expire) is not shared: waiters elsewhere retry.
            let code = result.as_ref().err().map_or(0, |f| f.code());
            self.flights.release(host, &key, code);
        }
        Some(Settled {
            key,
            outcome: result.map(|e| e.token),
            sts_ms: Some(sts_ms),
        })
    }

    /// The context that owned this exchange's callout ended: the root resends it on the tick.
    pub fn orphan(&mut self, key: &Digest) {
        self.flights.orphan(key);
    }

    /// Exchanges past their deadline fail with a timeout; lost callouts are resent; exchanges
    /// other workers make are looked at.
    pub fn tick(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        root: ContextId,
    ) -> ExchangeTick {
        let codes = (
            ExchangeFailure::Timeout.code(),
            ExchangeFailure::Unavailable.code(),
        );
        let flight_tick = self.flights.tick(host, callouts, root, codes);
        let mut tick = ExchangeTick {
            settled: Vec::new(),
            extended: flight_tick.extended,
        };
        let now = host.now();
        for landing in flight_tick.landed {
            let (key, outcome) = match landing {
                Landing::Published { key, value, .. } => match String::from_utf8(value) {
                    Ok(token) => {
                        // Good until the shared entry says; this worker's cache learns it too.
                        if let Some((_, until)) = self.flights.shared_result(host, &key) {
                            self.exchanger.remember(key, token.clone(), until, now);
                        }
                        (key, Ok(token))
                    }
                    Err(_) => (key, Err(ExchangeFailure::Failed)),
                },
                Landing::FailedElsewhere { key, code, .. } => (
                    key,
                    Err(ExchangeFailure::from_code(code).unwrap_or(ExchangeFailure::Failed)),
                ),
                Landing::TimedOut { key, .. } => {
                    exchange_failed(host, metrics, ExchangeFailure::Timeout, None);
                    (key, Err(ExchangeFailure::Timeout))
                }
                Landing::Unsendable { key, .. } => {
                    exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
                    (key, Err(ExchangeFailure::Unavailable))
                }
            };
            tick.settled.push(Settled {
                key,
                outcome,
                sts_ms: None,
            });
        }
        tick
    }
}

/// Counts and logs a failed exchange, with the STS's status and error summary when it answered.
fn exchange_failed(
    host: &mut impl Host,
    metrics: &Metrics,
    failure: ExchangeFailure,
    answer: Option<(Option<u16>, Option<String>)>,
) {
    metrics.exchange(host, false);
    let label = DenyReason::Exchange(failure).label();
    match answer {
        Some((Some(status), Some(summary))) => log::warn!(
            "mcp_auth_filter: token exchange failed: {label} (STS status {status}: {summary})"
        ),
        Some((Some(status), None)) => {
            log::warn!("mcp_auth_filter: token exchange failed: {label} (STS status {status})")
        }
        _ => log::warn!("mcp_auth_filter: token exchange failed: {label}"),
    }
}
