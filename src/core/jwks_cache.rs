//! The life of one provider's remote keys: first fetch, background refresh, backoff after a
//! failure, the rate-limited refetch when a token names a `kid` we do not know, and checked
//! OIDC discovery.
//!
//! A pure state machine: it says when to fetch and what to fetch; the proxy-wasm layer performs
//! the callout and reports the result. It also merges what the other workers of the Envoy did
//! ([`FetchHistory`], through shared data), so that the whole Envoy makes one fetch at a time
//! per provider and one unknown-`kid` refetch per interval. Times are ms since the epoch.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::config::{http_target, Discovery, FetchTarget, HttpTarget, RemoteKeys};
use crate::jwks::{JwksError, KeySet};
use crate::time::UnixMillis;

/// Bounds on a `Cache-Control: max-age` from the IdP, so that a bad header can neither make us
/// hammer the IdP nor keep keys for days.
const MIN_MAX_AGE: Duration = Duration::from_secs(30);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Grace added to the callout timeout before we stop waiting for a reply the host never sent.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(1);
/// No unknown-`kid` refetch sooner than this after any fetch: a key published right after a
/// fetch is picked up within seconds, and a flood of unknown kids cannot follow one fetch with
/// another.
pub const MIN_REFETCH_SPACING: Duration = Duration::from_secs(2);
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// Which document a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStep {
    /// The issuer's OpenID configuration, which names the JWKS.
    Discovery,
    Jwks,
}

/// Why a fetch starts: only unknown-`kid` refetches count against
/// `unknown_kid_refetch_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    /// The first load, a retry after backoff, or the background refresh.
    Scheduled,
    UnknownKid,
}

/// A fetch the proxy-wasm layer should perform now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub cluster: String,
    pub target: HttpTarget,
    pub timeout: Duration,
    pub step: FetchStep,
}

/// Why a fetch produced no keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// No HTTP status: connection failed, reset or timed out in Envoy.
    NoResponse,
    Status(u16),
    /// The reply was larger than a key set (or discovery document) may be.
    TooLarge,
    /// The host refused to send the callout (unknown cluster).
    ClusterRefused,
    /// No reply before the deadline.
    Deadline,
    Keys(JwksError),
    Discovery(DiscoveryError),
}

/// Why an OpenID configuration was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    TooLarge,
    NotJson,
    /// `issuer` differs from the configured issuer (OIDC Discovery 1.0 §4.3).
    IssuerMismatch,
    NoJwksUri,
    BadJwksUri,
    /// `jwks_uri` is on an origin that neither the issuer has nor `allowed_jwks_origins` lists.
    JwksOriginNotAllowed,
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchFailure::NoResponse => {
                f.write_str("no HTTP status (connection failed or timed out)")
            }
            FetchFailure::Status(s) => write!(f, "HTTP status {s}"),
            FetchFailure::TooLarge => f.write_str("response too large"),
            FetchFailure::ClusterRefused => f.write_str("the cluster refused the callout"),
            FetchFailure::Deadline => f.write_str("no reply before the deadline"),
            FetchFailure::Keys(e) => write!(f, "{e}"),
            FetchFailure::Discovery(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiscoveryError::TooLarge => "OpenID configuration too large",
            DiscoveryError::NotJson => "OpenID configuration is not JSON",
            DiscoveryError::IssuerMismatch => {
                "OpenID configuration names another issuer than the configured one"
            }
            DiscoveryError::NoJwksUri => "OpenID configuration has no jwks_uri",
            DiscoveryError::BadJwksUri => "OpenID configuration has an unusable jwks_uri",
            DiscoveryError::JwksOriginNotAllowed => {
                "jwks_uri is on another origin than the issuer (allow it in allowed_jwks_origins)"
            }
        })
    }
}

impl std::error::Error for FetchFailure {}
impl std::error::Error for DiscoveryError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// New keys are installed; parked requests can be decided.
    KeysUpdated,
    /// The discovery document named the JWKS; fetch it now (the fetch stays in flight).
    FetchNext(FetchRequest),
    /// The fetch failed; the last good keys (if any) stay in use.
    Failed(FetchFailure),
    /// A reply to a fetch given up on (deadline passed): the state moved on.
    Ignored,
}

