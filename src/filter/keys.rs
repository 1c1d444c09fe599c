//! The worker's signing keys: fetches (JWKS and discovery callouts), their replies, and keys
//! shared with the other workers through proxy-wasm shared data.

use mcp_auth_core::authenticator::{Keyring, WaitFor};
use mcp_auth_core::config::Config;
use mcp_auth_core::jwks::MAX_JWKS_BYTES;
use mcp_auth_core::jwks_cache::{FetchOutcome, FetchRequest};

use crate::filter::callouts::{Callouts, KeyFetchStep, Purpose, Reply};
use crate::filter::host::{Cas, ContextId, Host, OutgoingCall};
use crate::filter::metrics::Metrics;
use crate::filter::shared::SharedKeys;

/// Grace beyond a callout's own timeout before a waiting request is given up on.
pub const WAIT_GRACE_MS: u64 = 1_000;

/// What a key callout's reply means for the requests waiting on that provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReply {
    /// Keys changed or the fetch failed: decide the waiting requests again.
    WakeWaiters,
    /// The JWKS fetch follows the discovery document: keep waiting.
    KeepWaiting,
}

pub struct KeyLoader {
    keyring: Keyring,
    provider_names: Vec<String>,
    /// Shared-data key per provider, and the CAS of the value last read from it.
    shared_names: Vec<String>,
    last_seen: Vec<Option<Cas>>,
}

