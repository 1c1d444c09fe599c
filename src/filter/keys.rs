//! The worker's signing keys: fetches (JWKS and discovery callouts) and their replies, and the
//! coordination of fetches across the workers of the Envoy through shared data.
//!
//! Every fetch is claimed first in the provider's [`FetchRecord`] (compare-and-swap, with an
//! end so that a dead owner never blocks the others): the whole Envoy makes one fetch at a time
//! per provider, and the record's history makes the unknown-`kid` rate limit and the backoff
//! hold for the Envoy, not per worker. A worker that finds another's fetch under way parks its
//! requests and watches the shared keys on a fast tick.

use mcp_auth_core::config::{Config, ProviderId};
use mcp_auth_core::jwks::MAX_JWKS_BYTES;
use mcp_auth_core::jwks_cache::{
    FetchFailure, FetchOutcome, FetchReason, FetchRequest, FetchStep, JwksCache, DEADLINE_GRACE,
};
use mcp_auth_core::keyring::Keyring;
use mcp_auth_core::time::UnixMillis;

use crate::filter::callouts::{Callouts, Purpose, Reply};
use crate::filter::host::{Cas, ContextId, Host, OutgoingCall, SharedWrite};
use crate::filter::metrics::Metrics;
use crate::filter::shared::{FetchRecord, KeyEntries, SharedKeys};

/// Attempts at a compare-and-swap on a fetch record before giving up for now.
const CAS_ATTEMPTS: usize = 3;

/// What a key callout's reply means for the requests waiting on that provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReply {
    /// Keys changed or the fetch failed: decide the waiting requests again.
    WakeWaiters,
    /// The JWKS fetch follows the discovery document: keep waiting.
    KeepWaiting,
}

/// Whether a request that needs keys has a fetch to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchWait {
    /// Our fetch (started now or already in flight).
    Ours,
    /// Another worker's fetch: watch the shared keys.
    Elsewhere,
    /// Nothing to wait for: no fetch may start (rate limit, backoff) or the host refused it.
    Nothing,
}

/// The shared-data side of one remote provider.
struct SharedSide {
    entries: KeyEntries,
    /// CAS of the keys entry last read, so an unchanged entry is not parsed again.
    keys_seen: Option<Cas>,
    /// Requests of this worker wait for another worker's fetch.
    watched: bool,
}

pub struct KeyLoader {
    keyring: Keyring,
    provider_names: Vec<String>,
    /// Per provider (configuration order); `None` for local keys.
    shared: Vec<Option<SharedSide>>,
    /// This VM, as fetch records name it.
    me: u64,
}