/// Availability of keys for a request that needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// A fetch is in flight (here or in another worker) or may start now: wait for it.
    Loading,
    /// No keys, and the last fetch failed recently: fail now rather than wait.
    Unavailable,
}

/// What every worker of the Envoy needs to know about a provider's fetches, shared through
/// shared data and merged by each (`UnixMillis(0)`: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchHistory {
    /// Start of the last fetch of any kind.
    pub last_fetch_at: UnixMillis,
    /// Start of the last unknown-`kid` refetch.
    pub last_unknown_kid_at: UnixMillis,
    /// No fetch before this (backoff after a failure).
    pub retry_at: UnixMillis,
    /// When the newest published keys were fetched.
    pub keys_fetched_at: UnixMillis,
}

#[derive(Debug, Clone)]
pub struct JwksCache {
    settings: RemoteKeys,
    keys: Option<KeySet>,
    /// Where the JWKS lives once known (from the config or from discovery).
    jwks_target: Option<HttpTarget>,
    in_flight: Option<InFlight>,
    /// Until when another worker's fetch is under way (its claim, from shared data).
    remote_fetch_until: Option<UnixMillis>,
    /// When the current keys should be refreshed in the background.
    refresh_at: UnixMillis,
    history: FetchHistory,
    /// When the keys in use were fetched, here or by another worker (newer wins).
    pub fetched_at: UnixMillis,
    pub last_error: Option<FetchFailure>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    deadline: UnixMillis,
    /// The callout's context went away: its reply will never come; send it again.
    orphaned: bool,
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
            remote_fetch_until: None,
            refresh_at: UnixMillis(0),
            history: FetchHistory::default(),
            fetched_at: UnixMillis(0),
            last_error: None,
        }
    }

    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// A fetch of ours is in flight.
    pub fn is_fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Another worker's fetch is under way (until when).
    pub fn remote_fetch_until(&self, now: UnixMillis) -> Option<UnixMillis> {
        self.remote_fetch_until.filter(|until| now < *until)
    }

    fn fetch_under_way(&self, now: UnixMillis) -> bool {
        self.is_fetching() || self.remote_fetch_until(now).is_some()
    }

    pub fn availability(&self, now: UnixMillis) -> Availability {
        if self.keys.is_some() {
            Availability::Ready
        } else if self.fetch_under_way(now) || now >= self.history.retry_at {
            Availability::Loading
        } else {
            Availability::Unavailable
        }
    }

    /// A scheduled fetch due now: the first load, a retry after the backoff, or the background
    /// refresh before the keys go stale. None while any fetch is under way.
    pub fn due_fetch(&self, now: UnixMillis) -> Option<FetchReason> {
        if self.fetch_under_way(now) || now < self.history.retry_at {
            return None;
        }
        (self.keys.is_none() || now >= self.refresh_at).then_some(FetchReason::Scheduled)
    }

    /// Whether a token with an unknown `kid` may wait for a refetch: one is under way (here or
    /// in another worker), or one may start now.
    pub fn may_refetch_for_unknown_kid(&self, now: UnixMillis) -> bool {
        self.fetch_under_way(now) || self.unknown_kid_refetch_allowed(now)
    }

    /// An unknown-`kid` refetch may start now: none for `unknown_kid_refetch_interval`, no
    /// fetch at all for `MIN_REFETCH_SPACING_MS`, and no backoff.
    fn unknown_kid_refetch_allowed(&self, now: UnixMillis) -> bool {
        let h = &self.history;
        let never = UnixMillis(0);
        let interval = self.settings.unknown_kid_refetch_interval;
        now >= h.retry_at
            && (h.last_fetch_at == never || now >= h.last_fetch_at.plus(MIN_REFETCH_SPACING))
            && (h.last_unknown_kid_at == never || now >= h.last_unknown_kid_at.plus(interval))
    }

    /// The unknown-`kid` refetch to start now, if allowed and no fetch is under way.
    pub fn unknown_kid_refetch_due(&self, now: UnixMillis) -> Option<FetchReason> {
        (!self.fetch_under_way(now) && self.unknown_kid_refetch_allowed(now))
            .then_some(FetchReason::UnknownKid)
    }

    /// Starts a fetch (the caller checked it is due).
    pub fn start(&mut self, now: UnixMillis, reason: FetchReason) -> FetchRequest {
        self.history.last_fetch_at = now;
        if reason == FetchReason::UnknownKid {
            self.history.last_unknown_kid_at = now;
        }
        self.begin(now)
    }

    fn begin(&mut self, now: UnixMillis) -> FetchRequest {
        let timeout = self.settings.timeout;
        self.in_flight = Some(InFlight {
            deadline: now.plus(timeout).plus(DEADLINE_GRACE),
            orphaned: false,
        });
        let (target, step) = match (&self.jwks_target, &self.settings.start) {
            (Some(t), _) => (t.clone(), FetchStep::Jwks),
            (None, FetchTarget::Discovery(d)) => (d.target.clone(), FetchStep::Discovery),
            (None, FetchTarget::Jwks(t)) => (t.clone(), FetchStep::Jwks),
        };
        FetchRequest {
            cluster: self.settings.cluster.clone(),
            target,
            timeout,
            step,
        }
    }

    /// Until when a request waiting for keys may wait: for our fetch (a discovery and a JWKS
    /// fetch) or another worker's, plus grace.
    pub fn wait_deadline(&self, now: UnixMillis) -> UnixMillis {
        let timeout = self.settings.timeout;
        match self.remote_fetch_until(now) {
            Some(until) if !self.is_fetching() => until.plus(DEADLINE_GRACE),
            _ => now.plus(timeout).plus(timeout).plus(DEADLINE_GRACE),
        }
    }

    /// True when our fetch has outlived its deadline without a reply; it then counts as failed.
    pub fn expire_overdue(&mut self, now: UnixMillis) -> bool {
        match self.in_flight {
            Some(f) if now > f.deadline => {
                self.fail(now, FetchFailure::Deadline);
                true
            }
            _ => false,
        }
    }

    /// The context that sent our fetch went away: the fetch stays ours (its rate-limit slot is
    /// not given back) and is sent again by [`JwksCache::resend`].
    pub fn orphan_fetch(&mut self) {
        if let Some(f) = self.in_flight.as_mut() {
            f.orphaned = true;
        }
    }

    /// The fetch to send again because its callout was lost with its context.
    pub fn resend(&mut self, now: UnixMillis) -> Option<FetchRequest> {
        self.in_flight.filter(|f| f.orphaned)?;
        Some(self.begin(now))
    }

    /// Records a failure to send or to get a reply.
    pub fn on_failure(&mut self, now: UnixMillis, failure: FetchFailure) -> FetchOutcome {
        self.fail(now, failure.clone());
        FetchOutcome::Failed(failure)
    }

    fn fail(&mut self, now: UnixMillis, failure: FetchFailure) {
        self.in_flight = None;
        self.history.retry_at = now.plus(self.settings.failed_refetch_duration);
        // With last good keys in hand, the next background refresh waits for the backoff too.
        if self.keys.is_some() {
            self.refresh_at = self.history.retry_at;
        }
        self.last_error = Some(failure);
    }

    /// Records an HTTP reply to our fetch of `step`.
    pub fn on_response(
        &mut self,
        now: UnixMillis,
        step: FetchStep,
        status: Option<u16>,
        cache_control: Option<&str>,
        body: &[u8],
    ) -> FetchOutcome {
        if self.in_flight.is_none() {
            return FetchOutcome::Ignored;
        }
        match status {
            Some(200) => {}
            Some(s) => return self.on_failure(now, FetchFailure::Status(s)),
            None => return self.on_failure(now, FetchFailure::NoResponse),
        }
        if step == FetchStep::Discovery {
            return match self.read_discovery(body) {
                Ok(target) => {
                    self.jwks_target = Some(target);
                    // The fetch stays in flight: the JWKS request follows at once.
                    FetchOutcome::FetchNext(self.begin(now))
                }
                Err(e) => self.on_failure(now, FetchFailure::Discovery(e)),
            };
        }
        match KeySet::parse(body) {
            Ok(keys) => {
                let ttl = max_age(cache_control).unwrap_or(self.settings.cache_duration);
                self.install(keys, now, now.plus(refresh_delay(ttl)));
                self.history.keys_fetched_at = now;
                FetchOutcome::KeysUpdated
            }
            Err(e) => {
                // Discovery may have pointed somewhere stale: discover again next time.
                if matches!(self.settings.start, FetchTarget::Discovery(_)) {
                    self.jwks_target = None;
                }
                self.on_failure(now, FetchFailure::Keys(e))
            }
        }
    }

    /// Installs keys fetched by another worker (shared data) if they are newer than ours.
    pub fn adopt_shared(
        &mut self,
        body: &[u8],
        fetched_at: UnixMillis,
        refresh_at: UnixMillis,
    ) -> bool {
        if fetched_at <= self.fetched_at {
            return false;
        }
        match KeySet::parse(body) {
            Ok(keys) => {
                self.install(keys, fetched_at, refresh_at);
                self.history.keys_fetched_at = self.history.keys_fetched_at.max(fetched_at);
                true
            }
            Err(_) => false,
        }
    }

    fn install(&mut self, keys: KeySet, fetched_at: UnixMillis, refresh_at: UnixMillis) {
        self.keys = Some(keys);
        self.fetched_at = fetched_at;
        self.refresh_at = refresh_at;
        self.history.retry_at = UnixMillis(0);
        self.in_flight = None;
        self.last_error = None;
    }

    /// What this worker knows of the provider's fetches, to share with the others.
    pub fn history(&self) -> FetchHistory {
        self.history
    }

    /// Merges what another worker shared, and whether its fetch is under way (`claim_until`).
    pub fn merge(&mut self, shared: FetchHistory, claim_until: Option<UnixMillis>) {
        let h = &mut self.history;
        h.last_fetch_at = h.last_fetch_at.max(shared.last_fetch_at);
        h.last_unknown_kid_at = h.last_unknown_kid_at.max(shared.last_unknown_kid_at);
        h.keys_fetched_at = h.keys_fetched_at.max(shared.keys_fetched_at);
        // A newer success elsewhere ends the backoff; a newer failure elsewhere starts one.
        if shared.keys_fetched_at > self.fetched_at && shared.retry_at == UnixMillis(0) {
            h.retry_at = UnixMillis(0);
        } else {
            h.retry_at = h.retry_at.max(shared.retry_at);
        }
        self.remote_fetch_until = claim_until;
    }

    /// Published keys newer than ours exist (another worker fetched them).
    pub fn newer_keys_published(&self) -> bool {
        self.history.keys_fetched_at > self.fetched_at
    }

    pub fn refresh_at(&self) -> UnixMillis {
        self.refresh_at
    }

    fn read_discovery(&self, body: &[u8]) -> Result<HttpTarget, DiscoveryError> {
        let FetchTarget::Discovery(discovery) = &self.settings.start else {
            return Err(DiscoveryError::BadJwksUri);
        };
        read_discovery(discovery, body)
    }
}

