//! The life of one provider's remote keys: first fetch, background refresh, backoff after a
//! failure, and the rate-limited refetch when a token names a `kid` we do not know.
//!
//! This is a pure state machine: it says when to fetch and what to fetch; the proxy-wasm layer
//! performs the callout and reports the result. Times are milliseconds since the epoch.

use std::time::Duration;

use serde_json::Value;

use crate::config::{http_target, FetchTarget, HttpTarget, RemoteKeys};
use crate::jwks::KeySet;

/// Bounds on a `Cache-Control: max-age` from the IdP, so that a bad header can neither make us
/// hammer the IdP nor keep keys for days.
const MIN_MAX_AGE: Duration = Duration::from_secs(30);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Grace added to the callout timeout before we stop waiting for a reply the host never sent.
const DEADLINE_GRACE_MS: u64 = 1_000;
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// A fetch the proxy-wasm layer should perform now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub cluster: String,
    pub target: HttpTarget,
    pub timeout: Duration,
    pub is_discovery: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// New keys are installed; parked requests can be decided.
    KeysUpdated,
    /// The discovery document named the JWKS; fetch it now (the fetch is already in flight
    /// from the cache's point of view).
    FetchNext(FetchRequest),
    /// The fetch failed; the last good keys (if any) stay in use.
    Failed(String),
}

/// Availability of keys for a request that needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// A fetch is in flight or may start now: the request should wait for it.
    Loading,
    /// No keys, and the last fetch failed recently: fail now rather than wait.
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct JwksCache {
    settings: RemoteKeys,
    keys: Option<KeySet>,
    /// Where the JWKS lives once known (from the config or from discovery).
    jwks_target: Option<HttpTarget>,
    in_flight: Option<InFlight>,
    /// When the current keys should be refreshed in the background.
    refresh_at: u64,
    /// Earliest time of the next attempt after a failure.
    retry_at: u64,
    last_fetch_started: Option<u64>,
    /// Millisecond timestamp of the keys' fetch, for cross-worker sharing (newer wins).
    pub fetched_at: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    deadline: u64,
}

impl JwksCache {
    pub fn new(settings: RemoteKeys) -> JwksCache {
        let jwks_target = match &settings.start {
            FetchTarget::Jwks(t) => Some(t.clone()),
            FetchTarget::Discovery(_) => None,
        };
        JwksCache {
            settings,
            keys: None,
            jwks_target,
            in_flight: None,
            refresh_at: 0,
            retry_at: 0,
            last_fetch_started: None,
            fetched_at: 0,
            last_error: None,
        }
    }

    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    pub fn is_fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    pub fn availability(&self, now: u64) -> Availability {
        if self.keys.is_some() {
            Availability::Ready
        } else if self.in_flight.is_some() || now >= self.retry_at {
            Availability::Loading
        } else {
            Availability::Unavailable
        }
    }

    /// A fetch to start now, if one is due: the first load, a retry after the backoff, or the
    /// background refresh before the keys go stale.
    pub fn due_fetch(&mut self, now: u64) -> Option<FetchRequest> {
        if self.in_flight.is_some() || now < self.retry_at {
            return None;
        }
        if self.keys.is_none() || now >= self.refresh_at {
            return Some(self.start(now));
        }
        None
    }

    /// Whether a token with an unknown `kid` may wait for a refetch: one is in flight, or the
    /// last fetch started at least `unknown_kid_refetch_interval` ago.
    pub fn may_refetch_for_unknown_kid(&self, now: u64) -> bool {
        if self.in_flight.is_some() {
            return true;
        }
        let interval = self.settings.unknown_kid_refetch_interval.as_millis() as u64;
        match self.last_fetch_started {
            Some(t) => now.saturating_sub(t) >= interval && now >= self.retry_at,
            None => true,
        }
    }

    /// Starts the refetch for an unknown `kid` (if none is in flight and the rate limit allows).
    pub fn refetch_for_unknown_kid(&mut self, now: u64) -> Option<FetchRequest> {
        if self.in_flight.is_none() && self.may_refetch_for_unknown_kid(now) {
            Some(self.start(now))
        } else {
            None
        }
    }

