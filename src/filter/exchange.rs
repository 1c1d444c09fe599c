//! The worker's token exchanges: one STS call per cache key at a time (requests for the same
//! key wait for it), deadlines, resending a callout whose context went away, and exchanged
//! tokens shared with the other workers.

use std::collections::HashMap;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::token_exchange::{
    ExchangeFailure, ExchangeRequest, TokenExchanger, MAX_RESPONSE_BYTES,
};

use crate::filter::callouts::{Callouts, Purpose, Reply};
use crate::filter::host::{CalloutToken, ContextId, Host, OutgoingCall};
use crate::filter::keys::WAIT_GRACE_MS;
use crate::filter::metrics::Metrics;
use crate::filter::shared::SharedExchange;

/// An exchange in flight for one cache key.
struct Flight {
    /// Kept to send it again if the context that owned the callout goes away.
    request: ExchangeRequest,
    /// The subject token's `exp` (s): the exchanged token must not outlive it.
    subject_exp: u64,
    started_ms: u64,
    deadline_ms: u64,
    /// `None` when the callout's reply can no longer arrive and the root must resend it.
    callout: Option<CalloutToken>,
}

/// How an exchange ended, for the requests waiting on its key.
pub struct Settled {
    pub key: Digest,
    pub outcome: Result<String, ExchangeFailure>,
    /// The STS's latency, when it answered.
    pub sts_ms: Option<u64>,
}

pub struct Exchanges {
    exchanger: TokenExchanger,
    flights: HashMap<Digest, Flight>,
}

impl Exchanges {
    pub fn new(exchanger: TokenExchanger) -> Exchanges {
        Exchanges {
            exchanger,
            flights: HashMap::new(),
        }
    }

    pub fn key(&self, subject_hash: &Digest) -> Digest {
        self.exchanger.key(subject_hash)
    }

    pub fn backend_audience(&self) -> Option<&str> {
        self.exchanger.audience()
    }

    pub fn upstream_header(&self, token: &str) -> (String, String) {
        self.exchanger.upstream_header(token)
    }

    /// A token for this key from this worker's cache or from another worker.
    pub fn cached(&mut self, host: &impl Host, key: &Digest) -> Option<String> {
        let now = host.now_ms();
        if let Some(token) = self.exchanger.cached(key, now) {
            return Some(token.to_string());
        }
        let entry = host
            .shared_data(&SharedExchange::slot_name(key))
            .ok()
            .flatten()?;
        let shared = SharedExchange::decode(&entry.value)?;
        if shared.key != *key || now >= shared.until_ms {
            return None;
        }
        let token = shared.token.to_string();
        self.exchanger
            .remember(*key, token.clone(), shared.until_ms, now);
        Some(token)
    }

    /// Joins the exchange in flight for `key`, or starts one for `subject`. Returns until when
    /// a waiting request may wait.
    #[allow(clippy::too_many_arguments)]
    pub fn join_or_start(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        key: Digest,
        subject: &str,
        subject_exp: u64,
        owner: ContextId,
    ) -> Result<u64, ExchangeFailure> {
        if !self.flights.contains_key(&key) {
            let now = host.now_ms();
            let request = self.exchanger.request(subject);
            let deadline_ms = now + request.timeout.as_millis() as u64 + WAIT_GRACE_MS;
            let Some(callout) = send(host, callouts, &request, key, owner) else {
                exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
                return Err(ExchangeFailure::Unavailable);
            };
            self.flights.insert(
                key,
                Flight {
                    request,
                    subject_exp,
                    started_ms: now,
                    deadline_ms,
                    callout: Some(callout),
                },
            );
        }
        let host_now = host.now_ms();
        Ok(self
            .flights
            .get(&key)
            .map_or(host_now, |f| f.deadline_ms + WAIT_GRACE_MS))
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
        let now = host.now_ms();
        let reply = Reply::read(host, body_size, MAX_RESPONSE_BYTES);
        let sts_ms = now.saturating_sub(flight.started_ms);
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
                if let Some(until_ms) = exchanged.cached_until {
                    let value = SharedExchange {
                        key,
                        until_ms,
                        token: &exchanged.token,
                    }
                    .encode();
                    let _ = host.set_shared_data(&SharedExchange::slot_name(&key), &value, None);
                }
            }
            Err(failure) => exchange_failed(host, metrics, *failure, reply.status),
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
    /// with its context are sent again from the root.
    pub fn tick(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        root: ContextId,
    ) -> Vec<Settled> {
        let now = host.now_ms();
        let overdue: Vec<Digest> = self
            .flights
            .iter()
            .filter(|(_, f)| now > f.deadline_ms)
            .map(|(k, _)| *k)
            .collect();
        let mut settled = Vec::new();
        for key in overdue {
            self.flights.remove(&key);
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
                    self.flights.remove(&key);
                    exchange_failed(host, metrics, ExchangeFailure::Unavailable, None);
                    settled.push(Settled {
                        key,
                        outcome: Err(ExchangeFailure::Unavailable),
                        sts_ms: None,
                    });
                }
            }
        }
        settled
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