/// Checks an OpenID configuration against what the configuration expects and returns where its
/// keys are.
fn read_discovery(discovery: &Discovery, body: &[u8]) -> Result<HttpTarget, DiscoveryError> {
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err(DiscoveryError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| DiscoveryError::NotJson)?;
    if doc.get("issuer").and_then(Value::as_str) != Some(discovery.issuer.as_str()) {
        return Err(DiscoveryError::IssuerMismatch);
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(DiscoveryError::NoJwksUri)?;
    let target = http_target("jwks_uri", uri).map_err(|_| DiscoveryError::BadJwksUri)?;
    if !discovery.jwks_origins.contains(&target.origin) {
        return Err(DiscoveryError::JwksOriginNotAllowed);
    }
    Ok(target)
}

/// Refresh a little before the keys go stale, so requests never wait on a refresh.
fn refresh_delay(ttl: Duration) -> Duration {
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

    fn t(ms: u64) -> UnixMillis {
        UnixMillis(ms)
    }

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

    fn target(origin: &str, path: &str) -> HttpTarget {
        HttpTarget {
            origin: origin.into(),
            authority: origin.split("://").nth(1).unwrap().into(),
            path: path.into(),
        }
    }

    fn jwks_target() -> FetchTarget {
        FetchTarget::Jwks(target("https://idp", "/jwks"))
    }

    fn discovery_target(extra_origins: &[&str]) -> FetchTarget {
        let mut jwks_origins = vec!["http://idp:9000".to_string()];
        jwks_origins.extend(extra_origins.iter().map(|o| o.to_string()));
        FetchTarget::Discovery(Discovery {
            target: target("http://idp:9000", "/.well-known/openid-configuration"),
            issuer: "http://idp:9000".into(),
            jwks_origins,
        })
    }

    fn good_jwks() -> Vec<u8> {
        jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])
    }

    /// Starts the scheduled fetch due now, if any.
    fn fetch(c: &mut JwksCache, now: UnixMillis) -> Option<FetchRequest> {
        c.due_fetch(now).map(|reason| c.start(now, reason))
    }

    fn loaded(now: u64) -> JwksCache {
        let mut c = JwksCache::new(settings(jwks_target()));
        fetch(&mut c, t(now)).unwrap();
        c.on_response(t(now), FetchStep::Jwks, Some(200), None, &good_jwks());
        c
    }

    #[test]
    fn first_fetch_then_background_refresh_before_expiry() {
        let mut c = JwksCache::new(settings(jwks_target()));
        assert_eq!(c.availability(t(0)), Availability::Loading);
        let f = fetch(&mut c, t(1_000)).unwrap();
        assert_eq!(f.target.path, "/jwks");
        assert_eq!(f.step, FetchStep::Jwks);
        assert_eq!(fetch(&mut c, t(1_001)), None, "one fetch at a time");
        assert_eq!(
            c.on_response(t(2_000), FetchStep::Jwks, Some(200), None, &good_jwks()),
            FetchOutcome::KeysUpdated
        );
        assert_eq!(c.availability(t(2_000)), Availability::Ready);
        // Refresh at 90% of the configured 600 s.
        assert_eq!(c.refresh_at(), t(2_000 + 540_000));
        assert_eq!(fetch(&mut c, t(2_000 + 539_999)), None);
        assert!(fetch(&mut c, t(2_000 + 540_000)).is_some());
    }

    #[test]
    fn cache_control_max_age_is_honoured_and_clamped() {
        let mut c = JwksCache::new(settings(jwks_target()));
        fetch(&mut c, t(0)).unwrap();
        c.on_response(
            t(0),
            FetchStep::Jwks,
            Some(200),
            Some("public, max-age=100"),
            &good_jwks(),
        );
        assert_eq!(c.refresh_at(), t(90_000));
        assert_eq!(max_age(Some("max-age=1")), Some(MIN_MAX_AGE));
        assert_eq!(max_age(Some("max-age=99999999")), Some(MAX_MAX_AGE));
        assert_eq!(max_age(Some("no-store")), Some(MIN_MAX_AGE));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(Some("max-age=abc")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn failed_refresh_keeps_last_good_keys_and_backs_off() {
        let mut c = loaded(0);
        let at = c.refresh_at().0;
        fetch(&mut c, t(at)).unwrap();
        assert!(matches!(
            c.on_response(t(at), FetchStep::Jwks, Some(500), None, b"oops"),
            FetchOutcome::Failed(FetchFailure::Status(500))
        ));
        assert_eq!(
            c.availability(t(at)),
            Availability::Ready,
            "last good keys stay"
        );
        assert!(c.keys().unwrap().contains_kid("rsa-1"));
        assert_eq!(fetch(&mut c, t(at + 999)), None, "backoff");
        assert!(fetch(&mut c, t(at + 1_000)).is_some());
        // A garbage body is a failure too, and keeps the keys.
        assert!(matches!(
            c.on_response(t(at + 1_000), FetchStep::Jwks, Some(200), None, b"{}"),
            FetchOutcome::Failed(FetchFailure::Keys(_))
        ));
        assert!(c.keys().is_some());
    }

    #[test]
    fn without_keys_a_failure_makes_requests_fail_fast_until_the_retry() {
        let mut c = JwksCache::new(settings(jwks_target()));
        fetch(&mut c, t(0)).unwrap();
        c.on_failure(t(10), FetchFailure::NoResponse);
        assert_eq!(c.availability(t(500)), Availability::Unavailable);
        assert_eq!(c.availability(t(1_010)), Availability::Loading);
        assert!(fetch(&mut c, t(1_010)).is_some());
    }

    #[test]
    fn a_scheduled_fetch_does_not_start_the_unknown_kid_clock() {
        let c = loaded(1_000);
        // Only the short spacing after any fetch applies.
        assert!(!c.may_refetch_for_unknown_kid(t(2_999)));
        assert_eq!(c.unknown_kid_refetch_due(t(2_999)), None);
        assert_eq!(
            c.unknown_kid_refetch_due(t(3_000)),
            Some(FetchReason::UnknownKid)
        );
    }

    #[test]
    fn unknown_kid_refetches_are_one_per_interval() {
        let mut c = loaded(0);
        c.start(t(5_000), FetchReason::UnknownKid);
        // While in flight, others may wait for it, but no second fetch starts.
        assert!(c.may_refetch_for_unknown_kid(t(5_001)));
        assert_eq!(c.unknown_kid_refetch_due(t(5_001)), None);
        c.on_response(t(5_100), FetchStep::Jwks, Some(200), None, &good_jwks());
        assert!(!c.may_refetch_for_unknown_kid(t(34_999)));
        assert!(c.may_refetch_for_unknown_kid(t(35_000)));
        // A scheduled refresh in between does not reset the interval...
        let at = c.refresh_at().0;
        fetch(&mut c, t(at)).unwrap();
        c.on_response(t(at), FetchStep::Jwks, Some(200), None, &good_jwks());
        // ...but keeps the spacing after it.
        assert!(!c.may_refetch_for_unknown_kid(t(at + 1_999)));
        assert!(c.may_refetch_for_unknown_kid(t(at + 2_000)));
    }

    #[test]
    fn overdue_fetch_is_expired() {
        let mut c = JwksCache::new(settings(jwks_target()));
        fetch(&mut c, t(0)).unwrap();
        assert!(!c.expire_overdue(t(6_000)));
        assert!(c.expire_overdue(t(6_001)));
        assert!(!c.is_fetching());
        // A reply that arrives after that is ignored.
        assert_eq!(
            c.on_response(t(7_000), FetchStep::Jwks, Some(200), None, &good_jwks()),
            FetchOutcome::Ignored
        );
        assert!(c.keys().is_none());
    }

    #[test]
    fn an_orphaned_fetch_stays_ours_and_is_resent() {
        let mut c = loaded(0);
        c.start(t(5_000), FetchReason::UnknownKid);
        assert_eq!(c.resend(t(5_100)), None, "not orphaned: nothing to resend");
        c.orphan_fetch();
        assert!(c.is_fetching(), "still in flight: no new refetch may start");
        assert_eq!(c.unknown_kid_refetch_due(t(8_000)), None);
        let again = c.resend(t(5_200)).unwrap();
        assert_eq!(again.target.path, "/jwks");
        assert_eq!(c.resend(t(5_300)), None, "sent once");
        assert_eq!(
            c.on_response(t(5_400), FetchStep::Jwks, Some(200), None, &good_jwks()),
            FetchOutcome::KeysUpdated
        );
    }

    #[test]
    fn discovery_then_jwks() {
        let mut c = JwksCache::new(settings(discovery_target(&[])));
        let f = fetch(&mut c, t(0)).unwrap();
        assert_eq!(f.step, FetchStep::Discovery);
        let doc = br#"{"issuer":"http://idp:9000","jwks_uri":"http://idp:9000/keys?v=1"}"#;
        let FetchOutcome::FetchNext(next) =
            c.on_response(t(5), FetchStep::Discovery, Some(200), None, doc)
        else {
            panic!("expected the JWKS fetch next")
        };
        assert_eq!(next.target, target("http://idp:9000", "/keys?v=1"));
        assert_eq!(next.step, FetchStep::Jwks);
        assert_eq!(
            c.on_response(t(6), FetchStep::Jwks, Some(200), None, &good_jwks()),
            FetchOutcome::KeysUpdated
        );
        // The refresh goes straight to the JWKS.
        let refresh_at = c.refresh_at();
        let refresh = fetch(&mut c, refresh_at).unwrap();
        assert_eq!(refresh.step, FetchStep::Jwks);

        let mut bad = JwksCache::new(settings(discovery_target(&[])));
        fetch(&mut bad, t(0)).unwrap();
        assert!(matches!(
            bad.on_response(t(1), FetchStep::Discovery, Some(200), None, b"{}"),
            FetchOutcome::Failed(FetchFailure::Discovery(DiscoveryError::IssuerMismatch))
        ));
    }

    #[test]
    fn discovery_must_name_our_issuer_and_an_allowed_jwks_origin() {
        let cases: [(&[&str], &[u8], Option<DiscoveryError>); 5] = [
            (
                &[],
                br#"{"issuer":"http://evil:9000","jwks_uri":"http://idp:9000/keys"}"#,
                Some(DiscoveryError::IssuerMismatch),
            ),
            (
                &[],
                br#"{"issuer":"http://idp:9000/","jwks_uri":"http://idp:9000/keys"}"#,
                Some(DiscoveryError::IssuerMismatch),
            ),
            (
                &[],
                br#"{"issuer":"http://idp:9000","jwks_uri":"http://attacker.example/keys"}"#,
                Some(DiscoveryError::JwksOriginNotAllowed),
            ),
            (
                &[],
                br#"{"issuer":"http://idp:9000","jwks_uri":"https://idp:9000/keys"}"#,
                Some(DiscoveryError::JwksOriginNotAllowed),
            ),
            (
                &["https://keys.example.com"],
                br#"{"issuer":"http://idp:9000","jwks_uri":"https://keys.example.com/k"}"#,
                None,
            ),
        ];
        for (allowed, doc, expected) in cases {
            let mut c = JwksCache::new(settings(discovery_target(allowed)));
            fetch(&mut c, t(0)).unwrap();
            let outcome = c.on_response(t(1), FetchStep::Discovery, Some(200), None, doc);
            match expected {
                Some(e) => assert_eq!(
                    outcome,
                    FetchOutcome::Failed(FetchFailure::Discovery(e)),
                    "{}",
                    String::from_utf8_lossy(doc)
                ),
                None => assert!(matches!(outcome, FetchOutcome::FetchNext(_)), "{outcome:?}"),
            }
        }
    }

    #[test]
    fn shared_keys_from_another_worker_are_adopted_when_newer() {
        let mut c = JwksCache::new(settings(jwks_target()));
        assert!(c.adopt_shared(&good_jwks(), t(100), t(5_000)));
        assert_eq!(c.availability(t(200)), Availability::Ready);
        assert_eq!(fetch(&mut c, t(4_999)), None);
        assert!(!c.adopt_shared(&good_jwks(), t(100), t(9_000)), "not newer");
        assert!(!c.adopt_shared(b"garbage", t(200), t(9_000)));
    }

    #[test]
    fn another_workers_fetch_is_waited_for_and_its_rate_limit_respected() {
        let mut c = loaded(0);
        let elsewhere = FetchHistory {
            last_fetch_at: t(40_000),
            last_unknown_kid_at: t(40_000),
            retry_at: t(0),
            keys_fetched_at: t(0),
        };
        c.merge(elsewhere, Some(t(46_000)));
        assert_eq!(c.remote_fetch_until(t(41_000)), Some(t(46_000)));
        assert!(c.may_refetch_for_unknown_kid(t(41_000)), "wait for theirs");
        assert_eq!(c.unknown_kid_refetch_due(t(41_000)), None, "but start none");
        assert_eq!(c.wait_deadline(t(41_000)), t(47_000));
        // Their fetch ended; their refetch still counts against the interval here.
        c.merge(elsewhere, None);
        assert!(!c.may_refetch_for_unknown_kid(t(69_999)));
        assert!(c.may_refetch_for_unknown_kid(t(70_000)));
        // A failure elsewhere backs this worker off too.
        let failed = FetchHistory {
            retry_at: t(80_000),
            ..elsewhere
        };
        c.merge(failed, None);
        assert_eq!(c.unknown_kid_refetch_due(t(79_999)), None);
    }

    #[test]
    fn newer_published_keys_are_noticed_from_the_history() {
        let mut c = loaded(1_000);
        assert!(!c.newer_keys_published());
        c.merge(
            FetchHistory {
                keys_fetched_at: t(2_000),
                ..FetchHistory::default()
            },
            None,
        );
        assert!(c.newer_keys_published());
        assert!(c.adopt_shared(&good_jwks(), t(2_000), t(500_000)));
        assert!(!c.newer_keys_published());
    }
}