impl KeyLoader {
    pub fn new(config: &Config, me: u64) -> KeyLoader {
        let keyring = Keyring::new(config);
        let shared = ProviderId::all(config.providers.len())
            .map(|p| {
                keyring.namespace(p).map(|ns| SharedSide {
                    entries: KeyEntries::new(*ns),
                    keys_seen: None,
                    watched: false,
                })
            })
            .collect();
        KeyLoader {
            keyring,
            provider_names: config.providers.iter().map(|p| p.name.clone()).collect(),
            shared,
            me,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn remote_providers(&self) -> Vec<ProviderId> {
        self.keyring.remote_providers().collect()
    }

    /// Requests of this worker wait for another worker's fetch (the tick should be fast).
    pub fn watching(&self) -> bool {
        self.shared.iter().flatten().any(|s| s.watched)
    }

    /// Until when a request may wait for this provider's keys.
    pub fn wait_deadline(&self, provider: ProviderId, now: UnixMillis) -> UnixMillis {
        self.keyring
            .remote(provider)
            .map_or(now, |c| c.wait_deadline(now))
    }

    fn provider_name(&self, provider: ProviderId) -> &str {
        self.provider_names
            .get(provider.0)
            .map_or("?", String::as_str)
    }

    fn side(&self, provider: ProviderId) -> Option<&SharedSide> {
        self.shared.get(provider.0)?.as_ref()
    }

    fn side_mut(&mut self, provider: ProviderId) -> Option<&mut SharedSide> {
        self.shared.get_mut(provider.0)?.as_mut()
    }

    // ---- what the other workers did ----------------------------------------------------------

    /// Reads the provider's fetch record (merging its history and any other worker's live
    /// claim) and adopts newer keys another worker published. True when keys were adopted.
    pub fn sync(&mut self, host: &impl Host, provider: ProviderId) -> bool {
        let now = host.now();
        let Some(side) = self.side(provider) else {
            return false;
        };
        let record = read_record(host, &side.entries);
        let me = self.me;
        let Some(cache) = self.keyring.remote_mut(provider) else {
            return false;
        };
        if let Some((record, _)) = record {
            cache.merge(record.history, record.claimed_by_other(me, now));
        }
        let want_keys = cache.newer_keys_published() || cache.keys().is_none();
        want_keys && self.adopt_published(host, provider)
    }

    /// Adopts the keys entry if it changed since last read and holds newer keys.
    fn adopt_published(&mut self, host: &impl Host, provider: ProviderId) -> bool {
        let Some(side) = self.side(provider) else {
            return false;
        };
        let Ok(Some(entry)) = host.shared_data(&side.entries.keys) else {
            return false;
        };
        if side.keys_seen == Some(entry.cas) {
            return false;
        }
        let namespace = side.entries.namespace;
        if let Some(side) = self.side_mut(provider) {
            side.keys_seen = Some(entry.cas);
        }
        let Some(shared) = SharedKeys::decode(&entry.value, &namespace) else {
            return false;
        };
        self.keyring.remote_mut(provider).is_some_and(|c| {
            !c.is_fetching() && c.adopt_shared(shared.jwks, shared.fetched_at, shared.refresh_at)
        })
    }

    // ---- starting fetches ------------------------------------------------------------------

    /// Makes sure a fetch that a request can wait for is under way: ours, or another worker's.
    /// `may_start`: whether this request may start one (it has not waited already).
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_for_waiter(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        reason: FetchReason,
        may_start: bool,
        owner: ContextId,
    ) -> FetchWait {
        let now = host.now();
        let Some(cache) = self.keyring.remote(provider) else {
            return FetchWait::Nothing;
        };
        if cache.is_fetching() {
            return FetchWait::Ours;
        }
        if cache.remote_fetch_until(now).is_some() {
            self.watch(provider);
            return FetchWait::Elsewhere;
        }
        if !may_start {
            return FetchWait::Nothing;
        }
        match self.start_fetch(host, callouts, metrics, provider, reason, owner) {
            FetchStart::Started => FetchWait::Ours,
            FetchStart::Elsewhere => FetchWait::Elsewhere,
            FetchStart::NotDue | FetchStart::Refused => FetchWait::Nothing,
        }
    }

    /// Claims and starts a fetch if one is due for `reason`.
    fn start_fetch(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        reason: FetchReason,
        owner: ContextId,
    ) -> FetchStart {
        match self.claim(host, provider, reason) {
            Claim::Won(fetch) => {
                if self.send_fetch(host, callouts, metrics, provider, fetch, owner) {
                    FetchStart::Started
                } else {
                    FetchStart::Refused
                }
            }
            Claim::HeldElsewhere => {
                self.watch(provider);
                FetchStart::Elsewhere
            }
            Claim::NotDue => FetchStart::NotDue,
        }
    }

    fn watch(&mut self, provider: ProviderId) {
        if let Some(side) = self.side_mut(provider) {
            side.watched = true;
        }
    }

    /// Claims the provider's fetch in shared data (compare-and-swap on the record) and starts
    /// it locally. The history merged on the way decides whether one is due at all.
    fn claim(&mut self, host: &mut impl Host, provider: ProviderId, reason: FetchReason) -> Claim {
        let me = self.me;
        let Some(entries) = self.side(provider).map(|s| s.entries.clone()) else {
            return Claim::NotDue;
        };
        for _ in 0..CAS_ATTEMPTS {
            let now = host.now();
            let read = read_record(host, &entries);
            let Some(cache) = self.keyring.remote_mut(provider) else {
                return Claim::NotDue;
            };
            if let Some((record, _)) = &read {
                cache.merge(record.history, record.claimed_by_other(me, now));
            }
            let due = match reason {
                FetchReason::Scheduled => cache.due_fetch(now),
                FetchReason::UnknownKid => cache.unknown_kid_refetch_due(now),
            };
            let Some(reason) = due else {
                return if cache.remote_fetch_until(now).is_some() {
                    Claim::HeldElsewhere
                } else {
                    Claim::NotDue
                };
            };
            // Start locally, then publish the claim; undone below if another worker won.
            let mut started = cache.clone();
            let fetch = started.start(now, reason);
            let record = FetchRecord {
                owner: me,
                claim_until: claim_end(&started, now),
                history: started.history(),
            };
            let cas = read.map(|(_, cas)| cas);
            match host.set_shared_data(&entries.record, &record.encode(&entries.namespace), cas) {
                Ok(SharedWrite::Stored) | Err(_) => {
                    // Without shared data (an error), the fetch is simply this worker's.
                    *cache = started;
                    return Claim::Won(fetch);
                }
                Ok(SharedWrite::CasMismatch) => continue,
            }
        }
        Claim::HeldElsewhere
    }

    /// Sends a JWKS or discovery callout; false if the host refused it (failure recorded).
    fn send_fetch(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        fetch: FetchRequest,
        owner: ContextId,
    ) -> bool {
        let headers = [
            (":method", "GET"),
            (":path", fetch.target.path.as_str()),
            (":authority", fetch.target.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "mcp-auth-filter"),
        ];
        let call = OutgoingCall {
            cluster: &fetch.cluster,
            headers: &headers,
            body: None,
            timeout: fetch.timeout,
        };
        let purpose = Purpose::Keys {
            provider,
            step: fetch.step,
        };
        if callouts.send(host, &call, purpose, owner).is_some() {
            return true;
        }
        self.fetch_failed(host, metrics, provider, &FetchFailure::ClusterRefused);
        if let Some(cache) = self.keyring.remote_mut(provider) {
            cache.on_failure(host.now(), FetchFailure::ClusterRefused);
        }
        self.release(host, provider);
        false
    }

    fn fetch_failed(
        &self,
        host: &mut impl Host,
        metrics: &Metrics,
        provider: ProviderId,
        failure: &FetchFailure,
    ) {
        metrics.jwks_fetch(host, false);
        log::warn!(
            "mcp_auth_filter: JWKS fetch for provider {} failed: {failure}",
            self.provider_name(provider)
        );
    }

    /// Ends our claim in the record (keeping the newest history of everyone), after our fetch
    /// succeeded, failed or was given up.
    fn release(&mut self, host: &mut impl Host, provider: ProviderId) {
        self.write_record(host, provider, |_, _| (0, UnixMillis(0)));
    }

    /// Extends our claim (a resent fetch has a new deadline).
    fn extend_claim(&mut self, host: &mut impl Host, provider: ProviderId, until: UnixMillis) {
        self.write_record(host, provider, move |me, _| (me, until));
    }

    /// Writes the record with our merged history; `claim` gives (owner, claim end) unless
    /// another worker holds a live claim, which is kept.
    fn write_record(
        &mut self,
        host: &mut impl Host,
        provider: ProviderId,
        claim: impl Fn(u64, UnixMillis) -> (u64, UnixMillis),
    ) {
        let me = self.me;
        let Some(entries) = self.side(provider).map(|s| s.entries.clone()) else {
            return;
        };
        for _ in 0..CAS_ATTEMPTS {
            let now = host.now();
            let read = read_record(host, &entries);
            let Some(cache) = self.keyring.remote_mut(provider) else {
                return;
            };
            let (owner, claim_until) = match &read {
                Some((record, _)) if record.claimed_by_other(me, now).is_some() => {
                    (record.owner, record.claim_until)
                }
                _ => claim(me, now),
            };
            if let Some((record, _)) = &read {
                cache.merge(record.history, None);
            }
            let record = FetchRecord {
                owner,
                claim_until,
                history: cache.history(),
            };
            let cas = read.map(|(_, cas)| cas);
            match host.set_shared_data(&entries.record, &record.encode(&entries.namespace), cas) {
                Ok(SharedWrite::CasMismatch) => continue,
                Ok(SharedWrite::Stored) | Err(_) => return,
            }
        }
    }

    fn publish(&mut self, host: &mut impl Host, provider: ProviderId, jwks: &[u8]) {
        let (Some(side), Some(cache)) = (self.side(provider), self.keyring.remote(provider)) else {
            return;
        };
        let value = SharedKeys {
            fetched_at: cache.fetched_at,
            refresh_at: cache.refresh_at(),
            jwks,
        }
        .encode(&side.entries.namespace);
        let name = side.entries.keys.clone();
        // Without a CAS: only the claim holder publishes, and readers adopt only newer keys.
        if let Ok(SharedWrite::Stored) = host.set_shared_data(&name, &value, None) {
            // Our own publication need not be read back.
            if let (Ok(Some(entry)), Some(side)) =
                (host.shared_data(&name), self.side_mut(provider))
            {
                side.keys_seen = Some(entry.cas);
            }
        }
    }

    // ---- replies -----------------------------------------------------------------------------

    /// Handles the reply to a key callout delivered to `active`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_reply(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        step: FetchStep,
        body_size: usize,
        active: ContextId,
    ) -> AfterReply {
        let now = host.now();
        let reply = Reply::read(host, body_size, MAX_JWKS_BYTES);
        let Some(cache) = self.keyring.remote_mut(provider) else {
            return AfterReply::KeepWaiting;
        };
        let outcome = match &reply.body {
            None => cache.on_failure(now, FetchFailure::TooLarge),
            Some(body) => cache.on_response(
                now,
                step,
                reply.status,
                reply.cache_control.as_deref(),
                body,
            ),
        };
        match outcome {
            FetchOutcome::KeysUpdated => {
                metrics.jwks_fetch(host, true);
                if let Some(body) = &reply.body {
                    self.publish(host, provider, body);
                }
                self.release(host, provider);
                let keys = self.keyring.keys(provider).map_or(0, |k| k.len());
                log::info!(
                    "mcp_auth_filter: loaded {keys} signing keys for provider {}",
                    self.provider_name(provider)
                );
            }
            FetchOutcome::FetchNext(next) => {
                // The JWKS fetch follows discovery; waiting requests keep waiting for it.
                if self.send_fetch(host, callouts, metrics, provider, next, active) {
                    return AfterReply::KeepWaiting;
                }
            }
            FetchOutcome::Failed(failure) => {
                self.fetch_failed(host, metrics, provider, &failure);
                self.release(host, provider);
            }
            FetchOutcome::Ignored => return AfterReply::KeepWaiting,
        }
        AfterReply::WakeWaiters
    }

    // ---- the tick ----------------------------------------------------------------------------

    /// Adopts keys other workers published; for a watched provider also notices that the
    /// other worker's fetch ended. True when the provider's waiting requests should be
    /// decided again.
    pub fn tick_shared(&mut self, host: &impl Host, provider: ProviderId) -> bool {
        let adopted = self.sync(host, provider);
        let now = host.now();
        let watched = self.side(provider).is_some_and(|s| s.watched);
        let fetch_ended = watched
            && self
                .keyring
                .remote(provider)
                .is_some_and(|c| c.remote_fetch_until(now).is_none());
        if adopted || fetch_ended {
            if let Some(side) = self.side_mut(provider) {
                side.watched = false;
            }
        }
        adopted || fetch_ended
    }

    /// Gives up on our fetch past its deadline. True when one was given up on.
    pub fn expire_overdue(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
    ) -> bool {
        let now = host.now();
        let overdue = self
            .keyring
            .remote_mut(provider)
            .is_some_and(|c| c.expire_overdue(now));
        if overdue {
            callouts.forget(|p| matches!(p, Purpose::Keys { provider: q, .. } if *q == provider));
            self.fetch_failed(host, metrics, provider, &FetchFailure::Deadline);
            self.release(host, provider);
        }
        overdue
    }

    /// Resends our fetch whose callout was lost with its context (from the root), keeping its
    /// claim and its place in the rate limit. `Some(false)` when the host refused it.
    pub fn resend_orphaned(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        root: ContextId,
    ) -> Option<bool> {
        let now = host.now();
        let cache = self.keyring.remote_mut(provider)?;
        let fetch = cache.resend(now)?;
        let until = claim_end(cache, now);
        self.extend_claim(host, provider, until);
        Some(self.send_fetch(host, callouts, metrics, provider, fetch, root))
    }

    /// Starts the first load, a retry after backoff or the background refresh, when due and
    /// no other worker is at it. `Some(false)` when one was due but the host refused it.
    pub fn start_due_fetch(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: ProviderId,
        root: ContextId,
    ) -> Option<bool> {
        let now = host.now();
        self.keyring.remote(provider)?.due_fetch(now)?;
        match self.start_fetch(
            host,
            callouts,
            metrics,
            provider,
            FetchReason::Scheduled,
            root,
        ) {
            FetchStart::Started | FetchStart::Elsewhere => Some(true),
            FetchStart::NotDue => None,
            FetchStart::Refused => Some(false),
        }
    }

    /// The context that sent this provider's fetch ended: its reply will never come.
    pub fn orphan(&mut self, provider: ProviderId) {
        if let Some(cache) = self.keyring.remote_mut(provider) {
            cache.orphan_fetch();
        }
    }
}

enum FetchStart {
    Started,
    Elsewhere,
    NotDue,
    Refused,
}

enum Claim {
    Won(FetchRequest),
    HeldElsewhere,
    NotDue,
}

/// How long a claim lasts: the fetch's own deadline (a discovery and a JWKS fetch) plus grace.
fn claim_end(cache: &JwksCache, now: UnixMillis) -> UnixMillis {
    cache.wait_deadline(now).plus(DEADLINE_GRACE)
}

fn read_record(host: &impl Host, entries: &KeyEntries) -> Option<(FetchRecord, Cas)> {
    let entry = host.shared_data(&entries.record).ok().flatten()?;
    let record = FetchRecord::decode(&entry.value, &entries.namespace)?;
    Some((record, entry.cas))
}