    fn start(&mut self, now: u64) -> FetchRequest {
        let timeout = self.settings.timeout;
        self.in_flight = Some(InFlight {
            deadline: now + timeout.as_millis() as u64 + DEADLINE_GRACE_MS,
        });
        self.last_fetch_started = Some(now);
        let (target, is_discovery) = match (&self.jwks_target, &self.settings.start) {
            (Some(t), _) => (t.clone(), false),
            (None, FetchTarget::Discovery(t)) => (t.clone(), true),
            (None, FetchTarget::Jwks(t)) => (t.clone(), false),
        };
        FetchRequest {
            cluster: self.settings.cluster.clone(),
            target,
            timeout,
            is_discovery,
        }
    }

    /// True when the in-flight fetch has outlived its deadline without a reply; the fetch is
    /// then counted as failed.
    pub fn expire_overdue(&mut self, now: u64) -> bool {
        match self.in_flight {
            Some(f) if now > f.deadline => {
                self.fail(now, "JWKS fetch got no reply before its deadline".into());
                true
            }
            _ => false,
        }
    }

    /// The context that owned the callout went away before its reply: forget the fetch so the
    /// next tick starts another one at once.
    pub fn abandon_fetch(&mut self) {
        self.in_flight = None;
    }

    /// Records a transport failure (no reply, cluster unknown, timeout).
    pub fn on_failure(&mut self, now: u64, reason: String) -> FetchOutcome {
        self.fail(now, reason.clone());
        FetchOutcome::Failed(reason)
    }

    fn fail(&mut self, now: u64, reason: String) {
        self.in_flight = None;
        self.retry_at = now + self.settings.failed_refetch_duration.as_millis() as u64;
        // With last good keys in hand, the next background refresh waits for the backoff too.
        if self.keys.is_some() {
            self.refresh_at = self.retry_at;
        }
        self.last_error = Some(reason);
    }

    /// Records an HTTP reply to the fetch started last.
    pub fn on_response(
        &mut self,
        now: u64,
        is_discovery: bool,
        status: Option<u16>,
        cache_control: Option<&str>,
        body: &[u8],
    ) -> FetchOutcome {
        if self.in_flight.is_none() {
            // A reply after we gave up on it (deadline passed): ignore, the state moved on.
            return FetchOutcome::Failed("late reply ignored".into());
        }
        match status {
            Some(200) => {}
            Some(s) => return self.on_failure(now, format!("HTTP status {s}")),
            None => {
                return self.on_failure(
                    now,
                    "no HTTP status (connection failed or timed out)".into(),
                )
            }
        }
        if is_discovery {
            return match self.read_discovery(body) {
                Ok(target) => {
                    self.jwks_target = Some(target);
                    // Keep the fetch in flight: the JWKS request follows at once.
                    FetchOutcome::FetchNext(self.start(now))
                }
                Err(reason) => self.on_failure(now, reason),
            };
        }
        match KeySet::parse(body) {
            Ok(keys) => {
                let ttl = max_age(cache_control).unwrap_or(self.settings.cache_duration);
                self.install(keys, now, now + refresh_delay_ms(ttl));
                FetchOutcome::KeysUpdated
            }
            Err(e) => {
                // Discovery may have pointed somewhere stale: discover again next time.
                if matches!(self.settings.start, FetchTarget::Discovery(_)) {
                    self.jwks_target = None;
                }
                self.on_failure(now, e.to_string())
            }
        }
    }

    /// Installs keys fetched by another worker (shared data) if they are newer than ours.
    pub fn adopt_shared(&mut self, body: &[u8], fetched_at: u64, refresh_at: u64) -> bool {
        if fetched_at <= self.fetched_at {
            return false;
        }
        match KeySet::parse(body) {
            Ok(keys) => {
                self.install(keys, fetched_at, refresh_at);
                true
            }
            Err(_) => false,
        }
    }

    fn install(&mut self, keys: KeySet, fetched_at: u64, refresh_at: u64) {
        self.keys = Some(keys);
        self.fetched_at = fetched_at;
        self.refresh_at = refresh_at;
        self.retry_at = 0;
        self.in_flight = None;
        self.last_error = None;
    }

