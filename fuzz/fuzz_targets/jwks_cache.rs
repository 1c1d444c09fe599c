//! `JwksCache::on_response` (and discovery, max-age, shared-key adoption) on arbitrary
//! replies. Input: one flags byte, the Cache-Control value, a NUL byte, the body.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::config::{Discovery, FetchTarget, HttpTarget, RemoteKeys};
use mcp_auth_core::jwks_cache::{
    max_age, Availability, FetchOutcome, FetchRequest, FetchStep, JwksCache,
};
use mcp_auth_core::time::UnixMillis;

const NOW: UnixMillis = UnixMillis(1_800_000_000_000);
// Seeds are made with this issuer (scripts/fuzz_seeds.py); its discovery document names a
// JWKS on the same origin.
const ISSUER: &str = "https://idp.fuzz.example";

fn target(path: &str) -> HttpTarget {
    HttpTarget {
        origin: ISSUER.into(),
        authority: "idp.fuzz.example".into(),
        path: path.into(),
    }
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

/// Starts the scheduled fetch due at `now`.
fn start_due_fetch(cache: &mut JwksCache, now: UnixMillis) -> Option<FetchRequest> {
    let reason = cache.due_fetch(now)?;
    Some(cache.start(now, reason))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (cache_control, body) = rest.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let cache_control = String::from_utf8_lossy(cache_control);
    let _ = max_age(Some(&cache_control));

    let discovery = flags & 1 == 1;
    let start = if discovery {
        FetchTarget::Discovery(Discovery {
            target: target("/.well-known/openid-configuration"),
            issuer: ISSUER.into(),
            jwks_origins: vec![ISSUER.into()],
        })
    } else {
        FetchTarget::Jwks(target("/jwks"))
    };
    let status = match (flags >> 1) & 3 {
        0 => Some(200),
        1 => None,
        2 => Some(500),
        _ => Some(u16::from(flags)),
    };
    let mut cache = JwksCache::new(settings(start));
    let Some(fetch) = start_due_fetch(&mut cache, NOW) else {
        panic!("a new cache fetches at once");
    };
    let mut outcome = cache.on_response(NOW, fetch.step, status, Some(&cache_control), body);
    if let FetchOutcome::FetchNext(next) = &outcome {
        assert_eq!(next.step, FetchStep::Jwks);
        assert_eq!(
            next.target.origin, ISSUER,
            "discovery led off the allowed origin"
        );
        let then = NOW.plus(Duration::from_millis(1));
        outcome = cache.on_response(then, next.step, status, Some(&cache_control), body);
    }
    match outcome {
        FetchOutcome::KeysUpdated => {
            assert_eq!(cache.availability(NOW), Availability::Ready);
            assert!(cache.refresh_at() > NOW);
            // Keys stay through a failed refresh.
            let t = cache.refresh_at();
            if let Some(refresh) = start_due_fetch(&mut cache, t) {
                let _ = cache.on_response(t, refresh.step, Some(500), None, b"oops");
                assert_eq!(cache.availability(t), Availability::Ready);
            }
        }
        FetchOutcome::Failed(_) => {
            assert!(!cache.is_fetching());
            assert_ne!(cache.availability(NOW), Availability::Ready);
        }
        FetchOutcome::FetchNext(_) => {}
        FetchOutcome::Ignored => panic!("a reply to the fetch in flight is never ignored"),
    }
    // The same bytes as another worker's shared keys.
    let mut other = JwksCache::new(settings(FetchTarget::Jwks(target("/jwks"))));
    let _ = other.adopt_shared(body, NOW, NOW.plus(Duration::from_secs(1)));
    let _ = other.expire_overdue(NOW.plus(Duration::from_secs(10)));
});