impl KeyLoader {
    pub fn new(config: &Config) -> KeyLoader {
        let provider_names: Vec<String> = config.providers.iter().map(|p| p.name.clone()).collect();
        KeyLoader {
            keyring: Keyring::new(config),
            shared_names: provider_names.iter().map(|n| SharedKeys::name(n)).collect(),
            last_seen: vec![None; provider_names.len()],
            provider_names,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn has_remote_keys(&self) -> bool {
        (0..self.keyring.len()).any(|p| self.keyring.remote(p).is_some())
    }

    /// Until when a request may wait for this provider's keys: a discovery fetch and a JWKS
    /// fetch, plus grace.
    pub fn wait_deadline(&self, provider: usize, now_ms: u64) -> u64 {
        let timeout = self
            .keyring
            .remote(provider)
            .map_or(0, |c| c.timeout().as_millis() as u64);
        now_ms + 2 * timeout + WAIT_GRACE_MS
    }

    /// Makes sure a fetch a request can wait for is in flight, starting one if allowed
    /// (`may_fetch`) and due. False when there is nothing to wait for.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_for_waiter(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: usize,
        wait_for: WaitFor,
        may_fetch: bool,
        owner: ContextId,
    ) -> bool {
        let now = host.now_ms();
        if self
            .keyring
            .remote(provider)
            .is_some_and(|c| c.is_fetching())
        {
            return true;
        }
        let fetch = if may_fetch {
            self.keyring.fetch_for(provider, wait_for, now)
        } else {
            None
        };
        match fetch {
            Some(fetch) => self.send_fetch(host, callouts, metrics, provider, fetch, owner),
            None => false,
        }
    }

    /// Sends a JWKS or discovery callout; false if the host refused it (failure recorded).
    fn send_fetch(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: usize,
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
        let step = if fetch.is_discovery {
            KeyFetchStep::Discovery
        } else {
            KeyFetchStep::Jwks
        };
        let purpose = Purpose::Keys { provider, step };
        if callouts.send(host, &call, purpose, owner).is_some() {
            return true;
        }
        let reason = format!("cluster {:?} refused the callout", fetch.cluster);
        self.fetch_failed(host, metrics, provider, &reason);
        if let Some(cache) = self.keyring.remote_mut(provider) {
            cache.on_failure(host.now_ms(), reason);
        }
        false
    }

    fn fetch_failed(&self, host: &mut impl Host, metrics: &Metrics, provider: usize, reason: &str) {
        metrics.jwks_fetch(host, false);
        log::warn!(
            "mcp_auth_filter: JWKS fetch for provider {} failed: {reason}",
            self.provider_name(provider)
        );
    }

    fn provider_name(&self, provider: usize) -> &str {
        self.provider_names
            .get(provider)
            .map_or("?", String::as_str)
    }

    /// Handles the reply to a key callout delivered to `active`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_reply(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: usize,
        step: KeyFetchStep,
        body_size: usize,
        active: ContextId,
    ) -> AfterReply {
        let now = host.now_ms();
        let reply = Reply::read(host, body_size, MAX_JWKS_BYTES);
        let Some(cache) = self.keyring.remote_mut(provider) else {
            return AfterReply::KeepWaiting;
        };
        let outcome = match &reply.body {
            None => cache.on_failure(now, "response too large".into()),
            Some(body) => cache.on_response(
                now,
                step == KeyFetchStep::Discovery,
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
            FetchOutcome::Failed(reason) => self.fetch_failed(host, metrics, provider, &reason),
        }
        AfterReply::WakeWaiters
    }

    /// Providers whose keys are fetched (and so need the periodic work below).
    pub fn remote_providers(&self) -> Vec<usize> {
        (0..self.keyring.len())
            .filter(|p| self.keyring.remote(*p).is_some())
            .collect()
    }

    /// Gives up on a fetch past its deadline. True when one was given up on.
    pub fn expire_overdue(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: usize,
    ) -> bool {
        let now = host.now_ms();
        let overdue = self
            .keyring
            .remote_mut(provider)
            .is_some_and(|c| c.expire_overdue(now));
        if overdue {
            callouts.forget(|p| matches!(p, Purpose::Keys { provider: q, .. } if *q == provider));
            self.fetch_failed(host, metrics, provider, "no reply before the deadline");
        }
        overdue
    }

    /// Starts the first load, a retry after backoff or the background refresh, when due.
    /// `Some(false)` when one was due but the host refused the callout.
    pub fn start_due_fetch(
        &mut self,
        host: &mut impl Host,
        callouts: &mut Callouts,
        metrics: &Metrics,
        provider: usize,
        root: ContextId,
    ) -> Option<bool> {
        let now = host.now_ms();
        let fetch = self.keyring.remote_mut(provider)?.due_fetch(now)?;
        Some(self.send_fetch(host, callouts, metrics, provider, fetch, root))
    }

    /// The context that owned this provider's fetch ended: its reply will never come.
    pub fn abandon(&mut self, provider: usize) {
        if let Some(cache) = self.keyring.remote_mut(provider) {
            cache.abandon_fetch();
        }
    }

    fn publish(&mut self, host: &mut impl Host, provider: usize, jwks: &[u8]) {
        let (Some(name), Some(cache)) = (
            self.shared_names.get(provider),
            self.keyring.remote(provider),
        ) else {
            return;
        };
        let value = SharedKeys {
            fetched_at_ms: cache.fetched_at,
            refresh_at_ms: cache.refresh_at(),
            jwks,
        }
        .encode();
        // Without a CAS: the newest fetch wins, and readers only adopt newer keys anyway.
        let _ = host.set_shared_data(name, &value, None);
    }

    /// Adopts keys another worker published, if newer than ours. True when adopted.
    pub fn adopt_shared(&mut self, host: &mut impl Host, provider: usize) -> bool {
        let Some(name) = self.shared_names.get(provider) else {
            return false;
        };
        let Ok(Some(entry)) = host.shared_data(name) else {
            return false;
        };
        if self.last_seen.get(provider).copied().flatten() == Some(entry.cas) {
            return false;
        }
        if let Some(slot) = self.last_seen.get_mut(provider) {
            *slot = Some(entry.cas);
        }
        let Some(shared) = SharedKeys::decode(&entry.value) else {
            return false;
        };
        self.keyring.remote_mut(provider).is_some_and(|c| {
            !c.is_fetching()
                && c.adopt_shared(shared.jwks, shared.fetched_at_ms, shared.refresh_at_ms)
        })
    }
}