    /// The callout timeout configured for this provider.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    pub fn refresh_at(&self) -> u64 {
        self.refresh_at
    }

    fn read_discovery(&self, body: &[u8]) -> Result<HttpTarget, String> {
        if body.len() > MAX_DISCOVERY_BYTES {
            return Err("OpenID configuration too large".into());
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| format!("OpenID configuration is not JSON ({e})"))?;
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("OpenID configuration has no jwks_uri")?;
        http_target("jwks_uri", uri).map_err(|e| e.to_string())
    }
}

/// Refresh a little before the keys go stale, so requests never wait on a refresh.
fn refresh_delay_ms(ttl: Duration) -> u64 {
    let ttl = ttl.as_millis() as u64;
    ttl - ttl / 10
}

/// `max-age` from a `Cache-Control` header, clamped; `no-cache`/`no-store` count as the minimum.
pub fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let header = cache_control?;
    let mut result = None;
    for directive in header.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(MIN_MAX_AGE);
        }
        if let Some(v) = directive.strip_prefix("max-age=") {
            let secs: u64 = v.trim_matches('"').parse().ok()?;
            result = Some(Duration::from_secs(secs).clamp(MIN_MAX_AGE, MAX_MAX_AGE));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn settings(start: FetchTarget) -> RemoteKeys {
        RemoteKeys {
            cluster: "idp".into(),
            start,
            timeout: Duration::from_secs(5),
            cache_duration: Duration::from_secs(600),
            failed_refetch_duration: Duration::from_secs(1),
            unknown_kid_refetch_interval: Duration::from_secs(30),
        }
    }

    fn jwks_target() -> FetchTarget {
        FetchTarget::Jwks(HttpTarget {
            authority: "idp".into(),
            path: "/jwks".into(),
        })
    }

    fn good_jwks() -> Vec<u8> {
        jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])
    }

    #[test]
    fn first_fetch_then_background_refresh_before_expiry() {
        let mut c = JwksCache::new(settings(jwks_target()));
        assert_eq!(c.availability(0), Availability::Loading);
        let f = c.due_fetch(1_000).unwrap();
        assert_eq!(f.target.path, "/jwks");
        assert!(!f.is_discovery);
        assert_eq!(c.due_fetch(1_001), None, "one fetch at a time");
        assert_eq!(
            c.on_response(2_000, false, Some(200), None, &good_jwks()),
            FetchOutcome::KeysUpdated
        );
        assert_eq!(c.availability(2_000), Availability::Ready);
        // Refresh at 90% of the configured 600 s.
        assert_eq!(c.refresh_at(), 2_000 + 540_000);
        assert_eq!(c.due_fetch(2_000 + 539_999), None);
        assert!(c.due_fetch(2_000 + 540_000).is_some());
    }

    #[test]
    fn cache_control_max_age_is_honoured_and_clamped() {
        let mut c = JwksCache::new(settings(jwks_target()));
        c.due_fetch(0).unwrap();
        c.on_response(
            0,
            false,
            Some(200),
            Some("public, max-age=100"),
            &good_jwks(),
        );
        assert_eq!(c.refresh_at(), 90_000);
        assert_eq!(max_age(Some("max-age=1")), Some(MIN_MAX_AGE));
        assert_eq!(max_age(Some("max-age=99999999")), Some(MAX_MAX_AGE));
        assert_eq!(max_age(Some("no-store")), Some(MIN_MAX_AGE));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(Some("max-age=abc")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn failed_refresh_keeps_last_good_keys_and_backs_off() {
        let mut c = JwksCache::new(settings(jwks_target()));
        c.due_fetch(0).unwrap();
        c.on_response(0, false, Some(200), None, &good_jwks());
        let t = c.refresh_at();
        c.due_fetch(t).unwrap();
        assert!(matches!(
            c.on_response(t, false, Some(500), None, b"oops"),
            FetchOutcome::Failed(_)
        ));
        assert_eq!(
            c.availability(t),
            Availability::Ready,
            "last good keys stay"
        );
        assert!(c.keys().unwrap().contains_kid("rsa-1"));
        assert_eq!(c.due_fetch(t + 999), None, "backoff");
        assert!(c.due_fetch(t + 1_000).is_some());
        // A garbage body is a failure too, and keeps the keys.
        assert!(matches!(
            c.on_response(t + 1_000, false, Some(200), None, b"{}"),
            FetchOutcome::Failed(_)
        ));
        assert!(c.keys().is_some());
    }

    #[test]
    fn without_keys_a_failure_makes_requests_fail_fast_until_the_retry() {
        let mut c = JwksCache::new(settings(jwks_target()));
        c.due_fetch(0).unwrap();
        c.on_failure(10, "connect failed".into());
        assert_eq!(c.availability(500), Availability::Unavailable);
        assert_eq!(c.availability(1_010), Availability::Loading);
        assert!(c.due_fetch(1_010).is_some());
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut c = JwksCache::new(settings(jwks_target()));
        c.due_fetch(0).unwrap();
        c.on_response(0, false, Some(200), None, &good_jwks());
        assert!(!c.may_refetch_for_unknown_kid(29_999));
        assert_eq!(c.refetch_for_unknown_kid(29_999), None);
        assert!(c.refetch_for_unknown_kid(30_000).is_some());
        // While in flight, others may wait for it, but no second fetch starts.
        assert!(c.may_refetch_for_unknown_kid(30_001));
        assert_eq!(c.refetch_for_unknown_kid(30_001), None);
        c.on_response(30_100, false, Some(200), None, &good_jwks());
        assert!(!c.may_refetch_for_unknown_kid(30_200));
    }

    #[test]
    fn overdue_fetch_is_expired() {
        let mut c = JwksCache::new(settings(jwks_target()));
        c.due_fetch(0).unwrap();
        assert!(!c.expire_overdue(6_000));
        assert!(c.expire_overdue(6_001));
        assert!(!c.is_fetching());
        // A reply that arrives after that is ignored.
        assert!(matches!(
            c.on_response(7_000, false, Some(200), None, &good_jwks()),
            FetchOutcome::Failed(_)
        ));
        assert!(c.keys().is_none());
    }

    #[test]
    fn discovery_then_jwks() {
        let mut c = JwksCache::new(settings(FetchTarget::Discovery(HttpTarget {
            authority: "idp:9000".into(),
            path: "/.well-known/openid-configuration".into(),
        })));
        let f = c.due_fetch(0).unwrap();
        assert!(f.is_discovery);
        let doc = br#"{"issuer":"http://idp:9000","jwks_uri":"http://idp:9000/keys?v=1"}"#;
        let FetchOutcome::FetchNext(next) = c.on_response(5, true, Some(200), None, doc) else {
            panic!("expected the JWKS fetch next")
        };
        assert_eq!(
            next.target,
            HttpTarget {
                authority: "idp:9000".into(),
                path: "/keys?v=1".into()
            }
        );
        assert!(!next.is_discovery);
        assert_eq!(
            c.on_response(6, false, Some(200), None, &good_jwks()),
            FetchOutcome::KeysUpdated
        );
        // The refresh goes straight to the JWKS.
        let refresh = c.due_fetch(c.refresh_at()).unwrap();
        assert!(!refresh.is_discovery);

        let mut bad = JwksCache::new(settings(FetchTarget::Discovery(HttpTarget {
            authority: "idp".into(),
            path: "/.well-known/openid-configuration".into(),
        })));
        bad.due_fetch(0).unwrap();
        assert!(matches!(
            bad.on_response(1, true, Some(200), None, b"{}"),
            FetchOutcome::Failed(_)
        ));
    }

    #[test]
    fn shared_keys_from_another_worker_are_adopted_when_newer() {
        let mut c = JwksCache::new(settings(jwks_target()));
        assert!(c.adopt_shared(&good_jwks(), 100, 5_000));
        assert_eq!(c.availability(200), Availability::Ready);
        assert_eq!(c.due_fetch(4_999), None);
        assert!(!c.adopt_shared(&good_jwks(), 100, 9_000), "not newer");
        assert!(!c.adopt_shared(b"garbage", 200, 9_000));
    }
}
